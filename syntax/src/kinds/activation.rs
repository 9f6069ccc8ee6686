//! The element-wise activations: `relu`, `leaky_relu(slope)`, `tanh`, `sigmoid`.

use quote::quote;

use super::{arg, f32_tokens, rt, ArgKind::*, ArgSpec, Build, Emit, Kind, Layer, Role};
use crate::plan::Shape;

pub const KINDS: &[&dyn Kind] = &[
    &ActivationKind(Which::Relu),
    &ActivationKind(Which::LeakyRelu),
    &ActivationKind(Which::Tanh),
    &ActivationKind(Which::Sigmoid),
];

#[derive(Clone, Copy, PartialEq)]
enum Which {
    Relu,
    LeakyRelu,
    Tanh,
    Sigmoid,
}

struct ActivationKind(Which);

impl Kind for ActivationKind {
    fn name(&self) -> &'static str {
        match self.0 {
            Which::Relu => "relu",
            Which::LeakyRelu => "leaky_relu",
            Which::Tanh => "tanh",
            Which::Sigmoid => "sigmoid",
        }
    }

    fn args(&self) -> &'static [ArgSpec] {
        const LEAKY: &[ArgSpec] = &[arg("slope", Number, true, false)];
        match self.0 {
            Which::LeakyRelu => LEAKY,
            _ => &[],
        }
    }

    fn role(&self) -> Role {
        match self.0 {
            Which::Relu | Which::LeakyRelu => Role::ReluLike,
            Which::Tanh | Which::Sigmoid => Role::Saturating,
        }
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        Some(Box::new(Activation {
            which: self.0,
            slope: cx.args.number("slope", 0.01),
            shape: cx.input,
        }))
    }
}

struct Activation {
    which: Which,
    slope: f64,
    shape: Shape,
}

impl Activation {
    fn tokens(&self) -> proc_macro2::TokenStream {
        let rt = rt();
        let a = quote!(#rt::ops::activation::Activation);
        match self.which {
            Which::Relu => quote!(#a::Relu),
            Which::LeakyRelu => {
                let s = f32_tokens(self.slope);
                quote!(#a::LeakyRelu(#s))
            }
            Which::Tanh => quote!(#a::Tanh),
            Which::Sigmoid => quote!(#a::Sigmoid),
        }
    }
}

impl Layer for Activation {
    fn output(&self) -> Shape {
        self.shape
    }

    fn onnx(&self, _: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, act) = (rt(), self.tokens());
        Some(quote!(#rt::onnx::kinds::Activation(#act)))
    }

    fn forward(&self, _: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, act) = (rt(), self.tokens());
        quote! { #rt::ops::activation::forward(s.y, s.x, #act); }
    }

    fn backward(&self, _: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, act) = (rt(), self.tokens());
        quote! { #rt::ops::activation::backward(s.d_x, s.d_y, s.x, s.y, #act); }
    }
}
