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
            // The axes a suggestion changes: both, when the message is about both.
            let axes = if square { Axes::Both } else { Axes::One(a) };
            let size = input[a + 1];
            let who = cx.who;
            let (msg, fixes) = match e {
                SizeError::KernelTooLarge { padded } => {
                    let (fixes, options) = self.fitting(cx, what, axes, size, padded);
                    let options = if options.is_empty() {
                        String::new()
                    } else {
                        format!("; use {}", options.join(" or "))
                    };
                    let msg = format!(
                        "{who}: the {what} ({}) does not fit the padded input: {axis} {size} + 2*{} = {padded} is less than {}; the input is {}{options}",
                        if kernel[0] == kernel[1] { format!("{0}x{0}", kernel[0]) } else { format!("{}x{}", kernel[0], kernel[1]) },
                        pad[a],
                        kernel[a],
                        dims_text(&input),
                    );
                    (msg, fixes)
                }
                _ => {
                    let (fixes, options) = self.tiling(cx, what, axes, size);
                    let options = if options.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", options.join(", "))
                    };
                    let msg = format!(
                        "{who}: output {axis} {} is not a whole number{options}",
                        formula(size, kernel[a], stride[a], pad[a]),
                    );
                    (msg, fixes)
                }
            };
            let tokens = cx.item.call_tokens.clone();
            cx.errors.with_fixes(tokens, msg, fixes);
        }
        None
    }

    /// For a window larger than the padded input along axis `a`: a window that fits, or the
    /// padding that makes it fit, each checked. Returns the layers and their descriptions.
    fn fitting(
        &self,
        cx: &Build<'_>,
        what: &str,
        axes: Axes,
        size: usize,
        padded: usize,
    ) -> (Vec<String>, Vec<String>) {
        let a = axes.first();
        let (mut fixes, mut options) = (Vec::new(), Vec::new());
        if let Some((call, _)) =
            cx.accepted_with(&[("kernel", with_axis(self.kernel, axes, padded))])
        {
            fixes.push(call);
            options.push(format!("a {what} of at most {padded}"));
        }
        let least = (self.kernel[a] - size).div_ceil(2);
        let pads = (least..=self.kernel[a]).take(TRIES);
        if let Some((p, (call, _))) = first_accepted(cx, "pad", self.pad, axes, pads) {
            fixes.push(call);
            options.push(format!("`pad = {}`", with_axis(self.pad, axes, p)));
        }
        (fixes, options)
    }

    /// For an output size that is not whole along axis `a`: the nearest stride (same padding),
    /// the nearest padding (same stride), the nearest window when the stride follows it, and
    /// `floor = true`, each checked, as `stride 4 gives 55, pad 2 with stride 5 gives 45`.
    fn tiling(
        &self,
        cx: &Build<'_>,
        what: &str,
        axes: Axes,
        size: usize,
    ) -> (Vec<String>, Vec<String>) {
        let a = axes.first();
        let (kernel, stride, pad) = (self.kernel[a], self.stride[a], self.pad[a]);
        let (mut fixes, mut options) = (Vec::new(), Vec::new());
        let span = size + 2 * pad - kernel;
        let strides = nearest(stride, 1, span.max(1)).filter(|s| span.is_multiple_of(*s));
        if let Some((s, (call, out))) = first_accepted(cx, "stride", self.stride, axes, strides) {
            let pad_text = if pad == 0 {
                String::new()
            } else {
                format!(" with pad {pad}")
            };
            fixes.push(call);
            options.push(format!("stride {s}{pad_text} gives {}", axis_of(out, a)));
        }
        let pads = nearest(pad, 0, kernel + stride)
            .filter(|p| size + 2 * p >= kernel && (size + 2 * p - kernel).is_multiple_of(stride));
        if let Some((p, (call, out))) = first_accepted(cx, "pad", self.pad, axes, pads) {
            fixes.push(call);
            options.push(format!(
                "pad {p} with stride {stride} gives {}",
                axis_of(out, a)
            ));
        }
        // When the stride is not written it follows the window (pooling): a window that tiles.
        if cx.args.tokens("stride").is_none() {
            let kernels = nearest(kernel, 2, (2 * kernel).min(size + 2 * pad));
            if let Some((k, (call, out))) = first_accepted(cx, "kernel", self.kernel, axes, kernels)
            {
                fixes.push(call);
                options.push(format!("{what} {k} gives {}", axis_of(out, a)));
            }
        }
        if let Some((call, out)) = cx.accepted_with(&[("floor", "true".to_string())]) {
            fixes.push(call);
            options.push(format!(
                "`floor = true` drops the last partial window and gives {}",
                axis_of(out, a)
            ));
        }
        (fixes, options)
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

/// How many arithmetically valid values of one argument are checked before giving up.
const TRIES: usize = 8;

/// The values from `lo` to `hi` (inclusive) other than `from`, nearest first, the smaller of
/// two equally near first.
fn nearest(from: usize, lo: usize, hi: usize) -> impl Iterator<Item = usize> {
    let reach = from.saturating_sub(lo).max(hi.saturating_sub(from));
    (1..=reach).flat_map(move |d| {
        let below = from.checked_sub(d).filter(|v| *v >= lo);
        let above = from.checked_add(d).filter(|v| *v <= hi);
        below.into_iter().chain(above)
    })
}

/// The axes a suggestion changes.
#[derive(Clone, Copy)]
enum Axes {
    /// Height (0) or width (1).
    One(usize),
    Both,
}

impl Axes {
    /// The axis whose numbers the message shows.
    fn first(self) -> usize {
        match self {
            Axes::One(a) => a,
            Axes::Both => 0,
        }
    }
}

/// The first of `values` (at most [`TRIES`]) for `axes` of the pair argument `name` that the
/// checks accept, with the layer and its output.
fn first_accepted(
    cx: &Build<'_>,
    name: &str,
    pair: [usize; 2],
    axes: Axes,
    values: impl Iterator<Item = usize>,
) -> Option<(usize, (String, Shape))> {
    values
        .take(TRIES)
        .find_map(|v| Some((v, cx.accepted_with(&[(name, with_axis(pair, axes, v))])?)))
}

/// `pair` with `axes` set to `v`, as written: `3`, or `(3, 5)`.
fn with_axis(pair: [usize; 2], axes: Axes, v: usize) -> String {
    let mut p = pair;
    match axes {
        Axes::One(a) => p[a] = v,
        Axes::Both => p = [v, v],
    }
    if p[0] == p[1] {
        p[0].to_string()
    } else {
        format!("({}, {})", p[0], p[1])
    }
}

/// The output size along axis `a`.
fn axis_of(out: Shape, a: usize) -> usize {
    match out {
        Shape::Spatial(d) => d[a + 1],
        Shape::Vector(f) | Shape::Tokens(f) | Shape::Sequence { features: f, .. } => f,
    }
}
