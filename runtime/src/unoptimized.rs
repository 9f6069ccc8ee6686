//! The warning a build without optimisation prints, once per process.
//!
//! A crate that depends on striate builds its dependencies with its own profile; Cargo's
//! default `dev` profile compiles them without optimisation, and then the kernels run some
//! 250 times slower (an epoch of LeNet-5 took 11.5 s against 0.05 s). The runtime's build
//! script notices and the first network pass says so on standard error, with the fix.

/// The environment variable that silences the warning (any value but `0`).
pub const SILENCE: &str = "STRIATE_ALLOW_UNOPTIMIZED";

/// Whether this runtime was compiled at `opt-level = 0`.
pub fn compiled_unoptimized() -> bool {
    cfg!(striate_unoptimized)
}

/// What is printed, with the lines that fix it.
pub const MESSAGE: &str = "\
striate: this program's striate was compiled without optimisation, which makes training \
and inference about 250 times slower. Keep the dependencies optimised in debug builds by \
adding this to the Cargo.toml of your workspace (your own code stays quick to compile):

    [profile.dev.package.\"*\"]
    opt-level = 3

or run with `cargo run --release`. Set STRIATE_ALLOW_UNOPTIMIZED=1 to silence this warning.";

/// Prints [`MESSAGE`] on standard error the first time it is called in a process whose
/// runtime was compiled at `opt-level = 0`, unless [`SILENCE`] is set; otherwise does nothing.
pub(crate) fn warn_once() {
    #[cfg(striate_unoptimized)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let silenced = std::env::var_os(SILENCE).is_some_and(|v| v != "0");
            if !silenced {
                eprintln!("{MESSAGE}");
            }
        });
    }
}
