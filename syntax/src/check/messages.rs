//! Messages: collecting errors, limits, "did you mean" suggestions and lists of names.

use proc_macro2::Span;
use quote::ToTokens;

use crate::ast::LayerItem;

/// Collects errors instead of stopping at the first (serde's `Ctxt`), and the replacements
/// their messages suggest.
#[derive(Default)]
pub struct Errors(pub Vec<syn::Error>, pub Vec<Fix>);

/// A replacement an error message suggests: the tokens from `start` to `end` become
/// `replacement`, which the message describes. Every fix is tested by applying it to
/// the `tests/ui` cases and checking the result again.
// Read only by the tests, which apply every fix; messages describe it themselves.
#[cfg_attr(not(test), allow(dead_code))]
pub struct Fix {
    /// The error (an index into [`Errors`]'s list) whose message suggests it.
    pub error: usize,
    pub start: Span,
    pub end: Span,
    pub replacement: String,
}

impl Errors {
    pub fn spanned(&mut self, tokens: impl ToTokens, msg: impl std::fmt::Display) {
        self.0.push(syn::Error::new_spanned(tokens, msg));
    }

    /// An error spanning `tokens` whose message suggests writing `replacement` in their place.
    pub fn with_fix(
        &mut self,
        tokens: impl ToTokens,
        msg: impl std::fmt::Display,
        replacement: String,
    ) {
        self.with_fixes(tokens, msg, vec![replacement]);
    }

    /// An error spanning `tokens` whose message suggests each of `replacements` in their place.
    pub fn with_fixes(
        &mut self,
        tokens: impl ToTokens,
        msg: impl std::fmt::Display,
        replacements: Vec<String>,
    ) {
        let tokens = tokens.into_token_stream();
        self.with_fixes_of(tokens.clone(), tokens, msg, replacements);
    }

    /// An error spanning `tokens` whose message suggests `replacements` for the wider `of`
    /// (an error at an argument whose fix rewrites the layer).
    pub fn with_fixes_of(
        &mut self,
        tokens: impl ToTokens,
        of: impl ToTokens,
        msg: impl std::fmt::Display,
        replacements: Vec<String>,
    ) {
        let mut spans = of.into_token_stream().into_iter().map(|t| t.span());
        let start = spans.next().unwrap_or_else(Span::call_site);
        let end = spans.last().unwrap_or(start);
        for replacement in replacements {
            self.1.push(Fix {
                error: self.0.len(),
                start,
                end,
                replacement,
            });
        }
        self.spanned(tokens, msg);
    }

    /// An error at `span` whose message suggests writing `replacement` there.
    pub fn at_with_fix(&mut self, span: Span, msg: impl std::fmt::Display, replacement: String) {
        self.1.push(Fix {
            error: self.0.len(),
            start: span,
            end: span,
            replacement,
        });
        self.at(span, msg);
    }

    pub fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.0.push(syn::Error::new(span, msg));
    }
}

/// The largest size of one dimension, kernel, stride or padding.
pub const MAX_SIZE: u64 = 1 << 24;

/// The largest number of values in one tensor (a layer's output per sample, or its weight).
pub const MAX_TENSOR: u128 = 1 << 36;

/// `Some(product)` when the product of `factors` is at most [`MAX_TENSOR`].
pub fn tensor_len(factors: &[usize]) -> Option<usize> {
    let product = factors
        .iter()
        .try_fold(1u128, |acc, &f| acc.checked_mul(f as u128))?;
    (product <= MAX_TENSOR).then_some(product as usize)
}

/// Reports a tensor too large for striate; returns whether it fits.
pub fn fits(
    who: &str,
    what: &str,
    factors: &[usize],
    layer: &LayerItem,
    errors: &mut Errors,
) -> bool {
    if tensor_len(factors).is_some() {
        return true;
    }
    let text: Vec<String> = factors.iter().map(|f| f.to_string()).collect();
    errors.spanned(
        &layer.call_tokens,
        format!(
            "{who}: the {what} would hold {} values, more than the 2^36 striate supports",
            text.join(" x ")
        ),
    );
    false
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

pub fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}
