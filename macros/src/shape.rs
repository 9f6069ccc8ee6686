//! Shape inference and every validation of a network: pure functions from the syntax tree to a
//! [`Plan`] that `expand.rs` turns into code, or to the list of all errors in the network.
//!
//! Every output size is computed by [`striate_geometry::output_size`], the same function the
//! runtime's kernels use.

use std::collections::HashMap;
use std::fmt::Write as _;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use striate_geometry::{output_size, Receptive, Rounding, SizeError};
use syn::Ident;

use crate::ast::{Arg, Dim, InputDecl, Item, LayerItem, Network, Value};

/// A tensor's shape per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `[C, H, W]`.
    Spatial([usize; 3]),
    /// `[F]`.
    Vector(usize),
}

impl Shape {
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Spatial(d) => d.to_vec(),
            Shape::Vector(f) => vec![f],
        }
    }

    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    pub fn text(&self) -> String {
        dims_text(&self.dims())
    }
}

fn dims_text(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// What a layer does, with every argument resolved to its value or default.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Conv2d {
        out_c: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        bias: bool,
        floor: bool,
    },
    Pool {
        max: bool,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        floor: bool,
    },
    Linear {
        out_f: usize,
        bias: bool,
    },
    Relu,
    LeakyRelu(f64),
    Tanh,
    Sigmoid,
    Dropout(f64),
    BatchNorm {
        momentum: f64,
        eps: f64,
    },
    Flatten,
}

/// How a parameter is initialised (mirrors the runtime's `Init`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitPlan {
    Zeros,
    Ones,
    He { fan_in: usize },
    Glorot { fan_in: usize, fan_out: usize },
}

/// One entry of the parameter or buffer table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorPlan {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
    pub init: InitPlan,
}

/// One layer, fully resolved.
pub struct LayerPlan {
    pub name: Option<Ident>,
    pub kind_name: String,
    pub kind: Kind,
    pub declaration: String,
    pub input: Shape,
    pub output: Shape,
    pub params: usize,
    pub receptive_field: [usize; 2],
    pub macs: u64,
    /// Offset of the layer's first parameter (weight, then bias) in the parameter store.
    pub param_offset: usize,
    /// Offset of the layer's first buffer (running mean, then running variance).
    pub buffer_offset: usize,
    /// The layer's tokens, for spans of generated assertions.
    pub tokens: TokenStream,
}

/// A network that passed every check.
pub struct Plan {
    pub input: Shape,
    pub layers: Vec<LayerPlan>,
    pub params: Vec<TensorPlan>,
    pub buffers: Vec<TensorPlan>,
}

impl Plan {
    pub fn output(&self) -> Shape {
        self.layers.last().map_or(self.input, |l| l.output)
    }

    pub fn num_params(&self) -> usize {
        self.params.iter().map(|p| p.len).sum()
    }
}

/// Collects errors instead of stopping at the first (serde's `Ctxt`).
#[derive(Default)]
struct Errors(Vec<syn::Error>);

impl Errors {
    fn spanned(&mut self, tokens: impl ToTokens, msg: impl std::fmt::Display) {
        self.0.push(syn::Error::new_spanned(tokens, msg));
    }

    fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.0.push(syn::Error::new(span, msg));
    }
}

/// The largest size of one dimension, kernel, stride or padding.
pub const MAX_SIZE: u64 = 1 << 24;

/// The largest number of values in one tensor (a layer's output per sample, or its weight).
pub const MAX_TENSOR: u128 = 1 << 36;

/// `Some(product)` when the product of `factors` is at most [`MAX_TENSOR`].
fn tensor_len(factors: &[usize]) -> Option<usize> {
    let product = factors
        .iter()
        .try_fold(1u128, |acc, &f| acc.checked_mul(f as u128))?;
    (product <= MAX_TENSOR).then_some(product as usize)
}

/// Reports a tensor too large for striate; returns whether it fits.
fn fits(who: &str, what: &str, factors: &[usize], layer: &LayerItem, errors: &mut Errors) -> bool {
    if tensor_len(factors).is_some() {
        return true;
    }
    let text: Vec<String> = factors.iter().map(|f| f.to_string()).collect();
    errors.spanned(
        &layer.call_tokens,
        format!(
            "{who}: the {what} would hold {} values, more than the 2^36 striate supports",
            text.join(" x ")
        ),
    );
    false
}

/// The layers striate knows, for "did you mean" suggestions and the list in messages.
pub const LAYER_KINDS: &[&str] = &[
    "conv2d",
    "max_pool",
    "avg_pool",
    "linear",
    "relu",
    "leaky_relu",
    "tanh",
    "sigmoid",
    "dropout",
    "batch_norm",
    "flatten",
];

/// What an argument's value must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ArgKind {
    /// A positive integer (channels, features).
    Count,
    /// A positive integer or a pair of them (kernel, stride).
    Window,
    /// A non-negative integer or a pair of them (padding).
    Pad,
    Bool,
    /// A probability in `[0, 1)`.
    Probability,
    /// Any finite number.
    Number,
    /// A number in `[0, 1]`.
    Fraction,
    /// A number above zero.
    Positive,
}

struct ArgSpec {
    name: &'static str,
    kind: ArgKind,
    positional: bool,
    required: bool,
}

const fn arg(name: &'static str, kind: ArgKind, positional: bool, required: bool) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        positional,
        required,
    }
}

fn specs(kind: &str) -> &'static [ArgSpec] {
    use ArgKind::*;
    const CONV: &[ArgSpec] = &[
        arg("out_channels", Count, true, true),
        arg("kernel", Window, false, true),
        arg("stride", Window, false, false),
        arg("pad", Pad, false, false),
        arg("bias", Bool, false, false),
        arg("floor", Bool, false, false),
    ];
    const POOL: &[ArgSpec] = &[
        arg("kernel", Window, true, true),
        arg("stride", Window, false, false),
        arg("pad", Pad, false, false),
        arg("floor", Bool, false, false),
    ];
    const LINEAR: &[ArgSpec] = &[
        arg("out_features", Count, true, true),
        arg("bias", Bool, false, false),
    ];
    const LEAKY: &[ArgSpec] = &[arg("slope", Number, true, false)];
    const DROPOUT: &[ArgSpec] = &[arg("p", Probability, true, false)];
    const BATCH_NORM: &[ArgSpec] = &[
        arg("momentum", Fraction, false, false),
        arg("eps", Positive, false, false),
    ];
    match kind {
        "conv2d" => CONV,
        "max_pool" | "avg_pool" => POOL,
        "linear" => LINEAR,
        "leaky_relu" => LEAKY,
        "dropout" => DROPOUT,
        "batch_norm" => BATCH_NORM,
        _ => &[],
    }
}

fn has_params(kind: &str) -> bool {
    matches!(kind, "conv2d" | "linear" | "batch_norm")
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

/// The arguments of one layer, matched against its specs.
struct Resolved<'a> {
    values: HashMap<&'static str, &'a Arg>,
}

impl Resolved<'_> {
    fn int(&self, name: &str, default: usize) -> usize {
        match self.values.get(name).map(|a| &a.value) {
            Some(Value::Int(v)) => *v as usize,
            _ => default,
        }
    }

    fn pair(&self, name: &str, default: [usize; 2]) -> [usize; 2] {
        match self.values.get(name).map(|a| &a.value) {
            Some(Value::Int(v)) => [*v as usize; 2],
            Some(Value::Pair(h, w)) => [*h as usize, *w as usize],
            _ => default,
        }
    }

    fn bool(&self, name: &str, default: bool) -> bool {
        match self.values.get(name).map(|a| &a.value) {
            Some(Value::Bool(b)) => *b,
            _ => default,
        }
    }

    fn number(&self, name: &str, default: f64) -> f64 {
        match self.values.get(name).map(|a| &a.value) {
            Some(Value::Int(v)) => *v as f64,
            Some(Value::Float(v)) => *v,
            _ => default,
        }
    }

    fn tokens(&self, name: &str) -> Option<&TokenStream> {
        self.values.get(name).map(|a| &a.tokens)
    }
}

/// Matches `layer`'s arguments to the specs of its kind; reports unknown, duplicate, missing
/// and ill-typed arguments. Returns `None` when the layer cannot be built.
fn resolve<'a>(layer: &'a LayerItem, kind: &str, errors: &mut Errors) -> Option<Resolved<'a>> {
    let specs = specs(kind);
    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
    let positional: Vec<&ArgSpec> = specs.iter().filter(|s| s.positional).collect();
    let mut values: HashMap<&'static str, &Arg> = HashMap::new();
    let mut ok = true;
    let mut next_positional = 0;
    let mut surplus = false;
    for a in &layer.args {
        let spec = match &a.name {
            None => {
                let Some(spec) = positional.get(next_positional) else {
                    ok = false;
                    surplus = true;
                    if specs.is_empty() {
                        errors.spanned(&a.tokens, format!("`{kind}` takes no arguments"));
                    } else {
                        let taken: Vec<&str> = positional.iter().map(|s| s.name).collect();
                        errors.spanned(
                            &a.tokens,
                            format!(
                                "too many unnamed arguments: `{kind}` takes {} unnamed ({}); name the others, e.g. `{} = {}`; expected one of: {}",
                                taken.len(),
                                one_of(&taken),
                                specs.iter().find(|s| !s.positional).map_or("stride", |s| s.name),
                                a.value.render(),
                                one_of(&names)
                            ),
                        );
                    }
                    continue;
                };
                next_positional += 1;
                *spec
            }
            Some(name) => {
                let n = name.to_string();
                let Some(spec) = specs.iter().find(|s| s.name == n) else {
                    ok = false;
                    let hint = closest(&n, &names)
                        .map(|c| format!("did you mean `{c}`? "))
                        .unwrap_or_default();
                    if specs.is_empty() {
                        errors.spanned(name, format!("`{kind}` takes no arguments"));
                    } else {
                        errors.spanned(
                            name,
                            format!(
                                "unknown argument `{n}` for `{kind}`; {hint}expected one of: {}",
                                one_of(&names)
                            ),
                        );
                    }
                    continue;
                };
                spec
            }
        };
        if values.contains_key(spec.name) {
            ok = false;
            errors.spanned(
                &a.tokens,
                format!("duplicate argument `{}` for `{kind}`", spec.name),
            );
            continue;
        }
        if !check_value(spec, a, errors) {
            ok = false;
        }
        values.insert(spec.name, a);
    }
    for spec in specs.iter().filter(|s| s.required) {
        // After surplus unnamed arguments the "missing" one is most likely among them.
        if !values.contains_key(spec.name) && !surplus {
            ok = false;
            let example = match kind {
                "conv2d" if spec.name == "kernel" => "e.g. `conv2d(6, kernel = 5)`".to_string(),
                "conv2d" => "e.g. `conv2d(6, kernel = 5)`, whose first argument is the number of output channels".to_string(),
                "linear" => "e.g. `linear(10)` for 10 output features".to_string(),
                _ => format!("e.g. `{kind}(2)`"),
            };
            errors.spanned(
                &layer.call_tokens,
                format!(
                    "`{kind}` is missing its `{}` argument; {example}",
                    spec.name
                ),
            );
        }
    }
    ok.then_some(Resolved { values })
}

/// Checks that `a`'s value is of the kind `spec` wants and in its range.
fn check_value(spec: &ArgSpec, a: &Arg, errors: &mut Errors) -> bool {
    let name = spec.name;
    let v = &a.value;
    let found = v.describe();
    let wrong = |errors: &mut Errors, want: &str| {
        errors.spanned(&a.tokens, format!("`{name}` must be {want}, found {found}"));
        false
    };
    let too_large = match v {
        Value::Int(i) => *i > MAX_SIZE,
        Value::Pair(h, w) => *h > MAX_SIZE || *w > MAX_SIZE,
        _ => false,
    };
    if too_large && matches!(spec.kind, ArgKind::Count | ArgKind::Window | ArgKind::Pad) {
        return wrong(errors, &format!("at most {MAX_SIZE}"));
    }
    match spec.kind {
        ArgKind::Count => match v {
            Value::Int(0) => wrong(errors, "at least 1"),
            Value::Int(_) => true,
            _ => wrong(errors, "a positive integer"),
        },
        ArgKind::Window => match v {
            Value::Int(0) | Value::Pair(0, _) | Value::Pair(_, 0) => wrong(
                errors,
                "at least 1 (a zero-sized window or stride has no output)",
            ),
            Value::Int(_) | Value::Pair(..) => true,
            _ => wrong(errors, "a positive integer or a pair `(height, width)`"),
        },
        ArgKind::Pad => match v {
            Value::Int(_) | Value::Pair(..) => true,
            _ => wrong(errors, "a non-negative integer or a pair `(height, width)`"),
        },
        ArgKind::Bool => match v {
            Value::Bool(_) => true,
            _ => wrong(errors, "`true` or `false`"),
        },
        ArgKind::Probability => match number(v) {
            Some(p) if (0.0..1.0).contains(&p) => true,
            Some(_) => wrong(errors, "a probability in [0, 1) (1 would drop every unit)"),
            None => wrong(errors, "a probability in [0, 1), such as `0.5`"),
        },
        ArgKind::Number => match number(v) {
            Some(x) if (x as f32).is_finite() => true,
            _ => wrong(errors, "a number, such as `0.01`"),
        },
        ArgKind::Fraction => match number(v) {
            Some(x) if (0.0..=1.0).contains(&x) => true,
            Some(_) => wrong(errors, "a number in [0, 1]"),
            None => wrong(errors, "a number in [0, 1], such as `0.1`"),
        },
        ArgKind::Positive => match number(v) {
            Some(x) if x as f32 > 0.0 && (x as f32).is_finite() => true,
            Some(_) => wrong(errors, "a number above 0"),
            None => wrong(errors, "a number above 0, such as `1e-5`"),
        },
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// `conv1`, or `layer 3 (max_pool)` for an unnamed layer.
fn label(layer: &LayerItem, index: usize) -> String {
    match &layer.name {
        Some(n) => n.to_string(),
        None => format!("layer {index} (`{}`)", layer.kind),
    }
}

fn declaration(layer: &LayerItem) -> String {
    if layer.args.is_empty() {
        return layer.kind.to_string();
    }
    let args: Vec<String> = layer
        .args
        .iter()
        .map(|a| match &a.name {
            Some(n) => format!("{n} = {}", a.value.render()),
            None => a.value.render(),
        })
        .collect();
    format!("{}({})", layer.kind, args.join(", "))
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

/// The output size along both axes, or the errors explaining why there is none.
#[allow(clippy::too_many_arguments)]
fn window_output(
    who: &str,
    what: &str,
    input: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    floor: bool,
    layer: &LayerItem,
    errors: &mut Errors,
) -> Option<[usize; 2]> {
    let rounding = if floor {
        Rounding::Floor
    } else {
        Rounding::Exact
    };
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
    let square = input[1] == input[2]
        && kernel[0] == kernel[1]
        && stride[0] == stride[1]
        && pad[0] == pad[1];
    if square && failed.len() == 2 {
        failed.truncate(1);
    }
    for (a, e) in failed {
        let axis = match (square, a) {
            (true, _) => "height and width",
            (false, 0) => "height",
            (false, _) => "width",
        };
        let size = input[a + 1];
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
        errors.spanned(&layer.call_tokens, msg);
    }
    None
}

/// Checks the whole network; returns its plan or every error found.
pub fn check(net: &Network) -> Result<Plan, Vec<syn::Error>> {
    let mut errors = Errors::default();
    let input = check_input(net, &mut errors);
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut layers: Vec<LayerPlan> = Vec::new();
    let mut params: Vec<TensorPlan> = Vec::new();
    let mut buffers: Vec<TensorPlan> = Vec::new();
    // The current shape; `None` once a layer failed, so its successors are checked for their
    // own mistakes only, not for a cascade of shape errors.
    let mut shape = input;
    let input_full = match input {
        Some(Shape::Spatial([_, h, w])) => [h, w],
        Some(Shape::Vector(f)) => [1, f],
        None => [0, 0],
    };
    let mut receptive = [Receptive::INPUT; 2];
    let mut flat = matches!(input, Some(Shape::Vector(_)));
    let layer_items: Vec<&LayerItem> = net
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Layer(l) => Some(l),
            Item::Input(_) => None,
        })
        .collect();
    if layer_items.is_empty() && input.is_some() {
        errors.at(
            net.name.span(),
            format!(
                "`{}` has no layers; add at least one after `input`, e.g. `fc: linear(10)`",
                net.name
            ),
        );
    }
    for (i, layer) in layer_items.iter().enumerate() {
        let index = i + 1;
        let kind = layer.kind.to_string();
        let who = label(layer, index);
        // Names.
        match &layer.name {
            Some(name) => {
                let n = name.to_string();
                if n == "input" {
                    errors.spanned(
                        name,
                        "`input` names the network's input, not a layer; choose another name",
                    );
                } else if let Some(first) = names.get(&n) {
                    errors.spanned(
                        name,
                        format!("duplicate layer name `{n}`: layers {first} and {index} are both called `{n}`; parameters are named after their layer, so names must be unique"),
                    );
                } else {
                    names.insert(n, index);
                }
            }
            None if has_params(&kind) => {
                let prefix = match kind.as_str() {
                    "conv2d" => "conv",
                    "linear" => "fc",
                    _ => "bn",
                };
                errors.spanned(
                    &layer.call_tokens,
                    format!("layer {index} (`{kind}`) has parameters, so it needs a name, which its parameters are saved under: `{prefix}{index}: {}`", declaration(layer)),
                );
            }
            None => {}
        }
        if !LAYER_KINDS.contains(&kind.as_str()) {
            let hint = closest(&kind, LAYER_KINDS)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            errors.spanned(
                &layer.kind,
                format!(
                    "unknown layer `{kind}`; {hint}the layers are: {}",
                    one_of(LAYER_KINDS)
                ),
            );
            shape = None;
            continue;
        }
        let Some(res) = resolve(layer, &kind, &mut errors) else {
            shape = None;
            continue;
        };
        let Some(in_shape) = shape else { continue };
        let built = build_layer(layer, &kind, &who, in_shape, &res, &mut errors);
        let Some((k, out)) = built else {
            shape = None;
            continue;
        };
        // Receptive field and cost.
        let mut macs = 0u64;
        let mut n_params = 0usize;
        let param_offset = params.last().map_or(0, |p: &TensorPlan| p.offset + p.len);
        let buffer_offset = buffers.last().map_or(0, |p: &TensorPlan| p.offset + p.len);
        let pname = layer
            .name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default();
        let push = |list: &mut Vec<TensorPlan>, suffix: &str, shape: Vec<usize>, init: InitPlan| {
            let offset = list.last().map_or(0, |p| p.offset + p.len);
            let len = shape.iter().product();
            list.push(TensorPlan {
                name: format!("{pname}.{suffix}"),
                shape,
                offset,
                len,
                init,
            });
            len
        };
        match &k {
            Kind::Conv2d {
                out_c,
                kernel,
                stride,
                bias,
                ..
            } => {
                let Shape::Spatial([c, ..]) = in_shape else {
                    unreachable!("checked in build_layer")
                };
                let fan_in = c * kernel[0] * kernel[1];
                let init =
                    weight_init(&layer_items[i + 1..], fan_in, out_c * kernel[0] * kernel[1]);
                n_params += push(
                    &mut params,
                    "weight",
                    vec![*out_c, c, kernel[0], kernel[1]],
                    init,
                );
                if *bias {
                    n_params += push(&mut params, "bias", vec![*out_c], InitPlan::Zeros);
                }
                macs = u64::try_from(out.numel() as u128 * fan_in as u128).unwrap_or(u64::MAX);
                for a in 0..2 {
                    receptive[a] = receptive[a].window(kernel[a], stride[a]);
                }
            }
            Kind::Pool { kernel, stride, .. } => {
                for a in 0..2 {
                    receptive[a] = receptive[a].window(kernel[a], stride[a]);
                }
            }
            Kind::Linear { out_f, bias } => {
                let fan_in = in_shape.numel();
                let init = weight_init(&layer_items[i + 1..], fan_in, *out_f);
                n_params += push(&mut params, "weight", vec![*out_f, fan_in], init);
                if *bias {
                    n_params += push(&mut params, "bias", vec![*out_f], InitPlan::Zeros);
                }
                macs = (fan_in * out_f) as u64;
                flat = true;
            }
            Kind::BatchNorm { .. } => {
                let c = match in_shape {
                    Shape::Spatial([c, ..]) => c,
                    Shape::Vector(f) => f,
                };
                n_params += push(&mut params, "weight", vec![c], InitPlan::Ones);
                n_params += push(&mut params, "bias", vec![c], InitPlan::Zeros);
                push(&mut buffers, "running_mean", vec![c], InitPlan::Zeros);
                push(&mut buffers, "running_var", vec![c], InitPlan::Ones);
            }
            Kind::Flatten => flat = true,
            _ => {}
        }
        let receptive_field = if flat {
            input_full
        } else {
            [receptive[0].field, receptive[1].field]
        };
        // The declared shape.
        if let Some((dims, tokens)) = &layer.expect {
            let want: Vec<usize> = dims.iter().map(|d: &Dim| d.value).collect();
            if want != out.dims() {
                let how = explain(&k, in_shape, out);
                errors.spanned(
                    tokens,
                    format!(
                        "{who}: declared output shape {} but the layer computes {}{how}",
                        dims_text(&want),
                        out.text()
                    ),
                );
            }
        }
        layers.push(LayerPlan {
            name: layer.name.clone(),
            kind_name: kind,
            kind: k,
            declaration: declaration(layer),
            input: in_shape,
            output: out,
            params: n_params,
            receptive_field,
            macs,
            param_offset,
            buffer_offset,
            tokens: layer.call_tokens.clone(),
        });
        shape = Some(out);
    }
    if errors.0.is_empty() {
        Ok(Plan {
            input: input.expect("no errors means the input was valid"),
            layers,
            params,
            buffers,
        })
    } else {
        Err(errors.0)
    }
}

/// ` ((28 + 2*0 - 5)/1 + 1 = 24 for height and width)`: how a spatial layer's size came about.
fn explain(kind: &Kind, input: Shape, out: Shape) -> String {
    let (kernel, stride, pad) = match kind {
        Kind::Conv2d {
            kernel,
            stride,
            pad,
            ..
        }
        | Kind::Pool {
            kernel,
            stride,
            pad,
            ..
        } => (kernel, stride, pad),
        Kind::Flatten => {
            return format!(
                " (flatten multiplies {})",
                input.text().replace(", ", " x ")
            )
        }
        _ => return String::new(),
    };
    let (Shape::Spatial([_, h, w]), Shape::Spatial(_)) = (input, out) else {
        return String::new();
    };
    let fh = formula(h, kernel[0], stride[0], pad[0]);
    if h == w && kernel[0] == kernel[1] && stride[0] == stride[1] && pad[0] == pad[1] {
        return format!(": height and width {fh}");
    }
    let fw = formula(w, kernel[1], stride[1], pad[1]);
    let mut s = String::new();
    let _ = write!(s, ": height {fh}, width {fw}");
    s
}

/// He initialisation when the next activation is ReLU-like, Glorot otherwise.
fn weight_init(rest: &[&LayerItem], fan_in: usize, fan_out: usize) -> InitPlan {
    for l in rest {
        match l.kind.to_string().as_str() {
            "relu" | "leaky_relu" => return InitPlan::He { fan_in },
            "tanh" | "sigmoid" | "conv2d" | "linear" => break,
            _ => {}
        }
    }
    InitPlan::Glorot { fan_in, fan_out }
}

/// Resolves a layer's kind and computes its output shape from `input`.
fn build_layer(
    layer: &LayerItem,
    kind: &str,
    who: &str,
    input: Shape,
    res: &Resolved<'_>,
    errors: &mut Errors,
) -> Option<(Kind, Shape)> {
    let spatial = |errors: &mut Errors| -> Option<[usize; 3]> {
        match input {
            Shape::Spatial(d) => Some(d),
            Shape::Vector(f) => {
                errors.spanned(
                    &layer.call_tokens,
                    format!("{who}: `{kind}` needs a spatial input [channels, height, width], but its input is the vector [{f}]; move it before `flatten` or the first `linear`"),
                );
                None
            }
        }
    };
    match kind {
        "conv2d" => {
            let d = spatial(errors)?;
            let kernel = res.pair("kernel", [1, 1]);
            let stride = res.pair("stride", [1, 1]);
            let pad = res.pair("pad", [0, 0]);
            let floor = res.bool("floor", false);
            let [oh, ow] =
                window_output(who, "kernel", d, kernel, stride, pad, floor, layer, errors)?;
            let out_c = res.int("out_channels", 1);
            if !fits(who, "output", &[out_c, oh, ow], layer, errors)
                || !fits(
                    who,
                    "weight",
                    &[out_c, d[0], kernel[0], kernel[1]],
                    layer,
                    errors,
                )
            {
                return None;
            }
            Some((
                Kind::Conv2d {
                    out_c,
                    kernel,
                    stride,
                    pad,
                    bias: res.bool("bias", true),
                    floor,
                },
                Shape::Spatial([out_c, oh, ow]),
            ))
        }
        "max_pool" | "avg_pool" => {
            let d = spatial(errors)?;
            let kernel = res.pair("kernel", [1, 1]);
            let stride = res.pair("stride", kernel);
            let pad = res.pair("pad", [0, 0]);
            let floor = res.bool("floor", false);
            if pad[0] > kernel[0] / 2 || pad[1] > kernel[1] / 2 {
                let tokens = res.tokens("pad").unwrap_or(&layer.call_tokens);
                errors.spanned(
                    tokens,
                    format!(
                        "{who}: pad {} is more than half the {}x{} window, so a window could lie entirely in the padding; use at most pad {}",
                        dims_text(&pad).trim_matches(|c| c == '[' || c == ']').replace(", ", "x"),
                        kernel[0],
                        kernel[1],
                        (kernel[0] / 2).min(kernel[1] / 2)
                    ),
                );
                return None;
            }
            let [oh, ow] =
                window_output(who, "window", d, kernel, stride, pad, floor, layer, errors)?;
            Some((
                Kind::Pool {
                    max: kind == "max_pool",
                    kernel,
                    stride,
                    pad,
                    floor,
                },
                Shape::Spatial([d[0], oh, ow]),
            ))
        }
        "linear" => {
            if let Shape::Spatial(d) = input {
                errors.spanned(
                    &layer.call_tokens,
                    format!(
                        "{who}: `linear` needs a vector input, but its input is {}; add `flatten` before it to make it [{}]",
                        dims_text(&d),
                        d.iter().product::<usize>()
                    ),
                );
                return None;
            }
            let out_f = res.int("out_features", 1);
            if !fits(who, "weight", &[out_f, input.numel()], layer, errors) {
                return None;
            }
            Some((
                Kind::Linear {
                    out_f,
                    bias: res.bool("bias", true),
                },
                Shape::Vector(out_f),
            ))
        }
        "relu" => Some((Kind::Relu, input)),
        "leaky_relu" => Some((Kind::LeakyRelu(res.number("slope", 0.01)), input)),
        "tanh" => Some((Kind::Tanh, input)),
        "sigmoid" => Some((Kind::Sigmoid, input)),
        "dropout" => Some((Kind::Dropout(res.number("p", 0.5)), input)),
        "batch_norm" => Some((
            Kind::BatchNorm {
                momentum: res.number("momentum", 0.1),
                eps: res.number("eps", 1e-5),
            },
            input,
        )),
        "flatten" => Some((Kind::Flatten, Shape::Vector(input.numel()))),
        _ => None,
    }
}

/// Checks `input: [..]`: present, first, once, with one or three positive dimensions.
fn check_input(net: &Network, errors: &mut Errors) -> Option<Shape> {
    let inputs: Vec<(usize, &InputDecl)> = net
        .items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| match item {
            Item::Input(d) => Some((i, d)),
            Item::Layer(_) => None,
        })
        .collect();
    let Some(&(position, decl)) = inputs.first() else {
        let msg = format!(
            "`{}` needs its input shape as the first item: `input: [channels, height, width]` for images, `input: [features]` for vectors",
            net.name
        );
        match net.items.first() {
            Some(Item::Layer(l)) => errors.spanned(&l.call_tokens, msg),
            _ => errors.at(net.brace_span, msg),
        }
        return None;
    };
    let mut ok = true;
    if position != 0 {
        ok = false;
        errors.spanned(
            &decl.tokens,
            "`input` must be the first item of the network: move it above the first layer",
        );
    }
    for (_, extra) in inputs.iter().skip(1) {
        ok = false;
        errors.spanned(
            &extra.tokens,
            "duplicate `input`: a network has exactly one input shape",
        );
    }
    if decl.keyword != "input" {
        // Unreachable through the parser, which only makes an input of `name: [..]`; but a
        // layer name followed by dims is a likely typo of `input`.
        errors.spanned(
            &decl.tokens,
            format!(
                "`{}: [..]` looks like an input shape; write `input: [..]`",
                decl.keyword
            ),
        );
        return None;
    }
    for d in &decl.dims {
        if d.value == 0 {
            ok = false;
            errors.at(d.span, "input dimensions must be at least 1, found 0");
        } else if d.value as u64 > MAX_SIZE {
            ok = false;
            errors.at(
                d.span,
                format!(
                    "input dimensions must be at most {MAX_SIZE}, found {}",
                    d.value
                ),
            );
        }
    }
    if ok && tensor_len(&decl.dims.iter().map(|d| d.value).collect::<Vec<_>>()).is_none() {
        ok = false;
        errors.spanned(
            &decl.tokens,
            "the input would hold more than the 2^36 values striate supports",
        );
    }
    let dims: Vec<usize> = decl.dims.iter().map(|d| d.value).collect();
    let shape = match dims.as_slice() {
        [c, h, w] => Shape::Spatial([*c, *h, *w]),
        [f] => Shape::Vector(*f),
        _ => {
            errors.spanned(
                &decl.tokens,
                format!(
                    "the input shape has {} dimensions, {}; it must be [channels, height, width] (channels first, no batch dimension) or [features]",
                    dims.len(),
                    dims_text(&dims)
                ),
            );
            return None;
        }
    };
    ok.then_some(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(src: &str) -> Result<Plan, Vec<String>> {
        let net: Network = syn::parse_str(src).expect("parses");
        check(&net).map_err(|es| es.iter().map(|e| e.to_string()).collect())
    }

    fn errors(src: &str) -> Vec<String> {
        match plan(src) {
            Ok(_) => panic!("expected errors for {src}"),
            Err(e) => e,
        }
    }

    const LENET: &str = "struct LeNet5 {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2) -> [6, 28, 28],
        relu,
        max_pool(2),
        conv2: conv2d(16, kernel = 5),
        relu,
        max_pool(2) -> [16, 5, 5],
        flatten,
        fc1: linear(120),
        relu,
        fc2: linear(84),
        relu,
        fc3: linear(10),
    }";

    #[test]
    fn lenet_shapes_params_and_receptive_fields() {
        let p = plan(LENET).unwrap();
        assert_eq!(p.output(), Shape::Vector(10));
        assert_eq!(p.num_params(), 61_706);
        assert_eq!(p.layers[0].params, 156);
        let rf: Vec<usize> = [0, 2, 3, 5]
            .iter()
            .map(|&i| p.layers[i].receptive_field[0])
            .collect();
        assert_eq!(rf, [5, 6, 14, 16]);
        assert_eq!(p.layers[0].macs, 6 * 28 * 28 * 25);
        assert_eq!(p.params[0].name, "conv1.weight");
        assert_eq!(p.params[0].shape, [6, 1, 5, 5]);
        assert_eq!(p.params[0].init, InitPlan::He { fan_in: 25 });
        assert_eq!(p.params.last().unwrap().name, "fc3.bias");
        // fc3 has no activation after it.
        assert_eq!(
            p.params[8].init,
            InitPlan::Glorot {
                fan_in: 84,
                fan_out: 10
            }
        );
    }

    #[test]
    fn inexact_stride_shows_formula_and_fixes() {
        let e =
            errors("struct A { input: [3, 227, 227], conv1: conv2d(96, kernel = 11, stride = 5) }");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0],
            "conv1: output height and width (227 + 2*0 - 11)/5 + 1 = 44.2 is not a whole number; stride 4 gives 55, pad 2 with stride 5 gives 45, `floor = true` drops the last partial window and gives 44"
        );
        assert!(plan("struct A { input: [3, 227, 227], conv1: conv2d(96, kernel = 11, stride = 5, floor = true) -> [96, 44, 44] }").is_ok());
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = errors(
            "struct N {
                input: [1, 28, 28],
                conv2d(6, kernel = 5),
                c: conv2d(6, kernel = 5, strid = 2),
                relu(3),
                linear(10),
                dropout(1.5),
            }",
        );
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(e[0].contains("needs a name"));
        assert!(e[1].contains("did you mean `stride`"));
        assert!(e[2].contains("takes no arguments"));
        assert!(e[3].contains("needs a name"));
        assert!(e[4].contains("[0, 1)"));
    }

    #[test]
    fn shape_mistakes() {
        let e = errors("struct N { input: [1, 28, 28], fc: linear(10) }");
        assert!(
            e[0].contains("add `flatten` before it to make it [784]"),
            "{e:?}"
        );
        let e = errors("struct N { input: [10], c: conv2d(4, kernel = 3) }");
        assert!(e[0].contains("needs a spatial input"), "{e:?}");
        let e = errors("struct N { input: [1, 3, 3], c: conv2d(4, kernel = 5) }");
        assert_eq!(e[0], "c: the kernel (5x5) does not fit the padded input: height and width 3 + 2*0 = 3 is less than 5; the input is [1, 3, 3]; use a kernel of at most 3 or `pad = 1`");
        let e = errors("struct N { input: [1, 28, 28], c: conv2d(4, kernel = 5) -> [4, 28, 28] }");
        assert_eq!(
            e[0],
            "c: declared output shape [4, 28, 28] but the layer computes [4, 24, 24]: height and width (28 + 2*0 - 5)/1 + 1 = 24"
        );
    }

    #[test]
    fn structure_mistakes() {
        assert!(errors("struct N { fc: linear(3) }")[0].contains("needs its input shape"));
        assert!(errors("struct N { }")[0].contains("needs its input shape"));
        assert!(errors("struct N { input: [4] }")[0].contains("has no layers"));
        assert!(errors("struct N { relu, input: [4] }")[0].contains("must be the first item"));
        assert!(
            errors("struct N { input: [4], a: linear(2), a: linear(2) }")[0]
                .contains("duplicate layer name")
        );
        assert!(errors("struct N { input: [4], conv(2) }")[0].contains("did you mean `conv2d`"));
        assert!(errors("struct N { input: [4, 4] }")[0].contains("2 dimensions"));
        assert!(errors("struct N { input: [4], a: linear(0) }")[0].contains("at least 1"));
        assert!(errors("struct N { input: [4], a: linear(2, 3) }")[0].contains("too many unnamed"));
        assert!(errors("struct N { input: [4], a: linear(2, bias = 1) }")[0]
            .contains("`true` or `false`"));
        assert!(errors("struct N { input: [4], a: linear(bias = true) }")[0]
            .contains("missing its `out_features`"));
        assert!(
            errors("struct N { input: [4], a: linear(2, bias = true, bias = false) }")[0]
                .contains("duplicate argument")
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("conv", LAYER_KINDS), Some("conv2d"));
        assert_eq!(closest("maxpool", LAYER_KINDS), Some("max_pool"));
        assert_eq!(closest("xyzzy", LAYER_KINDS), None);
        assert_eq!(formula(28, 5, 1, 2), "(28 + 2*2 - 5)/1 + 1 = 28");
        assert_eq!(formula(7, 2, 2, 0), "(7 + 2*0 - 2)/2 + 1 = 3.5");
    }
}
