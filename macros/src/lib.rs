//! The `network!` macro of [striate](https://docs.rs/striate).
//!
//! A thin procedural macro over [`striate_syntax::expand`], where parsing, the compile-time
//! shape checks and code generation live as an ordinary library (so that tests and fuzz
//! targets can call them). Use the macro through the `striate` crate, whose documentation
//! describes the language.

use proc_macro::TokenStream;

/// (Implemented in the `striate-syntax` crate; use it as `striate::network!`.)
#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    striate_syntax::expand(input.into()).into()
}
