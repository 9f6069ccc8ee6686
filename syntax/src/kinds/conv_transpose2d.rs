//! `conv_transpose2d(out_channels, kernel = k, stride = s, pad = p, output_pad = q, bias = b)`:
//! the transposed convolution that grows a feature map back, `(W - 1)*S - 2P + K + Q` wide.

use quote::quote;
use striate_geometry::{transposed_output_size, TransposedSizeError};

use super::{
    arg, dims_tokens, rt, usize_lit, weight_and_bias_specs, weighted_backward,
    weighted_backward_input, weighted_forward, window_assertion, ArgKind::*, ArgSpec, Build, Emit,
    Kind, Layer, Role, TensorSpec,
};
use crate::plan::{dims_text, Shape};

pub const KINDS: &[&dyn Kind] = &[&ConvTranspose2dKind];

struct ConvTranspose2dKind;

impl Kind for ConvTranspose2dKind {
    fn name(&self) -> &'static str {
        "conv_transpose2d"
    }

    fn args(&self) -> &'static [ArgSpec] {
        const ARGS: &[ArgSpec] = &[
            arg("out_channels", Count, true, true),
            arg("kernel", Window, false, true),
            arg("stride", Window, false, false),
            arg("pad", Pad, false, false),
            arg("output_pad", Pad, false, false),
            arg("bias", Bool, false, false),
        ];
        ARGS
    }

    fn role(&self) -> Role {
        Role::Weights
    }

    fn param_prefix(&self) -> Option<&'static str> {
        Some("deconv")
    }

    fn inferred(&self) -> Option<&'static str> {
        Some("input channels")
    }

    fn other_names(&self) -> &'static [&'static str] {
        &[
            "ConvTranspose2d",
            "Conv2DTranspose",
            "Deconvolution2D",
            "deconv2d",
        ]
    }

    fn example(&self, _missing: &str) -> String {
        "e.g. `conv_transpose2d(16, kernel = 3, stride = 2, pad = 1, output_pad = 1)`, whose first argument is the number of output channels".to_string()
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        let input = cx.spatial()?;
        let t = Transposed {
            kernel: cx.args.pair("kernel", [1, 1]),
            stride: cx.args.pair("stride", [1, 1]),
            pad: cx.args.pair("pad", [0, 0]),
            output_pad: cx.args.pair("output_pad", [0, 0]),
        };
        let out = t.output(cx, input)?;
        let out_c = cx.args.int("out_channels", 1);
        let [kh, kw] = t.kernel;
        if !cx.fits("output", &[out_c, out[0], out[1]])
            || !cx.fits("weight", &[input[0], out_c, kh, kw])
        {
            return None;
        }
        Some(Box::new(ConvTranspose2d {
            input,
            out_c,
            t,
            bias: cx.args.bool("bias", true),
            output: [out_c, out[0], out[1]],
        }))
    }
}

/// The sizes along both axes.
#[derive(Clone, Copy)]
struct Transposed {
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    output_pad: [usize; 2],
}

impl Transposed {
    fn square(&self) -> bool {
        [self.kernel, self.stride, self.pad, self.output_pad]
            .iter()
            .all(|p| p[0] == p[1])
    }

    /// `(7 - 1)*2 - 2*1 + 3 + 1 = 14` along axis `a` of `input`.
    fn formula(&self, input: [usize; 3], a: usize) -> String {
        let (w, k, s, p, q) = (
            input[a + 1],
            self.kernel[a],
            self.stride[a],
            self.pad[a],
            self.output_pad[a],
        );
        let value = (w as i128 - 1) * s as i128 - 2 * p as i128 + k as i128 + q as i128;
        format!("({w} - 1)*{s} - 2*{p} + {k} + {q} = {value}")
    }

    /// The output `[OH, OW]`, or the errors saying why there is none.
    fn output(&self, cx: &mut Build<'_>, input: [usize; 3]) -> Option<[usize; 2]> {
        let mut out = [0; 2];
        let mut ok = true;
        let square = input[1] == input[2] && self.square();
        for a in 0..2 {
            let (k, s, p, q) = (
                self.kernel[a],
                self.stride[a],
                self.pad[a],
                self.output_pad[a],
            );
            match transposed_output_size(input[a + 1], k, s, p, q) {
                Ok(v) => out[a] = v,
                Err(_) if square && a == 1 => ok = false,
                Err(TransposedSizeError::OutputPadTooLarge) => {
                    ok = false;
                    let tokens = cx
                        .args
                        .tokens("output_pad")
                        .unwrap_or(&cx.item.call_tokens)
                        .clone();
                    let axis = axis_name(square, a);
                    let msg = format!(
                        "{}: `output_pad` {q} is not smaller than the stride {s} ({axis}): the extra {} would be reached by no input; use an `output_pad` of at most {}",
                        cx.who,
                        if q == 1 { "row" } else { "rows" },
                        s - 1
                    );
                    cx.errors.spanned(tokens, msg);
                }
                Err(TransposedSizeError::NoOutput { unpadded }) => {
                    ok = false;
                    let axis = axis_name(square, a);
                    let msg = format!(
                        "{}: output {axis} {} is not positive: the padding takes off everything; the input is {}; use at most pad {}",
                        cx.who,
                        self.formula(input, a),
                        dims_text(&input),
                        (unpadded - 1) / 2
                    );
                    cx.error(msg);
                }
                // Zero kernels and strides were reported when the arguments were checked, and
                // a shape has no zero sizes.
                Err(_) => return None,
            }
        }
        ok.then_some(out)
    }
}

fn axis_name(square: bool, a: usize) -> &'static str {
    match (square, a) {
        (true, _) => "height and width",
        (false, 0) => "height",
        (false, _) => "width",
    }
}

struct ConvTranspose2d {
    input: [usize; 3],
    out_c: usize,
    t: Transposed,
    bias: bool,
    output: [usize; 3],
}

impl ConvTranspose2d {
    fn lens(&self) -> (usize, usize) {
        let [kh, kw] = self.t.kernel;
        (
            self.input[0] * self.out_c * kh * kw,
            if self.bias { self.out_c } else { 0 },
        )
    }
}

impl Layer for ConvTranspose2d {
    fn output(&self) -> Shape {
        Shape::Spatial(self.output)
    }

    fn params(&self) -> Vec<TensorSpec> {
        let [kh, kw] = self.t.kernel;
        // PyTorch's fans for its `[in, out, kh, kw]` weight.
        let shape = vec![self.input[0], self.out_c, kh, kw];
        let fans = [self.out_c * kh * kw, self.input[0] * kh * kw];
        weight_and_bias_specs(shape, fans, self.bias.then_some(self.out_c))
    }

    fn macs(&self) -> u64 {
        let (weights, _) = self.lens();
        let area = (self.input[1] * self.input[2]) as u128;
        u64::try_from(area * weights as u128).unwrap_or(u64::MAX)
    }

    fn explain(&self) -> String {
        let (square, input) = (
            self.input[1] == self.input[2] && self.t.square(),
            self.input,
        );
        if square {
            return format!(": height and width {}", self.t.formula(input, 0));
        }
        format!(
            ": height {}, width {}",
            self.t.formula(input, 0),
            self.t.formula(input, 1)
        )
    }

    fn geometry(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let rt = rt();
        let g = &e.g;
        let t = self.t;
        let (i, oc, k, s, p, q) = (
            dims_tokens(&self.input),
            usize_lit(self.out_c),
            dims_tokens(&t.kernel),
            dims_tokens(&t.stride),
            dims_tokens(&t.pad),
            dims_tokens(&t.output_pad),
        );
        quote! {
            const #g: #rt::ops::conv_transpose2d::ConvTranspose2dGeom =
                #rt::ops::conv_transpose2d::ConvTranspose2dGeom::new(#i, #oc, #k, #s, #p, #q);
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
        Some(quote!(#rt::ops::conv_transpose2d::scratch_needed(&Self::#g)))
    }

    fn onnx(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, g) = (rt(), &e.g);
        Some(quote!(#rt::onnx::kinds::ConvTranspose2d(Self::#g)))
    }

    fn forward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let rt = rt();
        let (wl, bl) = self.lens();
        weighted_forward(e, quote!(#rt::ops::conv_transpose2d::forward), wl, bl)
    }

    fn backward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let rt = rt();
        let (wl, bl) = self.lens();
        weighted_backward(e, quote!(#rt::ops::conv_transpose2d::backward), wl, bl)
    }

    fn backward_input(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let rt = rt();
        let (wl, _) = self.lens();
        Some(weighted_backward_input(
            e,
            quote!(#rt::ops::conv_transpose2d::backward_input),
            wl,
        ))
    }
}
