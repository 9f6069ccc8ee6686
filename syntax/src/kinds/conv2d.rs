//! `conv2d(out_channels, kernel = k, stride = s, pad = p, bias = b, floor = f)`.

use quote::quote;

use super::window::Sliding;
use super::{
    arg, dims_tokens, rt, usize_lit, weight_and_bias_specs, weighted_backward,
    weighted_backward_input, weighted_forward, window_assertion, ArgKind::*, ArgSpec, Build, Emit,
    Kind, Layer, Role, TensorSpec,
};
use crate::plan::Shape;

pub const KINDS: &[&dyn Kind] = &[&Conv2dKind];

struct Conv2dKind;

impl Kind for Conv2dKind {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn args(&self) -> &'static [ArgSpec] {
        const ARGS: &[ArgSpec] = &[
            arg("out_channels", Count, true, true),
            arg("kernel", Window, false, true),
            arg("stride", Window, false, false),
            arg("pad", Pad, false, false),
            arg("bias", Bool, false, false),
            arg("floor", Bool, false, false),
        ];
        ARGS
    }

    fn role(&self) -> Role {
        Role::Weights
    }

    fn param_prefix(&self) -> Option<&'static str> {
        Some("conv")
    }

    fn inferred(&self) -> Option<&'static str> {
        Some("input channels")
    }

    fn other_names(&self) -> &'static [&'static str] {
        &["Conv2d", "Conv2D", "Convolution2D"]
    }

    fn example(&self, missing: &str) -> String {
        if missing == "kernel" {
            "e.g. `conv2d(6, kernel = 5)`".to_string()
        } else {
            "e.g. `conv2d(6, kernel = 5)`, whose first argument is the number of output channels"
                .to_string()
        }
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        let input = cx.spatial()?;
        let window = Sliding::from_args(cx, None);
        let [oh, ow] = window.output(cx, "kernel", input)?;
        let out_c = cx.args.int("out_channels", 1);
        let [kh, kw] = window.kernel;
        if !cx.fits("output", &[out_c, oh, ow]) || !cx.fits("weight", &[out_c, input[0], kh, kw]) {
            return None;
        }
        Some(Box::new(Conv2d {
            input,
            out_c,
            window,
            bias: cx.args.bool("bias", true),
            output: [out_c, oh, ow],
        }))
    }
}

struct Conv2d {
    input: [usize; 3],
    out_c: usize,
    window: Sliding,
    bias: bool,
    output: [usize; 3],
}

impl Conv2d {
    /// `C * KH * KW`.
    fn fan_in(&self) -> usize {
        self.input[0] * self.window.kernel[0] * self.window.kernel[1]
    }

    fn lens(&self) -> (usize, usize) {
        (
            self.out_c * self.fan_in(),
            if self.bias { self.out_c } else { 0 },
        )
    }
}

impl Layer for Conv2d {
    fn output(&self) -> Shape {
        Shape::Spatial(self.output)
    }

    fn params(&self) -> Vec<TensorSpec> {
        let [kh, kw] = self.window.kernel;
        let shape = vec![self.out_c, self.input[0], kh, kw];
        let fans = [self.fan_in(), self.out_c * kh * kw];
        weight_and_bias_specs(shape, fans, self.bias.then_some(self.out_c))
    }

    fn window(&self) -> Option<[(usize, usize); 2]> {
        Some(self.window.steps())
    }

    fn macs(&self) -> u64 {
        let out: usize = self.output.iter().product();
        u64::try_from(out as u128 * self.fan_in() as u128).unwrap_or(u64::MAX)
    }

    fn explain(&self) -> String {
        self.window.explain(Shape::Spatial(self.input))
    }

    fn note(&self) -> String {
        self.window.note(Shape::Spatial(self.input))
    }

    fn geometry(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let rt = rt();
        let g = &e.g;
        let w = self.window;
        let (i, oc, k, s, p, r) = (
            dims_tokens(&self.input),
            usize_lit(self.out_c),
            dims_tokens(&w.kernel),
            dims_tokens(&w.stride),
            dims_tokens(&w.pad),
            super::rounding(w.floor),
        );
        quote! {
            const #g: #rt::ops::conv2d::Conv2dGeom =
                #rt::ops::conv2d::Conv2dGeom::new(#i, #oc, #k, #s, #p, #r);
        }
    }

    fn assertion(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        window_assertion(e)
    }

    fn input_grad_optional(&self) -> bool {
        true
    }

    fn scratch(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, g) = (rt(), &e.g);
        Some(quote!(#rt::ops::conv2d::scratch_needed(&Self::#g)))
    }

    fn onnx(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, g) = (rt(), &e.g);
        Some(quote!(#rt::onnx::kinds::Conv2d(Self::#g)))
    }

    fn forward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let rt = rt();
        let (wl, bl) = self.lens();
        weighted_forward(e, quote!(#rt::ops::conv2d::forward), wl, bl)
    }

    fn backward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let rt = rt();
        let (wl, bl) = self.lens();
        weighted_backward(e, quote!(#rt::ops::conv2d::backward), wl, bl)
    }

    fn backward_input(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let rt = rt();
        let (wl, _) = self.lens();
        Some(weighted_backward_input(
            e,
            quote!(#rt::ops::conv2d::backward_input),
            wl,
        ))
    }
}
