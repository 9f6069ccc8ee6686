//! `linear(out_features, bias = b)`: on a vector, or on every step of a sequence.

use quote::quote;

use super::{
    arg, rt, usize_lit, weighted_backward, weighted_backward_input, weighted_forward, ArgKind::*,
    ArgSpec, Build, Emit, InitRule, Kind, Layer, Role, TensorSpec,
};
use crate::plan::{dims_text, Shape};

pub const KINDS: &[&dyn Kind] = &[&LinearKind];

struct LinearKind;

impl Kind for LinearKind {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn args(&self) -> &'static [ArgSpec] {
        const ARGS: &[ArgSpec] = &[
            arg("out_features", Count, true, true),
            arg("bias", Bool, false, false),
        ];
        ARGS
    }

    fn role(&self) -> Role {
        Role::Weights
    }

    fn param_prefix(&self) -> Option<&'static str> {
        Some("fc")
    }

    fn inferred(&self) -> Option<&'static str> {
        Some("input features")
    }

    fn other_names(&self) -> &'static [&'static str] {
        &["Dense", "fc", "fully_connected"]
    }

    fn example(&self, _missing: &str) -> String {
        "e.g. `linear(10)` for 10 output features".to_string()
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        if let Shape::Spatial(d) = cx.input {
            let msg = format!(
                "{}: `linear` needs a vector input, but its input is {}; add `flatten` before it to make it [{}]",
                cx.who,
                dims_text(&d),
                d.iter().product::<usize>()
            );
            cx.error(msg);
            return None;
        }
        // A sequence's steps are so many more rows of the same product.
        let (steps, in_f) = match cx.input {
            Shape::Sequence {
                steps, features, ..
            } => (Some(steps), features),
            _ => (None, cx.input.numel()),
        };
        let out_f = cx.args.int("out_features", 1);
        if !cx.fits("weight", &[out_f, in_f]) {
            return None;
        }
        Some(Box::new(Linear {
            in_f,
            out_f,
            steps,
            bias: cx.args.bool("bias", true),
        }))
    }
}

struct Linear {
    in_f: usize,
    out_f: usize,
    /// The steps of a sequence input, each taken as a sample.
    steps: Option<usize>,
    bias: bool,
}

impl Linear {
    fn lens(&self) -> (usize, usize) {
        (
            self.out_f * self.in_f,
            if self.bias { self.out_f } else { 0 },
        )
    }

    /// `call` with `n` counting rows: samples, or samples times steps for a sequence.
    fn per_row(&self, call: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
        match self.steps {
            Some(t) => {
                let t = usize_lit(t);
                quote! { { let n = n * #t; #call } }
            }
            None => call,
        }
    }
}

impl Layer for Linear {
    fn output(&self) -> Shape {
        match self.steps {
            Some(t) => Shape::sequence(t, self.out_f),
            None => Shape::Vector(self.out_f),
        }
    }

    fn params(&self) -> Vec<TensorSpec> {
        let mut p = vec![TensorSpec {
            suffix: "weight".into(),
            shape: vec![self.out_f, self.in_f],
            init: InitRule::Weights {
                fan_in: self.in_f,
                fan_out: self.out_f,
            },
        }];
        if self.bias {
            p.push(TensorSpec {
                suffix: "bias".into(),
                shape: vec![self.out_f],
                init: InitRule::Zeros,
            });
        }
        p
    }

    fn flattens(&self) -> bool {
        true
    }

    fn macs(&self) -> u64 {
        (self.in_f * self.out_f * self.steps.unwrap_or(1)) as u64
    }

    fn geometry(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        let (i, o) = (usize_lit(self.in_f), usize_lit(self.out_f));
        quote! {
            const #g: #rt::ops::linear::LinearGeom =
                #rt::ops::linear::LinearGeom { in_f: #i, out_f: #o };
        }
    }

    fn input_grad_optional(&self) -> bool {
        true
    }

    fn scratch(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, g) = (rt(), &e.g);
        let t = usize_lit(self.steps.unwrap_or(1));
        Some(quote!(#rt::ops::linear::scratch_needed(&Self::#g, n * #t)))
    }

    fn onnx(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, g) = (rt(), &e.g);
        Some(quote!(#rt::onnx::kinds::Linear(Self::#g)))
    }

    fn forward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let rt = rt();
        let (wl, bl) = self.lens();
        self.per_row(weighted_forward(
            e,
            quote!(#rt::ops::linear::forward),
            wl,
            bl,
        ))
    }

    fn backward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let rt = rt();
        let (wl, bl) = self.lens();
        self.per_row(weighted_backward(
            e,
            quote!(#rt::ops::linear::backward),
            wl,
            bl,
        ))
    }

    fn backward_input(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let rt = rt();
        let (wl, _) = self.lens();
        Some(weighted_backward_input(
            e,
            quote!(#rt::ops::linear::backward_input),
            wl,
        ))
    }
}
