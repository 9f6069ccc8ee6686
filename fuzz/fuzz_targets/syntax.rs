//! The `network!` front end from arbitrary text: what lexes as Rust tokens
//! (`str::parse::<proc_macro2::TokenStream>`) goes through `striate_syntax::check` and
//! `striate_syntax::expand`, the function the macro runs. The seeds are the declarations of
//! `tests/pass/` and the examples, so libFuzzer's mutations start from valid networks.
//!
//! Checked: neither function panics, overflows its stack or aborts, and they agree: `expand`
//! emits `compile_error!` exactly when `check` returns errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proc_macro2::TokenStream;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tokens) = text.parse::<TokenStream>() else {
        return;
    };
    striate_fuzz::check_front_end(tokens, text);
});
