//! The block forms: `residual` (a branch added to its input or to a shortcut) and `concat`
//! (branches joined along channels). Each branch is a sequence of items like the network's own,
//! reading the block's input; the join is one more node of the graph.

use striate_geometry::{output_size, Rounding};

use super::{Graph, Scope, Value};
use crate::ast::{Arg, Block, Item, LayerItem};
use crate::plan::{dims_text, Node, Op, Shape};

impl Graph {
    /// `name: residual { body }` or `name: residual(shortcut = { items }) { body }`.
    pub(super) fn residual(
        &mut self,
        item: &LayerItem,
        who: &str,
        scope: &Scope,
        input: Option<usize>,
        rest: &[&[Item]],
    ) -> Option<usize> {
        let mut shortcut: Option<&Block> = None;
        let mut ok = true;
        for a in &item.args {
            match (&a.name, &a.block) {
                (Some(n), Some(b)) if n == "shortcut" && shortcut.is_none() => shortcut = Some(b),
                (Some(n), _) if n == "shortcut" && shortcut.is_some() => {
                    ok = false;
                    self.errors
                        .spanned(&a.tokens, "duplicate argument `shortcut` for `residual`");
                }
                (Some(n), None) if n == "shortcut" => {
                    ok = false;
                    self.errors.spanned(
                        &a.tokens,
                        format!("`shortcut` must be a block of layers, e.g. `shortcut = {{ conv: conv2d(32, kernel = 1, stride = 2) }}`, found {}", a.value.describe()),
                    );
                }
                _ => {
                    ok = false;
                    self.errors.spanned(
                        &a.tokens,
                        "`residual` takes one argument, `shortcut = { .. }`; its body follows in braces: `residual { .. }`",
                    );
                }
            }
        }
        let example = self.body_example(input);
        let Some(body) = &item.body else {
            self.errors.with_fix(
                &item.call_tokens,
                format!("{who}: `residual` needs a body, the layers whose output is added to the input: `residual {example}`"),
                format!("residual {example}"),
            );
            return None;
        };
        if !body.items.iter().any(|i| matches!(i, Item::Layer(_))) {
            self.errors.at_with_fix(
                body.span,
                format!("{who}: the body of `residual` is empty, so the block would add its input to itself; give it layers, e.g. `{example}`"),
                example,
            );
            return None;
        }
        let params_before = self.params.len();
        let inner = self.block_scope(item, scope);
        let branch = self.sequence(&body.items, &inner, input, rest);
        let short = match shortcut {
            Some(b) => {
                let s = inner.inner("shortcut", scope.depth + 1);
                self.sequence(&b.items, &s, input, rest)
            }
            None => input,
        };
        self.require_name(item, who, params_before);
        let (input, branch, short) = (input?, branch?, short?);
        if !ok {
            return None;
        }
        let (b, s) = (self.values[branch].shape, self.values[short].shape);
        if b != s {
            let msg = match shortcut {
                None => format!(
                    "{who}: the body of `residual` turns {} into {}, so it cannot be added to its input; {}",
                    s.text(),
                    b.text(),
                    suggest_shortcut(s, b)
                ),
                Some(_) => format!(
                    "{who}: the shortcut gives {} but the body gives {}; they are added, so they must agree",
                    s.text(),
                    b.text()
                ),
            };
            self.errors.spanned(&item.call_tokens, msg);
            return None;
        }
        let declaration = if shortcut.is_some() {
            "body + shortcut"
        } else {
            "body + input"
        };
        let _ = input;
        self.join(
            item,
            who,
            scope,
            Op::Add,
            "add",
            declaration,
            vec![branch, short],
            b,
        )
    }

    /// `name: concat(a = { .. }, b = { .. }, ..)`.
    pub(super) fn concat(
        &mut self,
        item: &LayerItem,
        who: &str,
        scope: &Scope,
        input: Option<usize>,
        rest: &[&[Item]],
    ) -> Option<usize> {
        if let Some(body) = &item.body {
            self.errors.at(
                body.span,
                "`concat` has no body; its branches are named blocks in parentheses: `concat(a = { .. }, b = { .. })`",
            );
        }
        let mut branches: Vec<(&Arg, &Block)> = Vec::new();
        let mut ok = true;
        for a in &item.args {
            match (&a.name, &a.block) {
                (Some(n), Some(b)) => {
                    if branches.iter().any(|(o, _)| o.name.as_ref() == Some(n)) {
                        ok = false;
                        self.errors.spanned(
                            &a.tokens,
                            format!("duplicate branch `{n}` in `concat`; branches are named like layers, so names must be unique"),
                        );
                    } else {
                        branches.push((a, b));
                    }
                }
                _ => {
                    ok = false;
                    self.errors.spanned(
                        &a.tokens,
                        format!("each branch of `concat` is a named block, e.g. `a = {{ conv: conv2d(8, kernel = 1) }}` (or `a = {{}}` to pass the input through), found {}", a.value.describe()),
                    );
                }
            }
        }
        if item.args.len() < 2 {
            let branch = self.body_example(input);
            let fixed = format!("concat(a = {branch}, b = {{}})");
            self.errors.with_fix(
                &item.call_tokens,
                format!("{who}: `concat` joins at least two branches, e.g. `{fixed}`"),
                fixed,
            );
            return None;
        }
        let params_before = self.params.len();
        let inner = self.block_scope(item, scope);
        let mut values = Vec::new();
        for (a, b) in &branches {
            let name = a.name.as_ref().map(super::name_of).unwrap_or_default();
            let s = inner.inner(&name, scope.depth + 1);
            values.push(self.sequence(&b.items, &s, input, rest));
        }
        self.require_name(item, who, params_before);
        if !ok {
            return None;
        }
        let values: Vec<usize> = values.into_iter().collect::<Option<_>>()?;
        let shapes: Vec<Shape> = values.iter().map(|&v| self.values[v].shape).collect();
        let listed = || {
            branches
                .iter()
                .zip(&shapes)
                .map(|((a, _), s)| {
                    format!(
                        "`{}` gives {}",
                        a.name.as_ref().map(super::name_of).unwrap_or_default(),
                        s.text()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(seq) = shapes.iter().find(|s| matches!(s, Shape::Sequence { .. })) {
            self.errors.spanned(
                &item.call_tokens,
                format!("{who}: `concat` joins feature maps or vectors, not sequences such as {}: {}; join the vectors after `last` or a pooling over time instead", seq.text(), listed()),
            );
            return None;
        }
        if shapes.iter().any(|s| matches!(s, Shape::Tokens(_))) {
            self.errors.spanned(
                &item.call_tokens,
                format!("{who}: `concat` cannot join token ids: {}; embed them first with `embedding(vocab, dim)`", listed()),
            );
            return None;
        }
        let out = match shapes[0] {
            Shape::Spatial([_, h, w]) => {
                let mut c = 0;
                let mut same = true;
                for s in &shapes {
                    match *s {
                        Shape::Spatial([ci, hi, wi]) if hi == h && wi == w => c += ci,
                        Shape::Spatial(_) => same = false,
                        Shape::Vector(_) | Shape::Sequence { .. } | Shape::Tokens(_) => {
                            self.errors.spanned(
                                &item.call_tokens,
                                format!("{who}: `concat` joins feature maps along channels or vectors along features, not both: {}", listed()),
                            );
                            return None;
                        }
                    }
                }
                if !same {
                    self.errors.spanned(
                        &item.call_tokens,
                        format!("{who}: `concat` joins feature maps along channels, so their height and width must agree: {}", listed()),
                    );
                    return None;
                }
                Shape::Spatial([c, h, w])
            }
            Shape::Vector(_) => {
                let mut f = 0;
                for s in &shapes {
                    match *s {
                        Shape::Vector(fi) => f += fi,
                        Shape::Spatial(_) | Shape::Sequence { .. } | Shape::Tokens(_) => {
                            self.errors.spanned(
                                &item.call_tokens,
                                format!("{who}: `concat` joins feature maps along channels or vectors along features, not both: {}", listed()),
                            );
                            return None;
                        }
                    }
                }
                Shape::Vector(f)
            }
            Shape::Sequence { .. } | Shape::Tokens(_) => {
                unreachable!("sequences and token ids were refused above")
            }
        };
        let names: Vec<String> = branches
            .iter()
            .map(|(a, _)| a.name.as_ref().map(super::name_of).unwrap_or_default())
            .collect();
        let declaration = names.join(" | ");
        self.join(
            item,
            who,
            scope,
            Op::Concat,
            "concat",
            &declaration,
            values,
            out,
        )
    }

    /// A body that keeps the shape of `input`, for hints: a padded 3x3 convolution for a
    /// feature map, a linear layer for a vector.
    fn body_example(&self, input: Option<usize>) -> String {
        match input.map(|v| self.values[v].shape) {
            Some(Shape::Vector(f) | Shape::Sequence { features: f, .. }) => {
                format!("{{ fc: linear({f}), relu }}")
            }
            Some(Shape::Tokens(_)) => "{ embedding: embedding(1000, 32) }".to_string(),
            Some(Shape::Spatial([c, ..])) => {
                format!("{{ conv: conv2d({c}, kernel = 3, pad = 1), relu }}")
            }
            None => "{ conv: conv2d(16, kernel = 3, pad = 1), relu }".to_string(),
        }
    }

    /// The scope of a block's items: under its name, or its parent's names when unnamed.
    fn block_scope(&self, item: &LayerItem, scope: &Scope) -> Scope {
        match &item.name {
            Some(n) => scope.inner(&super::name_of(n), scope.depth + 1),
            None => Scope {
                prefix: scope.prefix.clone(),
                path: scope.path.clone(),
                depth: scope.depth + 1,
            },
        }
    }

    /// A block with parameters needs a name: its parameters are saved under it.
    fn require_name(&mut self, item: &LayerItem, who: &str, params_before: usize) {
        if item.name.is_none() && self.params.len() > params_before {
            self.errors.spanned(
                &item.call_tokens,
                format!("{who} holds layers with parameters, so it needs a name, which they are saved under, e.g. `block1: {} ..`", item.kind),
            );
        }
    }

    /// The node where a block's branches meet.
    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        item: &LayerItem,
        who: &str,
        scope: &Scope,
        op: Op,
        kind: &str,
        declaration: &str,
        inputs: Vec<usize>,
        out: Shape,
    ) -> Option<usize> {
        if let Some((dims, tokens)) = &item.expect {
            let want: Vec<usize> = dims.iter().map(|d| d.value).collect();
            if want != out.dims() {
                self.errors.spanned(
                    tokens,
                    format!(
                        "{who}: declared output shape {} but the block computes {}",
                        dims_text(&want),
                        out.text()
                    ),
                );
            }
        }
        let from: Vec<Value> = inputs.iter().map(|&v| self.values[v].clone()).collect();
        // The largest receptive field over all paths.
        let mut field = from[0].field.clone();
        for v in &from[1..] {
            field = field.widest(&v.field);
        }
        let flat = from.iter().any(|v| v.flat);
        let node = Node {
            path: item
                .name
                .as_ref()
                .map(|n| format!("{}{n}", scope.prefix))
                .unwrap_or_default(),
            kind_name: kind.to_string(),
            declaration: declaration.to_string(),
            op,
            input_shapes: from.iter().map(|v| v.shape).collect(),
            inputs,
            output: out,
            params: 0,
            receptive_field: [0; 2],
            receptive_expr: None,
            macs: 0,
            base: self.nested.len(),
            param_offset: self.params_len(),
            buffer_offset: self.buffers_len(),
            depth: scope.depth,
            note: String::new(),
            tokens: item.call_tokens.clone(),
        };
        Some(self.push_node(node, field, flat))
    }
}

/// The shortcut that turns `from` into `to`: a 1x1 convolution with the stride that gives the
/// body's height and width, or a linear layer for vectors.
fn suggest_shortcut(from: Shape, to: Shape) -> String {
    let fix = match (from, to) {
        (Shape::Spatial([_, h, w]), Shape::Spatial([c, oh, ow])) => (1..=h.max(w))
            .find(|&s| {
                output_size(h, 1, s, 0, Rounding::Exact) == Ok(oh)
                    && output_size(w, 1, s, 0, Rounding::Exact) == Ok(ow)
            })
            .map(|s| {
                if s == 1 {
                    format!("conv2d({c}, kernel = 1)")
                } else {
                    format!("conv2d({c}, kernel = 1, stride = {s})")
                }
            }),
        (Shape::Vector(_), Shape::Vector(f)) => Some(format!("linear({f})")),
        (
            Shape::Sequence { steps, .. },
            Shape::Sequence {
                steps: t, features, ..
            },
        ) if steps == t => Some(format!("linear({features})")),
        _ => None,
    };
    match (fix, to) {
        (Some(layer), Shape::Spatial(_)) => format!(
            "add a shortcut that gives {}: `residual(shortcut = {{ conv: {layer} }}) {{ .. }}`",
            to.text()
        ),
        (Some(layer), Shape::Vector(_) | Shape::Sequence { .. } | Shape::Tokens(_)) => format!(
            "add a shortcut that gives {}: `residual(shortcut = {{ fc: {layer} }}) {{ .. }}`",
            to.text()
        ),
        (None, _) => format!(
            "add a shortcut that gives {} (`residual(shortcut = {{ .. }}) {{ .. }}`), or keep the body's shape {}",
            to.text(),
            dims_text(&from.dims())
        ),
    }
}
