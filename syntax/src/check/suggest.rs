//! Suggested replacements. A message offers a layer written another way only after the same
//! checks that reject the original accept it, so that following a suggestion never leads to
//! the next error: [`accepted`] runs the argument and shape checks on the suggested text.
//!
//! Two sources of suggestions live here: a layer with some arguments changed (a stride or
//! padding that tiles the input, from `kinds::window`), and a layer written with another
//! library's habits (PyTorch's `conv2d(1, 16, kernel_size = 3, padding = 1)`, whose input
//! channels striate infers) translated into this language.

use super::args::{resolve, Suggest};
use super::messages::{closest, Errors};
use crate::ast::{Arg, Item, LayerItem};
use crate::kinds::{self, Build, Kind};
use crate::plan::Shape;

/// Argument names of other libraries (PyTorch, Keras) and the argument each is here; `None`:
/// the value is inferred from the layer before, so the argument is dropped. An entry applies
/// only to a kind that has the argument it names.
const OTHER_SPELLINGS: &[(&str, Option<&str>)] = &[
    ("kernel_size", Some("kernel")),
    ("pool_size", Some("kernel")),
    ("padding", Some("pad")),
    ("strides", Some("stride")),
    ("filters", Some("out_channels")),
    ("units", Some("out_features")),
    ("use_bias", Some("bias")),
    ("ceil_mode", Some("floor")),
    ("rate", Some("p")),
    ("negative_slope", Some("slope")),
    ("alpha", Some("slope")),
    ("epsilon", Some("eps")),
    ("in_channels", None),
    ("in_features", None),
    ("num_features", None),
];

/// The argument of `names` that `written` means: another library's name for it, or the
/// nearest name when `written` looks like a typo of it. `Some(None)`: an argument of another
/// library that striate infers (`in_channels`).
pub fn meant_argument(written: &str, names: &[&'static str]) -> Option<Option<&'static str>> {
    let other = OTHER_SPELLINGS
        .iter()
        .find(|(from, to)| *from == written && to.is_none_or(|to| names.contains(&to)));
    match other {
        Some((_, None)) => Some(None),
        Some((_, Some(to))) => names.iter().copied().find(|n| n == to).map(Some),
        None => closest(written, names).map(Some),
    }
}

/// Whether `call` (`max_pool(3, stride = 1)`), put in place of `layer`, is a layer that the
/// argument checks accept and, when `input` is known, that builds on it without an error and
/// gives the output shape `layer` declares, if it declares one.
pub fn accepted(call: &str, input: Option<Shape>, layer: &LayerItem) -> bool {
    output_of(call, input).is_some_and(|out| declared_fits(layer, out))
}

/// Whether `output` is the shape that `layer` declares with `-> [..]` (or either is unknown).
pub fn declared_fits(layer: &LayerItem, output: Option<Shape>) -> bool {
    match (&layer.expect, output) {
        (Some((dims, _)), Some(out)) => dims.iter().map(|d| d.value).eq(out.dims()),
        _ => true,
    }
}

/// The output shape of `call` on `input` (`Some(None)` when the input is unknown and its
/// arguments are right), or `None` when the checks reject it.
pub fn output_of(call: &str, input: Option<Shape>) -> Option<Option<Shape>> {
    let Ok(Item::Layer(layer)) = syn::parse_str::<Item>(call) else {
        return None;
    };
    let kind_name = layer.kind.to_string();
    let kind = kinds::find(&kind_name).filter(|_| layer.path.is_none())?;
    if layer.body.is_some() || layer.expect.is_some() {
        return None;
    }
    let mut errors = Errors::default();
    let args = resolve(&layer, kind, "", Suggest::No, &mut errors)?;
    let Some(input) = input else {
        return errors.0.is_empty().then_some(None);
    };
    let mut cx = Build {
        who: "",
        kind: &kind_name,
        item: &layer,
        input,
        args: &args,
        errors: &mut errors,
        verifying: true,
    };
    let built = kind.build(&mut cx)?;
    errors.0.is_empty().then(|| Some(built.output()))
}

/// `conv2d(16, kernel = 3, pad = 1)`: a layer of `kind` with these arguments, the unnamed ones
/// first and every argument in the order of the kind's list.
pub fn render(kind: &dyn Kind, args: &[(&str, String)]) -> String {
    let mut parts = Vec::new();
    let mut unnamed = true;
    for spec in kind.args() {
        let Some((_, value)) = args.iter().find(|(name, _)| *name == spec.name) else {
            unnamed = false;
            continue;
        };
        unnamed &= spec.positional;
        if unnamed {
            parts.push(value.clone());
        } else {
            parts.push(format!("{} = {value}", spec.name));
        }
    }
    if parts.is_empty() {
        kind.name().to_string()
    } else {
        format!("{}({})", kind.name(), parts.join(", "))
    }
}

/// `layer` (of `kind`), whose arguments by name are `written`, with `missing` given the value
/// it has in the kind's `example` (`e.g. `conv2d(6, kernel = 5)``), when the checks accept it
/// on `input`.
pub fn completed(
    layer: &LayerItem,
    kind: &dyn Kind,
    mut written: Vec<(&'static str, String)>,
    missing: &'static str,
    example: &str,
    input: Option<Shape>,
) -> Option<String> {
    let example_call = example.split('`').nth(1)?;
    let Ok(Item::Layer(example_layer)) = syn::parse_str::<Item>(example_call) else {
        return None;
    };
    let mut errors = Errors::default();
    let args = resolve(&example_layer, kind, "", Suggest::No, &mut errors)?;
    let (_, value) = args.written().into_iter().find(|(n, _)| *n == missing)?;
    written.push((missing, value));
    let call = render(kind, &written);
    accepted(&call, input, layer).then_some(call)
}

/// What a translation changed, for the message.
#[derive(Default)]
pub struct Translation {
    /// The layer as this language writes it.
    pub call: String,
    /// The first unnamed argument was dropped: it is inferred (`input channels`).
    pub dropped_inferred: Option<&'static str>,
    /// Unnamed arguments were given names.
    pub named_surplus: bool,
    /// `(written, meant)` argument names.
    pub renamed: Vec<(String, &'static str)>,
    /// Named arguments dropped because they are inferred (`in_channels`).
    pub dropped_named: Vec<String>,
}

/// `layer` (of `kind`) translated from another library's habits: unnamed arguments beyond the
/// kind's (PyTorch's leading input size, or arguments left unnamed) and argument names of
/// other libraries or with typos. `None` when there is nothing to translate or no translation
/// that the checks accept on `input`.
pub fn translate(layer: &LayerItem, kind: &dyn Kind, input: Option<Shape>) -> Option<Translation> {
    let specs = kind.args();
    let names: Vec<&'static str> = specs.iter().map(|s| s.name).collect();
    let mut t = Translation::default();
    let mut named: Vec<(&'static str, String)> = Vec::new();
    for a in &layer.args {
        let Some(n) = &a.name else { continue };
        let n = n.to_string();
        if let Some(spec) = specs.iter().find(|s| s.name == n) {
            named.push((spec.name, a.value.render()));
            continue;
        }
        match meant_argument(&n, &names)? {
            None => t.dropped_named.push(n),
            Some(meant) => {
                t.renamed.push((n, meant));
                named.push((meant, a.value.render()));
            }
        }
    }
    let unnamed: Vec<&Arg> = layer.args.iter().filter(|a| a.name.is_none()).collect();
    let own_unnamed = specs.iter().filter(|s| s.positional).count();
    if unnamed.len() <= own_unnamed {
        if t.renamed.is_empty() && t.dropped_named.is_empty() {
            return None;
        }
        let mut args = named;
        for (a, spec) in unnamed.iter().zip(specs.iter().filter(|s| s.positional)) {
            args.push((spec.name, a.value.render()));
        }
        t.call = render_unique(kind, &args)?;
        return accepted(&t.call, input, layer).then_some(t);
    }
    // Too many unnamed arguments: when the kind infers its input size, read them first as
    // PyTorch does, whose first argument is that size (`conv2d(1, 16, 3)`); then in the
    // kind's order (Keras: `conv2d(6, 5)` for 6 filters of 5x5).
    let mut readings = Vec::new();
    if kind.inferred().is_some() {
        readings.push((true, &unnamed[1..]));
    }
    readings.push((false, &unnamed[..]));
    for (drops, values) in readings {
        let free = specs
            .iter()
            .filter(|s| !named.iter().any(|(n, _)| *n == s.name));
        if values.len() > free.clone().count() {
            continue;
        }
        let mut args = named.clone();
        args.extend(free.zip(values).map(|(s, a)| (s.name, a.value.render())));
        let Some(call) = render_unique(kind, &args) else {
            continue;
        };
        if accepted(&call, input, layer) {
            t.call = call;
            t.dropped_inferred = if drops { kind.inferred() } else { None };
            t.named_surplus = !drops;
            return Some(t);
        }
    }
    None
}

/// [`render`], or `None` when an argument is given twice.
fn render_unique(kind: &dyn Kind, args: &[(&'static str, String)]) -> Option<String> {
    let mut seen: Vec<&str> = args.iter().map(|(n, _)| *n).collect();
    seen.sort_unstable();
    let before = seen.len();
    seen.dedup();
    (seen.len() == before).then(|| render(kind, args))
}

impl Translation {
    /// `conv1: `conv2d` infers its input channels from the layer before (1 here), ...; write
    /// `conv2d(16, kernel = 3, pad = 1)``.
    pub fn message(&self, who: &str, kind: &dyn Kind, input: Option<Shape>) -> String {
        let mut parts = Vec::new();
        let name = kind.name();
        if let Some(what) = self.dropped_inferred {
            let here = input
                .map(|s| format!(" ({} here)", s.channels()))
                .unwrap_or_default();
            let first = match kind.args().iter().find(|s| s.positional) {
                Some(spec) => format!("its first argument is `{}`", spec.name),
                None => "it takes no unnamed argument".to_string(),
            };
            parts.push(format!(
                "`{name}` infers its {what} from the layer before{here}, so {first}"
            ));
        }
        if self.named_surplus {
            let unnamed: Vec<&str> = kind
                .args()
                .iter()
                .filter(|s| s.positional)
                .map(|s| s.name)
                .collect();
            parts.push(format!(
                "`{name}` takes {} unnamed argument{} ({}), so the others need names",
                unnamed.len(),
                if unnamed.len() == 1 { "" } else { "s" },
                super::messages::one_of(&unnamed)
            ));
        }
        for n in &self.dropped_named {
            parts.push(format!(
                "`{n}` is inferred from the layer before, not an argument"
            ));
        }
        if !self.renamed.is_empty() {
            let written: Vec<&str> = self.renamed.iter().map(|(w, _)| w.as_str()).collect();
            let meant: Vec<&str> = self.renamed.iter().map(|(_, m)| *m).collect();
            parts.push(format!(
                "unknown argument{} {} for `{name}`, did you mean {}?",
                if written.len() == 1 { "" } else { "s" },
                super::messages::one_of(&written),
                super::messages::one_of(&meant)
            ));
        }
        let lead = parts.join("; ");
        let sep = if lead.ends_with('?') { " " } else { "; " };
        let who = if who.is_empty() {
            String::new()
        } else {
            format!("{who}: ")
        };
        format!("{who}{lead}{sep}write `{}`", self.call)
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::{LineColumn, TokenStream, TokenTree};

    use super::super::check_all;
    use crate::ast::Network;

    /// The bodies of the `network! { .. }` invocations in `source`, in order.
    fn invocations(source: &str) -> Vec<TokenStream> {
        fn walk(tokens: TokenStream, out: &mut Vec<TokenStream>) {
            let tokens: Vec<TokenTree> = tokens.into_iter().collect();
            for (i, tt) in tokens.iter().enumerate() {
                if let TokenTree::Group(g) = tt {
                    let called = matches!(
                        (i.checked_sub(2).map(|j| &tokens[j]), &tokens[i - usize::from(i > 0)]),
                        (Some(TokenTree::Ident(name)), TokenTree::Punct(bang))
                            if name == "network" && bang.as_char() == '!'
                    );
                    if called {
                        out.push(g.stream());
                    } else {
                        walk(g.stream(), out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        if let Ok(tokens) = source.parse() {
            walk(tokens, &mut out);
        }
        out
    }

    /// The byte offset of a line and column (in characters) of `source`.
    fn offset(source: &str, at: LineColumn) -> usize {
        let line_start: usize = source
            .split_inclusive('\n')
            .take(at.line - 1)
            .map(str::len)
            .sum();
        let line = &source[line_start..];
        line_start
            + line
                .char_indices()
                .nth(at.column)
                .map_or(line.len(), |(i, _)| i)
    }

    /// The errors of the `n`th network of `source`, as byte ranges and messages, and the fixes
    /// they suggest as byte ranges and replacements.
    #[allow(clippy::type_complexity)]
    fn check_nth(
        source: &str,
        n: usize,
    ) -> (
        Vec<(std::ops::Range<usize>, String)>,
        Vec<(usize, std::ops::Range<usize>, String)>,
    ) {
        let body = invocations(source).swap_remove(n);
        let Ok(net) = syn::parse2::<Network>(body) else {
            return (vec![(0..source.len(), "does not parse".into())], Vec::new());
        };
        let Err(errors) = check_all(&net) else {
            return (Vec::new(), Vec::new());
        };
        let range = |start, end| offset(source, start)..offset(source, end);
        let messages = errors
            .0
            .iter()
            .map(|e| (range(e.span().start(), e.span().end()), e.to_string()))
            .collect();
        let fixes = errors
            .1
            .iter()
            .map(|f| {
                (
                    f.error,
                    range(f.start.start(), f.end.end()),
                    f.replacement.clone(),
                )
            })
            .collect();
        (messages, fixes)
    }

    /// Every fix that a message of a `tests/ui` case suggests, put in place of what it
    /// replaces, gives a network in which nothing is wrong there any more; and a case with one
    /// mistake then compiles. A message that offers code (`e.g. `..``, `write `..``; not a
    /// template with `..` in it) must record it as a fix, so a new suggestion is covered by
    /// adding a case for it.
    #[test]
    fn every_suggested_fix_checks() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/ui");
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        paths.sort();
        let mut applied = 0;
        for path in &paths {
            let source = std::fs::read_to_string(path).unwrap();
            let case = path.file_name().unwrap().to_string_lossy();
            for n in 0..invocations(&source).len() {
                let (errors, fixes) = check_nth(&source, n);
                for (i, (_, message)) in errors.iter().enumerate() {
                    let offers = ["e.g. `", "write `"]
                        .iter()
                        .filter_map(|lead| message.split(lead).nth(1))
                        .any(|code| !code.split('`').next().unwrap_or("").contains(".."));
                    assert!(
                        !offers || fixes.iter().any(|(e, ..)| *e == i),
                        "{case}: this message offers code but records no fix to test:\n  {message}"
                    );
                }
                for (error, range, replacement) in fixes {
                    let fixed = format!(
                        "{}{replacement}{}",
                        &source[..range.start],
                        &source[range.end..]
                    );
                    let new_range = range.start..range.start + replacement.len();
                    let (after, _) = check_nth(&fixed, n);
                    let message = &errors[error].1;
                    let left: Vec<&String> = after
                        .iter()
                        .filter(|(r, _)| r.start < new_range.end && new_range.start < r.end)
                        .map(|(_, m)| m)
                        .collect();
                    assert!(
                        left.is_empty(),
                        "{case}: the fix `{replacement}` of\n  {message}\nleaves\n  {left:?}"
                    );
                    assert!(
                        errors.len() > 1 || after.is_empty(),
                        "{case}: the fix `{replacement}` of\n  {message}\nleaves\n  {after:?}"
                    );
                    applied += 1;
                }
            }
        }
        assert!(applied >= 8, "only {applied} fixes were applied");
    }
}
