//! Code generation: a checked [`Plan`] into the network's struct and its `Network`
//! implementation. This stage emits code only; every error was found in `shape.rs`.
//!
//! Each layer becomes one call to a runtime kernel with a `const` geometry, so the kernels are
//! instantiated once for all networks (not once per shape) and a large network builds quickly.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use crate::ast::{Item, Network};
use crate::shape::{InitPlan, Kind, LayerPlan, Plan, Shape, TensorPlan};

fn usize_lit(v: usize) -> Literal {
    Literal::usize_unsuffixed(v)
}

fn f32_tokens(v: f64) -> TokenStream {
    let lit = Literal::f32_suffixed(v.abs() as f32);
    if v < 0.0 {
        quote!(-#lit)
    } else {
        quote!(#lit)
    }
}

fn dims_tokens(dims: &[usize]) -> TokenStream {
    let d = dims.iter().map(|v| usize_lit(*v));
    quote!([#(#d),*])
}

fn first_span(tokens: &TokenStream) -> Span {
    tokens
        .clone()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}

fn init_tokens(init: InitPlan) -> TokenStream {
    match init {
        InitPlan::Zeros => quote!(::striate::runtime::Init::Zeros),
        InitPlan::Ones => quote!(::striate::runtime::Init::Ones),
        InitPlan::He { fan_in } => {
            let f = usize_lit(fan_in);
            quote!(::striate::runtime::Init::HeUniform { fan_in: #f })
        }
        InitPlan::Glorot { fan_in, fan_out } => {
            let (a, b) = (usize_lit(fan_in), usize_lit(fan_out));
            quote!(::striate::runtime::Init::GlorotUniform { fan_in: #a, fan_out: #b })
        }
    }
}

fn table_tokens(list: &[TensorPlan]) -> TokenStream {
    let entries = list.iter().map(|p| {
        let name = &p.name;
        let shape = p.shape.iter().map(|v| usize_lit(*v));
        let offset = usize_lit(p.offset);
        let len = usize_lit(p.len);
        let init = init_tokens(p.init);
        quote! {
            ::striate::runtime::ParamInfo {
                name: #name,
                shape: &[#(#shape),*],
                offset: #offset,
                len: #len,
                init: #init,
            }
        }
    });
    quote!([#(#entries),*])
}

fn dim_type(shape: Shape) -> TokenStream {
    match shape {
        Shape::Spatial(_) => quote!(::striate::ndarray::Ix4),
        Shape::Vector(_) => quote!(::striate::ndarray::Ix2),
    }
}

fn rounding(floor: bool) -> TokenStream {
    if floor {
        quote!(::striate::runtime::geometry::Rounding::Floor)
    } else {
        quote!(::striate::runtime::geometry::Rounding::Exact)
    }
}

/// The geometry constant of a layer, if it has one, and the assertion that the runtime's
/// geometry agrees with the shape the macro proved.
fn geometry(name: &syn::Ident, layer: &LayerPlan, g: &syn::Ident) -> (TokenStream, TokenStream) {
    let span = first_span(&layer.tokens);
    let in_dims = dims_tokens(&layer.input.dims());
    let out = layer.output.dims();
    let msg = format!(
        "striate: the runtime's geometry disagrees with the macro for `{}`",
        layer.declaration
    );
    match &layer.kind {
        Kind::Conv2d {
            out_c,
            kernel,
            stride,
            pad,
            floor,
            ..
        } => {
            let (oc, k, s, p, r) = (
                usize_lit(*out_c),
                dims_tokens(kernel),
                dims_tokens(stride),
                dims_tokens(pad),
                rounding(*floor),
            );
            let (oh, ow) = (usize_lit(out[1]), usize_lit(out[2]));
            (
                quote! {
                    const #g: ::striate::runtime::ops::conv2d::Conv2dGeom =
                        ::striate::runtime::ops::conv2d::Conv2dGeom::new(#in_dims, #oc, #k, #s, #p, #r);
                },
                quote_spanned! {span=>
                    const _: () = ::core::assert!(#name::#g.out_h == #oh && #name::#g.out_w == #ow, #msg);
                },
            )
        }
        Kind::Pool {
            kernel,
            stride,
            pad,
            floor,
            ..
        } => {
            let (k, s, p, r) = (
                dims_tokens(kernel),
                dims_tokens(stride),
                dims_tokens(pad),
                rounding(*floor),
            );
            let (oh, ow) = (usize_lit(out[1]), usize_lit(out[2]));
            (
                quote! {
                    const #g: ::striate::runtime::ops::pool::Pool2dGeom =
                        ::striate::runtime::ops::pool::Pool2dGeom::new(#in_dims, #k, #s, #p, #r);
                },
                quote_spanned! {span=>
                    const _: () = ::core::assert!(#name::#g.out_h == #oh && #name::#g.out_w == #ow, #msg);
                },
            )
        }
        Kind::Linear { out_f, .. } => {
            let (i, o) = (usize_lit(layer.input.numel()), usize_lit(*out_f));
            (
                quote! {
                    const #g: ::striate::runtime::ops::linear::LinearGeom =
                        ::striate::runtime::ops::linear::LinearGeom { in_f: #i, out_f: #o };
                },
                TokenStream::new(),
            )
        }
        Kind::BatchNorm { momentum, eps } => {
            let (c, spatial) = match layer.input {
                Shape::Spatial([c, h, w]) => (c, h * w),
                Shape::Vector(f) => (f, 1),
            };
            let (c, spatial) = (usize_lit(c), usize_lit(spatial));
            let (m, e) = (f32_tokens(*momentum), f32_tokens(*eps));
            (
                quote! {
                    const #g: ::striate::runtime::ops::batch_norm::BatchNormGeom =
                        ::striate::runtime::ops::batch_norm::BatchNormGeom { c: #c, spatial: #spatial, momentum: #m, eps: #e };
                },
                TokenStream::new(),
            )
        }
        _ => (TokenStream::new(), TokenStream::new()),
    }
}

fn activation(kind: &Kind) -> Option<TokenStream> {
    let a = quote!(::striate::runtime::ops::activation::Activation);
    Some(match kind {
        Kind::Relu => quote!(#a::Relu),
        Kind::LeakyRelu(s) => {
            let s = f32_tokens(*s);
            quote!(#a::LeakyRelu(#s))
        }
        Kind::Tanh => quote!(#a::Tanh),
        Kind::Sigmoid => quote!(#a::Sigmoid),
        _ => return None,
    })
}

/// Weight and bias slices of a parameter layer: `(let-bindings, bias expression)`.
fn weight_and_bias(
    store: &syn::Ident,
    layer: &LayerPlan,
    weight_len: usize,
    bias_len: usize,
    mutable: bool,
    w: &syn::Ident,
    b: &syn::Ident,
) -> (TokenStream, TokenStream) {
    let start = usize_lit(layer.param_offset);
    let mid = usize_lit(layer.param_offset + weight_len);
    let end = usize_lit(layer.param_offset + weight_len + bias_len);
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

fn forward_call(layer: &LayerPlan, g: &syn::Ident) -> TokenStream {
    let rt = quote!(::striate::runtime);
    let params = format_ident!("params");
    let (w, b) = (format_ident!("w"), format_ident!("b"));
    match &layer.kind {
        Kind::Conv2d { out_c, bias, .. } => {
            let wl = out_c * layer_fan_in(layer);
            let (lets, bias) = weight_and_bias(
                &params,
                layer,
                wl,
                if *bias { *out_c } else { 0 },
                false,
                &w,
                &b,
            );
            quote! { #lets #rt::ops::conv2d::forward(s.y, s.x, w, #bias, &Self::#g, n, s.scratch); }
        }
        Kind::Linear { out_f, bias } => {
            let wl = out_f * layer.input.numel();
            let (lets, bias) = weight_and_bias(
                &params,
                layer,
                wl,
                if *bias { *out_f } else { 0 },
                false,
                &w,
                &b,
            );
            quote! { #lets #rt::ops::linear::forward(s.y, s.x, w, #bias, &Self::#g, n, s.scratch); }
        }
        Kind::Pool { max: true, .. } => {
            quote! { #rt::ops::pool::max_forward(s.y, s.idx, s.x, &Self::#g, n); }
        }
        Kind::Pool { max: false, .. } => {
            quote! { #rt::ops::pool::avg_forward(s.y, s.x, &Self::#g, n); }
        }
        Kind::BatchNorm { .. } => {
            let c = layer.output.dims()[0];
            let (lets, _) = weight_and_bias(&params, layer, c, c, false, &w, &b);
            let stats = usize_lit(layer.buffer_offset);
            quote! { #lets #rt::layers::batch_norm_forward(&mut pass, s, w, b, #stats, &Self::#g, n); }
        }
        Kind::Dropout(p) => {
            let p = f32_tokens(*p);
            quote! { #rt::layers::dropout_forward(&mut pass, s, #p); }
        }
        Kind::Flatten => quote! { #rt::layers::copy_forward(s); },
        other => {
            let act = activation(other).unwrap_or_default();
            quote! { #rt::ops::activation::forward(s.y, s.x, #act); }
        }
    }
}

fn backward_call(layer: &LayerPlan, g: &syn::Ident, first: bool) -> TokenStream {
    let rt = quote!(::striate::runtime);
    let (params, d_params) = (format_ident!("params"), format_ident!("d_params"));
    let (w, b, dw, db) = (
        format_ident!("w"),
        format_ident!("b"),
        format_ident!("d_w"),
        format_ident!("d_b"),
    );
    let d_x = if first {
        quote!(if input_grad { Some(s.d_x) } else { None })
    } else {
        quote!(Some(s.d_x))
    };
    match &layer.kind {
        Kind::Conv2d { out_c, bias, .. } => {
            let wl = out_c * layer_fan_in(layer);
            let bl = if *bias { *out_c } else { 0 };
            let (lets, _) = weight_and_bias(&params, layer, wl, bl, false, &w, &b);
            let (dlets, dbias) = weight_and_bias(&d_params, layer, wl, bl, true, &dw, &db);
            quote! { #lets #dlets #rt::ops::conv2d::backward(#d_x, d_w, #dbias, s.d_y, s.x, w, &Self::#g, n, s.scratch); }
        }
        Kind::Linear { out_f, bias } => {
            let wl = out_f * layer.input.numel();
            let bl = if *bias { *out_f } else { 0 };
            let (lets, _) = weight_and_bias(&params, layer, wl, bl, false, &w, &b);
            let (dlets, dbias) = weight_and_bias(&d_params, layer, wl, bl, true, &dw, &db);
            quote! { #lets #dlets #rt::ops::linear::backward(#d_x, d_w, #dbias, s.d_y, s.x, w, &Self::#g, n, s.scratch); }
        }
        Kind::Pool { max: true, .. } => {
            quote! { #rt::ops::pool::max_backward(s.d_x, s.d_y, s.idx, &Self::#g, n); }
        }
        Kind::Pool { max: false, .. } => {
            quote! { #rt::ops::pool::avg_backward(s.d_x, s.d_y, &Self::#g, n); }
        }
        Kind::BatchNorm { .. } => {
            let c = layer.output.dims()[0];
            let (lets, _) = weight_and_bias(&params, layer, c, c, false, &w, &b);
            let (dlets, _) = weight_and_bias(&d_params, layer, c, c, true, &dw, &db);
            quote! { #lets #dlets #rt::ops::batch_norm::backward(s.d_x, d_w, d_b, s.d_y, s.x, w, s.aux, &Self::#g, n, train); }
        }
        Kind::Dropout(_) => quote! { #rt::ops::dropout::backward(s.d_x, s.d_y, s.aux); },
        Kind::Flatten => quote! { #rt::layers::copy_backward(s); },
        other => {
            let act = activation(other).unwrap_or_default();
            quote! { #rt::ops::activation::backward(s.d_x, s.d_y, s.x, s.y, #act); }
        }
    }
}

/// `C*KH*KW` of a convolution.
fn layer_fan_in(layer: &LayerPlan) -> usize {
    match (&layer.kind, layer.input) {
        (Kind::Conv2d { kernel, .. }, Shape::Spatial([c, ..])) => c * kernel[0] * kernel[1],
        _ => 0,
    }
}

fn slot_tokens(layer: &LayerPlan) -> TokenStream {
    let act = layer.output.numel();
    let (aux_per_sample, aux_fixed, idx_per_sample) = match &layer.kind {
        Kind::Dropout(_) => (act, 0, 0),
        Kind::BatchNorm { .. } => (0, 2 * layer.output.dims()[0], 0),
        Kind::Pool { max: true, .. } => (0, 0, act),
        _ => (0, 0, 0),
    };
    let (a, b, c, d) = (
        usize_lit(act),
        usize_lit(aux_per_sample),
        usize_lit(aux_fixed),
        usize_lit(idx_per_sample),
    );
    quote! {
        ::striate::runtime::Slot { act: #a, aux_per_sample: #b, aux_fixed: #c, idx_per_sample: #d }
    }
}

/// Lines of the struct's rustdoc: the layers as a table, as `summary()` prints them.
fn doc_table(plan: &Plan) -> Vec<String> {
    let mut lines = vec![
        String::new(),
        format!(
            "Declared with `striate::network!`: input {} per sample, output {}, {} parameters.",
            plan.input.text(),
            plan.output().text(),
            plan.num_params()
        ),
        String::new(),
        "| layer | output | parameters | receptive field |".to_string(),
        "| --- | --- | ---: | ---: |".to_string(),
    ];
    for l in &plan.layers {
        let label = match &l.name {
            Some(n) => format!("`{n}: {}`", l.declaration),
            None => format!("`{}`", l.declaration),
        };
        let [h, w] = l.receptive_field;
        let field = if h == w {
            h.to_string()
        } else {
            format!("{h}x{w}")
        };
        lines.push(format!(
            "| {label} | `{}` | {} | {field} |",
            l.output.text(),
            l.params
        ));
    }
    lines
}

/// The `Network` methods that reach the struct's one field.
fn state_methods(name: &syn::Ident) -> TokenStream {
    quote! {
        fn state(&self) -> &::striate::runtime::State {
            &self.state
        }
        fn state_mut(&mut self) -> &mut ::striate::runtime::State {
            &mut self.state
        }
        fn from_state(state: ::striate::runtime::State) -> Self {
            #name { state }
        }
    }
}

/// The struct, its constants and its `Network` implementation.
pub fn expand(net: &Network, plan: &Plan) -> TokenStream {
    let name = &net.name;
    let name_str = name.to_string();
    let attrs = &net.attrs;
    let vis = &net.vis;
    let input_dims = plan.input.dims();
    let output_dims = plan.output().dims();
    let (in_rank, out_rank) = (usize_lit(input_dims.len()), usize_lit(output_dims.len()));
    let (in_shape, out_shape) = (dims_tokens(&input_dims), dims_tokens(&output_dims));
    let (in_dim, out_dim) = (dim_type(plan.input), dim_type(plan.output()));
    let num_params = usize_lit(plan.num_params());
    let n_layers = usize_lit(plan.layers.len());
    let n_params = usize_lit(plan.params.len());
    let n_buffers = usize_lit(plan.buffers.len());
    let params_table = table_tokens(&plan.params);
    let buffers_table = table_tokens(&plan.buffers);

    let layer_infos = plan.layers.iter().map(|l| {
        let lname = l.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        let kind = &l.kind_name;
        let decl = &l.declaration;
        let out = l.output.dims().into_iter().map(usize_lit);
        let params = usize_lit(l.params);
        let [rh, rw] = l.receptive_field.map(usize_lit);
        let macs = Literal::u64_unsuffixed(l.macs);
        quote! {
            ::striate::runtime::LayerInfo {
                name: #lname,
                kind: #kind,
                declaration: #decl,
                output: &[#(#out),*],
                params: #params,
                receptive_field: [#rh, #rw],
                macs: #macs,
            }
        }
    });
    let input_len = usize_lit(plan.input.numel());
    let mut slots = vec![quote! { ::striate::runtime::Slot::act(#input_len) }];
    slots.extend(plan.layers.iter().map(slot_tokens));
    let n_slots = usize_lit(slots.len());

    let mut geoms = Vec::new();
    let mut asserts = Vec::new();
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    for (i, layer) in plan.layers.iter().enumerate() {
        let index = usize_lit(i + 1);
        let g = format_ident!("__GEOMETRY_{}", i + 1);
        let (geom, assert) = geometry(name, layer, &g);
        geoms.push(geom);
        asserts.push(assert);
        let call = forward_call(layer, &g);
        forward.push(quote! {
            {
                let s = tape.forward_slots(#index);
                #call
            }
        });
        let call = backward_call(layer, &g, i == 0);
        backward.push(quote! {
            {
                let s = tape.backward_slots(#index);
                #call
            }
            tape.swap_grads();
        });
    }
    backward.reverse();
    let uses_pass = plan
        .layers
        .iter()
        .any(|l| matches!(l.kind, Kind::Dropout(_) | Kind::BatchNorm { .. }));
    let pass_binding = if uses_pass {
        quote!(mut pass)
    } else {
        quote!(_pass)
    };
    let uses_train = plan
        .layers
        .iter()
        .any(|l| matches!(l.kind, Kind::BatchNorm { .. }));
    let train_binding = if uses_train {
        quote!(let train = tape.is_train();)
    } else {
        TokenStream::new()
    };
    let state_methods = state_methods(name);
    let doc_table = doc_table(plan);

    quote! {
        #(#attrs)*
        #(#[doc = #doc_table])*
        #[derive(Clone, Debug)]
        #vis struct #name {
            state: ::striate::runtime::State,
        }

        impl #name {
            /// Input shape per sample (channels first).
            pub const INPUT_SHAPE: [usize; #in_rank] = #in_shape;
            /// Output shape per sample.
            pub const OUTPUT_SHAPE: [usize; #out_rank] = #out_shape;
            /// Learnable parameters in all layers.
            pub const NUM_PARAMS: usize = #num_params;
            /// One entry per layer: name, kind, output shape, parameters, receptive field,
            /// multiply-adds.
            pub const LAYERS: [::striate::runtime::LayerInfo; #n_layers] = [#(#layer_infos),*];
            /// Learnable parameters: PyTorch names and shapes, offsets in the flat store.
            pub const PARAMS: [::striate::runtime::ParamInfo; #n_params] = #params_table;
            /// Running statistics: PyTorch names and shapes, offsets in the flat store.
            pub const BUFFERS: [::striate::runtime::ParamInfo; #n_buffers] = #buffers_table;
            const __TAPE: [::striate::runtime::Slot; #n_slots] = [#(#slots),*];
            #(#geoms)*
        }

        #(#asserts)*

        impl ::striate::runtime::Network for #name {
            type InputDim = #in_dim;
            type OutputDim = #out_dim;
            const NAME: &'static str = #name_str;
            const INPUT_SHAPE: &'static [usize] = &#name::INPUT_SHAPE;
            const OUTPUT_SHAPE: &'static [usize] = &#name::OUTPUT_SHAPE;
            const NUM_PARAMS: usize = #name::NUM_PARAMS;
            const LAYERS: &'static [::striate::runtime::LayerInfo] = &#name::LAYERS;
            const PARAMS: &'static [::striate::runtime::ParamInfo] = &#name::PARAMS;
            const BUFFERS: &'static [::striate::runtime::ParamInfo] = &#name::BUFFERS;
            const TAPE: &'static [::striate::runtime::Slot] = &#name::__TAPE;

            #state_methods

            #[allow(unused_variables, clippy::let_unit_value)]
            fn raw_forward(
                params: &[f32],
                #pass_binding: ::striate::runtime::Pass<'_>,
                tape: &mut ::striate::runtime::Tape,
            ) {
                let n = tape.batch();
                #(#forward)*
            }

            #[allow(unused_variables)]
            fn raw_backward(
                params: &[f32],
                d_params: &mut [f32],
                tape: &mut ::striate::runtime::Tape,
                input_grad: bool,
            ) {
                let n = tape.batch();
                #train_binding
                #(#backward)*
            }
        }
    }
}

/// On error: the errors, and the struct with an implementation whose bodies never run, so that
/// code naming the network does not bury the real errors under secondary ones.
pub fn fallback(net: &Network, errors: Vec<syn::Error>) -> TokenStream {
    let compile_errors = errors.iter().map(syn::Error::to_compile_error);
    let name = &net.name;
    let attrs = &net.attrs;
    let vis = &net.vis;
    let name_str = name.to_string();
    let state_methods = state_methods(name);
    // The dimensions the network was meant to have, so that code using it type-checks.
    let mut vector = false;
    let mut in_dim = quote!(::striate::ndarray::IxDyn);
    for item in &net.items {
        match item {
            Item::Input(decl) if decl.dims.len() == 1 => {
                vector = true;
                in_dim = quote!(::striate::ndarray::Ix2);
            }
            Item::Input(decl) if decl.dims.len() == 3 => in_dim = quote!(::striate::ndarray::Ix4),
            Item::Layer(l) if l.kind == "flatten" || l.kind == "linear" => vector = true,
            _ => {}
        }
    }
    let out_dim = if vector {
        quote!(::striate::ndarray::Ix2)
    } else {
        quote!(::striate::ndarray::Ix4)
    };
    quote! {
        #(#compile_errors)*
        #(#attrs)*
        #vis struct #name {
            state: ::striate::runtime::State,
        }

        impl ::striate::runtime::Network for #name {
            type InputDim = #in_dim;
            type OutputDim = #out_dim;
            const NAME: &'static str = #name_str;
            const INPUT_SHAPE: &'static [usize] = &[];
            const OUTPUT_SHAPE: &'static [usize] = &[];
            const NUM_PARAMS: usize = 0;
            const LAYERS: &'static [::striate::runtime::LayerInfo] = &[];
            const PARAMS: &'static [::striate::runtime::ParamInfo] = &[];
            const BUFFERS: &'static [::striate::runtime::ParamInfo] = &[];
            const TAPE: &'static [::striate::runtime::Slot] = &[];
            #state_methods
            fn raw_forward(_: &[f32], _: ::striate::runtime::Pass<'_>, _: &mut ::striate::runtime::Tape) {
                ::core::unreachable!("the network did not compile")
            }
            fn raw_backward(_: &[f32], _: &mut [f32], _: &mut ::striate::runtime::Tape, _: bool) {
                ::core::unreachable!("the network did not compile")
            }
        }
    }
}
