//! The checked network: a graph of values that `check` builds and `expand` turns into code.
//!
//! Value 0 is the network's input; node `i` computes value `i + 1` from the values it reads
//! (`inputs`, always earlier ones), so the nodes are in an order in which they can run. A plain
//! chain is the case where node `i` reads value `i`; a block is no special case anywhere.

use proc_macro2::TokenStream;
use quote::quote;
use striate_geometry::Receptive;

use crate::kinds::Layer;

/// A tensor's shape per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `[C, H, W]`.
    Spatial([usize; 3]),
    /// `[F]`.
    Vector(usize),
    /// `[T, F]`: `T` steps of `F` features each, stored step after step. `directions` is 2
    /// after a bidirectional recurrent layer, whose second half of each step's features ran
    /// backward in time, and 1 otherwise; it is no part of the shape's dimensions.
    Sequence {
        steps: usize,
        features: usize,
        directions: usize,
    },
    /// `tokens[T]`: `T` integer token ids (the network's input only), which `embedding`
    /// alone reads.
    Tokens(usize),
}

impl Shape {
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Spatial(d) => d.to_vec(),
            Shape::Vector(f) | Shape::Tokens(f) => vec![f],
            Shape::Sequence {
                steps, features, ..
            } => vec![steps, features],
        }
    }

    /// A sequence of `steps` steps of `features`, in one direction.
    pub fn sequence(steps: usize, features: usize) -> Shape {
        Shape::Sequence {
            steps,
            features,
            directions: 1,
        }
    }

    /// What the shape is, for messages: `the feature map [1, 28, 28]`, `the vector [10]`, `the
    /// sequence [28, 128]`.
    pub fn described(&self) -> String {
        let what = match self {
            Shape::Spatial(_) => "feature map",
            Shape::Vector(_) => "vector",
            Shape::Sequence { .. } => "sequence",
            Shape::Tokens(_) => "token ids",
        };
        format!("the {what} {}", self.text())
    }

    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    pub fn text(&self) -> String {
        match self {
            Shape::Tokens(_) => format!("tokens{}", dims_text(&self.dims())),
            _ => dims_text(&self.dims()),
        }
    }

    /// Channels of a feature map, features of a vector.
    pub fn channels(&self) -> usize {
        match *self {
            Shape::Spatial([c, ..]) => c,
            Shape::Vector(f) | Shape::Tokens(f) => f,
            Shape::Sequence { features, .. } => features,
        }
    }
}

/// `[6, 28, 28]`.
pub fn dims_text(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// How a parameter is initialised (mirrors the runtime's `Init`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitPlan {
    Zeros,
    Ones,
    He { fan_in: usize },
    Glorot { fan_in: usize, fan_out: usize },
    Recurrent { hidden: usize },
    StandardNormal,
}

/// One entry of the parameter or buffer table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorPlan {
    pub name: String,
    /// Nested networks whose tensors come before this one (its offset is past theirs).
    pub base: usize,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
    pub init: InitPlan,
}

/// The receptive field of a value (field and jump along each axis): a number, or after a
/// nested network (whose own field the macro cannot see) a `const` expression of type
/// `[Receptive; 2]`.
#[derive(Clone)]
pub enum Field {
    Known([Receptive; 2]),
    Expr(TokenStream),
}

impl Field {
    /// After a window of `(kernel, stride)` along each axis.
    pub fn window(&self, steps: [(usize, usize); 2]) -> Field {
        match self {
            Field::Known(r) => {
                let mut r = *r;
                for (a, (k, s)) in r.iter_mut().zip(steps) {
                    *a = a.window(k, s);
                }
                Field::Known(r)
            }
            Field::Expr(e) => {
                let [(k0, s0), (k1, s1)] = steps;
                Field::Expr(quote!(::striate::__private::windowed(#e, [[#k0, #s0], [#k1, #s1]])))
            }
        }
    }

    /// The larger of two fields, axis by axis.
    pub fn widest(&self, other: &Field) -> Field {
        match (self, other) {
            (Field::Known(a), Field::Known(b)) => {
                let mut r = *a;
                for (x, y) in r.iter_mut().zip(b) {
                    x.field = x.field.max(y.field);
                    x.jump = x.jump.max(y.jump);
                }
                Field::Known(r)
            }
            _ => {
                let (a, b) = (self.tokens(), other.tokens());
                Field::Expr(quote!(::striate::__private::widest(#a, #b)))
            }
        }
    }

    /// As a `const` expression of type `[Receptive; 2]`.
    pub fn tokens(&self) -> TokenStream {
        match self {
            Field::Known(r) => {
                let [(f0, j0), (f1, j1)] = r.map(|a| (a.field, a.jump));
                let rc = quote!(::striate::__private::geometry::Receptive);
                quote!([#rc { field: #f0, jump: #j0 }, #rc { field: #f1, jump: #j1 }])
            }
            Field::Expr(e) => e.clone(),
        }
    }
}

/// What a node computes.
pub enum Op {
    /// A layer of one of the registered kinds.
    Layer(Box<dyn Layer>),
    /// The sum of its inputs: where a residual block's branch and shortcut meet.
    Add,
    /// Its inputs joined along channels (feature maps) or features (vectors).
    Concat,
    /// A network declared elsewhere with `network!`, the `ordinal`-th nested in this one.
    Nested { ty: syn::Path, ordinal: usize },
}

/// One node of the graph, fully resolved.
pub struct Node {
    /// The dotted name (`block1.conv1`), or `""` for an unnamed layer.
    pub path: String,
    /// `conv2d`, `relu`, ..., or `add` and `concat` for the join points of blocks.
    pub kind_name: String,
    /// As declared, e.g. `conv2d(6, kernel = 5)`; for a join, what it joins.
    pub declaration: String,
    pub op: Op,
    /// The values read, in order (value 0 is the network's input).
    pub inputs: Vec<usize>,
    pub input_shapes: Vec<Shape>,
    pub output: Shape,
    pub params: usize,
    pub receptive_field: [usize; 2],
    /// When the field is only known to the compiler: its expression (see [`Field`]).
    pub receptive_expr: Option<TokenStream>,
    pub macs: u64,
    /// Nested networks before this node, whose parameters and buffers come first in the
    /// stores: the offsets below are past theirs.
    pub base: usize,
    /// Offset of the node's first parameter in the parameter store.
    pub param_offset: usize,
    /// Offset of the node's first buffer.
    pub buffer_offset: usize,
    /// Blocks around the node (0 at the top level).
    pub depth: usize,
    /// Why an output size was rounded down, or `""`.
    pub note: String,
    /// The node's tokens, for spans of generated assertions.
    pub tokens: TokenStream,
}

impl Node {
    /// The layer behind a node that is one.
    pub fn layer(&self) -> Option<&dyn Layer> {
        match &self.op {
            Op::Layer(l) => Some(l.as_ref()),
            _ => None,
        }
    }
}

/// A network that passed every check.
pub struct Plan {
    pub input: Shape,
    pub nodes: Vec<Node>,
    pub params: Vec<TensorPlan>,
    pub buffers: Vec<TensorPlan>,
    /// The nested networks' types, in order.
    pub nested: Vec<syn::Path>,
    /// The receptive field of the output.
    pub receptive: Field,
}

impl Plan {
    /// The network's output: the last node's value.
    pub fn output(&self) -> Shape {
        self.nodes.last().map_or(self.input, |l| l.output)
    }

    pub fn num_params(&self) -> usize {
        self.params.iter().map(|p| p.len).sum()
    }

    /// Which gradient buffer holds the gradient of each value during the backward pass.
    ///
    /// A value's gradient is live from the backward step of its last reader (the first to run
    /// backward) to that of the node that computed it (the input's: to the end). Values whose
    /// lives do not overlap share a buffer, so a chain needs two buffers, as a pair of swapped
    /// buffers would, and a block one more for each value held across it.
    pub fn grad_slots(&self) -> Vec<usize> {
        let values = self.nodes.len() + 1;
        // Step s runs node `nodes.len() - 1 - s`; the output's gradient arrives before step 0.
        let step = |node: usize| self.nodes.len() - 1 - node;
        let mut start = vec![usize::MAX; values];
        start[values - 1] = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            for &u in &node.inputs {
                start[u] = start[u].min(step(i));
            }
        }
        // A value nobody reads (impossible in a checked plan) gets its producer's step.
        let end = |v: usize| {
            if v == 0 {
                usize::MAX
            } else {
                step(v - 1)
            }
        };
        let mut slot = vec![0; values];
        let mut free: Vec<usize> = Vec::new();
        let mut busy: Vec<(usize, usize)> = Vec::new(); // (end step, slot)
        let mut next = 0;
        // In backward order: values are born at their start step, die after their end step.
        let mut order: Vec<usize> = (0..values).collect();
        order.sort_by_key(|&v| (start[v].min(end(v)), std::cmp::Reverse(v)));
        for v in order {
            let born = start[v].min(end(v));
            busy.retain(|&(e, s)| {
                if e < born {
                    free.push(s);
                    false
                } else {
                    true
                }
            });
            free.sort_unstable_by(|a, b| b.cmp(a));
            slot[v] = free.pop().unwrap_or_else(|| {
                next += 1;
                next - 1
            });
            busy.push((end(v), slot[v]));
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(inputs: Vec<usize>) -> Node {
        Node {
            path: String::new(),
            kind_name: "add".into(),
            declaration: String::new(),
            op: Op::Add,
            inputs,
            input_shapes: vec![Shape::Vector(1)],
            output: Shape::Vector(1),
            params: 0,
            receptive_field: [1, 1],
            receptive_expr: None,
            macs: 0,
            base: 0,
            param_offset: 0,
            buffer_offset: 0,
            depth: 0,
            note: String::new(),
            tokens: TokenStream::new(),
        }
    }

    fn plan(nodes: Vec<Node>) -> Plan {
        Plan {
            input: Shape::Vector(1),
            nodes,
            params: Vec::new(),
            buffers: Vec::new(),
            nested: Vec::new(),
            receptive: Field::Known([Receptive::INPUT; 2]),
        }
    }

    /// No two values whose gradients are live at the same backward step share a buffer.
    fn check_disjoint(p: &Plan) {
        let slots = p.grad_slots();
        let n = p.nodes.len();
        for s in 0..n {
            let i = n - 1 - s;
            // Live at step s: the node's output and every value read at or after node i whose
            // producer is before i, or that node i reads.
            let mut live = vec![i + 1];
            for v in 0..=n {
                let produced_before = v == 0 || v - 1 < i;
                let read_later = p.nodes[i..].iter().any(|nd| nd.inputs.contains(&v));
                if produced_before && read_later {
                    live.push(v);
                }
            }
            for a in &live {
                for b in &live {
                    assert!(
                        a == b || slots[*a] != slots[*b],
                        "step {s}: {live:?} {slots:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_chain_needs_two_buffers() {
        let p = plan((0..6).map(|i| node(vec![i])).collect());
        let slots = p.grad_slots();
        assert_eq!(slots.iter().max(), Some(&1), "{slots:?}");
        check_disjoint(&p);
    }

    #[test]
    fn a_residual_block_holds_its_input() {
        // v1 = f(v0); v2 = g(v1); v3 = h(v2); v4 = v3 + v1; v5 = k(v4).
        let p = plan(vec![
            node(vec![0]),
            node(vec![1]),
            node(vec![2]),
            node(vec![3, 1]),
            node(vec![4]),
        ]);
        let slots = p.grad_slots();
        assert_eq!(slots.iter().max(), Some(&2), "{slots:?}");
        check_disjoint(&p);
        // Concat of two empty branches reads one value twice.
        let p = plan(vec![node(vec![0]), node(vec![1, 1]), node(vec![2])]);
        check_disjoint(&p);
    }
}
