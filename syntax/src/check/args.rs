//! Argument resolution: a layer's written arguments matched against its kind's [`ArgSpec`]s,
//! with unknown, duplicate, missing and ill-typed arguments reported.

use std::collections::HashMap;

use proc_macro2::TokenStream;

use super::messages::{one_of, Errors, MAX_SIZE};
use super::suggest::{completed, meant_argument, translate};
use crate::ast::{Arg, LayerItem, Value};
use crate::kinds::{ArgKind, ArgSpec, Kind};
use crate::plan::Shape;

/// The arguments of one layer, matched against its specs.
pub struct Resolved<'a> {
    values: HashMap<&'static str, &'a Arg>,
}

impl Resolved<'_> {
    pub fn int(&self, name: &str, default: usize) -> usize {
        match self.values.get(name).map(|a| &a.value) {
            Some(Value::Int(v)) => *v as usize,
            _ => default,
        }
    }

    pub fn pair(&self, name: &str, default: [usize; 2]) -> [usize; 2] {
        match self.values.get(name).map(|a| &a.value) {
            Some(Value::Int(v)) => [*v as usize; 2],
            Some(Value::Pair(h, w)) => [*h as usize, *w as usize],
            _ => default,
        }
    }

    pub fn bool(&self, name: &str, default: bool) -> bool {
        match self.values.get(name).map(|a| &a.value) {
            Some(Value::Bool(b)) => *b,
            _ => default,
        }
    }

    pub fn number(&self, name: &str, default: f64) -> f64 {
        match self.values.get(name).map(|a| &a.value) {
            Some(Value::Int(v)) => *v as f64,
            Some(Value::Float(v)) => *v,
            _ => default,
        }
    }

    /// A [`ArgKind::Choice`] argument's name, as written.
    pub fn choice(&self, name: &str) -> Option<&str> {
        match self.values.get(name).map(|a| &a.value) {
            Some(Value::Ident(v)) => Some(v),
            _ => None,
        }
    }

    /// A [`ArgKind::Dims`] argument.
    pub fn dims(&self, name: &str) -> Option<Vec<usize>> {
        match self.values.get(name).map(|a| &a.value) {
            Some(Value::List(v)) => Some(v.iter().map(|d| *d as usize).collect()),
            _ => None,
        }
    }

    pub fn tokens(&self, name: &str) -> Option<&TokenStream> {
        self.values.get(name).map(|a| &a.tokens)
    }

    /// Every argument given, by name, as written.
    pub fn written(&self) -> Vec<(&'static str, String)> {
        written(&self.values)
    }
}

fn written(values: &HashMap<&'static str, &Arg>) -> Vec<(&'static str, String)> {
    values
        .iter()
        .map(|(name, a)| (*name, a.value.render()))
        .collect()
}

/// Whether argument errors may suggest a rewrite of the layer.
#[derive(Clone, Copy)]
pub enum Suggest {
    /// No: the layer is itself a suggestion being checked.
    No,
    /// Yes, checked on the layer's input when it is known.
    On(Option<Shape>),
}

/// Matches `layer`'s arguments to the specs of its kind; reports unknown, duplicate, missing
/// and ill-typed arguments. Returns `None` when the layer cannot be built.
///
/// A layer written with another library's habits (too many unnamed arguments, or argument
/// names of PyTorch or Keras, or with typos) gets one error for the whole layer that shows it
/// rewritten, when the rewrite passes the checks.
pub fn resolve<'a>(
    layer: &'a LayerItem,
    kind: &dyn Kind,
    who: &str,
    suggest: Suggest,
    errors: &mut Errors,
) -> Option<Resolved<'a>> {
    if let Suggest::On(input) = suggest {
        if let Some(t) = translate(layer, kind, input) {
            errors.with_fix(&layer.call_tokens, t.message(who, kind, input), t.call);
            return None;
        }
    }
    let specs = kind.args();
    let kind_ref = kind;
    let inferred = kind.inferred();
    let kind = kind.name();
    let names: Vec<&'static str> = specs.iter().map(|s| s.name).collect();
    let positional: Vec<&ArgSpec> = specs.iter().filter(|s| s.positional).collect();
    let mut values: HashMap<&'static str, &Arg> = HashMap::new();
    let mut ok = true;
    let mut next_positional = 0;
    let mut surplus = false;
    for a in &layer.args {
        let spec = match &a.name {
            None => {
                let Some(spec) = positional.get(next_positional) else {
                    ok = false;
                    surplus = true;
                    if specs.is_empty() {
                        errors.spanned(&a.tokens, format!("`{kind}` takes no arguments"));
                    } else {
                        let taken: Vec<&str> = positional.iter().map(|s| s.name).collect();
                        let inferred = inferred
                            .map(|what| format!(" (its {what} come from the layer before)"))
                            .unwrap_or_default();
                        errors.spanned(
                            &a.tokens,
                            format!(
                                "too many unnamed arguments: `{kind}` takes {} unnamed ({}){inferred}; name the others; expected one of: {}",
                                taken.len(),
                                one_of(&taken),
                                one_of(&names)
                            ),
                        );
                    }
                    continue;
                };
                next_positional += 1;
                *spec
            }
            Some(name) => {
                let n = name.to_string();
                let Some(spec) = specs.iter().find(|s| s.name == n) else {
                    ok = false;
                    let hint = match meant_argument(&n, &names) {
                        Some(Some(c)) => format!("did you mean `{c}`? "),
                        Some(None) => "it is inferred from the layer before; ".to_string(),
                        None => String::new(),
                    };
                    if specs.is_empty() {
                        errors.spanned(name, format!("`{kind}` takes no arguments"));
                    } else {
                        errors.spanned(
                            name,
                            format!(
                                "unknown argument `{n}` for `{kind}`; {hint}expected one of: {}",
                                one_of(&names)
                            ),
                        );
                    }
                    continue;
                };
                spec
            }
        };
        if values.contains_key(spec.name) {
            ok = false;
            errors.spanned(
                &a.tokens,
                format!("duplicate argument `{}` for `{kind}`", spec.name),
            );
            continue;
        }
        if !check_value(spec, a, errors) {
            ok = false;
        }
        values.insert(spec.name, a);
    }
    for spec in specs.iter().filter(|s| s.required) {
        // After surplus unnamed arguments the "missing" one is most likely among them.
        if !values.contains_key(spec.name) && !surplus {
            ok = false;
            let example = kind_ref.example(spec.name);
            let msg = |example: &str| {
                format!(
                    "`{kind}` is missing its `{}` argument; {example}",
                    spec.name
                )
            };
            // The layer as written, with the example's value for the missing argument.
            let completed = match suggest {
                Suggest::On(input) => completed(
                    layer,
                    kind_ref,
                    written(&values),
                    spec.name,
                    &example,
                    input,
                ),
                Suggest::No => None,
            };
            match completed {
                Some(call) => {
                    let text = msg(&format!("e.g. `{call}`"));
                    errors.with_fix(&layer.call_tokens, text, call);
                }
                None => errors.spanned(&layer.call_tokens, msg(&example)),
            }
        }
    }
    ok.then_some(Resolved { values })
}

/// Checks that `a`'s value is of the kind `spec` wants and in its range.
fn check_value(spec: &ArgSpec, a: &Arg, errors: &mut Errors) -> bool {
    let name = spec.name;
    let v = &a.value;
    let found = v.describe();
    let wrong = |errors: &mut Errors, want: &str| {
        errors.spanned(&a.tokens, format!("`{name}` must be {want}, found {found}"));
        false
    };
    let too_large = match v {
        Value::Int(i) => *i > MAX_SIZE,
        Value::Pair(h, w) => *h > MAX_SIZE || *w > MAX_SIZE,
        Value::List(v) => v.iter().any(|d| *d > MAX_SIZE),
        _ => false,
    };
    let sized = matches!(
        spec.kind,
        ArgKind::Count | ArgKind::Window | ArgKind::Pad | ArgKind::Dims
    );
    if too_large && sized {
        return wrong(errors, &format!("at most {MAX_SIZE}"));
    }
    match spec.kind {
        ArgKind::Count => match v {
            Value::Int(0) => wrong(errors, "at least 1"),
            Value::Int(_) => true,
            _ => wrong(errors, "a positive integer"),
        },
        ArgKind::Window => match v {
            Value::Int(0) | Value::Pair(0, _) | Value::Pair(_, 0) => wrong(
                errors,
                "at least 1 (a zero-sized window or stride has no output)",
            ),
            Value::Int(_) | Value::Pair(..) => true,
            _ => wrong(errors, "a positive integer or a pair `(height, width)`"),
        },
        ArgKind::Pad => match v {
            Value::Int(_) | Value::Pair(..) => true,
            _ => wrong(errors, "a non-negative integer or a pair `(height, width)`"),
        },
        ArgKind::Bool => match v {
            Value::Bool(_) => true,
            _ => wrong(errors, "`true` or `false`"),
        },
        ArgKind::Probability => match number(v) {
            // The layer runs with the `f32` nearest `p`: that is the value checked.
            Some(p) if (0.0..1.0).contains(&(p as f32)) => true,
            Some(p) if p < 1.0 && p as f32 == 1.0 => wrong(
                errors,
                "a probability in [0, 1) as an `f32`, the type the layer runs with (this one \
                 rounds to 1, which would drop every unit)",
            ),
            Some(_) => wrong(errors, "a probability in [0, 1) (1 would drop every unit)"),
            None => wrong(errors, "a probability in [0, 1), such as `0.5`"),
        },
        ArgKind::Number => match number(v) {
            Some(x) if (x as f32).is_finite() => true,
            _ => wrong(errors, "a number, such as `0.01`"),
        },
        ArgKind::Fraction => match number(v) {
            Some(x) if (0.0..=1.0).contains(&x) => true,
            Some(_) => wrong(errors, "a number in [0, 1]"),
            None => wrong(errors, "a number in [0, 1], such as `0.1`"),
        },
        ArgKind::Positive => match number(v) {
            Some(x) if x as f32 > 0.0 && (x as f32).is_finite() => true,
            Some(_) => wrong(errors, "a number above 0"),
            None => wrong(errors, "a number above 0, such as `1e-5`"),
        },
        ArgKind::Choice(options) => match v {
            Value::Ident(name) if options.contains(&name.as_str()) => true,
            _ => wrong(errors, &format!("one of: {}", one_of(options))),
        },
        ArgKind::Dims => match v {
            Value::List(d) if !d.is_empty() && !d.contains(&0) => true,
            Value::List(_) => wrong(
                errors,
                "a list of sizes of at least 1, such as `[64, 7, 7]`",
            ),
            _ => wrong(errors, "a list of sizes in brackets, such as `[64, 7, 7]`"),
        },
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}
