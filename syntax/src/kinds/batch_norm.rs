//! `batch_norm(momentum = m, eps = e)`: per channel after a spatial layer, per feature after a
//! vector layer, with PyTorch's semantics.

use quote::quote;

use super::{
    arg, f32_tokens, rt, usize_lit, weight_and_bias, ArgKind::*, ArgSpec, Build, Emit, InitRule,
    Kind, Layer, PassUse, TapeNeeds, TensorSpec,
};
use crate::plan::Shape;

pub const KINDS: &[&dyn Kind] = &[&BatchNormKind];

struct BatchNormKind;

impl Kind for BatchNormKind {
    fn name(&self) -> &'static str {
        "batch_norm"
    }

    fn args(&self) -> &'static [ArgSpec] {
        const ARGS: &[ArgSpec] = &[
            arg("momentum", Fraction, false, false),
            arg("eps", Positive, false, false),
        ];
        ARGS
    }

    fn inferred(&self) -> Option<&'static str> {
        Some("channels")
    }

    fn other_names(&self) -> &'static [&'static str] {
        &[
            "BatchNorm2d",
            "BatchNorm1d",
            "BatchNormalization",
            "batchnorm",
            "bn",
        ]
    }

    fn param_prefix(&self) -> Option<&'static str> {
        Some("bn")
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        if let Shape::Sequence { .. } = cx.input {
            let msg = format!(
                "{}: `batch_norm` normalises the channels of a feature map or the features of a vector, but its input is {}; normalise after `last` or a pooling over time",
                cx.who,
                cx.input.described()
            );
            cx.error(msg);
            return None;
        }
        Some(Box::new(BatchNorm {
            momentum: cx.args.number("momentum", 0.1),
            eps: cx.args.number("eps", 1e-5),
            shape: cx.input,
        }))
    }
}

struct BatchNorm {
    momentum: f64,
    eps: f64,
    shape: Shape,
}

impl BatchNorm {
    fn per_channel(&self, suffix: &'static str, init: InitRule) -> TensorSpec {
        TensorSpec {
            suffix: suffix.into(),
            shape: vec![self.shape.channels()],
            init,
        }
    }
}

impl Layer for BatchNorm {
    fn output(&self) -> Shape {
        self.shape
    }

    fn params(&self) -> Vec<TensorSpec> {
        vec![
            self.per_channel("weight", InitRule::Ones),
            self.per_channel("bias", InitRule::Zeros),
        ]
    }

    fn buffers(&self) -> Vec<TensorSpec> {
        vec![
            self.per_channel("running_mean", InitRule::Zeros),
            self.per_channel("running_var", InitRule::Ones),
        ]
    }

    fn tape(&self) -> TapeNeeds {
        TapeNeeds {
            aux_fixed: 2 * self.shape.channels(),
            ..TapeNeeds::default()
        }
    }

    fn pass_use(&self) -> PassUse {
        PassUse::Train
    }

    fn geometry(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        let c = self.shape.channels();
        let (c, spatial) = (usize_lit(c), usize_lit(self.shape.numel() / c));
        let (m, eps) = (f32_tokens(self.momentum), f32_tokens(self.eps));
        quote! {
            const #g: #rt::ops::batch_norm::BatchNormGeom =
                #rt::ops::batch_norm::BatchNormGeom { c: #c, spatial: #spatial, momentum: #m, eps: #eps };
        }
    }

    fn onnx(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, g) = (rt(), &e.g);
        Some(quote!(#rt::onnx::kinds::BatchNorm(Self::#g)))
    }

    fn forward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        let c = self.shape.channels();
        let (lets, _) = weight_and_bias(e, "params", c, c, false);
        let (stats, base) = (usize_lit(e.buffer_offset), &e.buffer_base);
        let (at, pbase) = (usize_lit(e.param_offset), &e.param_base);
        quote! { #lets #rt::layers::batch_norm_forward(&mut pass, s, w, b, #stats #base, #at #pbase, &Self::#g, n); }
    }

    fn backward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        let c = self.shape.channels();
        let (lets, _) = weight_and_bias(e, "params", c, c, false);
        let (dlets, _) = weight_and_bias(e, "d_params", c, c, true);
        // Frozen batch norm that kept its running statistics normalised with constants.
        let (at, pbase, len) = (usize_lit(e.param_offset), &e.param_base, usize_lit(2 * c));
        let batch_stats = quote!(train && !frozen.fixes_statistics(#at #pbase, #at #pbase + #len));
        quote! { #lets #dlets #rt::ops::batch_norm::backward(s.d_x, d_w, d_b, s.d_y, s.x, w, s.aux, &Self::#g, n, #batch_stats); }
    }
}
