//! Tells the runtime whether it is being compiled without optimisation, so that it can warn
//! (once, at run time) that its kernels will be a hundred times slower than they should be.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(striate_unoptimized)");
    // Cargo gives a build script the opt-level of the package it builds, after profile
    // overrides such as `[profile.dev.package."*"]`.
    if std::env::var("OPT_LEVEL").is_ok_and(|level| level == "0") {
        println!("cargo::rustc-cfg=striate_unoptimized");
    }
    println!("cargo::rerun-if-env-changed=OPT_LEVEL");
}
