//! A crate that depends on striate and builds it without optimisation (Cargo's default debug
//! profile) is told so once, on standard error, with the lines that fix it; the warning can be
//! silenced, and an optimised build never prints it.
//!
//! The unoptimised build is a throwaway crate made at test time in a private temporary folder,
//! depending on this workspace by path, with its own target folder under `target/` (about a
//! minute to build the first time), so the test is `#[ignore]`d; `.ci/run` runs it.

use std::path::Path;
use std::process::Command;

#[path = "common/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

const MAIN: &str = r#"
use striate::prelude::*;

network! {
    pub struct Tiny {
        input: [1, 4, 4],
        conv: conv2d(2, kernel = 3),
        relu,
        flatten,
        fc: linear(3),
    }
}

fn main() {
    let net = Tiny::init(1);
    let x = Array4::<f32>::zeros((2, 1, 4, 4));
    for _ in 0..2 {
        let y = net.forward(x.view()).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
    }
    println!("ran");
}
"#;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the throwaway crate with the default `dev` profile and runs it, with `silence` as
/// the value of `STRIATE_ALLOW_UNOPTIMIZED` when given; returns its standard error.
fn run_unoptimized(dir: &Path, silence: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("run")
        .arg("--quiet")
        .arg("--offline")
        .current_dir(dir)
        .env(
            "CARGO_TARGET_DIR",
            workspace().join("target").join("unoptimized"),
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_PROFILE_DEV_OPT_LEVEL")
        .env_remove(striate::runtime::unoptimized::SILENCE);
    if let Some(value) = silence {
        cmd.env(striate::runtime::unoptimized::SILENCE, value);
    }
    let out = cmd.output().expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the throwaway crate failed:\n{stderr}"
    );
    assert_eq!(stdout.trim(), "ran");
    stderr
}

#[test]
#[ignore = "builds striate without optimisation in a throwaway crate (about a minute); .ci/run runs it"]
fn an_unoptimised_build_says_so_once() {
    let dir = TempDir::new("unoptimized");
    std::fs::create_dir(dir.path().join("src")).unwrap();
    let manifest = format!(
        "[package]\nname = \"uses-striate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nstriate = {{ path = {:?} }}\n",
        workspace()
    );
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), MAIN).unwrap();
    // The workspace's lock file pins the same versions, so the build needs no network.
    std::fs::copy(
        workspace().join("Cargo.lock"),
        dir.path().join("Cargo.lock"),
    )
    .unwrap();

    let message = striate::runtime::unoptimized::MESSAGE;
    let stderr = run_unoptimized(dir.path(), None);
    assert_eq!(
        stderr.matches(message).count(),
        1,
        "two forward passes, one warning:\n{stderr}"
    );
    assert!(message.contains("[profile.dev.package.\"*\"]\n    opt-level = 3"));
    for silence in ["1", "yes"] {
        let stderr = run_unoptimized(dir.path(), Some(silence));
        assert!(
            !stderr.contains("striate:"),
            "silenced by {silence}:\n{stderr}"
        );
    }
    assert_eq!(
        run_unoptimized(dir.path(), Some("0"))
            .matches(message)
            .count(),
        1
    );
}

/// The workspace's own builds keep striate optimised (its profiles), so they never warn.
#[test]
fn the_workspace_build_is_optimised() {
    assert!(!striate::runtime::unoptimized::compiled_unoptimized());
}
