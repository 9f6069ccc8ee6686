//! `embedding(vocab, dim)`: token ids `tokens[T]` into a sequence `[T, dim]`, PyTorch's
//! `nn.Embedding(vocab, dim)` with its parameter name (`embedding.weight [vocab, dim]`) and
//! its start, the standard normal.

use quote::quote;

use super::{arg, rt, usize_lit, ArgKind::*, ArgSpec, Build, Emit, InitRule, Kind, Layer, Role};
use super::{PassUse, TensorSpec};
use crate::plan::Shape;

pub const KINDS: &[&dyn Kind] = &[&EmbeddingKind];

/// The largest vocabulary: ids are `f32` values on the tape, exact up to 2^24 (the runtime's
/// `ops::embedding::MAX_VOCAB`).
const MAX_VOCAB: usize = 1 << 24;

struct EmbeddingKind;

impl Kind for EmbeddingKind {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn args(&self) -> &'static [ArgSpec] {
        const ARGS: &[ArgSpec] = &[
            arg("vocab", Count, true, true),
            arg("dim", Count, true, true),
        ];
        ARGS
    }

    fn role(&self) -> Role {
        Role::Weights
    }

    fn reads_tokens(&self) -> bool {
        true
    }

    fn param_prefix(&self) -> Option<&'static str> {
        Some("embedding")
    }

    fn other_names(&self) -> &'static [&'static str] {
        &["Embedding", "embed", "lookup"]
    }

    fn example(&self, _missing: &str) -> String {
        "e.g. `embedding(1000, 32)` for 1000 token ids, 32 features each".to_string()
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        let (vocab, dim) = (cx.args.int("vocab", 1), cx.args.int("dim", 1));
        let Shape::Tokens(steps) = cx.input else {
            let msg = format!(
                "{}: `embedding` reads token ids, but its input is {}; declare the network's input as token ids, `input: tokens[{}]`, and put `embedding` first",
                cx.who,
                cx.input.described(),
                cx.input.dims().first().copied().unwrap_or(1)
            );
            cx.error(msg);
            return None;
        };
        if vocab > MAX_VOCAB {
            let msg = format!(
                "{}: a vocabulary of {vocab} is more than the {MAX_VOCAB} (2^24) token ids striate holds exactly",
                cx.who
            );
            match cx.args.tokens("vocab").cloned() {
                Some(tokens) => cx.errors.spanned(tokens, msg),
                None => cx.error(msg),
            }
            return None;
        }
        if !cx.fits("weight", &[vocab, dim]) || !cx.fits("output", &[steps, dim]) {
            return None;
        }
        Some(Box::new(Embedding { vocab, dim, steps }))
    }
}

struct Embedding {
    vocab: usize,
    dim: usize,
    steps: usize,
}

impl Layer for Embedding {
    fn output(&self) -> Shape {
        Shape::sequence(self.steps, self.dim)
    }

    fn params(&self) -> Vec<TensorSpec> {
        vec![TensorSpec {
            suffix: "weight".into(),
            shape: vec![self.vocab, self.dim],
            init: InitRule::StandardNormal,
        }]
    }

    fn vocab(&self) -> Option<usize> {
        Some(self.vocab)
    }

    fn explain(&self) -> String {
        format!(": {} tokens of {} features", self.steps, self.dim)
    }

    fn pass_use(&self) -> PassUse {
        PassUse::None
    }

    fn input_grad_optional(&self) -> bool {
        true
    }

    fn geometry(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        let [v, d, t] = [self.vocab, self.dim, self.steps].map(usize_lit);
        quote! {
            const #g: #rt::ops::embedding::EmbeddingGeom =
                #rt::ops::embedding::EmbeddingGeom { vocab: #v, dim: #d, steps: #t };
        }
    }

    fn onnx(&self, _: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let rt = rt();
        Some(quote::quote!(#rt::onnx::kinds::Embedding))
    }

    fn forward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g, base) = (rt(), &e.g, &e.param_base);
        let (start, end) = self.range(e);
        quote! {
            let w = &params[#start #base..#end #base];
            #rt::ops::embedding::forward(s.y, s.x, w, &Self::#g, n);
        }
    }

    /// Token ids have no gradient: the input's, if asked for, stays as it is (zero).
    fn backward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g, base) = (rt(), &e.g, &e.param_base);
        let (start, end) = self.range(e);
        quote! {
            let d_w = &mut d_params[#start #base..#end #base];
            #rt::ops::embedding::backward(d_w, s.d_y, s.x, &Self::#g, n);
        }
    }

    fn backward_input(&self, _: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        Some(proc_macro2::TokenStream::new())
    }
}

impl Embedding {
    /// The weight's offsets in the parameter store.
    fn range(&self, e: &Emit<'_>) -> (proc_macro2::Literal, proc_macro2::Literal) {
        (
            usize_lit(e.param_offset),
            usize_lit(e.param_offset + self.vocab * self.dim),
        )
    }
}
