//! `max_pool(k, stride = s, pad = p, floor = f)` and `avg_pool(..)`, the same arguments.

use quote::quote;

use super::window::Sliding;
use super::{
    arg, dims_tokens, rt, window_assertion, ArgKind::*, ArgSpec, Build, Emit, Kind, Layer,
    TapeNeeds,
};
use crate::plan::{dims_text, Shape};

/// The most values one sample may have at a max pool's input: the kernel records each
/// window's winner as a `u32` index into the sample, and keeps `u32::MAX` to mark a window
/// that lies entirely in the padding.
pub const MAX_POOL_VALUES: usize = u32::MAX as usize - 1;

pub const KINDS: &[&dyn Kind] = &[&PoolKind { max: true }, &PoolKind { max: false }];

struct PoolKind {
    max: bool,
}

impl Kind for PoolKind {
    fn name(&self) -> &'static str {
        if self.max {
            "max_pool"
        } else {
            "avg_pool"
        }
    }

    fn other_names(&self) -> &'static [&'static str] {
        if self.max {
            &["MaxPool2d", "MaxPooling2D", "max_pool2d", "maxpool2d"]
        } else {
            &["AvgPool2d", "AveragePooling2D", "avg_pool2d", "avgpool2d"]
        }
    }

    fn args(&self) -> &'static [ArgSpec] {
        const ARGS: &[ArgSpec] = &[
            arg("kernel", Window, true, true),
            arg("stride", Window, false, false),
            arg("pad", Pad, false, false),
            arg("floor", Bool, false, false),
        ];
        ARGS
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        let input = cx.spatial()?;
        let kernel = cx.args.pair("kernel", [1, 1]);
        let window = Sliding::from_args(cx, Some(kernel));
        let pad = window.pad;
        if pad[0] > kernel[0] / 2 || pad[1] > kernel[1] / 2 {
            let tokens = cx
                .args
                .tokens("pad")
                .unwrap_or(&cx.item.call_tokens)
                .clone();
            let most = (kernel[0] / 2).min(kernel[1] / 2);
            let msg = format!(
                "{}: pad {} is more than half the {}x{} window, so a window could lie entirely in the padding; use at most pad {most}",
                cx.who,
                dims_text(&pad).trim_matches(|c| c == '[' || c == ']').replace(", ", "x"),
                kernel[0],
                kernel[1],
            );
            // The largest padding allowed that also tiles the input.
            let fixed = (0..=most)
                .rev()
                .find_map(|p| cx.accepted_with(&[("pad", p.to_string())]));
            match fixed {
                Some((call, _)) => {
                    let msg = format!("{msg}, e.g. `{call}`");
                    let layer = cx.item.call_tokens.clone();
                    cx.errors.with_fixes_of(tokens, layer, msg, vec![call]);
                }
                None => cx.errors.spanned(tokens, msg),
            }
            return None;
        }
        let [oh, ow] = window.output(cx, "window", input)?;
        let values = input.iter().product::<usize>();
        if self.max && values > MAX_POOL_VALUES {
            let msg = format!(
                "{}: max pooling over {}x{}x{} = {values} values per sample is more than its \
                 u32 winner indices can address (at most {MAX_POOL_VALUES}); pool a smaller \
                 input, or use `avg_pool`, which keeps no indices",
                cx.who, input[0], input[1], input[2]
            );
            cx.errors.spanned(&cx.item.call_tokens, msg);
            return None;
        }
        Some(Box::new(Pool {
            max: self.max,
            input,
            window,
            output: [input[0], oh, ow],
        }))
    }
}

struct Pool {
    max: bool,
    input: [usize; 3],
    window: Sliding,
    output: [usize; 3],
}

impl Layer for Pool {
    fn output(&self) -> Shape {
        Shape::Spatial(self.output)
    }

    fn window(&self) -> Option<[(usize, usize); 2]> {
        Some(self.window.steps())
    }

    fn explain(&self) -> String {
        self.window.explain(Shape::Spatial(self.input))
    }

    fn note(&self) -> String {
        self.window.note(Shape::Spatial(self.input))
    }

    fn tape(&self) -> TapeNeeds {
        TapeNeeds {
            idx_per_sample: if self.max {
                self.output.iter().product()
            } else {
                0
            },
            ..TapeNeeds::default()
        }
    }

    fn geometry(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let rt = rt();
        let g = &e.g;
        let w = self.window;
        let (i, k, s, p, r) = (
            dims_tokens(&self.input),
            dims_tokens(&w.kernel),
            dims_tokens(&w.stride),
            dims_tokens(&w.pad),
            super::rounding(w.floor),
        );
        quote! {
            const #g: #rt::ops::pool::Pool2dGeom =
                #rt::ops::pool::Pool2dGeom::new(#i, #k, #s, #p, #r);
        }
    }

    fn assertion(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        window_assertion(e)
    }

    fn onnx(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, g) = (rt(), &e.g);
        Some(if self.max {
            quote!(#rt::onnx::kinds::MaxPool(Self::#g))
        } else {
            quote!(#rt::onnx::kinds::AvgPool(Self::#g))
        })
    }

    fn forward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        if self.max {
            quote! { #rt::ops::pool::max_forward(s.y, s.idx, s.x, &Self::#g, n); }
        } else {
            quote! { #rt::ops::pool::avg_forward(s.y, s.x, &Self::#g, n); }
        }
    }

    fn backward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        if self.max {
            quote! { #rt::ops::pool::max_backward(s.d_x, s.d_y, s.idx, &Self::#g, n); }
        } else {
            quote! { #rt::ops::pool::avg_backward(s.d_x, s.d_y, &Self::#g, n); }
        }
    }
}
