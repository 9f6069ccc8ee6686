//! Every kind of mistake the `network!` macro reports, one file each in `tests/ui/`, with the
//! exact message (and the span it points at) in the `.stderr` beside it; and the networks in
//! `tests/pass/` that must compile and run.
//!
//! After changing a message: `TRYBUILD=overwrite cargo test --test compile_fail`, then read the
//! diff of every `.stderr` file.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/pass/*.rs");
}
