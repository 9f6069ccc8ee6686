//! Code generation: a checked [`Plan`] into the network's struct and its `Network`
//! implementation. This stage emits code only; every error was found in `check`.
//!
//! Each node becomes one call to a runtime kernel with a `const` geometry, so the kernels are
//! instantiated once for all networks (not once per shape) and a large network builds quickly.
//! The tape holds one activation per value of the graph; the backward pass walks the nodes in
//! reverse, each adding into the gradient of the values it read.

mod fallback;
mod tables;

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote};

pub use fallback::fallback;

use crate::ast::Network;
use crate::kinds::{rt, usize_lit, Emit, PassUse};
use crate::plan::{Node, Op, Plan, Shape};
use tables::Store;

fn first_span(tokens: &TokenStream) -> Span {
    tokens
        .clone()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}

pub fn dim_type(shape: Shape) -> TokenStream {
    let rt = rt();
    match shape {
        Shape::Spatial(_) => quote!(#rt::ndarray::Ix4),
        Shape::Vector(_) | Shape::Tokens(_) => quote!(#rt::ndarray::Ix2),
        Shape::Sequence { .. } => quote!(#rt::ndarray::Ix3),
    }
}

/// `+ <A as Network>::NUM_PARAMS + ..` over the first `base` nested networks.
pub fn param_base(plan: &Plan, base: usize) -> TokenStream {
    let rt = rt();
    let tys = &plan.nested[..base];
    quote!(#(+ <#tys as #rt::Network>::NUM_PARAMS)*)
}

/// The same for their buffers.
pub fn buffer_base(plan: &Plan, base: usize) -> TokenStream {
    let rt = rt();
    let tys = &plan.nested[..base];
    quote!(#(+ #rt::table_len(<#tys as #rt::Network>::BUFFERS))*)
}

/// What one node's code is generated from.
fn emit<'a>(
    plan: &Plan,
    net: &'a syn::Ident,
    node: &'a Node,
    i: usize,
    d_x: TokenStream,
) -> Emit<'a> {
    Emit {
        net,
        g: format_ident!("__GEOMETRY_{}", i + 1),
        output: node.output,
        param_offset: node.param_offset,
        buffer_offset: node.buffer_offset,
        param_base: param_base(plan, node.base),
        buffer_base: buffer_base(plan, node.base),
        declaration: &node.declaration,
        span: first_span(&node.tokens),
        d_x,
    }
}

/// The forward code of node `i`, which computes value `i + 1`.
fn forward_node(plan: &Plan, net: &syn::Ident, i: usize) -> TokenStream {
    let node = &plan.nodes[i];
    let rt = rt();
    let y = usize_lit(i + 1);
    match &node.op {
        Op::Layer(layer) => {
            let x = usize_lit(node.inputs[0]);
            let call = layer.forward(&emit(plan, net, node, i, TokenStream::new()));
            quote! {
                {
                    let s = tape.forward_slots(#x, #y);
                    #call
                }
            }
        }
        Op::Add => {
            let parts = node.inputs.iter().enumerate().map(|(k, &x)| {
                let x = usize_lit(x);
                let first = k == 0;
                quote! {
                    {
                        let (x, y) = tape.join_forward(#x, #y);
                        #rt::ops::join::add_forward(y, x, #first);
                    }
                }
            });
            quote!(#(#parts)*)
        }
        Op::Nested { ty, ordinal } => {
            let (x, k) = (usize_lit(node.inputs[0]), usize_lit(*ordinal));
            let (p, base) = (usize_lit(node.param_offset), param_base(plan, node.base));
            let (b, bbase) = (usize_lit(node.buffer_offset), buffer_base(plan, node.base));
            quote! {
                {
                    const AT: usize = #p #base;
                    let p = &params[AT..AT + <#ty as #rt::Network>::NUM_PARAMS];
                    #rt::nested_forward::<#ty>(tape, #k, #x, #y, p, AT, &mut pass, #b #bbase);
                }
            }
        }
        Op::Concat => {
            let out_len = usize_lit(node.output.numel());
            let mut offset = 0;
            let parts: Vec<TokenStream> = node
                .inputs
                .iter()
                .zip(&node.input_shapes)
                .map(|(&x, shape)| {
                    let (x, at, len) = (usize_lit(x), usize_lit(offset), usize_lit(shape.numel()));
                    offset += shape.numel();
                    quote! {
                        {
                            let (x, y) = tape.join_forward(#x, #y);
                            #rt::ops::join::concat_forward(y, x, n, #len, #out_len, #at);
                        }
                    }
                })
                .collect();
            quote!(#(#parts)*)
        }
    }
}

/// For each value, the last node that reads it.
fn last_readers(plan: &Plan) -> Vec<usize> {
    let mut last = vec![usize::MAX; plan.nodes.len() + 1];
    for (i, node) in plan.nodes.iter().enumerate() {
        for &x in &node.inputs {
            last[x] = i;
        }
    }
    last
}

/// The global offset of node `i`'s first parameter (past the nested networks before it).
fn node_start(plan: &Plan, node: &Node) -> TokenStream {
    let (p, base) = (usize_lit(node.param_offset), param_base(plan, node.base));
    quote!(#p #base)
}

/// Whether anything below node `node`, which reads value `x`, needs a gradient: the input's,
/// when asked for, or a parameter before the node's that is not frozen.
fn below(plan: &Plan, node: &Node, x: usize) -> TokenStream {
    if x == 0 {
        return quote!(input_grad);
    }
    let start = node_start(plan, node);
    quote!((input_grad || !frozen.covers(0, #start)))
}

/// The backward code of node `i`: the gradient of value `i + 1` into those of its inputs.
///
/// After a node with parameters, the pass tells the tape that every parameter gradient from
/// the node's first on is final (`Tape::gradients_final` in the runtime): the nodes run in reverse order
/// and their parameters are laid out in order, so a data-parallel all-reduce can start on them
/// while the layers below still compute.
///
/// A node runs when something below it needs a gradient, or its own parameters learn; a layer
/// whose parameters are all frozen and that has nothing below to pass a gradient to is skipped,
/// so the pass stops at the lowest layer that learns.
fn backward_node(plan: &Plan, net: &syn::Ident, i: usize, last: &[usize]) -> TokenStream {
    let node = &plan.nodes[i];
    let rt = rt();
    let y = usize_lit(i + 1);
    match &node.op {
        Op::Layer(layer) => {
            let x = node.inputs[0];
            let fresh = last[x] == i;
            let optional = layer.input_grad_optional();
            let below = below(plan, node, x);
            // The input gradient is computed when needed below, or when the kernel cannot skip
            // it.
            let (want, d_x) = if optional {
                (
                    quote!(below),
                    quote!(if below { Some(s.d_x) } else { None }),
                )
            } else {
                (quote!(true), quote!(Some(s.d_x)))
            };
            let call = layer.backward(&emit(plan, net, node, i, d_x));
            let x = usize_lit(x);
            let body = quote! {
                let s = tape.backward_slots(#x, #y, #fresh, #want);
                #call
            };
            if node.params > 0 {
                let start = node_start(plan, node);
                let len = usize_lit(node.params);
                // Frozen, with something below: the input gradient alone where the kind has
                // that half, or else the whole backward (its frozen gradients cleared later).
                let input_only = layer.backward_input(&emit(plan, net, node, i, quote!(s.d_x)));
                let (counted, frozen_body) = match input_only {
                    Some(call) => (
                        quote!(learns),
                        quote! {
                            let s = tape.backward_slots(#x, #y, #fresh, true);
                            #call
                        },
                    ),
                    None => (quote!(learns || below), body.clone()),
                };
                quote! {
                    {
                        let below = #below;
                        const START: usize = #start;
                        let learns = !frozen.covers(START, START + #len);
                        tape.count_weight_gradient(#counted);
                        if learns { #body } else if below { #frozen_body }
                        // Every gradient from START on is now final.
                        tape.gradients_final(START, d_params);
                    }
                }
            } else {
                quote! {
                    {
                        let below = #below;
                        if below { #body }
                    }
                }
            }
        }
        Op::Nested { ty, ordinal } => {
            let x = node.inputs[0];
            let fresh = last[x] == i;
            let want = below(plan, node, x);
            let (xl, k) = (usize_lit(x), usize_lit(*ordinal));
            let (p, base) = (usize_lit(node.param_offset), param_base(plan, node.base));
            quote! {
                {
                    const AT: usize = #p #base;
                    const END: usize = AT + <#ty as #rt::Network>::NUM_PARAMS;
                    #rt::nested_backward::<#ty>(
                        tape, #k, #xl, #y, #fresh, #want, &params[AT..END], &mut d_params[AT..END],
                        frozen.shifted(AT),
                    );
                    tape.gradients_final(AT, d_params);
                }
            }
        }
        Op::Add | Op::Concat => {
            let out_len = usize_lit(node.output.numel());
            let mut offset = 0;
            let parts = node
                .inputs
                .iter()
                .zip(&node.input_shapes)
                .enumerate()
                .map(|(k, (&x, shape))| {
                    let fresh = last[x] == i && !node.inputs[..k].contains(&x);
                    let call = match node.op {
                        Op::Add => quote!(#rt::ops::join::add_backward(d_x, d_y);),
                        _ => {
                            let (at, len) = (usize_lit(offset), usize_lit(shape.numel()));
                            quote!(#rt::ops::join::concat_backward(d_x, d_y, n, #len, #out_len, #at);)
                        }
                    };
                    offset += shape.numel();
                    let xl = usize_lit(x);
                    let below = below(plan, node, x);
                    quote! {
                        if #below {
                            let (d_y, d_x) = tape.join_backward(#xl, #y, #fresh);
                            #call
                        }
                    }
                })
                .collect::<Vec<_>>();
            quote!(#(#parts)*)
        }
    }
}

/// The ONNX exporter of node `i`: a `const` expression of a type that implements the runtime's
/// `onnx::Export`.
fn onnx_node(plan: &Plan, net: &syn::Ident, i: usize) -> TokenStream {
    let node = &plan.nodes[i];
    let kinds = {
        let rt = rt();
        quote!(#rt::onnx::kinds)
    };
    match &node.op {
        Op::Layer(layer) => layer
            .onnx(&emit(plan, net, node, i, TokenStream::new()))
            .unwrap_or_else(|| quote!(#kinds::Unsupported)),
        Op::Add => quote!(#kinds::Add),
        Op::Concat => quote!(#kinds::Concat),
        Op::Nested { ty, .. } => {
            let (p, base) = (usize_lit(node.param_offset), param_base(plan, node.base));
            let (b, bbase) = (usize_lit(node.buffer_offset), buffer_base(plan, node.base));
            quote!(#kinds::Nested::<#ty>::at(#p #base, #b #bbase))
        }
    }
}

/// `Shape3<C, H, W>` or `Shape1<F>`.
pub fn shape_type(shape: Shape) -> TokenStream {
    let rt = rt();
    match shape {
        Shape::Spatial([c, h, w]) => {
            let (c, h, w) = (usize_lit(c), usize_lit(h), usize_lit(w));
            quote!(#rt::Shape3<#c, #h, #w>)
        }
        Shape::Vector(f) | Shape::Tokens(f) => {
            let f = usize_lit(f);
            quote!(#rt::Shape1<#f>)
        }
        Shape::Sequence {
            steps, features, ..
        } => {
            let (t, f) = (usize_lit(steps), usize_lit(features));
            quote!(#rt::Shape2<#t, #f>)
        }
    }
}

/// The compiler's check that a nested network gets its input shape and gives the declared
/// output shape: a mismatch is "expected `Shape3<..>`, found `Shape3<..>`" at the item.
fn nested_assertion(node: &Node, ty: &syn::Path) -> TokenStream {
    let rt = rt();
    let span = first_span(&node.tokens);
    let (arriving, declared) = (
        respan(shape_type(node.input_shapes[0]), span),
        respan(shape_type(node.output), span),
    );
    quote::quote_spanned! {span=>
        const _: fn() = || {
            let _input: <#ty as #rt::Network>::InputShape = <#arriving as ::core::default::Default>::default();
            let _output: #declared = <<#ty as #rt::Network>::OutputShape as ::core::default::Default>::default();
        };
    }
}

/// The compiler's check that the parameters of a network with nested networks, which the
/// macro cannot count (each nested network's are a constant of its type), can be addressed:
/// more than 2^36 in all is an error at the network's name.
fn nested_params_assertion(name: &syn::Ident) -> TokenStream {
    let message = format!(
        "{name} with the networks nested in it has more than the 2^36 parameters (256 GiB of \
         f32) striate supports"
    );
    let limit = Literal::u128_unsuffixed(crate::check::messages::MAX_TENSOR);
    quote::quote_spanned! {name.span()=>
        const _: () = ::core::assert!(#name::NUM_PARAMS as u128 <= #limit, #message);
    }
}

/// `tokens` with every span set to `span`, so that the compiler's notes point at the item.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut t| {
            if let proc_macro2::TokenTree::Group(g) = &t {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                t = proc_macro2::TokenTree::Group(group);
            } else {
                t.set_span(span);
            }
            t
        })
        .collect()
}

/// What every network's struct has besides its `Network` impl, compiled or not: `{:?}` and
/// `Net::summary()`.
pub fn struct_items(name: &syn::Ident) -> TokenStream {
    let rt = rt();
    quote! {
        /// Its name, the sizes of its parameters and buffers, and its count of training
        /// batches; `params()` shows the values.
        impl ::core::fmt::Debug for #name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #rt::debug_network(self, f)
            }
        }

        impl #name {
            /// The per-layer table (Keras-style) with totals; print it with `{}`. Also
            /// `net.summary()`.
            pub fn summary() -> #rt::Summary {
                <Self as #rt::Network>::summary()
            }
        }
    }
}

/// The `Network` methods that reach the struct's one field.
pub fn state_methods(name: &syn::Ident) -> TokenStream {
    let rt = rt();
    quote! {
        fn state(&self) -> &#rt::State {
            &self.state
        }
        fn state_mut(&mut self) -> &mut #rt::State {
            &mut self.state
        }
        fn from_state(state: #rt::State) -> Self {
            #name { state }
        }
    }
}

/// The struct, its constants and its `Network` implementation.
pub fn expand(net: &Network, plan: &Plan) -> TokenStream {
    let rt = rt();
    let name = &net.name;
    let name_str = name.to_string();
    let attrs = &net.attrs;
    let vis = &net.vis;
    let input_dims = plan.input.dims();
    let output_dims = plan.output().dims();
    let (in_rank, out_rank) = (usize_lit(input_dims.len()), usize_lit(output_dims.len()));
    let (in_shape, out_shape) = (
        crate::kinds::dims_tokens(&input_dims),
        crate::kinds::dims_tokens(&output_dims),
    );
    let (in_dim, out_dim) = (dim_type(plan.input), dim_type(plan.output()));
    let num_params = {
        let own = usize_lit(plan.num_params());
        let all = param_base(plan, plan.nested.len());
        quote!(#own #all)
    };
    let (in_type, out_type) = (shape_type(plan.input), shape_type(plan.output()));
    let receptive = plan.receptive.tokens();
    let n_layers = usize_lit(plan.nodes.len());
    let (params_len, params_table) = tables::tensors(plan, &plan.params, Store::Params);
    let (buffers_len, buffers_table) = tables::tensors(plan, &plan.buffers, Store::Buffers);
    let layer_infos = tables::layers(plan);
    let slots = tables::slots(plan);
    let n_slots = usize_lit(slots.len());
    let grads = plan.grad_slots().into_iter().map(usize_lit);

    let mut geoms = Vec::new();
    let mut asserts = Vec::new();
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    let mut scratch = Vec::new();
    let mut reserve_nested = Vec::new();
    let mut onnx = Vec::new();
    let last = last_readers(plan);
    for (i, node) in plan.nodes.iter().enumerate() {
        if let Some(layer) = node.layer() {
            let e = emit(plan, name, node, i, TokenStream::new());
            geoms.push(layer.geometry(&e));
            asserts.push(layer.assertion(&e));
            scratch.extend(layer.scratch(&e));
        }
        if let Op::Nested { ty, ordinal } = &node.op {
            asserts.push(nested_assertion(node, ty));
            let k = usize_lit(*ordinal);
            reserve_nested.push(quote!(tape.reserve_nested::<#ty>(#k, n, train)?;));
        }
        forward.push(forward_node(plan, name, i));
        onnx.push(onnx_node(plan, name, i));
        backward.push(backward_node(plan, name, i, &last));
    }
    backward.reverse();
    if !plan.nested.is_empty() {
        asserts.push(nested_params_assertion(name));
    }
    let pass_use = plan
        .nodes
        .iter()
        .map(|n| match &n.op {
            Op::Layer(l) => l.pass_use(),
            Op::Nested { .. } => PassUse::Pass,
            _ => PassUse::None,
        })
        .max()
        .unwrap_or(PassUse::None);
    let pass_binding = if pass_use >= PassUse::Pass {
        quote!(mut pass)
    } else {
        quote!(_pass)
    };
    let train_binding = if pass_use == PassUse::Train {
        quote!(let train = tape.is_train();)
    } else {
        TokenStream::new()
    };
    // Token ids are checked against the smallest vocabulary of the layers that read them.
    let tokens = plan
        .nodes
        .iter()
        .filter(|n| n.inputs.contains(&0))
        .filter_map(|n| n.layer().and_then(|l| l.vocab()))
        .min()
        .filter(|_| matches!(plan.input, Shape::Tokens(_)))
        .unwrap_or(0);
    let tokens = usize_lit(tokens);
    let state_methods = state_methods(name);
    let struct_items = struct_items(name);
    let doc_table = tables::doc_table(plan);

    quote! {
        #(#attrs)*
        #(#[doc = #doc_table])*
        #[derive(Clone)]
        #vis struct #name {
            state: #rt::State,
        }

        #struct_items

        impl #name {
            /// Input shape per sample (channels first).
            pub const INPUT_SHAPE: [usize; #in_rank] = #in_shape;
            /// Output shape per sample.
            pub const OUTPUT_SHAPE: [usize; #out_rank] = #out_shape;
            /// Learnable parameters in all layers.
            pub const NUM_PARAMS: usize = #num_params;
            /// One entry per layer and per join of a block, in the order they run: name, kind,
            /// inputs, output shape, parameters, receptive field, multiply-adds.
            pub const LAYERS: [#rt::LayerInfo; #n_layers] = [#(#layer_infos),*];
            /// Learnable parameters: PyTorch names and shapes, offsets in the flat store.
            pub const PARAMS: [#rt::ParamInfo; #params_len] = #params_table;
            /// Running statistics: PyTorch names and shapes, offsets in the flat store.
            pub const BUFFERS: [#rt::ParamInfo; #buffers_len] = #buffers_table;
            const __TAPE: [#rt::Slot; #n_slots] = [#(#slots),*];
            const __GRADS: [usize; #n_slots] = [#(#grads),*];
            const __ONNX: [&'static dyn #rt::onnx::Export; #n_layers] = [#(&#onnx),*];
            #(#geoms)*
        }

        #(#asserts)*

        impl #rt::Network for #name {
            type InputDim = #in_dim;
            type OutputDim = #out_dim;
            type InputShape = #in_type;
            type OutputShape = #out_type;
            const NAME: &'static str = #name_str;
            const INPUT_SHAPE: &'static [usize] = &#name::INPUT_SHAPE;
            const OUTPUT_SHAPE: &'static [usize] = &#name::OUTPUT_SHAPE;
            const NUM_PARAMS: usize = #name::NUM_PARAMS;
            const LAYERS: &'static [#rt::LayerInfo] = &#name::LAYERS;
            const PARAMS: &'static [#rt::ParamInfo] = &#name::PARAMS;
            const BUFFERS: &'static [#rt::ParamInfo] = &#name::BUFFERS;
            const TAPE: &'static [#rt::Slot] = &#name::__TAPE;
            const GRADS: &'static [usize] = &#name::__GRADS;
            const ONNX: &'static [&'static dyn #rt::onnx::Export] = &#name::__ONNX;
            const RECEPTIVE: [#rt::geometry::Receptive; 2] = #receptive;
            const TOKENS: usize = #tokens;

            #state_methods

            #[allow(unused_variables, clippy::let_unit_value)]
            fn raw_forward(
                params: &[f32],
                #pass_binding: #rt::Pass<'_>,
                tape: &mut #rt::Tape,
            ) {
                let n = tape.batch();
                #(#forward)*
            }

            #[allow(unused_variables)]
            fn reserve(
                tape: &mut #rt::Tape,
                n: usize,
                train: bool,
            ) -> ::core::result::Result<(), #rt::Error> {
                let scratch = 0usize #(.max(#scratch))*;
                tape.reserve_scratch::<Self>(scratch)?;
                #(#reserve_nested)*
                ::core::result::Result::Ok(())
            }

            #[allow(unused_variables)]
            fn raw_backward(
                params: &[f32],
                d_params: &mut [f32],
                tape: &mut #rt::Tape,
                input_grad: bool,
                frozen: #rt::FrozenView<'_>,
            ) {
                let n = tape.batch();
                #train_binding
                #(#backward)*
            }
        }
    }
}
