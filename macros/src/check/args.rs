//! Argument resolution: a layer's written arguments matched against its kind's [`ArgSpec`]s,
//! with unknown, duplicate, missing and ill-typed arguments reported.

use std::collections::HashMap;

use proc_macro2::TokenStream;

use super::messages::{closest, one_of, Errors, MAX_SIZE};
use crate::ast::{Arg, LayerItem, Value};
use crate::kinds::{ArgKind, ArgSpec, Kind};

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

    pub fn tokens(&self, name: &str) -> Option<&TokenStream> {
        self.values.get(name).map(|a| &a.tokens)
    }
}

/// Matches `layer`'s arguments to the specs of its kind; reports unknown, duplicate, missing
/// and ill-typed arguments. Returns `None` when the layer cannot be built.
pub fn resolve<'a>(
    layer: &'a LayerItem,
    kind: &dyn Kind,
    errors: &mut Errors,
) -> Option<Resolved<'a>> {
    let specs = kind.args();
    let example_of = |missing: &str| kind.example(missing);
    let kind = kind.name();
    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
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
                        errors.spanned(
                            &a.tokens,
                            format!(
                                "too many unnamed arguments: `{kind}` takes {} unnamed ({}); name the others, e.g. `{} = {}`; expected one of: {}",
                                taken.len(),
                                one_of(&taken),
                                specs.iter().find(|s| !s.positional).map_or("stride", |s| s.name),
                                a.value.render(),
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
                    let hint = closest(&n, &names)
                        .map(|c| format!("did you mean `{c}`? "))
                        .unwrap_or_default();
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
            let example = example_of(spec.name);
            errors.spanned(
                &layer.call_tokens,
                format!(
                    "`{kind}` is missing its `{}` argument; {example}",
                    spec.name
                ),
            );
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
        _ => false,
    };
    if too_large && matches!(spec.kind, ArgKind::Count | ArgKind::Window | ArgKind::Pad) {
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
            Some(p) if (0.0..1.0).contains(&p) => true,
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
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}
