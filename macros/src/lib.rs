//! The `network!` macro of [striate](https://docs.rs/striate).
//!
//! Three stages, data flowing one way: [`ast`] parses the tokens, [`shape`] infers every
//! layer's shape and reports every mistake at once, [`expand`] emits the code. Use it through
//! the `striate` crate, whose documentation describes the language.

use proc_macro::TokenStream;

mod ast;
mod expand;
mod shape;

/// Declares a network whose every layer shape is checked at compile time.
///
/// See the `striate` crate for the language and the generated API.
#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    let net = match syn::parse::<ast::Network>(input) {
        Ok(net) => net,
        Err(e) => return e.into_compile_error().into(),
    };
    match shape::check(&net) {
        Ok(plan) => expand::expand(&net, &plan),
        Err(errors) => expand::fallback(&net, errors),
    }
    .into()
}
