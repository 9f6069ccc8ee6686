//! Parsing: the tokens of a `network!` invocation into a syntax tree that remembers every span.
//!
//! The grammar (`?` optional, `*` repeated, `,`-separated lists allow a trailing comma):
//!
//! ```text
//! network   := attribute* visibility "struct" IDENT block
//! block     := "{" item ("," item)* ","? "}"
//! item      := "input" ":" "tokens"? "[" INT ("," INT)* "]"
//!            | (IDENT ":")? layer ("->" "[" INT ("," INT)* "]")?
//! layer     := (IDENT | PATH) ("(" argument ("," argument)* ","? ")")? block?
//! argument  := (IDENT "=")? value
//! value     := INT | FLOAT | "-" (INT | FLOAT) | "true" | "false" | "(" INT "," INT ")" | block
//! ```
//!
//! Parsing accepts any layer name and any argument; which layers and arguments exist, and what
//! their values must be, is checked in `check`, so that every such mistake in a network is
//! reported in one compile. A syntax error inside the braces still leaves the network's name,
//! so that the struct can be generated beside the error.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{bracketed, parenthesized, Attribute, Expr, Ident, Lit, LitInt, Token, Visibility};

/// The whole invocation.
pub struct Network {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    /// The braces, for errors about the network as a whole (an empty network).
    pub brace_span: Span,
    pub items: Vec<Item>,
    /// A syntax error inside the braces (then `items` is empty).
    pub syntax_error: Option<syn::Error>,
    /// Everything inside the braces, for guessing the network's shapes after a syntax error.
    pub body: TokenStream,
}

/// `{ item, ... }`: the items of a block (a residual's body, a shortcut, a concat branch).
pub struct Block {
    pub items: Vec<Item>,
    /// The braces.
    pub span: Span,
}

/// One comma-separated entry.
pub enum Item {
    Input(InputDecl),
    Layer(LayerItem),
}

/// `input: [C, H, W]`, `input: [T, F]`, `input: [N]` or `input: tokens[T]`.
pub struct InputDecl {
    /// The `input` keyword-like identifier.
    pub keyword: Ident,
    /// `tokens` before the brackets: integer token ids, `T` per sample.
    pub tokens_form: Option<Ident>,
    pub dims: Vec<Dim>,
    /// All tokens, for spans covering the whole declaration.
    pub tokens: TokenStream,
}

/// A number inside `[..]`, with its span.
#[derive(Clone)]
pub struct Dim {
    pub value: usize,
    pub span: Span,
}

/// `name: kind(args) { body } -> [dims]`.
pub struct LayerItem {
    pub name: Option<Ident>,
    /// The kind, or for a path the last segment.
    pub kind: Ident,
    /// The kind written as a path (`self::Relu`, `nets::LeNetFeatures`): a nested network.
    pub path: Option<syn::Path>,
    pub args: Vec<Arg>,
    /// A block after the arguments: a residual's body.
    pub body: Option<Block>,
    /// The declared output shape, if any, and the tokens of `-> [..]`.
    pub expect: Option<(Vec<Dim>, TokenStream)>,
    /// `kind(args)` as tokens (without the body), for spans covering the layer.
    pub call_tokens: TokenStream,
}

#[cfg(test)]
impl LayerItem {
    /// The argument called `name`.
    pub fn arg(&self, name: &str) -> Option<&Arg> {
        self.args
            .iter()
            .find(|a| a.name.as_ref().is_some_and(|n| n == name))
    }
}

/// One argument of a layer.
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Value,
    /// The value, when it is a block `{ .. }`.
    pub block: Option<Block>,
    /// The argument's tokens (name, `=` and value), for spans.
    pub tokens: TokenStream,
}

/// An argument's value, classified but not yet checked against what the layer wants.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A non-negative integer literal.
    Int(u64),
    /// A floating-point literal, or a negative number.
    Float(f64),
    Bool(bool),
    /// `(h, w)`.
    Pair(u64, u64),
    /// A bare name, `nearest`.
    Ident(String),
    /// `[64, 7, 7]`: non-negative integers in brackets.
    List(Vec<u64>),
    /// Anything else, described for the error message (`a string`, ...).
    Other(String),
}

impl Value {
    /// As written in a declaration string.
    pub fn render(&self) -> String {
        match self {
            Value::Int(v) => v.to_string(),
            Value::Float(v) => format_float(*v),
            Value::Bool(b) => b.to_string(),
            Value::Pair(h, w) => format!("({h}, {w})"),
            Value::Ident(name) => name.clone(),
            Value::List(v) => list_text(v),
            Value::Other(s) => s.clone(),
        }
    }

    /// What kind of value this is, for "expected ..., found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Value::Int(v) => format!("the integer `{v}`"),
            Value::Float(v) => format!("the number `{}`", format_float(*v)),
            Value::Bool(b) => format!("the boolean `{b}`"),
            Value::Pair(h, w) => format!("the pair `({h}, {w})`"),
            Value::Ident(name) => format!("the name `{name}`"),
            Value::List(v) => format!("the list `{}`", list_text(v)),
            Value::Other(s) => s.clone(),
        }
    }
}

/// `[64, 7, 7]`.
fn list_text(v: &[u64]) -> String {
    let items: Vec<String> = v.iter().map(u64::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// `0.5`, `1e-5`, `2.0`: the shortest text that reads back as the same `f64`.
pub fn format_float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

impl Parse for Network {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        input.parse::<Token![struct]>()?;
        let name: Ident = input.parse()?;
        let content;
        let brace = syn::braced!(content in input);
        let body: TokenStream = content.parse()?;
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the network's closing brace"));
        }
        let parsed =
            (|stream: ParseStream| Punctuated::<Item, Token![,]>::parse_terminated(stream))
                .parse2(body.clone());
        let (items, syntax_error) = match parsed {
            Ok(items) => (items.into_iter().collect(), None),
            Err(e) => (Vec::new(), Some(e)),
        };
        Ok(Network {
            attrs,
            vis,
            name,
            brace_span: brace.span.join(),
            items,
            syntax_error,
            body,
        })
    }
}

impl Parse for Item {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let start = input.fork();
        // `name: ...`: an identifier and a single colon.
        if input.peek(Ident) && input.peek2(Token![:]) && !input.peek2(Token![::]) {
            let name: Ident = input.parse()?;
            input.parse::<Token![:]>()?;
            let tokens_form = if input.peek(Ident) && input.peek2(syn::token::Bracket) {
                let form = input.fork().parse::<Ident>()?;
                (form == "tokens")
                    .then(|| input.parse::<Ident>())
                    .transpose()?
            } else {
                None
            };
            if input.peek(syn::token::Bracket) {
                let dims = parse_dims(input)?;
                let tokens = tokens_between(&start, input);
                return Ok(Item::Input(InputDecl {
                    keyword: name,
                    tokens_form,
                    dims,
                    tokens,
                }));
            }
            let what = format!(
                "expected the layer that `{name}` names, e.g. `{name}: conv2d(6, kernel = 5)`"
            );
            return parse_layer(input, Some(name), &what).map(Item::Layer);
        }
        parse_layer(
            input,
            None,
            "expected a layer such as `conv2d(6, kernel = 5)` or `input: [1, 28, 28]`",
        )
        .map(Item::Layer)
    }
}

/// `kind(args) { body } -> [dims]` after the optional name; `what` is the message when no
/// layer follows.
fn parse_layer(input: ParseStream, name: Option<Ident>, what: &str) -> syn::Result<LayerItem> {
    let call_start = input.fork();
    let is_path =
        input.peek(Token![::]) || (input.peek(Ident::peek_any) && input.peek2(Token![::]));
    let (kind, path) = if is_path {
        let path = syn::Path::parse_mod_style(input)?;
        let last = path
            .segments
            .last()
            .map(|s| s.ident.clone())
            .ok_or_else(|| input.error(what))?;
        (last, Some(path))
    } else {
        let kind: Ident = input.parse().map_err(|e| syn::Error::new(e.span(), what))?;
        (kind, None)
    };
    let args = parse_args(input)?;
    let call_tokens = tokens_between(&call_start, input);
    let body = if input.peek(syn::token::Brace) {
        Some(parse_block(input)?)
    } else {
        None
    };
    let expect = parse_expect(input)?;
    Ok(LayerItem {
        name,
        kind,
        path,
        args,
        body,
        expect,
        call_tokens,
    })
}

/// How deep blocks may nest: far beyond any real network, and far below the depth at which
/// the recursive parse and checks would exhaust the compiler's stack.
pub const MAX_BLOCK_DEPTH: usize = 32;

thread_local! {
    /// Blocks open around the one being parsed.
    static BLOCK_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// `{ item, ... }`.
fn parse_block(input: ParseStream) -> syn::Result<Block> {
    let depth = BLOCK_DEPTH.with(|d| d.get());
    if depth >= MAX_BLOCK_DEPTH {
        return Err(input.error(format!(
            "blocks nest more than {MAX_BLOCK_DEPTH} deep here; flatten the network, or declare a part as a network of its own and use it as a layer"
        )));
    }
    BLOCK_DEPTH.with(|d| d.set(depth + 1));
    let parsed = (|| {
        let content;
        let brace = syn::braced!(content in input);
        let items = Punctuated::<Item, Token![,]>::parse_terminated(&content)?;
        Ok(Block {
            items: items.into_iter().collect(),
            span: brace.span.join(),
        })
    })();
    BLOCK_DEPTH.with(|d| d.set(depth));
    parsed
}

/// The tokens consumed between `start` (a fork taken earlier) and `end`.
fn tokens_between(start: ParseStream, end: ParseStream) -> TokenStream {
    let mut tokens = TokenStream::new();
    let end_cursor = end.cursor();
    let _ = start.step(|cursor| {
        let mut rest = *cursor;
        while rest != end_cursor {
            match rest.token_tree() {
                Some((tt, next)) => {
                    tt.to_tokens(&mut tokens);
                    rest = next;
                }
                None => break,
            }
        }
        Ok(((), rest))
    });
    tokens
}

fn parse_dims(input: ParseStream) -> syn::Result<Vec<Dim>> {
    let content;
    bracketed!(content in input);
    let dims = Punctuated::<LitInt, Token![,]>::parse_terminated(&content)?;
    dims.iter()
        .map(|lit| {
            Ok(Dim {
                value: lit.base10_parse::<usize>()?,
                span: lit.span(),
            })
        })
        .collect()
}

fn parse_args(input: ParseStream) -> syn::Result<Vec<Arg>> {
    if !input.peek(syn::token::Paren) {
        return Ok(Vec::new());
    }
    let content;
    parenthesized!(content in input);
    let args = Punctuated::<Arg, Token![,]>::parse_terminated(&content)?;
    Ok(args.into_iter().collect())
}

fn parse_expect(input: ParseStream) -> syn::Result<Option<(Vec<Dim>, TokenStream)>> {
    if !input.peek(Token![->]) {
        return Ok(None);
    }
    let start = input.fork();
    input.parse::<Token![->]>()?;
    if !input.peek(syn::token::Bracket) {
        return Err(input.error("expected the output shape after `->`, e.g. `-> [6, 28, 28]`"));
    }
    let dims = parse_dims(input)?;
    Ok(Some((dims, tokens_between(&start, input))))
}

impl Parse for Arg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let start = input.fork();
        let name = if input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
            let name: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            Some(name)
        } else {
            None
        };
        if input.peek(syn::token::Brace) {
            let block = parse_block(input)?;
            return Ok(Arg {
                name,
                value: Value::Other("a block `{ .. }`".to_string()),
                block: Some(block),
                tokens: tokens_between(&start, input),
            });
        }
        check_argument_size(input)?;
        let expr: Expr = input.parse()?;
        let value = classify(&expr);
        Ok(Arg {
            name,
            value,
            block: None,
            tokens: tokens_between(&start, input),
        })
    }
}

/// How deep brackets may nest in one argument, and how many tokens it may have: far beyond
/// any real argument (`kernel = (3, 5)` has one level and five tokens), and far below what
/// would exhaust the compiler's stack in the recursive parse of an expression (about 850
/// nested parentheses, or some thousands of unary minus signs, did).
pub const MAX_ARG_DEPTH: usize = 16;
pub const MAX_ARG_TOKENS: usize = 128;

/// Refuses an argument (the tokens up to the next comma) that nests deeper than
/// [`MAX_ARG_DEPTH`] or has more than [`MAX_ARG_TOKENS`] tokens, before it is parsed as an
/// expression. The walk is a loop with its own stack, so it cannot overflow either.
fn check_argument_size(input: ParseStream) -> syn::Result<()> {
    use proc_macro2::TokenTree;
    let too_big = |span| {
        syn::Error::new(
            span,
            format!(
                "this argument is too large to be a layer's setting (brackets deeper than \
                 {MAX_ARG_DEPTH} or more than {MAX_ARG_TOKENS} tokens); write a number, a pair \
                 `(h, w)` or `true`/`false`"
            ),
        )
    };
    let mut cursor = input.cursor();
    let mut tokens = 0usize;
    while let Some((tree, next)) = cursor.token_tree() {
        if matches!(&tree, TokenTree::Punct(p) if p.as_char() == ',') {
            break;
        }
        cursor = next;
        tokens += 1;
        let TokenTree::Group(group) = tree else {
            if tokens > MAX_ARG_TOKENS {
                return Err(too_big(input.span()));
            }
            continue;
        };
        let mut open = vec![group.stream().into_iter()];
        while let Some(top) = open.last_mut() {
            match top.next() {
                Some(TokenTree::Group(inner)) => {
                    tokens += 1;
                    if open.len() >= MAX_ARG_DEPTH {
                        return Err(too_big(input.span()));
                    }
                    open.push(inner.stream().into_iter());
                }
                Some(_) => tokens += 1,
                None => {
                    open.pop();
                }
            }
            if tokens > MAX_ARG_TOKENS {
                return Err(too_big(input.span()));
            }
        }
    }
    Ok(())
}

fn classify(expr: &Expr) -> Value {
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            // `300u8` or `5f32` would be read as 300 or 5 with the suffix ignored.
            Lit::Int(i) if !i.suffix().is_empty() => Value::Other(format!(
                "the literal `{i}` (write it without the type suffix)"
            )),
            Lit::Float(f) if !f.suffix().is_empty() => Value::Other(format!(
                "the literal `{f}` (write it without the type suffix)"
            )),
            Lit::Int(i) => match i.base10_parse::<u64>() {
                Ok(v) => Value::Int(v),
                Err(_) => Value::Other(format!("the literal `{i}`")),
            },
            Lit::Float(f) => match f.base10_parse::<f64>() {
                Ok(v) => Value::Float(v),
                Err(_) => Value::Other(format!("the literal `{f}`")),
            },
            Lit::Bool(b) => Value::Bool(b.value),
            Lit::Str(_) => Value::Other("a string".to_string()),
            other => Value::Other(format!("`{}`", other.to_token_stream())),
        },
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => match classify(&u.expr) {
            Value::Int(v) => Value::Float(-(v as f64)),
            Value::Float(v) => Value::Float(-v),
            _ => Value::Other(format!("`{}`", expr.to_token_stream())),
        },
        Expr::Paren(p) => classify(&p.expr),
        Expr::Tuple(t) if t.elems.len() == 2 => {
            let mut it = t.elems.iter().map(classify);
            match (it.next(), it.next()) {
                (Some(Value::Int(h)), Some(Value::Int(w))) => Value::Pair(h, w),
                _ => Value::Other(format!("`{}`", expr.to_token_stream())),
            }
        }
        Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
            Value::Ident(p.path.get_ident().map(Ident::to_string).unwrap_or_default())
        }
        Expr::Path(p) => Value::Other(format!("`{}`", p.to_token_stream())),
        Expr::Array(a) => {
            let items: Option<Vec<u64>> = a
                .elems
                .iter()
                .map(|e| match classify(e) {
                    Value::Int(v) => Some(v),
                    _ => None,
                })
                .collect();
            match items {
                Some(v) => Value::List(v),
                None => Value::Other(format!("`{}`", a.to_token_stream())),
            }
        }
        other => Value::Other(format!("`{}`", other.to_token_stream())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lenet() {
        let net: Network = syn::parse_str(
            "/// doc
            pub struct LeNet5 {
                input: [1, 28, 28],
                conv1: conv2d(6, kernel = 5, pad = 2) -> [6, 28, 28],
                relu,
                max_pool(2),
                flatten,
                fc: linear(10, bias = false),
            }",
        )
        .unwrap();
        assert_eq!(net.name, "LeNet5");
        assert_eq!(net.items.len(), 6);
        let Item::Layer(conv) = &net.items[1] else {
            panic!("conv1 is a layer")
        };
        assert_eq!(conv.name.as_ref().unwrap(), "conv1");
        assert_eq!(conv.kind, "conv2d");
        assert_eq!(conv.args.len(), 3);
        assert_eq!(conv.args[0].value, Value::Int(6));
        assert_eq!(conv.args[1].name.as_ref().unwrap(), "kernel");
        let dims: Vec<usize> = conv
            .expect
            .as_ref()
            .unwrap()
            .0
            .iter()
            .map(|d| d.value)
            .collect();
        assert_eq!(dims, [6, 28, 28]);
        let Item::Layer(fc) = &net.items[5] else {
            panic!("fc is a layer")
        };
        assert_eq!(fc.args[1].value, Value::Bool(false));
    }

    #[test]
    fn classifies_values() {
        let arg: Arg = syn::parse_str("kernel = (3, 5)").unwrap();
        assert_eq!(arg.value, Value::Pair(3, 5));
        let arg: Arg = syn::parse_str("-0.2").unwrap();
        assert_eq!(arg.value, Value::Float(-0.2));
        let arg: Arg = syn::parse_str("mode = bilinear").unwrap();
        assert_eq!(arg.value, Value::Ident("bilinear".into()));
        let arg: Arg = syn::parse_str("[64, 7, 7]").unwrap();
        assert_eq!(arg.value, Value::List(vec![64, 7, 7]));
        assert_eq!(arg.value.render(), "[64, 7, 7]");
        let arg: Arg = syn::parse_str("\"five\"").unwrap();
        assert_eq!(arg.value, Value::Other("a string".into()));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for src in [
            "struct",
            "struct N",
            "struct N { input: [1, 2, }",
            "struct N { conv2d(6 kernel = 5) }",
            "struct N { a: }",
            "struct N { x -> }",
            "struct N { } extra",
            "struct N { input: [1.5] }",
        ] {
            let failed = syn::parse_str::<Network>(src).map_or(true, |n| n.syntax_error.is_some());
            assert!(failed, "{src}");
        }
    }

    /// Deep nesting is an error, not a stack overflow; nesting within the limit parses.
    #[test]
    fn block_depth_is_limited() {
        let nest = |k: usize| {
            let mut body = "fc: linear(2)".to_string();
            for i in 0..k {
                body = format!("b{i}: residual {{ {body} }}");
            }
            format!("struct N {{ input: [2], {body} }}")
        };
        let ok: Network = syn::parse_str(&nest(MAX_BLOCK_DEPTH)).unwrap();
        assert!(ok.syntax_error.is_none());
        // Deeper nesting is refused before parsing (`crate::nesting_error`), so what the
        // parser sees is at most 256 deep (5,000 overflowed a test thread's stack here in an
        // AddressSanitizer build, in syn's token buffer).
        let deep: Network = syn::parse_str(&nest(100)).unwrap();
        let err = deep.syntax_error.expect("too deep").to_string();
        assert!(err.contains("nest more than 32 deep"), "{err}");
    }

    /// An argument nested or long enough to exhaust the compiler's stack in the expression
    /// parser (issue 13, item 1: 850 parentheses, 3,000 minus signs, nested brackets) is an
    /// error, found without recursion (this test thread's small stack would overflow
    /// otherwise); real arguments parse.
    #[test]
    fn argument_size_is_limited() {
        let net =
            |arg: &str| format!("struct N {{ input: [1, 8, 8], c: conv2d(2, kernel = {arg}) }}");
        for deep in [
            format!("{}3{}", "(".repeat(850), ")".repeat(850)),
            format!("{}3", "-".repeat(3000)),
            format!("{}3{}", "[".repeat(2000), "]".repeat(2000)),
            format!(
                "{}3{}",
                "(".repeat(MAX_ARG_DEPTH + 1),
                ")".repeat(MAX_ARG_DEPTH + 1)
            ),
        ] {
            let parsed: Network = syn::parse_str(&net(&deep)).unwrap();
            let err = parsed.syntax_error.expect("too large").to_string();
            assert!(err.contains("too large to be a layer's setting"), "{err}");
        }
        for suffixed in ["300u8", "5f32", "(3usize, 3)"] {
            let parsed: Network = syn::parse_str(&net(suffixed)).unwrap();
            let crate::ast::Item::Layer(layer) = &parsed.items[1] else {
                panic!("a layer")
            };
            let Value::Other(what) = &layer.args[1].value else {
                panic!("{suffixed} is taken as a value")
            };
            assert!(
                what.contains("without the type suffix") || suffixed.starts_with('('),
                "{what}"
            );
        }
        for fine in ["3", "(3, 5)", "((3))", "-2"] {
            let parsed: Network = syn::parse_str(&net(fine)).unwrap();
            assert!(parsed.syntax_error.is_none(), "{fine}");
        }
    }

    #[test]
    fn parses_blocks_and_paths() {
        let net: Network = syn::parse_str(
            "struct R {
                input: [3, 8, 8],
                b: residual(shortcut = { c: conv2d(4, kernel = 1) }) { c: conv2d(4, kernel = 3, pad = 1), relu },
                m: concat(a = {}, b = { relu }),
                f: self::Inner -> [4, 8, 8],
            }",
        )
        .unwrap();
        assert!(net.syntax_error.is_none());
        let Item::Layer(b) = &net.items[1] else {
            panic!("b is a layer")
        };
        assert_eq!(b.kind, "residual");
        assert_eq!(b.body.as_ref().unwrap().items.len(), 2);
        assert_eq!(
            b.arg("shortcut")
                .unwrap()
                .block
                .as_ref()
                .unwrap()
                .items
                .len(),
            1
        );
        let Item::Layer(m) = &net.items[2] else {
            panic!("m is a layer")
        };
        assert_eq!(m.args.len(), 2);
        assert!(m.args[0].block.as_ref().unwrap().items.is_empty());
        let Item::Layer(f) = &net.items[3] else {
            panic!("f is a layer")
        };
        assert_eq!(f.kind, "Inner");
        assert!(f.path.is_some() && f.expect.is_some());
    }
}
