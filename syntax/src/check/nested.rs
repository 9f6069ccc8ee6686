//! A network declared elsewhere with `network!`, used as a layer: `features: LeNetFeatures ->
//! [16, 5, 5]`. One macro call sees only its own tokens, so the inner network is known here by
//! its type alone: the shape arriving is checked against its input shape by the compiler (as
//! `Shape3<..>` types, both numbers in the message), and its output shape, which this macro
//! cannot see, must be declared with `-> [dims]`, which the compiler checks in the same way.

use quote::ToTokens;

use super::{Graph, Scope};
use crate::ast::LayerItem;
use crate::plan::{Field, Node, Op, Shape};

impl Graph {
    pub(super) fn nested_network(
        &mut self,
        item: &LayerItem,
        who: &str,
        scope: &Scope,
        input: Option<usize>,
    ) -> Option<usize> {
        let ty = match &item.path {
            Some(p) => p.clone(),
            None => syn::Path::from(item.kind.clone()),
        };
        let ty_text = ty.to_token_stream().to_string().replace(' ', "");
        let mut ok = true;
        if item.name.is_none() {
            ok = false;
            self.errors.spanned(
                &item.call_tokens,
                format!("{who} is the network `{ty_text}` used as a layer, so it needs a name, which its parameters are saved under: `features: {ty_text}`"),
            );
        }
        if let Some(a) = item.args.first() {
            ok = false;
            self.errors.spanned(
                &a.tokens,
                format!("`{ty_text}` is a network used as a layer and takes no arguments"),
            );
        }
        if let Some(body) = &item.body {
            ok = false;
            self.errors.at(
                body.span,
                format!("`{ty_text}` is a network used as a layer and has no body"),
            );
        }
        let Some((dims, _)) = &item.expect else {
            let arriving =
                input.map_or_else(|| "[..]".to_string(), |v| self.values[v].shape.text());
            self.errors.spanned(
                &item.call_tokens,
                format!("{who}: declare the output shape of the network `{ty_text}`, which this network cannot see, e.g. `{}: {ty_text} -> [..]` (it receives {arriving}); the compiler then checks it against `{ty_text}`'s own", item.name.as_ref().map_or("features".to_string(), |n| n.to_string())),
            );
            return None;
        };
        let out = match dims.iter().map(|d| d.value).collect::<Vec<_>>().as_slice() {
            [c, h, w] if *c > 0 && *h > 0 && *w > 0 => Shape::Spatial([*c, *h, *w]),
            [f] if *f > 0 => Shape::Vector(*f),
            other => {
                self.errors.spanned(
                    &item.call_tokens,
                    format!(
                        "{who}: the output shape of `{ty_text}` must be [channels, height, width] or [features], all at least 1, found {}",
                        crate::plan::dims_text(other)
                    ),
                );
                return None;
            }
        };
        let input = input?;
        if !ok {
            return None;
        }
        let from = self.values[input].clone();
        let ordinal = self.nested.len();
        let field = Field::Expr({
            let inner = from.field.tokens();
            quote::quote!(::striate::__private::through(#inner, <#ty as ::striate::__private::Network>::RECEPTIVE))
        });
        let flat = from.flat || matches!(out, Shape::Vector(_));
        let node = Node {
            path: item
                .name
                .as_ref()
                .map(|n| format!("{}{}", scope.prefix, super::name_of(n)))
                .unwrap_or_default(),
            kind_name: ty_text.clone(),
            declaration: ty_text,
            op: Op::Nested {
                ty: ty.clone(),
                ordinal,
            },
            inputs: vec![input],
            input_shapes: vec![from.shape],
            output: out,
            params: 0,
            receptive_field: [0; 2],
            receptive_expr: None,
            macs: 0,
            base: ordinal,
            param_offset: self.params_len(),
            buffer_offset: self.buffers_len(),
            depth: scope.depth,
            note: String::new(),
            tokens: item.call_tokens.clone(),
        };
        self.nested.push(ty);
        Some(self.push_node(node, field, flat))
    }
}
