//! `upsample(factor, mode = nearest | bilinear)`: `[C, H, W]` to `[C, f*H, f*W]`.

use quote::quote;

use super::{arg, dims_tokens, rt, usize_lit, ArgKind::*, ArgSpec, Build, Emit, Kind, Layer};
use crate::plan::Shape;

pub const KINDS: &[&dyn Kind] = &[&UpsampleKind];

/// The modes, in the order of the messages; the first is the default.
const MODES: &[&str] = &["nearest", "bilinear"];

struct UpsampleKind;

impl Kind for UpsampleKind {
    fn name(&self) -> &'static str {
        "upsample"
    }

    fn args(&self) -> &'static [ArgSpec] {
        const ARGS: &[ArgSpec] = &[
            arg("factor", Count, true, true),
            arg("mode", Choice(MODES), false, false),
        ];
        ARGS
    }

    fn other_names(&self) -> &'static [&'static str] {
        &["Upsample", "UpSampling2D", "interpolate", "upsample2d"]
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        let input = match cx.input {
            Shape::Spatial(d) => d,
            Shape::Vector(f) => {
                let call = format!(
                    "reshape([{f}, 1, 1]), {}",
                    crate::check::suggest::render(self, &cx.args.written())
                );
                let msg = format!(
                    "{}: `upsample` grows a feature map [channels, height, width], but its input is the vector [{f}]; give it a shape first, e.g. `{call}`",
                    cx.who
                );
                cx.errors.with_fix(&cx.item.call_tokens, msg, call);
                return None;
            }
            Shape::Sequence { .. } | Shape::Tokens(_) => cx.spatial()?,
        };
        let factor = cx.args.int("factor", 1);
        let bilinear = cx.args.choice("mode") == Some("bilinear");
        let output = [
            input[0],
            input[1].saturating_mul(factor),
            input[2].saturating_mul(factor),
        ];
        if !cx.fits("output", &output) {
            return None;
        }
        Some(Box::new(Upsample {
            input,
            factor,
            bilinear,
            output,
        }))
    }
}

struct Upsample {
    input: [usize; 3],
    factor: usize,
    bilinear: bool,
    output: [usize; 3],
}

impl Layer for Upsample {
    fn output(&self) -> Shape {
        Shape::Spatial(self.output)
    }

    fn explain(&self) -> String {
        format!(
            ": height {}*{f} = {}, width {}*{f} = {}",
            self.input[1],
            self.output[1],
            self.input[2],
            self.output[2],
            f = self.factor
        )
    }

    fn geometry(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        let (i, f) = (dims_tokens(&self.input), usize_lit(self.factor));
        let mode = if self.bilinear {
            quote!(Bilinear)
        } else {
            quote!(Nearest)
        };
        quote! {
            const #g: #rt::ops::upsample::UpsampleGeom = #rt::ops::upsample::UpsampleGeom::new(
                #i, #f, #rt::ops::upsample::UpsampleMode::#mode,
            );
        }
    }

    fn onnx(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, g) = (rt(), &e.g);
        Some(quote!(#rt::onnx::kinds::Upsample(Self::#g)))
    }

    fn forward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        quote! { #rt::ops::upsample::forward(s.y, s.x, &Self::#g, n); }
    }

    fn backward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        quote! { #rt::ops::upsample::backward(s.d_x, s.d_y, &Self::#g, n); }
    }
}
