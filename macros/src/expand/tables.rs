//! The constant tables of a network: parameters and buffers, layers, tape slots, and the
//! struct's rustdoc table.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use crate::kinds::{rt, usize_lit, TapeNeeds};
use crate::plan::{InitPlan, Plan, TensorPlan};

fn init_tokens(init: InitPlan) -> TokenStream {
    let rt = rt();
    match init {
        InitPlan::Zeros => quote!(#rt::Init::Zeros),
        InitPlan::Ones => quote!(#rt::Init::Ones),
        InitPlan::He { fan_in } => {
            let f = usize_lit(fan_in);
            quote!(#rt::Init::HeUniform { fan_in: #f })
        }
        InitPlan::Glorot { fan_in, fan_out } => {
            let (a, b) = (usize_lit(fan_in), usize_lit(fan_out));
            quote!(#rt::Init::GlorotUniform { fan_in: #a, fan_out: #b })
        }
    }
}

/// `[ParamInfo { .. }, ..]`.
pub fn tensors(list: &[TensorPlan]) -> TokenStream {
    let rt = rt();
    let entries = list.iter().map(|p| {
        let name = &p.name;
        let shape = p.shape.iter().map(|v| usize_lit(*v));
        let offset = usize_lit(p.offset);
        let len = usize_lit(p.len);
        let init = init_tokens(p.init);
        quote! {
            #rt::ParamInfo {
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

/// One `LayerInfo` per node.
pub fn layers(plan: &Plan) -> Vec<TokenStream> {
    let rt = rt();
    plan.nodes
        .iter()
        .map(|l| {
            let name = &l.path;
            let kind = &l.kind_name;
            let decl = &l.declaration;
            let inputs = l.inputs.iter().map(|v| usize_lit(*v));
            let out = l.output.dims().into_iter().map(usize_lit);
            let params = usize_lit(l.params);
            let [rh, rw] = l.receptive_field.map(usize_lit);
            let macs = Literal::u64_unsuffixed(l.macs);
            let depth = usize_lit(l.depth);
            let note = &l.note;
            quote! {
                #rt::LayerInfo {
                    name: #name,
                    kind: #kind,
                    declaration: #decl,
                    inputs: &[#(#inputs),*],
                    output: &[#(#out),*],
                    params: #params,
                    receptive_field: [#rh, #rw],
                    macs: #macs,
                    depth: #depth,
                    note: #note,
                }
            }
        })
        .collect()
}

/// One tape slot per value: the input, then each node's output and extra storage.
pub fn slots(plan: &Plan) -> Vec<TokenStream> {
    let rt = rt();
    let input_len = usize_lit(plan.input.numel());
    let mut slots = vec![quote! { #rt::Slot::act(#input_len) }];
    slots.extend(plan.nodes.iter().map(|node| {
        let needs = node.layer().map_or(TapeNeeds::default(), |l| l.tape());
        let (a, b, c, d) = (
            usize_lit(node.output.numel()),
            usize_lit(needs.aux_per_sample),
            usize_lit(needs.aux_fixed),
            usize_lit(needs.idx_per_sample),
        );
        quote! {
            #rt::Slot { act: #a, aux_per_sample: #b, aux_fixed: #c, idx_per_sample: #d }
        }
    }));
    slots
}

/// Lines of the struct's rustdoc: the layers as a table, as `summary()` prints them.
pub fn doc_table(plan: &Plan) -> Vec<String> {
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
    for l in &plan.nodes {
        let indent = "&nbsp;&nbsp;".repeat(l.depth);
        let label = match (l.path.as_str(), l.layer().is_some()) {
            ("", true) => format!("`{}`", l.declaration),
            (p, true) => format!("`{p}: {}`", l.declaration),
            ("", false) => format!("{} (`{}`)", l.kind_name, l.declaration),
            (p, false) => format!("`{p}` {} (`{}`)", l.kind_name, l.declaration),
        };
        let [h, w] = l.receptive_field;
        let field = if h == w {
            h.to_string()
        } else {
            format!("{h}x{w}")
        };
        lines.push(format!(
            "| {indent}{label} | `{}` | {} | {field} |",
            l.output.text(),
            l.params
        ));
    }
    lines
}
