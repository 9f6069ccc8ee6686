//! The front end of striate's `network!` macro, as a plain library: parsing, compile-time
//! shape checking and code generation over [`proc_macro2::TokenStream`].
//!
//! The `striate-macros` crate is a thin `#[proc_macro]` over [`expand`]. Being an ordinary
//! crate, this one can also be driven from tests, property tests and fuzz targets (`fuzz/`),
//! which cannot call a procedural macro.
//!
//! Three stages, data flowing one way: `ast` parses the tokens, `check` infers every
//! layer's shape and reports every mistake at once, building a `plan::Plan` (a graph of
//! values), and `expand` emits the code. What each layer kind does lives in its own module
//! under `kinds`, behind one registry. Use the macro through the `striate` crate, whose
//! documentation describes the language.
//!
//! ```
//! let source = "struct Net { input: [1, 28, 28], c: conv2d(6, kernel = 5), relu }";
//! let checked = striate_syntax::check(source.parse().unwrap()).unwrap();
//! assert_eq!(checked.name, "Net");
//! assert_eq!(checked.layers[0].output, [6, 24, 24]);
//!
//! let errors = striate_syntax::check("struct Bad { input: [4], relu(2) }".parse().unwrap());
//! assert!(errors.is_err());
//! ```

use proc_macro2::{TokenStream, TokenTree};

mod ast;
mod check;
mod expand;
mod kinds;
mod plan;

/// Parse, check and expand: the code of the network, or every error beside a struct that
/// keeps user code quiet. This is what `striate::network!` runs; it never panics.
pub fn expand(tokens: TokenStream) -> TokenStream {
    if let Some(e) = nesting_error(&tokens) {
        return e.into_compile_error();
    }
    let net = match syn::parse2::<ast::Network>(tokens) {
        Ok(net) => net,
        Err(e) => return e.into_compile_error(),
    };
    if let Some(e) = &net.syntax_error {
        return expand::fallback(&net, vec![e.clone()]);
    }
    match check::check(&net) {
        Ok(plan) => expand::expand(&net, &plan),
        Err(errors) => expand::fallback(&net, errors),
    }
}

/// A declaration that passed every check: what the compiler will build.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checked {
    /// The struct's name.
    pub name: String,
    /// The shape of one input sample, `[C, H, W]` or `[F]`.
    pub input: Vec<usize>,
    /// Every node of the graph in the order it runs: layers, and the `add` and `concat`
    /// joins of blocks.
    pub layers: Vec<CheckedLayer>,
    /// The shape of one output sample.
    pub output: Vec<usize>,
    /// Parameters in all (nested networks' not included: their sizes are known only to
    /// the compiler).
    pub params: usize,
}

/// One node of a [`Checked`] network.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckedLayer {
    /// The dotted name (`block1.conv1`), or `""` for an unnamed layer.
    pub path: String,
    /// `conv2d`, `relu`, ..., `add`, `concat`, or `nested`.
    pub kind: String,
    /// The shape of the node's output per sample.
    pub output: Vec<usize>,
    /// The node's parameters.
    pub params: usize,
}

/// Parse and check a declaration (the tokens inside `network! { ... }`) without generating
/// code: its shapes, or every error the compiler would show.
///
/// # Errors
/// Every mistake in the declaration, each spanned at its tokens, as the macro reports them.
pub fn check(tokens: TokenStream) -> Result<Checked, Vec<syn::Error>> {
    if let Some(e) = nesting_error(&tokens) {
        return Err(vec![e]);
    }
    let net = syn::parse2::<ast::Network>(tokens).map_err(|e| vec![e])?;
    if let Some(e) = &net.syntax_error {
        return Err(vec![e.clone()]);
    }
    let plan = check::check(&net)?;
    let layers: Vec<CheckedLayer> = plan
        .nodes
        .iter()
        .map(|node| CheckedLayer {
            path: node.path.clone(),
            kind: node.kind_name.clone(),
            output: node.output.dims(),
            params: node.params,
        })
        .collect();
    Ok(Checked {
        name: net.name.to_string(),
        input: plan.input.dims(),
        output: plan.output().dims(),
        params: layers.iter().map(|l| l.params).sum(),
        layers,
    })
}

/// How deep brackets of any kind may nest in a declaration. It is checked before the tokens
/// are parsed, without recursion: syn's token buffer recurses once per level before the
/// parser's own limits (32 nested blocks, 16 brackets in one argument) are reached, so a
/// deeper input could exhaust a small stack (5,000 nested blocks overflowed a 2 MiB test
/// thread in an AddressSanitizer build). Far beyond what those limits let a network use.
const MAX_NESTING: usize = 256;

/// An error at the first group nested more than [`MAX_NESTING`] deep, if there is one.
fn nesting_error(tokens: &TokenStream) -> Option<syn::Error> {
    let mut open = vec![tokens.clone().into_iter()];
    while let Some(innermost) = open.last_mut() {
        match innermost.next() {
            Some(TokenTree::Group(group)) => {
                if open.len() > MAX_NESTING {
                    return Some(syn::Error::new(
                        group.span(),
                        format!(
                            "brackets nest more than {MAX_NESTING} deep here; blocks may nest 32 \
                             deep and an argument's brackets 16, so no network needs this many"
                        ),
                    ));
                }
                open.push(group.stream().into_iter());
            }
            Some(_) => {}
            None => {
                open.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proc_macro2::{TokenStream, TokenTree};

    use crate::{ast, check, expand as run};

    const SOURCE: &str = "/// doc
        pub struct Zoo {
            input: [3, 20, 18],
            c1: conv2d(4, kernel = (3, 5), stride = 1, pad = (1, 2), bias = false) -> [4, 20, 18],
            bn1: batch_norm(momentum = 0.2, eps = 1e-3),
            leaky_relu(0.1),
            max_pool((2, 3), stride = (2, 3)),
            c2: conv2d(5, kernel = 3, stride = 2, floor = true),
            tanh,
            avg_pool(2, stride = 1, pad = 1),
            sigmoid,
            dropout(0.25),
            flatten,
            fc1: linear(16),
            relu,
            fc2: linear(3, bias = false),
        }";

    /// Blocks, nesting and a nested network, for the same treatment.
    const BLOCKS: &str = "pub struct Blocks {
            input: [3, 16, 16],
            stem: self::Stem -> [4, 16, 16],
            b1: residual { c1: conv2d(4, kernel = 3, pad = 1), bn: batch_norm, relu },
            b2: residual(shortcut = { c: conv2d(8, kernel = 1, stride = 2) }) {
                c1: conv2d(8, kernel = 3, stride = 2, pad = 1), relu,
            } -> [8, 8, 8],
            mix: concat(a = {}, b = { r: residual { c: conv2d(8, kernel = 1) } }, c = { max_pool(3, stride = 1, pad = 1) }),
            avg_pool(8), flatten, fc: linear(2),
        }";

    /// Every token of the source, flattened (groups are rebuilt by re-parsing the text).
    fn tokens_of(src: &str) -> Vec<String> {
        fn walk(ts: TokenStream, out: &mut Vec<String>) {
            for tt in ts {
                match tt {
                    TokenTree::Group(g) => {
                        let (open, close) = match g.delimiter() {
                            proc_macro2::Delimiter::Parenthesis => ("(", ")"),
                            proc_macro2::Delimiter::Brace => ("{", "}"),
                            proc_macro2::Delimiter::Bracket => ("[", "]"),
                            proc_macro2::Delimiter::None => ("", ""),
                        };
                        out.push(open.to_string());
                        walk(g.stream(), out);
                        out.push(close.to_string());
                    }
                    other => out.push(other.to_string()),
                }
            }
        }
        let mut out = Vec::new();
        walk(src.parse().unwrap(), &mut out);
        out
    }

    /// The macro never panics: thousands of mutations of a valid network (tokens deleted,
    /// duplicated, swapped, or replaced by extreme values) each give code or errors.
    #[test]
    fn never_panics_on_mutated_input() {
        for source in [SOURCE, BLOCKS] {
            mutate(source);
        }
    }

    fn mutate(source: &str) {
        let unmutated = run(source.parse().unwrap()).to_string();
        assert!(!unmutated.contains("compile_error"), "{unmutated}");
        let base = tokens_of(source);
        let replacements = [
            "0",
            "18446744073709551615",
            "99999999999999999999999",
            "16777217",
            "1e400",
            "-1e300",
            "3.5e38",
            "1e-50",
            "(0, 0)",
            "(1, 99999999999)",
            "true",
            "\"s\"",
            "input",
            "x",
            "->",
            "[]",
            ",",
            ":",
            "=",
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut compiled = 0;
        for _ in 0..3000 {
            let mut toks = base.clone();
            for _ in 0..1 + next(3) {
                let i = next(toks.len());
                match next(4) {
                    0 => {
                        toks.remove(i);
                    }
                    1 => {
                        let t = toks[i].clone();
                        toks.insert(i, t);
                    }
                    2 => {
                        let j = next(toks.len());
                        toks.swap(i, j);
                    }
                    _ => toks[i] = replacements[next(replacements.len())].to_string(),
                }
            }
            let text = toks.join(" ");
            // Unbalanced delimiters do not lex; the compiler rejects those before the macro.
            let Ok(stream) = text.parse::<TokenStream>() else {
                continue;
            };
            let result = std::panic::catch_unwind(|| run(stream));
            assert!(result.is_ok(), "the macro panicked on:\n{text}");
            compiled += 1;
        }
        assert!(compiled > 1000, "only {compiled} mutations lexed");
    }

    /// Found by the AddressSanitizer run of the test suite (docs/src/reliability.md): 5,000
    /// nested blocks overflowed the stack in syn's token buffer, before the parser's block
    /// limit. Now refused before parsing, on a thread with a 256 KiB stack; 256 levels pass
    /// to the parser, whose own limit then reports them.
    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let nest = |open: &str, close: &str, k: usize| {
            format!(
                "struct N {{ input: [2], b: residual {{ fc: linear({}2{}) }} }}",
                open.repeat(k),
                close.repeat(k)
            )
        };
        let deep = [
            nest("(", ")", 100_000),
            nest("[", "]", 5000),
            format!(
                "struct N {{ input: [2], {}relu{} }}",
                "b: residual { ".repeat(5000),
                " }".repeat(5000)
            ),
        ];
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                for source in &deep {
                    let tokens: TokenStream = source.parse().unwrap();
                    let errors = crate::check(tokens.clone()).unwrap_err();
                    assert_eq!(errors.len(), 1);
                    let message = errors[0].to_string();
                    assert!(message.contains("nest more than 256 deep"), "{message}");
                    assert!(run(tokens).to_string().contains("compile_error"));
                }
            })
            .unwrap()
            .join()
            .unwrap();
        // The struct's braces, the block's, `linear(..)` and 253 more: 256 deep.
        let limit = nest("(", ")", 253).parse().unwrap();
        let message = crate::check(limit).unwrap_err()[0].to_string();
        assert!(!message.contains("nest more than 256"), "{message}");
    }

    #[test]
    fn huge_sizes_are_errors_not_overflows() {
        for src in [
            "struct N { input: [16777216, 16777216, 16777216], relu }",
            "struct N { input: [1, 4096, 4096], c: conv2d(16777216, kernel = 4096) }",
            "struct N { input: [16777216], a: linear(16777216) }",
            "struct N { input: [1, 8, 8], c: conv2d(2, kernel = 3, pad = 16777216) }",
            "struct N { input: [4], leaky_relu(1e300) }",
            "struct N { input: [4], bn: batch_norm(eps = 1e-60) }",
        ] {
            let net: ast::Network = syn::parse_str(src).unwrap();
            assert!(check::check(&net).is_err(), "{src}");
        }
    }
}
