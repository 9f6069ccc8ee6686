//! `rnn(hidden, activation = tanh | relu)`, `lstm(hidden)` and `gru(hidden)`, each with
//! `layers = n`, `bidirectional = b` and `dropout = p` (between stacked layers): a sequence `[T, F]` to `[T, D·hidden]`, as PyTorch's
//! `nn.RNN`, `nn.LSTM` and `nn.GRU` with `batch_first = True`, parameters named as their
//! `state_dict`s name them (`lstm.weight_ih_l0`, `lstm.bias_hh_l1_reverse`, ...).

use quote::quote;
use striate_geometry::recurrent::{Cell, RecurrentGeom};

use super::{
    arg, f32_tokens, rt, usize_lit, ArgKind::*, ArgSpec, Build, Emit, InitRule, Kind, Layer,
    PassUse, Role, TapeNeeds, TensorSpec,
};
use crate::plan::Shape;

pub const KINDS: &[&dyn Kind] = &[
    &RecurrentKind(Which::Rnn),
    &RecurrentKind(Which::Lstm),
    &RecurrentKind(Which::Gru),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Rnn,
    Lstm,
    Gru,
}

/// The activations of `rnn`; the first is the default.
const ACTIVATIONS: &[&str] = &["tanh", "relu"];

struct RecurrentKind(Which);

impl Kind for RecurrentKind {
    fn name(&self) -> &'static str {
        match self.0 {
            Which::Rnn => "rnn",
            Which::Lstm => "lstm",
            Which::Gru => "gru",
        }
    }

    fn args(&self) -> &'static [ArgSpec] {
        const RNN: &[ArgSpec] = &[
            arg("hidden", Count, true, true),
            arg("activation", Choice(ACTIVATIONS), false, false),
            arg("layers", Count, false, false),
            arg("bidirectional", Bool, false, false),
            arg("dropout", Probability, false, false),
        ];
        const GATED: &[ArgSpec] = &[
            arg("hidden", Count, true, true),
            arg("layers", Count, false, false),
            arg("bidirectional", Bool, false, false),
            arg("dropout", Probability, false, false),
        ];
        match self.0 {
            Which::Rnn => RNN,
            _ => GATED,
        }
    }

    fn role(&self) -> Role {
        Role::Weights
    }

    fn param_prefix(&self) -> Option<&'static str> {
        Some(self.name())
    }

    fn inferred(&self) -> Option<&'static str> {
        Some("input features")
    }

    fn other_names(&self) -> &'static [&'static str] {
        match self.0 {
            Which::Rnn => &["RNN", "SimpleRNN", "elman"],
            Which::Lstm => &["LSTM", "LSTMCell"],
            Which::Gru => &["GRU", "GRUCell"],
        }
    }

    fn example(&self, _missing: &str) -> String {
        format!("e.g. `{}(128)` for 128 hidden units", self.name())
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        let (steps, input, _) = cx.sequence("reads")?;
        let cell = match self.0 {
            Which::Rnn if cx.args.choice("activation") == Some("relu") => Cell::RnnRelu,
            Which::Rnn => Cell::RnnTanh,
            Which::Lstm => Cell::Lstm,
            Which::Gru => Cell::Gru,
        };
        let hidden = cx.args.int("hidden", 1);
        let layers = cx.args.int("layers", 1);
        let directions = if cx.args.bool("bidirectional", false) {
            2
        } else {
            1
        };
        let dropout = cx.args.number("dropout", 0.0);
        if dropout > 0.0 && layers == 1 {
            let msg = format!(
                "{}: `dropout = {dropout}` acts between stacked layers (on the output of each but the last), but `{}` has one layer; add `layers = 2` or more, or put a `dropout({dropout})` layer after it",
                cx.who, cx.kind
            );
            match cx.args.tokens("dropout").cloned() {
                Some(tokens) => cx.errors.spanned(tokens, msg),
                None => cx.error(msg),
            }
            return None;
        }
        let g = RecurrentGeom::new(cell, input, hidden, steps, layers, directions)
            .with_dropout(dropout > 0.0);
        let widest = input.max(directions * hidden);
        if !cx.fits("weight", &[cell.gates() * hidden, widest + hidden])
            || !cx.fits("tape", &[g.aux_len().max(1)])
        {
            return None;
        }
        Some(Box::new(Recurrent { g, dropout }))
    }
}

struct Recurrent {
    g: RecurrentGeom,
    /// Dropout's probability between stacked layers (0: none).
    dropout: f64,
}

impl Layer for Recurrent {
    fn output(&self) -> Shape {
        Shape::Sequence {
            steps: self.g.steps,
            features: self.g.output_features(),
            directions: self.g.directions,
        }
    }

    fn params(&self) -> Vec<TensorSpec> {
        let g = &self.g;
        let (rows, hidden) = (g.gate_rows(), g.hidden);
        let init = InitRule::Recurrent { hidden };
        let mut specs = Vec::new();
        for l in 0..g.layers {
            for d in 0..g.directions {
                let tail = format!("l{l}{}", if d == 1 { "_reverse" } else { "" });
                for (what, shape) in [
                    ("weight_ih", vec![rows, g.layer_input(l)]),
                    ("weight_hh", vec![rows, hidden]),
                    ("bias_ih", vec![rows]),
                    ("bias_hh", vec![rows]),
                ] {
                    specs.push(TensorSpec {
                        suffix: format!("{what}_{tail}"),
                        shape,
                        init,
                    });
                }
            }
        }
        specs
    }

    fn flattens(&self) -> bool {
        true
    }

    fn macs(&self) -> u64 {
        let g = &self.g;
        (0..g.layers)
            .map(|l| (g.layer_input(l) + g.hidden) * g.gate_rows() * g.directions * g.steps)
            .sum::<usize>() as u64
    }

    fn explain(&self) -> String {
        let g = &self.g;
        if g.directions == 2 {
            format!(
                ": {} steps of both directions' {} hidden units, 2*{} = {} features (bidirectional)",
                g.steps,
                g.hidden,
                g.hidden,
                g.output_features()
            )
        } else {
            format!(": {} steps of {} hidden units", g.steps, g.hidden)
        }
    }

    fn tape(&self) -> TapeNeeds {
        TapeNeeds {
            aux_per_sample: self.g.aux_len(),
            ..TapeNeeds::default()
        }
    }

    fn input_grad_optional(&self) -> bool {
        true
    }

    fn pass_use(&self) -> PassUse {
        if self.g.dropout {
            PassUse::Pass
        } else {
            PassUse::None
        }
    }

    fn geometry(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, name) = (rt(), &e.g);
        let g = &self.g;
        let cell = match g.cell {
            Cell::RnnTanh => quote!(RnnTanh),
            Cell::RnnRelu => quote!(RnnRelu),
            Cell::Lstm => quote!(Lstm),
            Cell::Gru => quote!(Gru),
        };
        let [i, h, t, l, d] = [g.input, g.hidden, g.steps, g.layers, g.directions].map(usize_lit);
        let dropout = g.dropout;
        quote! {
            const #name: #rt::ops::recurrent::RecurrentGeom = #rt::ops::recurrent::RecurrentGeom::new(
                #rt::ops::recurrent::Cell::#cell, #i, #h, #t, #l, #d,
            ).with_dropout(#dropout);
        }
    }

    fn scratch(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, g) = (rt(), &e.g);
        Some(quote!(#rt::ops::recurrent::scratch_needed(&Self::#g, n)))
    }

    fn onnx(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, g) = (rt(), &e.g);
        Some(quote!(#rt::onnx::kinds::Recurrent(Self::#g)))
    }

    fn forward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g, base) = (rt(), &e.g, &e.param_base);
        let (start, end) = (
            usize_lit(e.param_offset),
            usize_lit(e.param_offset + self.g.param_len()),
        );
        if self.g.dropout {
            let p = f32_tokens(self.dropout);
            return quote! {
                let w = &params[#start #base..#end #base];
                #rt::layers::recurrent_forward(&mut pass, s, w, &Self::#g, n, #p);
            };
        }
        quote! {
            let p = &params[#start #base..#end #base];
            let options = #rt::ops::recurrent::Options { dropout: None, lengths: s.lengths };
            #rt::ops::recurrent::forward_with(s.y, s.aux, s.x, p, &Self::#g, n, s.scratch, options);
        }
    }

    fn backward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g, base, d_x) = (rt(), &e.g, &e.param_base, &e.d_x);
        let (start, end) = (
            usize_lit(e.param_offset),
            usize_lit(e.param_offset + self.g.param_len()),
        );
        quote! {
            let p = &params[#start #base..#end #base];
            let d_p = &mut d_params[#start #base..#end #base];
            #rt::ops::recurrent::backward_with(
                #d_x, d_p, s.d_y, s.aux, p, &Self::#g, n, s.scratch, s.lengths,
            );
        }
    }
}
