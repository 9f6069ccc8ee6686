//! `dropout(p)`: inverted dropout, active only in training.

use quote::quote;

use super::{
    arg, f32_tokens, rt, ArgKind::*, ArgSpec, Build, Emit, Kind, Layer, PassUse, TapeNeeds,
};
use crate::plan::Shape;

pub const KINDS: &[&dyn Kind] = &[&DropoutKind];

struct DropoutKind;

impl Kind for DropoutKind {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn args(&self) -> &'static [ArgSpec] {
        const ARGS: &[ArgSpec] = &[arg("p", Probability, true, false)];
        ARGS
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        Some(Box::new(Dropout {
            p: cx.args.number("p", 0.5),
            shape: cx.input,
        }))
    }
}

struct Dropout {
    p: f64,
    shape: Shape,
}

impl Layer for Dropout {
    fn output(&self) -> Shape {
        self.shape
    }

    fn tape(&self) -> TapeNeeds {
        TapeNeeds {
            aux_per_sample: self.shape.numel(),
            ..TapeNeeds::default()
        }
    }

    fn pass_use(&self) -> PassUse {
        PassUse::Pass
    }

    fn onnx(&self, _: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let rt = rt();
        Some(quote!(#rt::onnx::kinds::Dropout))
    }

    fn forward(&self, _: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, p) = (rt(), f32_tokens(self.p));
        quote! { #rt::layers::dropout_forward(&mut pass, s, #p); }
    }

    fn backward(&self, _: &Emit<'_>) -> proc_macro2::TokenStream {
        let rt = rt();
        quote! { #rt::ops::dropout::backward(s.d_x, s.d_y, s.aux); }
    }
}
