//! What the sliding-window kinds (`conv2d`, `max_pool`, `avg_pool`) share: the output size along
//! both axes with its errors and suggestions, and how it came about.

use striate_geometry::{output_size, rounds_down, Rounding, SizeError};

use super::Build;
use crate::plan::{dims_text, Shape};

/// A window's geometry along both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sliding {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    /// `floor = true`: drop real input rather than refuse.
    pub floor: bool,
}

impl Sliding {
    /// Reads `kernel`, `stride` (default: `default_stride`), `pad` and `floor`.
    pub fn from_args(cx: &Build<'_>, default_stride: Option<[usize; 2]>) -> Sliding {
        let kernel = cx.args.pair("kernel", [1, 1]);
        Sliding {
            kernel,
            stride: cx.args.pair("stride", default_stride.unwrap_or([1, 1])),
            pad: cx.args.pair("pad", [0, 0]),
            floor: cx.args.bool("floor", false),
        }
    }

    fn square(&self) -> bool {
        self.kernel[0] == self.kernel[1]
            && self.stride[0] == self.stride[1]
            && self.pad[0] == self.pad[1]
    }

    /// `[(kernel, stride); 2]`, for receptive fields.
    pub fn steps(&self) -> [(usize, usize); 2] {
        [0, 1].map(|a| (self.kernel[a], self.stride[a]))
    }

    /// The output size along both axes of `input`, or the errors explaining why there is none.
    /// `what` names the window in messages (`kernel`, `window`).
    pub fn output(&self, cx: &mut Build<'_>, what: &str, input: [usize; 3]) -> Option<[usize; 2]> {
        let rounding = if self.floor {
            Rounding::Floor
        } else {
            Rounding::Exact
        };
        let (kernel, stride, pad) = (self.kernel, self.stride, self.pad);
        let mut out = [0; 2];
        let mut failed: Vec<(usize, SizeError)> = Vec::new();
        for a in 0..2 {
            match output_size(input[a + 1], kernel[a], stride[a], pad[a], rounding) {
                Ok(v) => out[a] = v,
                // Zero kernels and strides were reported when the arguments were checked.
                Err(SizeError::ZeroKernel | SizeError::ZeroStride) => return None,
                Err(e) => failed.push((a, e)),
            }
        }
        if failed.is_empty() {
            return Some(out);
        }
        // A square input with a square window fails the same way on both axes: say it once.
        let square = input[1] == input[2] && self.square();
        if square && failed.len() == 2 {
            failed.truncate(1);
        }
        for (a, e) in failed {
            let axis = axis_name(square, a);
            let size = input[a + 1];
            let who = cx.who;
            let msg = match e {
                SizeError::KernelTooLarge { padded } => format!(
                    "{who}: the {what} ({}) does not fit the padded input: {axis} {size} + 2*{} = {padded} is less than {}; the input is {}; use a {what} of at most {padded} or `pad = {}`",
                    if kernel[0] == kernel[1] { format!("{0}x{0}", kernel[0]) } else { format!("{}x{}", kernel[0], kernel[1]) },
                    pad[a],
                    kernel[a],
                    dims_text(&input),
                    (kernel[a] - size).div_ceil(2),
                ),
                _ => format!(
                    "{who}: output {axis} {} is not a whole number; {}",
                    formula(size, kernel[a], stride[a], pad[a]),
                    suggest(size, kernel[a], stride[a], pad[a])
                ),
            };
            cx.error(msg);
        }
        None
    }

    /// ` : height and width (28 + 2*0 - 5)/1 + 1 = 24`: how the output size came about.
    pub fn explain(&self, input: Shape) -> String {
        let Shape::Spatial([_, h, w]) = input else {
            return String::new();
        };
        let (k, s, p) = (self.kernel, self.stride, self.pad);
        let fh = formula(h, k[0], s[0], p[0]);
        if h == w && self.square() {
            return format!(": height and width {fh}");
        }
        format!(": height {fh}, width {}", formula(w, k[1], s[1], p[1]))
    }

    /// Why the size was rounded down, if it was: `rounded down: height and width (32 + 2*1 -
    /// 3)/2 + 1 = 16.5 -> 16, the 1 left over is padding`.
    pub fn note(&self, input: Shape) -> String {
        let Shape::Spatial([_, h, w]) = input else {
            return String::new();
        };
        let square = h == w && self.square();
        let mut parts = Vec::new();
        for (a, size) in [h, w].into_iter().enumerate() {
            if square && a == 1 {
                break;
            }
            let (k, s, p) = (self.kernel[a], self.stride[a], self.pad[a]);
            let padded = size + 2 * p;
            if k > padded || (padded - k).is_multiple_of(s) {
                continue;
            }
            let left = (padded - k) % s;
            let out = (padded - k) / s + 1;
            let axis = axis_name(square, a);
            let why = if !rounds_down(size, k, s, p) {
                format!(
                    "`floor = true` drops {left} real input {}",
                    plural(left, "row or column", "rows or columns")
                )
            } else if left <= p {
                format!(
                    "the {left} left over {} padding",
                    if left == 1 { "is" } else { "are" }
                )
            } else if p == 0 {
                format!(
                    "the {left} left over {} skipped by the stride anyway",
                    if left == 1 { "is" } else { "are" }
                )
            } else {
                format!(
                    "the {left} left over {} padding and a stride gap",
                    if left == 1 { "is" } else { "are" }
                )
            };
            parts.push(format!("{axis} {} -> {out}, {why}", formula(size, k, s, p)));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("rounded down: {}", parts.join("; "))
        }
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn axis_name(square: bool, a: usize) -> &'static str {
    match (square, a) {
        (true, _) => "height and width",
        (false, 0) => "height",
        (false, _) => "width",
    }
}

/// `(227 + 2*0 - 11)/5 + 1 = 44.2`.
pub fn formula(input: usize, kernel: usize, stride: usize, pad: usize) -> String {
    let padded = input + 2 * pad;
    let value = if kernel > padded {
        format!("{}", (padded as f64 - kernel as f64) / stride as f64 + 1.0)
    } else {
        let exact = (padded - kernel) as f64 / stride as f64 + 1.0;
        let mut s = format!("{exact:.2}");
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
        s
    };
    format!("({input} + 2*{pad} - {kernel})/{stride} + 1 = {value}")
}

/// For an output size that is not whole: the nearest stride (same padding) and the nearest
/// padding (same stride) that tile the input, as `stride 4 gives 55, pad 2 with stride 5 gives 45`.
pub fn suggest(input: usize, kernel: usize, stride: usize, pad: usize) -> String {
    let mut hints = Vec::new();
    let span = input + 2 * pad - kernel;
    let best_stride = (1..=span.max(1))
        .filter(|s| *s != stride && span.is_multiple_of(*s))
        .min_by_key(|s| (s.abs_diff(stride), *s));
    if let Some(s) = best_stride {
        let pad_text = if pad == 0 {
            String::new()
        } else {
            format!(" with pad {pad}")
        };
        hints.push(format!("stride {s}{pad_text} gives {}", span / s + 1));
    }
    let best_pad = (0..=kernel + stride)
        .filter(|p| {
            *p != pad && input + 2 * p >= kernel && (input + 2 * p - kernel).is_multiple_of(stride)
        })
        .min_by_key(|p| (p.abs_diff(pad), *p));
    if let Some(p) = best_pad {
        hints.push(format!(
            "pad {p} with stride {stride} gives {}",
            (input + 2 * p - kernel) / stride + 1
        ));
    }
    hints.push(format!(
        "`floor = true` drops the last partial window and gives {}",
        span / stride + 1
    ));
    hints.join(", ")
}
