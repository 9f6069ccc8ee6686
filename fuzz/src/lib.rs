//! What the fuzz targets share: a scratch directory per process, and the front end's check.

use std::path::PathBuf;

use proc_macro2::{TokenStream, TokenTree};

/// A directory of this process's own under the system's temporary directory, for the targets
/// whose API reads files; each run rewrites one file in it.
///
/// # Panics
/// When the directory cannot be created: the target cannot run then.
pub fn scratch_dir(target: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("striate-fuzz-{target}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Whether the expansion reports an error: `compile_error` at any depth.
fn has_compile_error(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => ident == "compile_error",
        TokenTree::Group(group) => has_compile_error(group.stream()),
        _ => false,
    })
}

/// Runs `striate_syntax::check` and `striate_syntax::expand` (what `network!` runs) on
/// `tokens`, `source` naming them in a failure.
///
/// # Panics
/// When either panics (the property under test), when `check` fails without an error, or
/// when they disagree: `expand` must emit `compile_error!` exactly when `check` fails.
pub fn check_front_end(tokens: TokenStream, source: &str) {
    let checked = striate_syntax::check(tokens.clone());
    if let Err(errors) = &checked {
        assert!(
            !errors.is_empty(),
            "check failed without an error on {source}"
        );
        for e in errors {
            let _ = e.to_string();
        }
    }
    let expanded = striate_syntax::expand(tokens);
    assert_eq!(
        has_compile_error(expanded),
        checked.is_err(),
        "expand and check disagree on {source}: check gave {checked:?}"
    );
}
