//! The layer kinds, one module each, behind one registry.
//!
//! A kind says what its arguments are ([`Kind::args`]) and builds a [`Layer`] from resolved
//! arguments and an input shape, reporting its own shape mistakes. The layer then answers
//! everything the rest of the macro asks of it: its output shape, parameters and buffers,
//! receptive-field window, multiply-adds, tape storage and the code of its forward and backward
//! passes. Nothing outside this folder matches on a kind's name.
//!
//! Adding a kind: a new file here, one line in [`REGISTRY`], and its runtime kernel.

use proc_macro2::{Literal, Span, TokenStream};
use quote::quote;
use syn::Ident;

use crate::ast::LayerItem;
use crate::check::args::Resolved;
use crate::check::messages::Errors;
use crate::plan::Shape;

mod activation;
mod batch_norm;
mod conv2d;
mod conv_transpose2d;
mod dropout;
mod embedding;
mod flatten;
mod linear;
mod pool;
mod recurrent;
mod reshape;
mod time;
mod upsample;
pub mod window;

/// Every kind, by module. The order is the order of the list in error messages and the README.
pub const REGISTRY: &[&[&dyn Kind]] = &[
    conv2d::KINDS,
    conv_transpose2d::KINDS,
    pool::KINDS,
    upsample::KINDS,
    linear::KINDS,
    embedding::KINDS,
    recurrent::KINDS,
    time::KINDS,
    activation::KINDS,
    dropout::KINDS,
    batch_norm::KINDS,
    flatten::KINDS,
    reshape::KINDS,
];

/// Every kind, in registry order.
pub fn all() -> impl Iterator<Item = &'static dyn Kind> {
    REGISTRY.iter().flat_map(|m| m.iter().copied())
}

/// The kind called `name`.
pub fn find(name: &str) -> Option<&'static dyn Kind> {
    all().find(|k| k.name() == name)
}

/// The names of all kinds, for suggestions and the list in messages.
pub fn names() -> Vec<&'static str> {
    all().map(|k| k.name()).collect()
}

/// What an argument's value must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
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
    /// One of these names, written bare (`mode = bilinear`).
    Choice(&'static [&'static str]),
    /// A list of positive integers in brackets, `[64, 7, 7]`.
    Dims,
}

/// One argument a kind takes.
pub struct ArgSpec {
    pub name: &'static str,
    pub kind: ArgKind,
    /// May be given without its name, in order.
    pub positional: bool,
    pub required: bool,
}

pub const fn arg(name: &'static str, kind: ArgKind, positional: bool, required: bool) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        positional,
        required,
    }
}

/// What a kind means for the initialisation of the weights before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A layer with weights of its own: the search for the next activation stops (Glorot).
    Weights,
    /// ReLU-like: the weights before it get He initialisation.
    ReluLike,
    /// Tanh-like: Glorot.
    Saturating,
    /// Looked through (pooling, normalisation, dropout, flatten).
    Neutral,
}

/// A layer kind: its name, its arguments, and how it builds a layer.
pub trait Kind: Sync {
    /// The name written in a declaration.
    fn name(&self) -> &'static str;

    /// The arguments it takes.
    fn args(&self) -> &'static [ArgSpec] {
        &[]
    }

    fn role(&self) -> Role {
        Role::Neutral
    }

    /// It reads token ids (`input: tokens[T]`); every other kind refuses them.
    fn reads_tokens(&self) -> bool {
        false
    }

    /// For a kind with parameters: the prefix of the name suggested for an unnamed layer
    /// (`conv` for `conv3: conv2d(..)`). `None`: no parameters, no name needed.
    fn param_prefix(&self) -> Option<&'static str> {
        None
    }

    /// What it infers from its input that other libraries take as a first argument
    /// (`input channels` for PyTorch's `Conv2d(1, 16, 3)`), for translating such a layer.
    fn inferred(&self) -> Option<&'static str> {
        None
    }

    /// What other libraries call it (`Dense`, `MaxPool2d`), for "did you mean"; matched
    /// ignoring case.
    fn other_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// How to write it, for a message about a missing argument.
    fn example(&self, missing: &str) -> String {
        let _ = missing;
        format!("e.g. `{}(2)`", self.name())
    }

    /// The layer, from checked arguments and its input shape; `None` after reporting why not.
    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>>;
}

/// A parameter or buffer a layer has, before it gets its name and offset.
pub struct TensorSpec {
    /// `weight`, `bias`, `running_mean`, ...
    pub suffix: String,
    pub shape: Vec<usize>,
    pub init: InitRule,
}

/// How a tensor starts; `Weights` becomes He or Glorot depending on the next activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitRule {
    Zeros,
    Ones,
    Weights {
        fan_in: usize,
        fan_out: usize,
    },
    /// PyTorch's start for the weights and biases of a recurrent layer, `U(±1/√hidden)`.
    Recurrent {
        hidden: usize,
    },
    /// PyTorch's start for `nn.Embedding`'s weight, the standard normal `N(0, 1)`.
    StandardNormal,
}

/// Extra tape storage of a layer besides its output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapeNeeds {
    /// `f32` values per sample (a dropout mask).
    pub aux_per_sample: usize,
    /// `f32` values per batch (batch-norm statistics).
    pub aux_fixed: usize,
    /// `u32` values per sample (max-pooling winners).
    pub idx_per_sample: usize,
}

/// What a layer's forward pass needs besides parameters and the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PassUse {
    None,
    /// The mode and its buffers or generator (`pass`).
    Pass,
    /// That, and its backward pass needs to know whether the forward pass trained (`train`).
    Train,
}

/// A layer of some kind with every argument resolved and its shapes known.
pub trait Layer {
    fn output(&self) -> Shape;

    /// Learnable parameters, in their order in the store.
    fn params(&self) -> Vec<TensorSpec> {
        Vec::new()
    }

    /// Buffers (running statistics), in their order in the store.
    fn buffers(&self) -> Vec<TensorSpec> {
        Vec::new()
    }

    /// The sliding window of a spatial layer, `(kernel, stride)` per axis, for receptive
    /// fields.
    fn window(&self) -> Option<[(usize, usize); 2]> {
        None
    }

    /// The vocabulary of a layer that reads token ids (`embedding`).
    fn vocab(&self) -> Option<usize> {
        None
    }

    /// After this layer, one unit sees the whole input.
    fn flattens(&self) -> bool {
        false
    }

    /// Multiply-adds per sample.
    fn macs(&self) -> u64 {
        0
    }

    /// How the output size came about, appended to a declared-shape mismatch, e.g.
    /// `: height and width (28 + 2*0 - 5)/1 + 1 = 24`.
    fn explain(&self) -> String {
        String::new()
    }

    /// Why the output size was rounded down, or `""`.
    fn note(&self) -> String {
        String::new()
    }

    fn tape(&self) -> TapeNeeds {
        TapeNeeds::default()
    }

    fn pass_use(&self) -> PassUse {
        PassUse::None
    }

    /// The backward pass takes the input gradient as an `Option` (`e.d_x`) and can skip it.
    fn input_grad_optional(&self) -> bool {
        false
    }

    /// `const` items of the network's impl block (the kernel's geometry, named `e.g`).
    fn geometry(&self, e: &Emit<'_>) -> TokenStream {
        let _ = e;
        TokenStream::new()
    }

    /// Items after the impl block: assertions that the runtime agrees with the macro.
    fn assertion(&self, e: &Emit<'_>) -> TokenStream {
        let _ = e;
        TokenStream::new()
    }

    /// The scratch its kernels grow to in a pass over `n` samples (`n` is bound), as a `usize`
    /// expression, for a tape to reserve fallibly before the pass; `None`: it takes none.
    fn scratch(&self, e: &Emit<'_>) -> Option<TokenStream> {
        let _ = e;
        None
    }

    /// Its exporter for ONNX: a `const` expression of a type of the runtime's `onnx::kinds`
    /// (which implements `onnx::Export`), usually built from the geometry `Self::<e.g>`.
    /// `None`: the kind has no ONNX form yet, and exporting a network with it is an error that
    /// names the layer.
    fn onnx(&self, e: &Emit<'_>) -> Option<TokenStream> {
        let _ = e;
        None
    }

    /// The forward call; `s` is the tape's `ForwardSlots`, `params`, `pass` and `n` are bound.
    fn forward(&self, e: &Emit<'_>) -> TokenStream;

    /// The backward call; `s` is the tape's `BackwardSlots`, `params`, `d_params`, `n` (and
    /// `train`, with [`PassUse::Train`]) are bound. `e.d_x` is the input gradient as an
    /// `Option<&mut [f32]>` expression, for layers that may skip it.
    fn backward(&self, e: &Emit<'_>) -> TokenStream;

    /// The backward call of a layer whose parameters are all frozen: the input gradient alone,
    /// into `s.d_x` (bound as `&mut [f32]`), without computing any parameter gradient.
    /// `None`: the kernel has no such half, so [`Layer::backward`] runs and the frozen
    /// gradients are cleared after the pass (batch norm, whose per-channel sums are the input
    /// gradient's own terms).
    fn backward_input(&self, e: &Emit<'_>) -> Option<TokenStream> {
        let _ = e;
        None
    }
}

/// What [`Kind::build`] works from.
pub struct Build<'a> {
    /// `conv1`, or `layer 3 (`relu`)`, for messages.
    pub who: &'a str,
    pub kind: &'a str,
    pub item: &'a LayerItem,
    pub input: Shape,
    pub args: &'a Resolved<'a>,
    pub errors: &'a mut Errors,
    /// The layer is a suggestion being checked: make no suggestions of its own.
    pub verifying: bool,
}

impl Build<'_> {
    /// A message spanning the whole layer.
    pub fn error(&mut self, msg: impl std::fmt::Display) {
        self.errors.spanned(&self.item.call_tokens, msg);
    }

    /// The input as `[C, H, W]`, or an error saying this kind needs one.
    pub fn spatial(&mut self) -> Option<[usize; 3]> {
        match self.input {
            Shape::Spatial(d) => Some(d),
            Shape::Vector(f) => {
                let msg = format!(
                    "{}: `{}` needs a spatial input [channels, height, width], but its input is the vector [{f}]; move it before `flatten` or the first `linear`",
                    self.who, self.kind
                );
                self.error(msg);
                None
            }
            Shape::Sequence {
                steps, features, ..
            } => {
                let reshape = format!("reshape([1, {steps}, {features}])");
                let msg = format!(
                    "{}: `{}` needs a spatial input [channels, height, width], but its input is the sequence [{steps}, {features}]; give it one channel first, e.g. `{reshape}`",
                    self.who, self.kind
                );
                self.error_with_reshape(msg, &reshape);
                None
            }
            Shape::Tokens(_) => {
                self.tokens_refused();
                None
            }
        }
    }

    /// The error of a kind other than `embedding` on token ids (the check refuses them before
    /// building the layer; this covers a layer built on them while checking a suggestion).
    fn tokens_refused(&mut self) {
        let msg = format!(
            "{}: `{}` cannot read token ids; put `embedding(vocab, dim)` before it",
            self.who, self.kind
        );
        self.error(msg);
    }

    /// The input as a sequence `(steps, features, directions)`, or an error saying that this
    /// kind (`what` it does) needs one, with the reshape that makes one where there is one.
    pub fn sequence(&mut self, what: &str) -> Option<(usize, usize, usize)> {
        let (reshape, why) = match self.input {
            Shape::Sequence {
                steps,
                features,
                directions,
            } => return Some((steps, features, directions)),
            // Row by row: a step per row of each channel, in the order the values are stored.
            Shape::Spatial([c, h, w]) => (
                format!("reshape([{}, {w}])", c * h),
                "to read it row by row".to_string(),
            ),
            Shape::Vector(f) => (
                format!("reshape([{f}, 1])"),
                format!("for {f} steps of one feature"),
            ),
            Shape::Tokens(_) => {
                self.tokens_refused();
                return None;
            }
        };
        let msg = format!(
            "{}: `{}` {what} a sequence [steps, features], but its input is {}; reshape it first, e.g. `{reshape}` {why}",
            self.who,
            self.kind,
            self.input.described()
        );
        self.error_with_reshape(msg, &reshape);
        None
    }

    /// `msg`, with the fix it offers: `reshape` before the layer as written.
    fn error_with_reshape(&mut self, msg: String, reshape: &str) {
        match find(self.kind) {
            Some(kind) if !self.verifying => {
                // The layer keeps its name (its parameters' names): the fix rewrites the
                // name and the call together.
                let mut of = TokenStream::new();
                let named = match &self.item.name {
                    Some(name) => {
                        quote::ToTokens::to_tokens(name, &mut of);
                        format!("{name}: ")
                    }
                    None => String::new(),
                };
                of.extend(self.item.call_tokens.clone());
                let call = format!(
                    "{reshape}, {named}{}",
                    crate::check::suggest::render(kind, &self.args.written())
                );
                let tokens = &self.item.call_tokens;
                self.errors.with_fixes_of(tokens, of, msg, vec![call]);
            }
            _ => self.error(msg),
        }
    }

    /// The layer with some arguments changed (`("stride", "1")`), as it is written, and its
    /// output, when the checks accept it on this input and it gives the output shape the layer
    /// declares, if any; `None` otherwise, and always while verifying.
    pub fn accepted_with(&self, changes: &[(&str, String)]) -> Option<(String, Shape)> {
        if self.verifying {
            return None;
        }
        let kind = find(self.kind)?;
        let mut args = self.args.written();
        for (name, value) in changes {
            let spec = kind.args().iter().find(|s| s.name == *name)?;
            args.retain(|(n, _)| *n != spec.name);
            args.push((spec.name, value.clone()));
        }
        let call = crate::check::suggest::render(kind, &args);
        let output = crate::check::suggest::output_of(&call, Some(self.input))??;
        crate::check::suggest::declared_fits(self.item, Some(output)).then_some((call, output))
    }

    /// Whether a tensor with these factors fits in striate's limits; reports it if not.
    pub fn fits(&mut self, what: &str, factors: &[usize]) -> bool {
        crate::check::messages::fits(self.who, what, factors, self.item, self.errors)
    }
}

/// What the code of one node is generated from.
pub struct Emit<'a> {
    /// The network's struct.
    pub net: &'a Ident,
    /// The node's geometry constant.
    pub g: Ident,
    pub output: Shape,
    pub param_offset: usize,
    pub buffer_offset: usize,
    /// `+ <Inner as Network>::NUM_PARAMS + ..` for the nested networks whose parameters come
    /// before this node's (empty when none).
    pub param_base: TokenStream,
    /// The same for buffers.
    pub buffer_base: TokenStream,
    pub declaration: &'a str,
    /// The span of the layer in the declaration.
    pub span: Span,
    /// The input gradient as an `Option<&mut [f32]>` expression.
    pub d_x: TokenStream,
}

/// A layer's `weight` of `shape` (initialised by its fans) and, with `bias`, a zero `bias` of
/// that many values.
pub fn weight_and_bias_specs(
    shape: Vec<usize>,
    [fan_in, fan_out]: [usize; 2],
    bias: Option<usize>,
) -> Vec<TensorSpec> {
    let weight = TensorSpec {
        suffix: "weight".into(),
        shape,
        init: InitRule::Weights { fan_in, fan_out },
    };
    let bias = bias.map(|len| TensorSpec {
        suffix: "bias".into(),
        shape: vec![len],
        init: InitRule::Zeros,
    });
    std::iter::once(weight).chain(bias).collect()
}

/// The forward pass of a layer that only gives its input another shape (`flatten`,
/// `reshape`): the values are copied as they are.
pub fn copy_forward() -> TokenStream {
    let rt = rt();
    quote! { #rt::layers::copy_forward(s); }
}

/// Its backward pass: the gradient passes through, accumulated.
pub fn copy_backward() -> TokenStream {
    let rt = rt();
    quote! { #rt::layers::copy_backward(s); }
}

/// The one path generated code reaches the runtime through.
pub fn rt() -> TokenStream {
    quote!(::striate::__private)
}

pub fn usize_lit(v: usize) -> Literal {
    Literal::usize_unsuffixed(v)
}

pub fn f32_tokens(v: f64) -> TokenStream {
    let lit = Literal::f32_suffixed(v.abs() as f32);
    if v < 0.0 {
        quote!(-#lit)
    } else {
        quote!(#lit)
    }
}

pub fn dims_tokens(dims: &[usize]) -> TokenStream {
    let d = dims.iter().map(|v| usize_lit(*v));
    quote!([#(#d),*])
}

pub fn rounding(floor: bool) -> TokenStream {
    let rt = rt();
    if floor {
        quote!(#rt::geometry::Rounding::Floor)
    } else {
        quote!(#rt::geometry::Rounding::Exact)
    }
}

/// `let` bindings of a layer's weight `w` and bias `b` in `store` (`params` or, mutably,
/// `d_params`), and the bias as an `Option` expression.
pub fn weight_and_bias(
    e: &Emit<'_>,
    store: &str,
    weight_len: usize,
    bias_len: usize,
    mutable: bool,
) -> (TokenStream, TokenStream) {
    let store = Ident::new(store, Span::call_site());
    let (w, b) = if mutable {
        (quote!(d_w), quote!(d_b))
    } else {
        (quote!(w), quote!(b))
    };
    let base = &e.param_base;
    let start = usize_lit(e.param_offset);
    let mid = usize_lit(e.param_offset + weight_len);
    let end = usize_lit(e.param_offset + weight_len + bias_len);
    let (start, mid, end) = (quote!(#start #base), quote!(#mid #base), quote!(#end #base));
    let (split, borrow) = if mutable {
        (quote!(split_at_mut), quote!(&mut))
    } else {
        (quote!(split_at), quote!(&))
    };
    if bias_len == 0 {
        (
            quote! { let #w = #borrow #store[#start..#mid]; },
            quote!(None),
        )
    } else {
        let wl = usize_lit(weight_len);
        (
            quote! { let (#w, #b) = #store[#start..#end].#split(#wl); },
            quote!(Some(#b)),
        )
    }
}

/// The forward call of a layer with a weight and an optional bias (convolution, linear):
/// `kernel(y, x, w, bias, &geometry, n, scratch)`.
pub fn weighted_forward(
    e: &Emit<'_>,
    kernel: TokenStream,
    weight_len: usize,
    bias_len: usize,
) -> TokenStream {
    let g = &e.g;
    let (lets, bias) = weight_and_bias(e, "params", weight_len, bias_len, false);
    quote! { #lets #kernel(s.y, s.x, w, #bias, &Self::#g, n, s.scratch); }
}

/// Its backward call: `kernel(d_x, d_w, d_bias, d_y, x, w, &geometry, n, scratch)`.
pub fn weighted_backward(
    e: &Emit<'_>,
    kernel: TokenStream,
    weight_len: usize,
    bias_len: usize,
) -> TokenStream {
    let (g, d_x) = (&e.g, &e.d_x);
    let (lets, _) = weight_and_bias(e, "params", weight_len, bias_len, false);
    let (dlets, dbias) = weight_and_bias(e, "d_params", weight_len, bias_len, true);
    quote! { #lets #dlets #kernel(#d_x, d_w, #dbias, s.d_y, s.x, w, &Self::#g, n, s.scratch); }
}

/// [`Layer::backward_input`] of a layer with a weight and an optional bias:
/// `kernel(d_x, d_y, w, &geometry, n, scratch)`.
pub fn weighted_backward_input(
    e: &Emit<'_>,
    kernel: TokenStream,
    weight_len: usize,
) -> TokenStream {
    let g = &e.g;
    let (lets, _) = weight_and_bias(e, "params", weight_len, 0, false);
    quote! { #lets #kernel(s.d_x, s.d_y, w, &Self::#g, n, s.scratch); }
}

/// The assertion that a window layer's runtime geometry has the output size the macro proved.
pub fn window_assertion(e: &Emit<'_>) -> TokenStream {
    let Shape::Spatial([_, oh, ow]) = e.output else {
        return TokenStream::new();
    };
    let (net, g) = (e.net, &e.g);
    let (oh, ow) = (usize_lit(oh), usize_lit(ow));
    let msg = format!(
        "striate: the runtime's geometry disagrees with the macro for `{}`",
        e.declaration
    );
    quote::quote_spanned! {e.span=>
        const _: () = ::core::assert!(#net::#g.out_h == #oh && #net::#g.out_w == #ow, #msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind in the registry has an ONNX exporter: two networks (one on images, one on
    /// tokens) with at least one layer of each kind between them expand to no `Unsupported`.
    /// A new kind fails here until it is added to a declaration and, through `Layer::onnx`,
    /// to the runtime's `onnx::kinds`.
    #[test]
    fn every_kind_exports_to_onnx() {
        let declarations = [
            "struct N { input: [2, 8, 8],
                conv: conv2d(4, kernel = 3, pad = 1), relu, max_pool(2), avg_pool(2),
                up: upsample(2), deconv: conv_transpose2d(2, kernel = 2, stride = 2),
                bn: batch_norm, leaky_relu(0.1), tanh, sigmoid, dropout(0.5), flatten,
                reshape([128]), fc: linear(3), reshape([3, 1]),
                tanh_rnn: rnn(2), lstm: lstm(2), gru: gru(2), mean_over_time, reshape([2, 1]),
                max_over_time, reshape([1, 1]), final_state, reshape([1, 1]), last }",
            "struct T { input: tokens[4], words: embedding(6, 3), rec: lstm(2), last }",
        ];
        let mut declared = std::collections::BTreeSet::new();
        for text in declarations {
            let net: crate::ast::Network = syn::parse_str(text).unwrap();
            let Ok(plan) = crate::check::check(&net) else {
                panic!("the declaration checks: {text}")
            };
            declared.extend(plan.nodes.iter().map(|n| n.kind_name.clone()));
            let code = crate::expand::expand(&net, &plan).to_string();
            assert!(code.contains("onnx :: kinds ::"), "{code}");
            assert!(!code.contains("Unsupported"), "a kind without an exporter");
        }
        let declared: std::collections::BTreeSet<&str> =
            declared.iter().map(String::as_str).collect();
        let registered: std::collections::BTreeSet<&str> = names().into_iter().collect();
        assert_eq!(
            declared, registered,
            "the declarations have at least one layer of each kind"
        );
    }

    /// The documentation's table of layers has a row for every kind in the registry, so a new
    /// kind cannot go undocumented.
    #[test]
    fn the_documented_layers_are_the_registry() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut text = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
        if let Ok(dir) = std::fs::read_dir(format!("{root}/docs/src")) {
            for entry in dir.flatten() {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        // Rows of the layer table start with "| `kind" and may list several kinds.
        let mut documented = std::collections::BTreeSet::new();
        for line in text.lines().filter(|l| l.starts_with("| `")) {
            let first = line.split('|').nth(1).unwrap_or_default();
            for part in first.split('`').skip(1).step_by(2) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                documented.insert(name);
            }
        }
        for name in names() {
            assert!(documented.contains(name), "the layer table lacks `{name}`");
        }
    }
}
