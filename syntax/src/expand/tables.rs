//! The constant tables of a network: parameters and buffers, layers, tape slots, and the
//! struct's rustdoc table.

use proc_macro2::{Literal, TokenStream};
use quote::quote;
use striate_geometry::Thousands;

use crate::kinds::{rt, usize_lit, TapeNeeds};
use crate::plan::{InitPlan, Op, Plan, TensorPlan};

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
        InitPlan::Recurrent { hidden } => {
            let h = usize_lit(hidden);
            quote!(#rt::Init::RecurrentUniform { hidden: #h })
        }
        InitPlan::StandardNormal => quote!(#rt::Init::StandardNormal),
    }
}

/// Which store a table describes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Params,
    Buffers,
}

fn entry(p: &TensorPlan, base: TokenStream) -> TokenStream {
    let rt = rt();
    let name = &p.name;
    let shape = p.shape.iter().map(|v| usize_lit(*v));
    let offset = usize_lit(p.offset);
    let len = usize_lit(p.len);
    let init = init_tokens(p.init);
    quote! {
        #rt::ParamInfo {
            name: #name,
            shape: &[#(#shape),*],
            offset: #offset #base,
            len: #len,
            init: #init,
        }
    }
}

/// The length and the initialiser of a parameter or buffer table: an array of entries, or,
/// with nested networks, a `const` block that adds their entries under their names.
pub fn tensors(plan: &Plan, list: &[TensorPlan], store: Store) -> (TokenStream, TokenStream) {
    let rt = rt();
    let base = |b: usize| match store {
        Store::Params => super::param_base(plan, b),
        Store::Buffers => super::buffer_base(plan, b),
    };
    let table = |ty: &syn::Path| match store {
        Store::Params => quote!(<#ty as #rt::Network>::PARAMS),
        Store::Buffers => quote!(<#ty as #rt::Network>::BUFFERS),
    };
    if plan.nested.is_empty() {
        let entries = list.iter().map(|p| entry(p, TokenStream::new()));
        let n = usize_lit(list.len());
        return (quote!(#n), quote!([#(#entries),*]));
    }
    let own = usize_lit(list.len());
    let tables: Vec<TokenStream> = plan.nested.iter().map(table).collect();
    let len = quote!(#own #(+ #tables.len())*);
    let mut steps = Vec::new();
    for (k, ty) in plan.nested.iter().enumerate() {
        for p in list.iter().filter(|p| p.base == k) {
            let e = entry(p, base(k));
            steps.push(quote! { out[i] = #e; i += 1; });
        }
        let prefix = nested_prefix(plan, k);
        // Past every tensor of this network's own that comes before it.
        let at: usize = list.iter().filter(|p| p.base <= k).map(|p| p.len).sum();
        let (at, b) = (usize_lit(at), base(k));
        let t = table(ty);
        steps.push(quote! {
            {
                const PREFIX: &str = #prefix;
                const LEN: usize = #rt::names_len(PREFIX, #t);
                const NAMES: [u8; LEN] = #rt::names(PREFIX, #t);
                i = #rt::append(&mut out, i, #t, &NAMES, PREFIX.len(), #at #b);
            }
        });
    }
    let last = plan.nested.len();
    for p in list.iter().filter(|p| p.base == last) {
        let e = entry(p, base(last));
        steps.push(quote! { out[i] = #e; i += 1; });
    }
    let init = quote! {
        {
            let mut out = [#rt::EMPTY; #len];
            let mut i = 0;
            #(#steps)*
            let _ = i;
            out
        }
    };
    (len, init)
}

/// `features.`: the prefix of the `k`-th nested network's names.
fn nested_prefix(plan: &Plan, k: usize) -> String {
    let node = plan
        .nodes
        .iter()
        .find(|n| matches!(&n.op, Op::Nested { ordinal, .. } if *ordinal == k))
        .expect("every nested network is a node");
    format!("{}.", node.path)
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
            let (params, macs) = match &l.op {
                Op::Nested { ty, .. } => (
                    quote!(<#ty as #rt::Network>::NUM_PARAMS),
                    quote!(#rt::total_macs(<#ty as #rt::Network>::LAYERS)),
                ),
                _ => {
                    let (p, m) = (usize_lit(l.params), Literal::u64_unsuffixed(l.macs));
                    (quote!(#p), quote!(#m))
                }
            };
            let field = match &l.receptive_expr {
                Some(e) => quote!(#rt::fields(#e)),
                None => {
                    let [rh, rw] = l.receptive_field.map(usize_lit);
                    quote!([#rh, #rw])
                }
            };
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
                    receptive_field: #field,
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
            Thousands(plan.num_params() as u64)
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
        let params = match &l.op {
            Op::Nested { .. } => format!("those of `{}`", l.kind_name),
            _ => Thousands(l.params as u64).to_string(),
        };
        let field = if l.receptive_expr.is_some() {
            "(see `summary()`)".to_string()
        } else {
            field
        };
        lines.push(format!(
            "| {indent}{label} | `{}` | {params} | {field} |",
            l.output.text(),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    /// The struct's documentation prints counts as `summary()` does: `61,706`, not `61706`.
    #[test]
    fn documented_counts_have_thousands_separators() {
        let net: crate::ast::Network = syn::parse_str(
            "struct N { input: [1, 28, 28], flatten, fc1: linear(78), relu, fc2: linear(10) }",
        )
        .unwrap();
        let plan = crate::check::check(&net).ok().unwrap();
        let lines = super::doc_table(&plan);
        assert!(
            lines[1].ends_with("output [10], 62,020 parameters."),
            "{}",
            lines[1]
        );
        assert!(lines.iter().any(|l| l.contains("| 61,230 |")), "{lines:#?}");
    }
}
