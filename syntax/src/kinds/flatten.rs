//! `flatten`: `[C, H, W]` to `[C*H*W]`; the values stay where they are.

use super::{copy_backward, copy_forward, Build, Emit, Kind, Layer};
use crate::plan::Shape;

pub const KINDS: &[&dyn Kind] = &[&FlattenKind];

struct FlattenKind;

impl Kind for FlattenKind {
    fn name(&self) -> &'static str {
        "flatten"
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        Some(Box::new(Flatten { input: cx.input }))
    }
}

struct Flatten {
    input: Shape,
}

impl Layer for Flatten {
    fn output(&self) -> Shape {
        Shape::Vector(self.input.numel())
    }

    fn flattens(&self) -> bool {
        true
    }

    fn explain(&self) -> String {
        format!(
            " (flatten multiplies {})",
            self.input.text().replace(", ", " x ")
        )
    }

    fn onnx(&self, _: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let rt = super::rt();
        Some(quote::quote!(#rt::onnx::kinds::Flatten))
    }

    fn forward(&self, _: &Emit<'_>) -> proc_macro2::TokenStream {
        copy_forward()
    }

    fn backward(&self, _: &Emit<'_>) -> proc_macro2::TokenStream {
        copy_backward()
    }
}
