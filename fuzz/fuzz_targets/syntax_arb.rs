//! The `network!` front end from declarations built by `arbitrary`: the input bytes choose an
//! input shape and a list of layers of every kind (convolutions, pools, batch norm,
//! activations, dropout, flatten, linear, residual and concat blocks, nested networks), each
//! with arguments that are mostly plausible and sometimes not (zero, huge, negative, suffixed
//! or float sizes, unknown names, repeated names, wrong declared shapes). Most inputs are
//! therefore well-formed networks that reach the shape checker and code generation, where
//! the `syntax` target's text mostly stops at the parser.
//!
//! Checked: as in `syntax`, neither `check` nor `expand` panics, and they agree. With
//! `STRIATE_FUZZ_PRINT` set, each declaration is printed to standard error.
#![no_main]

use std::fmt::Write;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use proc_macro2::TokenStream;

/// How deep blocks are generated: past the parser's limit of 32, not much further.
const MAX_DEPTH: u32 = 36;

/// A size: mostly small, sometimes an edge case.
fn size(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=15u8)? {
        0 => "0".into(),
        1 => u.arbitrary::<u64>()?.to_string(),
        2 => u.arbitrary::<u32>()?.to_string(),
        3 => format!("{}u8", u.int_in_range(1..=9u8)?),
        4 => format!("{}.0", u.int_in_range(1..=9u8)?),
        5 => format!("-{}", u.int_in_range(1..=9u8)?),
        6 => (1u64 << u.int_in_range(16..=63u8)?).to_string(),
        7 => "true".into(),
        _ => u.int_in_range(1..=40u16)?.to_string(),
    })
}

/// A kernel, stride or pad: one size or a pair.
fn window(u: &mut Unstructured) -> Result<String> {
    if u.ratio(1, 4)? {
        Ok(format!("({}, {})", size(u)?, size(u)?))
    } else {
        size(u)
    }
}

/// A float argument (momentum, eps, slope, probability).
fn float(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => "1.0".into(),
        1 => "0.99999999".into(),
        2 => format!("{:e}", u.arbitrary::<f64>()?.abs()),
        3 => format!("-0.{}", u.int_in_range(1..=9u8)?),
        4 => "1e400".into(),
        _ => format!("0.{}", u.int_in_range(0..=99u8)?),
    })
}

fn layer_name(u: &mut Unstructured, out: &mut String) -> Result<()> {
    const NAMES: &[&str] = &[
        "c1", "c2", "bn", "fc", "fc1", "r#type", "block", "input", "weight", "a", "b", "self",
    ];
    match u.int_in_range(0..=3u8)? {
        0 => {}
        1 => write!(out, "{}: ", u.choose(NAMES)?).unwrap(),
        _ => write!(out, "l{}: ", u.int_in_range(0..=20u8)?).unwrap(),
    }
    Ok(())
}

/// `name = value` arguments, each present or not.
fn args(u: &mut Unstructured, first: Option<String>, named: &[(&str, String)]) -> Result<String> {
    let mut parts: Vec<String> = first.into_iter().collect();
    for (name, value) in named {
        if u.ratio(1, 3)? {
            parts.push(format!("{name} = {value}"));
        }
    }
    if u.ratio(1, 20)? {
        parts.push(format!("unknown = {}", size(u)?));
    }
    Ok(if parts.is_empty() && u.arbitrary()? {
        String::new()
    } else {
        format!("({})", parts.join(", "))
    })
}

fn block(u: &mut Unstructured, depth: u32, out: &mut String) -> Result<()> {
    out.push('{');
    let count = u.int_in_range(0..=6u8)?;
    for _ in 0..count {
        if u.is_empty() {
            break;
        }
        item(u, depth + 1, out)?;
        out.push_str(", ");
    }
    out.push('}');
    Ok(())
}

fn item(u: &mut Unstructured, depth: u32, out: &mut String) -> Result<()> {
    layer_name(u, out)?;
    let blocks = depth < MAX_DEPTH;
    let kind = u.int_in_range(0..=if blocks { 16u8 } else { 13 })?;
    let bool_value = |u: &mut Unstructured| -> Result<String> {
        Ok(if u.ratio(1, 10)? {
            size(u)?
        } else {
            u.arbitrary::<bool>()?.to_string()
        })
    };
    let text = match kind {
        0 | 1 => {
            let named = [
                ("kernel", window(u)?),
                ("stride", window(u)?),
                ("pad", window(u)?),
                ("bias", bool_value(u)?),
                ("floor", bool_value(u)?),
            ];
            let out_channels = size(u)?;
            let mut a = args(u, Some(out_channels), &named)?;
            if !a.contains("kernel") {
                a.insert_str(a.len() - 1, &format!(", kernel = {}", window(u)?));
            }
            format!("conv2d{a}")
        }
        2 => {
            let named = [("momentum", float(u)?), ("eps", float(u)?)];
            format!("batch_norm{}", args(u, None, &named)?)
        }
        3 => "relu".into(),
        4 => {
            let slope = float(u)?;
            format!("leaky_relu{}", args(u, Some(slope), &[])?)
        }
        5 => "tanh".into(),
        6 => "sigmoid".into(),
        7 | 8 => {
            let pool = if kind == 7 { "max_pool" } else { "avg_pool" };
            let named = [
                ("stride", window(u)?),
                ("pad", window(u)?),
                ("floor", bool_value(u)?),
            ];
            let window = window(u)?;
            format!("{pool}{}", args(u, Some(window), &named)?)
        }
        9 => {
            let p = float(u)?;
            format!("dropout{}", args(u, Some(p), &[])?)
        }
        10 => "flatten".into(),
        11 | 12 => {
            let named = [("bias", bool_value(u)?)];
            let features = size(u)?;
            format!("linear{}", args(u, Some(features), &named)?)
        }
        13 => (*u.choose(&["self::Inner", "nets::Other", "Inner", "conv3d", "r#relu"])?).into(),
        14 => {
            let mut text = String::from("residual");
            if u.arbitrary()? {
                text.push_str("(shortcut = ");
                block(u, depth, &mut text)?;
                text.push_str(") ");
            }
            block(u, depth, &mut text)?;
            text
        }
        _ => {
            let mut text = String::from("concat(");
            for branch in 0..u.int_in_range(0..=3u8)? {
                write!(text, "p{branch} = ").unwrap();
                block(u, depth, &mut text)?;
                text.push_str(", ");
            }
            text.push(')');
            text
        }
    };
    out.push_str(&text);
    if u.ratio(1, 6)? {
        let dims: Vec<String> = (0..u.int_in_range(1..=3u8)?)
            .map(|_| size(u))
            .collect::<Result<_>>()?;
        write!(out, " -> [{}]", dims.join(", ")).unwrap();
    }
    Ok(())
}

fn network(u: &mut Unstructured) -> Result<String> {
    let mut out = String::new();
    if u.ratio(1, 4)? {
        out.push_str("/// doc\n#[derive(Debug)]\n");
    }
    out.push_str(u.choose(&["", "pub ", "pub(crate) "])?);
    out.push_str("struct Net { ");
    let dims = match u.int_in_range(0..=5u8)? {
        0 => vec![size(u)?],
        1 => vec![],
        2 => vec![size(u)?, size(u)?],
        _ => vec![size(u)?, size(u)?, size(u)?],
    };
    if !u.ratio(1, 30)? {
        write!(out, "input: [{}], ", dims.join(", ")).unwrap();
    }
    while !u.is_empty() && u.ratio(15, 16)? {
        item(u, 0, &mut out)?;
        out.push_str(", ");
    }
    out.push('}');
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(source) = network(&mut u) else {
        return;
    };
    if std::env::var_os("STRIATE_FUZZ_PRINT").is_some() {
        eprintln!("{source}");
    }
    let Ok(tokens) = source.parse::<TokenStream>() else {
        return;
    };
    striate_fuzz::check_front_end(tokens, &source);
});
