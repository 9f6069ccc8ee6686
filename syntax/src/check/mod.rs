//! Checking: the syntax tree into a [`Plan`], a graph of values, or the list of every error in
//! the network. Split by job: [`args`] resolves a layer's arguments against its kind,
//! [`messages`] collects errors and makes suggestions, [`suggest`] checks every rewrite a
//! message offers before offering it, this module walks the items and builds the graph, and
//! [`blocks`] adds residual and concat blocks to it. What a layer kind computes comes from its
//! module in `kinds`.
//!
//! Every output size is computed by [`striate_geometry::output_size`], the same function the
//! runtime's kernels use.

pub mod args;
mod blocks;
pub mod messages;
mod nested;
pub mod suggest;

use std::collections::HashMap;

use striate_geometry::Receptive;

use crate::ast::{InputDecl, Item, LayerItem, Network};
use crate::kinds::{self, Build, InitRule, Role, TensorSpec};
use crate::plan::{dims_text, Field, InitPlan, Node, Op, Plan, Shape, TensorPlan};
use messages::{closest, one_of, tensor_len, Errors, MAX_SIZE, MAX_TENSOR};

/// The block forms, which are no layer kinds: they hold items of their own.
pub const BLOCK_FORMS: &[&str] = &["residual", "concat"];

/// Checks the whole network; returns its plan or every error found.
pub fn check(net: &Network) -> Result<Plan, Vec<syn::Error>> {
    check_all(net).map_err(|errors| errors.0)
}

/// [`check`], with the fixes the messages suggest.
fn check_all(net: &Network) -> Result<Plan, Errors> {
    let mut errors = Errors::default();
    let input = check_input(net, &mut errors);
    let mut g = Graph {
        errors,
        nodes: Vec::new(),
        params: Vec::new(),
        buffers: Vec::new(),
        values: Vec::new(),
        nested: Vec::new(),
        input_full: match input {
            Some(Shape::Spatial([_, h, w])) => [h, w],
            Some(Shape::Vector(f) | Shape::Tokens(f)) => [1, f],
            Some(Shape::Sequence {
                steps, features, ..
            }) => [steps, features],
            None => [0, 0],
        },
    };
    if let Some(shape) = input {
        g.values.push(Value {
            shape,
            field: Field::Known([Receptive::INPUT; 2]),
            flat: matches!(shape, Shape::Vector(_)),
        });
    }
    let layers = net
        .items
        .iter()
        .filter(|i| matches!(i, Item::Layer(_)))
        .count();
    if let (0, Some(shape)) = (layers, input) {
        // A layer that fits the input: a classifier head, flattened first for a feature map.
        let layer = match shape {
            Shape::Vector(_) => "fc: linear(10)",
            Shape::Sequence { .. } => "lstm: lstm(64), last, fc: linear(10)",
            Shape::Tokens(_) => {
                "embedding: embedding(1000, 32), lstm: lstm(64), last, fc: linear(10)"
            }
            Shape::Spatial(_) => "flatten, fc: linear(10)",
        };
        let decl = net.items.iter().find_map(|i| match i {
            Item::Input(d) => Some(d),
            Item::Layer(_) => None,
        });
        let msg = format!(
            "`{}` has no layers; add at least one after `input`, e.g. `{layer}`",
            net.name
        );
        match decl {
            Some(d) => {
                let fixed = format!("input: {}, {layer}", shape.text());
                g.errors
                    .with_fixes_of(&net.name, &d.tokens, msg, vec![fixed]);
            }
            None => g.errors.at(net.name.span(), msg),
        }
    }
    let scope = Scope::top();
    g.sequence(&net.items, &scope, input.map(|_| 0), &[]);
    if g.errors.0.is_empty() {
        let last = g.values.last().cloned().expect("the input is a value");
        let receptive = if last.flat {
            let [h, w] = g.input_full;
            Field::Known([h, w].map(|f| Receptive { field: f, jump: 1 }))
        } else {
            last.field
        };
        Ok(Plan {
            input: input.expect("no errors means the input was valid"),
            nodes: g.nodes,
            params: g.params,
            buffers: g.buffers,
            nested: g.nested,
            receptive,
        })
    } else {
        Err(g.errors)
    }
}

/// A value of the graph as the checks see it.
#[derive(Clone)]
struct Value {
    shape: Shape,
    field: Field,
    /// A unit of it sees the whole input (after `flatten` or `linear`).
    flat: bool,
}

/// A layer's or block's name as its parameters are saved under: a raw identifier without its
/// `r#` (`r#type` saves `type.weight`, as PyTorch names it).
pub(crate) fn name_of(name: &proc_macro2::Ident) -> String {
    syn::ext::IdentExt::unraw(name).to_string()
}

/// Where a sequence of items sits: the names around it.
struct Scope {
    /// `block1.`, prepended to names; `""` at the top.
    prefix: String,
    /// `block1`, for labels; `""` at the top.
    path: String,
    depth: usize,
}

impl Scope {
    fn top() -> Scope {
        Scope {
            prefix: String::new(),
            path: String::new(),
            depth: 0,
        }
    }

    /// The scope of the items under `name` (a block, or a block's shortcut or branch).
    fn inner(&self, name: &str, depth: usize) -> Scope {
        let path = format!("{}{name}", self.prefix);
        Scope {
            prefix: format!("{path}."),
            path,
            depth,
        }
    }

    /// `conv1`, `block1.conv1`, or `layer 3 (`relu`)` / `layer 2 (`relu`) of block1`.
    fn label(&self, item: &LayerItem, index: usize) -> String {
        match &item.name {
            Some(n) => format!("{}{}", self.prefix, name_of(n)),
            None if self.path.is_empty() => format!("layer {index} (`{}`)", item.kind),
            None => format!("layer {index} (`{}`) of {}", item.kind, self.path),
        }
    }
}

/// The graph being built, with every error found so far.
struct Graph {
    errors: Errors,
    nodes: Vec<Node>,
    params: Vec<TensorPlan>,
    buffers: Vec<TensorPlan>,
    /// Value 0 is the input, value `i + 1` the output of node `i`.
    values: Vec<Value>,
    /// The types of the nested networks so far.
    nested: Vec<syn::Path>,
    /// `[height, width]` of the input (`[1, features]` for a vector), the receptive field
    /// after flattening.
    input_full: [usize; 2],
}

impl Graph {
    /// Checks `items` in order, each reading the value before it, starting from `input`
    /// (`None` once something before failed: then only each item's own mistakes are
    /// reported). `after` holds the items that follow the sequence in the blocks around it,
    /// for the initialisation rule. Returns the value of the last item.
    fn sequence(
        &mut self,
        items: &[Item],
        scope: &Scope,
        input: Option<usize>,
        after: &[&[Item]],
    ) -> Option<usize> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut current = input;
        let mut index = 0;
        for (i, item) in items.iter().enumerate() {
            let layer = match item {
                Item::Layer(l) => l,
                Item::Input(decl) => {
                    // The top level's input was checked by `check_input`.
                    if scope.depth > 0 {
                        self.errors.spanned(
                            &decl.tokens,
                            "`input` belongs at the top of the network, not inside a block; a block reads the value before it",
                        );
                    }
                    continue;
                }
            };
            index += 1;
            self.check_name(layer, index, scope, &mut names);
            let mut rest: Vec<&[Item]> = vec![&items[i + 1..]];
            rest.extend_from_slice(after);
            current = self.item(layer, index, scope, current, &rest);
        }
        current
    }

    /// Reports a reserved or duplicate name.
    fn check_name(
        &mut self,
        layer: &LayerItem,
        index: usize,
        scope: &Scope,
        names: &mut HashMap<String, usize>,
    ) {
        let Some(name) = &layer.name else { return };
        let n = name_of(name);
        if n == "input" {
            self.errors.spanned(
                name,
                "`input` names the network's input, not a layer; choose another name",
            );
        } else if let Some(first) = names.get(&n) {
            let place = if scope.path.is_empty() {
                String::new()
            } else {
                format!(" of `{}`", scope.path)
            };
            self.errors.spanned(
                name,
                format!("duplicate layer name `{n}`: layers {first} and {index}{place} are both called `{n}`; parameters are named after their layer, so names must be unique"),
            );
        } else {
            names.insert(n, index);
        }
    }

    /// One item: a layer of a registered kind or a block.
    fn item(
        &mut self,
        layer: &LayerItem,
        index: usize,
        scope: &Scope,
        input: Option<usize>,
        rest: &[&[Item]],
    ) -> Option<usize> {
        let kind = layer.kind.to_string();
        let who = scope.label(layer, index);
        match kind.as_str() {
            "residual" if layer.path.is_none() => {
                return self.residual(layer, &who, scope, input, rest)
            }
            "concat" if layer.path.is_none() => {
                return self.concat(layer, &who, scope, input, rest)
            }
            _ => {}
        }
        if let Some(body) = &layer.body {
            self.errors.at(
                body.span,
                format!("`{kind}` takes no block; only `residual` has a body `{{ .. }}`"),
            );
        }
        let found = kinds::find(&kind).filter(|_| layer.path.is_none());
        let Some(found) = found else {
            if layer.path.is_some() || (starts_upper(&kind) && !self.names_a_kind(&kind)) {
                return self.nested_network(layer, &who, scope, input);
            }
            self.unknown_kind(layer);
            return None;
        };
        if layer.name.is_none() {
            if let Some(prefix) = found.param_prefix() {
                let named = format!("{prefix}{index}: {}", declaration(layer));
                self.errors.with_fix(
                    &layer.call_tokens,
                    format!("{who} has parameters, so it needs a name, which its parameters are saved under: `{named}`"),
                    named,
                );
            }
        }
        let input_shape = input.map(|i| self.values[i].shape);
        let suggest = args::Suggest::On(input_shape);
        let res = args::resolve(layer, found, &who, suggest, &mut self.errors)?;
        let input = input?;
        let from = self.values[input].clone();
        if let (Shape::Tokens(t), false) = (from.shape, found.reads_tokens()) {
            self.errors.spanned(
                &layer.call_tokens,
                format!(
                    "{who}: `{kind}` cannot read token ids; its input is {}, integers that only `embedding(vocab, dim)` reads: put one before it (`embedding: embedding(1000, 32)` gives a sequence [{t}, 32])",
                    from.shape.described()
                ),
            );
            return None;
        }
        let mut cx = Build {
            who: &who,
            kind: &kind,
            item: layer,
            input: from.shape,
            args: &res,
            errors: &mut self.errors,
            verifying: false,
        };
        let built = found.build(&mut cx)?;
        let out = built.output();
        let path = layer
            .name
            .as_ref()
            .map(|n| format!("{}{}", scope.prefix, name_of(n)))
            .unwrap_or_default();
        let (param_offset, buffer_offset) = (self.params_len(), self.buffers_len());
        let mut n_params = 0;
        let base = self.nested.len();
        for t in built.params() {
            let init = resolve_init(t.init, rest);
            n_params += push(&mut self.params, &path, t, init, base);
        }
        let total = self.params_len() as u128;
        if total > MAX_TENSOR && total - n_params as u128 <= MAX_TENSOR {
            self.errors.spanned(
                &layer.call_tokens,
                format!(
                    "{who}: {} {total} parameters, more than the 2^36 = {MAX_TENSOR} (256 GiB \
                     of f32) striate supports; use fewer features or channels here, or pool \
                     before this layer",
                    if total == n_params as u128 {
                        "the layer alone has".to_string()
                    } else {
                        format!("with its {n_params} the network has")
                    }
                ),
            );
        }
        for t in built.buffers() {
            let init = resolve_init(t.init, rest);
            push(&mut self.buffers, &path, t, init, base);
        }
        let field = match built.window() {
            Some(steps) => from.field.window(steps),
            None => from.field.clone(),
        };
        let flat = from.flat || built.flattens();
        if let Some((dims, tokens)) = &layer.expect {
            let want: Vec<usize> = dims.iter().map(|d| d.value).collect();
            if want != out.dims() {
                self.errors.spanned(
                    tokens,
                    format!(
                        "{who}: declared output shape {} but the layer computes {}{}{}",
                        dims_text(&want),
                        out.text(),
                        built.explain(),
                        sequence_hint(&want, out)
                    ),
                );
            }
        }
        let node = Node {
            path,
            kind_name: kind,
            declaration: declaration(layer),
            inputs: vec![input],
            input_shapes: vec![from.shape],
            output: out,
            params: n_params,
            receptive_field: [0; 2],
            receptive_expr: None,
            macs: built.macs(),
            base,
            param_offset,
            buffer_offset,
            depth: scope.depth,
            note: built.note(),
            tokens: layer.call_tokens.clone(),
            op: Op::Layer(built),
        };
        Some(self.push_node(node, field, flat))
    }

    /// Adds `node` with the receptive field of its value; returns the value.
    fn push_node(&mut self, mut node: Node, field: Field, flat: bool) -> usize {
        match (&field, flat) {
            (_, true) => node.receptive_field = self.input_full,
            (Field::Known(r), false) => node.receptive_field = [r[0].field, r[1].field],
            (Field::Expr(e), false) => node.receptive_expr = Some(e.clone()),
        }
        self.values.push(Value {
            shape: node.output,
            field,
            flat,
        });
        self.nodes.push(node);
        self.values.len() - 1
    }

    fn params_len(&self) -> usize {
        self.params.last().map_or(0, |p| p.offset + p.len)
    }

    fn buffers_len(&self) -> usize {
        self.buffers.last().map_or(0, |p| p.offset + p.len)
    }

    /// The kind or block form that `word` is a likely typo of, or another library's name of,
    /// ignoring case.
    fn typo_of(&self, word: &str) -> Option<&'static str> {
        let known = known_words();
        let lower = word.to_lowercase();
        known
            .iter()
            .copied()
            .find(|k| *k == lower || k.replace('_', "") == lower)
            .or_else(|| {
                kinds::all()
                    .find(|k| k.other_names().iter().any(|o| o.to_lowercase() == lower))
                    .map(|k| k.name())
            })
            .or_else(|| closest(&lower, &known))
            .or_else(|| closest(word, &known))
    }

    /// Whether a capitalised `word` is meant as a layer kind rather than a network declared
    /// elsewhere: its name in any case or another library's, or a typo of a kind whose name
    /// is long enough for a near miss to say so. A short network name two edits from a short
    /// kind (`Stem`, `lstm`) is a network.
    fn names_a_kind(&self, word: &str) -> bool {
        self.typo_of(word).is_some_and(|k| {
            k.len() > 4
                || k.eq_ignore_ascii_case(word)
                || kinds::find(k).is_some_and(|kind| {
                    kind.other_names()
                        .iter()
                        .any(|o| o.eq_ignore_ascii_case(word))
                })
        })
    }

    fn unknown_kind(&mut self, layer: &LayerItem) {
        let kind = layer.kind.to_string();
        let known = known_words();
        let meant = self.typo_of(&kind);
        let hint = meant
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        let path_hint = if starts_upper(&kind) {
            format!("; a network of yours named like a layer is written as a path: `self::{kind}`")
        } else {
            String::new()
        };
        let msg = format!(
            "unknown layer `{kind}`; {hint}the layers are: {}{path_hint}",
            one_of(&known)
        );
        match meant {
            Some(c) => self.errors.with_fix(&layer.kind, msg, c.to_string()),
            None => self.errors.spanned(&layer.kind, msg),
        }
    }
}

/// The layer kinds and block forms.
fn known_words() -> Vec<&'static str> {
    let mut known = kinds::names();
    known.extend_from_slice(BLOCK_FORMS);
    known
}

/// `LeNetFeatures`: a type's name rather than a layer kind's.
fn starts_upper(word: &str) -> bool {
    word.chars().next().is_some_and(char::is_uppercase)
}

/// Appends a tensor named `<path>.<suffix>` to `list`; returns its length.
fn push(
    list: &mut Vec<TensorPlan>,
    path: &str,
    t: TensorSpec,
    init: InitPlan,
    base: usize,
) -> usize {
    let offset = list.last().map_or(0, |p| p.offset + p.len);
    let len = t.shape.iter().product();
    list.push(TensorPlan {
        base,
        name: format!("{path}.{}", t.suffix),
        shape: t.shape,
        offset,
        len,
        init,
    });
    len
}

/// For a declared vector where the layer gives a sequence: what turns one into the other.
fn sequence_hint(want: &[usize], out: Shape) -> &'static str {
    match (want.len(), out) {
        (1, Shape::Sequence { .. }) => "; the layers give a sequence [steps, features]: `last`, `final_state` or a pooling over time (`mean_over_time`, `max_over_time`) turns it into a vector",
        _ => "",
    }
}

/// He initialisation when the next activation is ReLU-like, Glorot otherwise; the search looks
/// through pooling, normalisation and the like, and past the end of a block into the items
/// after it, but not into a block.
fn resolve_init(rule: InitRule, rest: &[&[Item]]) -> InitPlan {
    let (fan_in, fan_out) = match rule {
        InitRule::Zeros => return InitPlan::Zeros,
        InitRule::Ones => return InitPlan::Ones,
        InitRule::Recurrent { hidden } => return InitPlan::Recurrent { hidden },
        InitRule::StandardNormal => return InitPlan::StandardNormal,
        InitRule::Weights { fan_in, fan_out } => (fan_in, fan_out),
    };
    for item in rest.iter().flat_map(|items| items.iter()) {
        let Item::Layer(l) = item else { continue };
        if l.path.is_some()
            || l.body.is_some()
            || BLOCK_FORMS.contains(&l.kind.to_string().as_str())
        {
            break;
        }
        match kinds::find(&l.kind.to_string()).map(|k| k.role()) {
            Some(Role::ReluLike) => return InitPlan::He { fan_in },
            Some(Role::Weights | Role::Saturating) => break,
            Some(Role::Neutral) | None => {}
        }
    }
    InitPlan::Glorot { fan_in, fan_out }
}

/// The layer as declared: `conv2d(6, kernel = 5)`.
fn declaration(layer: &LayerItem) -> String {
    if layer.args.is_empty() {
        return layer.kind.to_string();
    }
    let args: Vec<String> = layer
        .args
        .iter()
        .map(|a| {
            let value = if a.block.is_some() {
                "{ .. }".to_string()
            } else {
                a.value.render()
            };
            match &a.name {
                Some(n) => format!("{n} = {value}"),
                None => value,
            }
        })
        .collect();
    format!("{}({})", layer.kind, args.join(", "))
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
    if let Some(form) = &decl.tokens_form {
        return match dims.as_slice() {
            [t] => ok.then_some(Shape::Tokens(*t)),
            _ => {
                errors.spanned(
                    &decl.tokens,
                    format!(
                        "`{form}{}` has {} dimensions; token ids are one per step, `tokens[steps]`, e.g. `input: tokens[{}]`",
                        dims_text(&dims),
                        dims.len(),
                        dims.first().copied().unwrap_or(1)
                    ),
                );
                None
            }
        };
    }
    let shape = match dims.as_slice() {
        [c, h, w] => Shape::Spatial([*c, *h, *w]),
        [f] => Shape::Vector(*f),
        [t, f] => Shape::sequence(*t, *f),
        _ => {
            errors.spanned(
                &decl.tokens,
                format!(
                    "the input shape has {} dimensions, {}; it must be [channels, height, width] (channels first, no batch dimension), [steps, features] for a sequence, or [features]",
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
    use crate::kinds::window::formula;

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
        assert_eq!(p.nodes[0].params, 156);
        let rf: Vec<usize> = [0, 2, 3, 5]
            .iter()
            .map(|&i| p.nodes[i].receptive_field[0])
            .collect();
        assert_eq!(rf, [5, 6, 14, 16]);
        assert_eq!(p.nodes[0].macs, 6 * 28 * 28 * 25);
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
        assert!(errors("struct N { input: [4, 4, 4, 4] }")[0].contains("4 dimensions"));
        assert!(errors("struct N { input: [4], a: linear(0) }")[0].contains("at least 1"));
        assert!(errors("struct N { input: [4], a: linear(2, bias = 3) }")[0]
            .contains("`true` or `false`"));
        assert!(errors("struct N { input: [4], a: relu(2, 3) }")[0].contains("takes no arguments"));
        // No reading of the unnamed arguments passes the checks: the message lists them.
        let e = errors("struct N { input: [4], a: linear(2, 3, 4) }");
        assert!(e[0].starts_with("too many unnamed arguments: `linear` takes 1 unnamed (`out_features`) (its input features come from the layer before); name the others;"), "{e:?}");
        assert!(errors("struct N { input: [4], a: linear(2, bias = 1) }")[0]
            .contains("`true` or `false`"));
        assert!(errors("struct N { input: [4], a: linear(bias = true) }")[0]
            .contains("missing its `out_features`"));
        assert!(
            errors("struct N { input: [4], a: linear(2, bias = true, bias = false) }")[0]
                .contains("duplicate argument")
        );
    }

    /// The text between the last pair of backticks of a message: its suggested fix.
    fn hint(message: &str) -> String {
        let parts: Vec<&str> = message.split('`').collect();
        parts[parts.len() - 2].to_string()
    }

    /// Every block hint, put where the mistake was, gives a network that checks.
    #[test]
    fn block_hints_compile() {
        for input in ["[8]", "[3, 8, 8]"] {
            let e = errors(&format!("struct N {{ input: {input}, b: residual {{}} }}"));
            let fixed = format!("struct N {{ input: {input}, b: residual {} }}", hint(&e[0]));
            assert!(plan(&fixed).is_ok(), "{fixed}");
            let e = errors(&format!(
                "struct N {{ input: {input}, m: concat(a = {{}}) }}"
            ));
            let fixed = format!("struct N {{ input: {input}, m: {} }}", hint(&e[0]));
            assert!(plan(&fixed).is_ok(), "{fixed}");
        }
        for (input, body) in [
            (
                "[16, 32, 32]",
                "{ c: conv2d(32, kernel = 3, stride = 2, pad = 1) }",
            ),
            ("[8]", "{ fc: linear(4) }"),
        ] {
            let e = errors(&format!(
                "struct N {{ input: {input}, b: residual {body} }}"
            ));
            let fix = hint(&e[0]).replace("{ .. }", body);
            let fixed = format!("struct N {{ input: {input}, b: {fix} }}");
            assert!(plan(&fixed).is_ok(), "{fixed}");
        }
    }

    /// Layers written as in PyTorch or Keras get one message showing them as striate writes
    /// them, and only rewrites that pass the checks.
    #[test]
    fn other_libraries_habits() {
        let cases = [
            (
                "[1, 28, 28]",
                "conv1: conv2d(1, 16, kernel_size = 3, padding = 1)",
                "conv1: `conv2d` infers its input channels from the layer before (1 here), so its first argument is `out_channels`; unknown arguments `kernel_size`, `padding` for `conv2d`, did you mean `kernel`, `pad`? write `conv2d(16, kernel = 3, pad = 1)`",
            ),
            (
                "[1024]",
                "fc: linear(1024, 10)",
                "fc: `linear` infers its input features from the layer before (1024 here), so its first argument is `out_features`; write `linear(10)`",
            ),
            (
                "[3, 28, 28]",
                "conv1: conv2d(6, 5)",
                "conv1: `conv2d` takes 1 unnamed argument (`out_channels`), so the others need names; write `conv2d(6, kernel = 5)`",
            ),
            (
                "[3, 8, 8]",
                "max_pool(2, 2)",
                "layer 1 (`max_pool`): `max_pool` takes 1 unnamed argument (`kernel`), so the others need names; write `max_pool(2, stride = 2)`",
            ),
            (
                "[3, 8, 8]",
                "bn: batch_norm(3)",
                "bn: `batch_norm` infers its channels from the layer before (3 here), so it takes no unnamed argument; write `batch_norm`",
            ),
            (
                "[3, 8, 8]",
                "c: conv2d(4, in_channels = 3, kernel = 3)",
                "c: `in_channels` is inferred from the layer before, not an argument; write `conv2d(4, kernel = 3)`",
            ),
            (
                "[10]",
                "fc: linear(units = 4, use_bias = false)",
                "fc: unknown arguments `units`, `use_bias` for `linear`, did you mean `out_features`, `bias`? write `linear(4, bias = false)`",
            ),
        ];
        for (input, layer, message) in cases {
            let e = errors(&format!("struct N {{ input: {input}, {layer} }}"));
            assert_eq!(e, [message]);
            let fixed = hint(message);
            let name = layer
                .split_once(": ")
                .map_or(String::new(), |(n, _)| format!("{n}: "));
            let fixed = format!("struct N {{ input: {input}, {name}{fixed} }}");
            assert!(plan(&fixed).is_ok(), "{fixed}");
        }
        // A typo whose correction fails the shape checks is not offered as a rewrite.
        let e = errors("struct N { input: [3, 28, 28], c: conv2d(6, kernel = 5, strid = 2) }");
        assert!(
            e[0].starts_with(
                "unknown argument `strid` for `conv2d`; did you mean `stride`? expected one of"
            ),
            "{e:?}"
        );
        for (written, meant) in [
            ("ReLU", "relu"),
            ("dense(3)", "linear"),
            ("MaxPool2d(2)", "max_pool"),
            ("BatchNorm2d", "batch_norm"),
        ] {
            let e = errors(&format!("struct N {{ input: [3, 8, 8], x: {written} }}"));
            assert!(e[0].contains(&format!("did you mean `{meant}`?")), "{e:?}");
        }
    }

    /// A pooling window's suggestions keep the pooling rule that padding is at most half the
    /// window (an 8x8 input and a 3x3 window: padding 2 would tile it, but is not allowed).
    #[test]
    fn pool_hints_keep_the_pad_rule() {
        let e = errors("struct N { input: [4, 8, 8], max_pool(3) }");
        assert_eq!(
            e,
            ["layer 1 (`max_pool`): output height and width (8 + 2*0 - 3)/3 + 1 = 2.67 is not a whole number; stride 1 gives 6, window 2 gives 4, `floor = true` drops the last partial window and gives 2"]
        );
        // Too much padding: the largest allowed that the size rule accepts is offered.
        let e = errors("struct N { input: [4, 8, 8], max_pool(2, pad = 2) }");
        assert!(
            e[0].ends_with("use at most pad 1, e.g. `max_pool(2, pad = 1)`"),
            "{e:?}"
        );
        // Pad 2 would leave 3 of a stride of 5, more than padding and gap: pad 1 it is.
        let e = errors("struct N { input: [4, 4, 4], max_pool(4, stride = 5, pad = 3) }");
        assert!(
            e[0].ends_with("use at most pad 2, e.g. `max_pool(4, stride = 5, pad = 1)`"),
            "{e:?}"
        );
    }

    /// A layer that declares its output shape gets only the fixes that give it.
    #[test]
    fn fixes_keep_the_declared_shape() {
        let e = errors("struct A { input: [3, 227, 227], conv1: conv2d(96, kernel = 11, stride = 5) -> [96, 55, 55] }");
        assert_eq!(e, ["conv1: output height and width (227 + 2*0 - 11)/5 + 1 = 44.2 is not a whole number; stride 4 gives 55"]);
        let e = errors("struct A { input: [3, 227, 227], conv1: conv2d(96, kernel = 11, stride = 5) -> [96, 44, 44] }");
        assert!(
            e[0].ends_with(
                "is not a whole number; `floor = true` drops the last partial window and gives 44"
            ),
            "{e:?}"
        );
        let e = errors(
            "struct N { input: [1, 28, 28], c: conv2d(1, 16, kernel_size = 3) -> [16, 26, 26] }",
        );
        assert!(e[0].ends_with("write `conv2d(16, kernel = 3)`"), "{e:?}");
        let e = errors(
            "struct N { input: [1, 28, 28], c: conv2d(1, 16, kernel_size = 3) -> [16, 28, 28] }",
        );
        assert!(!e[0].contains("write `"), "{e:?}");
    }

    #[test]
    fn suggestions() {
        let kinds = crate::kinds::names();
        assert_eq!(closest("conv", &kinds), Some("conv2d"));
        assert_eq!(closest("maxpool", &kinds), Some("max_pool"));
        assert_eq!(closest("xyzzy", &kinds), None);
        assert_eq!(formula(28, 5, 1, 2), "(28 + 2*2 - 5)/1 + 1 = 28");
        assert_eq!(formula(7, 2, 2, 0), "(7 + 2*0 - 2)/2 + 1 = 3.5");
    }
}
