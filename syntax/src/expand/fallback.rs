//! What a network that did not compile still gets: its struct, with an implementation whose
//! bodies never run, so that code naming it does not bury the real errors under secondary ones.

use proc_macro2::{TokenStream, TokenTree};
use quote::quote;

use super::{state_methods, struct_items};
use crate::ast::{Item, Network};
use crate::kinds::rt;

/// The errors, and the struct.
pub fn fallback(net: &Network, errors: Vec<syn::Error>) -> TokenStream {
    let rt = rt();
    let compile_errors = errors.iter().map(syn::Error::to_compile_error);
    let name = &net.name;
    let attrs = &net.attrs;
    let vis = &net.vis;
    let name_str = name.to_string();
    let state_methods = state_methods(name);
    let struct_items = struct_items(name);
    let (input_rank, vector) = if net.syntax_error.is_some() {
        guess_from_tokens(net.body.clone())
    } else {
        guess_from_items(&net.items)
    };
    let in_dim = match input_rank {
        Some(1) => quote!(#rt::ndarray::Ix2),
        Some(3) => quote!(#rt::ndarray::Ix4),
        _ => quote!(#rt::ndarray::IxDyn),
    };
    let out_dim = if vector || input_rank == Some(1) {
        quote!(#rt::ndarray::Ix2)
    } else {
        quote!(#rt::ndarray::Ix4)
    };
    quote! {
        #(#compile_errors)*
        #(#attrs)*
        #vis struct #name {
            state: #rt::State,
        }

        #struct_items

        impl #rt::Network for #name {
            type InputDim = #in_dim;
            type OutputDim = #out_dim;
            type InputShape = ();
            type OutputShape = ();
            const NAME: &'static str = #name_str;
            const INPUT_SHAPE: &'static [usize] = &[];
            const OUTPUT_SHAPE: &'static [usize] = &[];
            const NUM_PARAMS: usize = 0;
            const LAYERS: &'static [#rt::LayerInfo] = &[];
            const PARAMS: &'static [#rt::ParamInfo] = &[];
            const BUFFERS: &'static [#rt::ParamInfo] = &[];
            const TAPE: &'static [#rt::Slot] = &[];
            const GRADS: &'static [usize] = &[];
            const RECEPTIVE: [#rt::geometry::Receptive; 2] = [#rt::geometry::Receptive::INPUT; 2];
            #state_methods
            fn raw_forward(_: &[f32], _: #rt::Pass<'_>, _: &mut #rt::Tape) {
                ::core::unreachable!("the network did not compile")
            }
            fn raw_backward(_: &[f32], _: &mut [f32], _: &mut #rt::Tape, _: bool, _: #rt::FrozenView<'_>) {
                ::core::unreachable!("the network did not compile")
            }
        }
    }
}

/// The input's rank and whether the output is a vector, from parsed items.
fn guess_from_items(items: &[Item]) -> (Option<usize>, bool) {
    let mut rank = None;
    let mut vector = false;
    for item in items {
        match item {
            Item::Input(decl) => rank = Some(decl.dims.len()),
            Item::Layer(l) if l.kind == "flatten" || l.kind == "linear" => vector = true,
            _ => {}
        }
    }
    (rank, vector)
}

/// The same from raw tokens, after a syntax error: `input : [ .. ]` gives the rank, a
/// `flatten` or `linear` anywhere a vector output.
fn guess_from_tokens(body: TokenStream) -> (Option<usize>, bool) {
    let tokens: Vec<TokenTree> = body.into_iter().collect();
    let mut rank = None;
    let mut vector = false;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            TokenTree::Ident(id) if id == "input" && rank.is_none() => {
                if let (Some(TokenTree::Punct(p)), Some(TokenTree::Group(g))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    if p.as_char() == ':' && g.delimiter() == proc_macro2::Delimiter::Bracket {
                        let dims = g
                            .stream()
                            .into_iter()
                            .filter(|t| matches!(t, TokenTree::Literal(_)))
                            .count();
                        rank = Some(dims);
                    }
                }
            }
            TokenTree::Ident(id) if id == "flatten" || id == "linear" => vector = true,
            TokenTree::Group(g) => {
                // Layers inside blocks.
                let (_, inner) = guess_from_tokens(g.stream());
                vector |= inner;
            }
            _ => {}
        }
    }
    (rank, vector)
}
