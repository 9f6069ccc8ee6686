//! `reshape([dims])`: the same values under another shape, `[features]`, `[steps, features]`
//! or `[channels, height, width]`, with as many values as its input.

use super::{arg, copy_backward, copy_forward, ArgKind::*, ArgSpec, Build, Emit, Kind, Layer};
use crate::plan::{dims_text, Shape};

pub const KINDS: &[&dyn Kind] = &[&ReshapeKind];

struct ReshapeKind;

impl Kind for ReshapeKind {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn args(&self) -> &'static [ArgSpec] {
        const ARGS: &[ArgSpec] = &[arg("dims", Dims, true, true)];
        ARGS
    }

    fn other_names(&self) -> &'static [&'static str] {
        &["Reshape", "Unflatten", "view"]
    }

    fn example(&self, _missing: &str) -> String {
        "e.g. `reshape([32, 7, 7])`".to_string()
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        let dims = cx.args.dims("dims")?;
        let output = match dims[..] {
            [f] => Shape::Vector(f),
            [t, f] => Shape::sequence(t, f),
            [c, h, w] => Shape::Spatial([c, h, w]),
            _ => {
                let msg = format!(
                    "{}: `reshape` gives a vector [features], a sequence [steps, features] or a feature map [channels, height, width], not the {} dimensions of {}",
                    cx.who,
                    dims.len(),
                    dims_text(&dims)
                );
                cx.error(msg);
                return None;
            }
        };
        let (want, have) = (output.numel(), cx.input.numel());
        if want != have {
            let product = |d: &[usize]| {
                let parts: Vec<String> = d.iter().map(usize::to_string).collect();
                parts.join("*")
            };
            let shown = |d: &[usize], total: usize| {
                if d.len() == 1 {
                    format!("{total}")
                } else {
                    format!("{} = {total}", product(d))
                }
            };
            let msg = format!(
                "{}: `reshape({})` holds {} values per sample, but its input {} holds {}; the element counts must match",
                cx.who,
                dims_text(&dims),
                shown(&dims, want),
                cx.input.text(),
                shown(&cx.input.dims(), have),
            );
            cx.error(msg);
            return None;
        }
        Some(Box::new(Reshape {
            input: cx.input,
            output,
        }))
    }
}

struct Reshape {
    input: Shape,
    output: Shape,
}

impl Layer for Reshape {
    fn output(&self) -> Shape {
        self.output
    }

    /// A unit of the output may hold a value from anywhere in the input's layout.
    fn flattens(&self) -> bool {
        true
    }

    fn explain(&self) -> String {
        format!(
            " (reshape keeps the {} values of {})",
            self.input.numel(),
            self.input.text()
        )
    }

    fn onnx(&self, _: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let rt = super::rt();
        Some(quote::quote!(#rt::onnx::kinds::Reshape))
    }

    fn forward(&self, _: &Emit<'_>) -> proc_macro2::TokenStream {
        copy_forward()
    }

    fn backward(&self, _: &Emit<'_>) -> proc_macro2::TokenStream {
        copy_backward()
    }
}
