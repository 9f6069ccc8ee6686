//! A new user's first hour, checked: the program in `tests/new_user/recipe.rs` (the book's
//! page "Your own data") declares a network, loads a small IDX data set with file names of its
//! own and 13 classes, standardises and splits it, trains with `fit`, predicts, saves and
//! loads, with nothing but the public API.
//!
//! It runs twice: in-process, and as the `src/main.rs` of a crate of its own, made in a
//! private temporary folder outside the workspace, that depends on striate by path and is
//! built and run with `cargo run` as a user would. The second builds striate and its
//! dependencies from scratch the first time (a few minutes on two cores; later runs reuse
//! `target/new-user`), so it is `#[ignore]`d and `.ci/run` runs it.

use std::fs;
use std::path::Path;
use std::process::Command;

use rand::{Rng, SeedableRng};

#[allow(dead_code)] // `main`, which only the crate of its own calls
#[path = "new_user/recipe.rs"]
mod recipe;

#[path = "common/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

/// Whether pixel `(row, col)` of a 12x12 picture of shape `class` is lit: a 4x4 square in one
/// of the nine cells of a 3x3 grid (classes 0-8), a bar across or down the middle (9, 10), or
/// one of the two diagonals (11, 12).
fn lit(class: usize, row: usize, col: usize) -> bool {
    match class {
        0..=8 => row / 4 == class / 3 && col / 4 == class % 3,
        9 => (5..7).contains(&row),
        10 => (5..7).contains(&col),
        11 => col == row || col == row + 1,
        _ => row + col == 11 || row + col == 12,
    }
}

/// An IDX file of unsigned bytes: magic `00 00 08 D`, the dimensions, the values.
fn idx(dims: &[usize], values: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for &d in dims {
        bytes.extend(u32::try_from(d).unwrap().to_be_bytes());
    }
    bytes.extend(values);
    bytes
}

/// Writes `shapes-{train,test}-{images,labels}.idx` into `dir`: `per_class` noisy pictures of
/// each of the 13 shapes for training and a third as many for testing, shifted by up to a
/// pixel each way.
fn write_shapes(dir: &Path, per_class: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    for (set, count) in [("train", per_class), ("test", per_class / 3)] {
        let labels: Vec<u8> = (0..13 * count).map(|i| (i % 13) as u8).collect();
        let mut pixels = Vec::new();
        for &class in &labels {
            let (dr, dc) = (rng.random_range(0..3), rng.random_range(0..3));
            for row in 0..12 {
                for col in 0..12 {
                    let (row, col) = ((row + 13 - dr) % 12, (col + 13 - dc) % 12);
                    // Lit and unlit pixels overlap in brightness: a pixel alone is no proof.
                    pixels.push(match lit(usize::from(class), row, col) {
                        true => rng.random_range(90..=255),
                        false => rng.random_range(0..=165),
                    });
                }
            }
        }
        let n = labels.len();
        let images = dir.join(format!("shapes-{set}-images.idx"));
        fs::write(images, idx(&[n, 12, 12], &pixels)).unwrap();
        let labels_file = dir.join(format!("shapes-{set}-labels.idx"));
        fs::write(labels_file, idx(&[n], &labels)).unwrap();
    }
}

#[test]
fn the_recipe_learns_thirteen_shapes() {
    let data = TempDir::new("data");
    write_shapes(data.path(), 30);
    let accuracy = recipe::train_and_predict(data.path()).unwrap();
    assert!(accuracy >= 0.9, "test accuracy {accuracy}");
    assert!(data.path().join("shapes.safetensors").is_file());
}

#[test]
fn the_recipe_names_a_missing_file() {
    let data = TempDir::new("missing");
    write_shapes(data.path(), 3);
    let labels = data.path().join("shapes-test-labels.idx");
    fs::remove_file(&labels).unwrap();
    match recipe::train_and_predict(data.path()) {
        Err(striate::Error::Io { path, .. }) => assert_eq!(path, labels),
        other => panic!(
            "expected an io error naming {}, found {other:?}",
            labels.display()
        ),
    }
}

/// The book's example of `Dataset::from_arrays` (`docs/src/your-data.md`).
#[test]
fn from_arrays_example() -> striate::Result<()> {
    use striate::prelude::*;

    let images = Array4::<f32>::zeros((4, 3, 8, 8));
    let data = Dataset::from_arrays(images, [0, 2, 1, 2], 3)?;
    assert_eq!(data.sample_shape(), [3, 8, 8]);
    assert_eq!(data.labels(), [0, 2, 1, 2]);
    Ok(())
}

#[test]
#[ignore = "builds striate in a crate of its own (minutes the first time); .ci/run runs it"]
fn a_crate_of_its_own_builds_and_runs_the_recipe() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let krate = TempDir::new("crate");
    fs::create_dir(krate.path().join("src")).unwrap();
    fs::write(
        krate.path().join("src/main.rs"),
        include_str!("new_user/recipe.rs"),
    )
    .unwrap();
    // The lines a user adds (README, "Using striate in your crate"); `[workspace]` keeps the
    // crate out of any workspace above the temporary folder.
    let manifest = format!(
        "[package]\nname = \"new-user\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         publish = false\n\n[dependencies]\nstriate = {{ path = {:?} }}\n\n\
         [profile.dev.package.\"*\"]\nopt-level = 3\n\n[workspace]\n",
        root.display().to_string()
    );
    fs::write(krate.path().join("Cargo.toml"), manifest).unwrap();
    // The workspace's versions of every dependency, so that the build needs no network.
    fs::copy(root.join("Cargo.lock"), krate.path().join("Cargo.lock")).unwrap();

    let data = TempDir::new("crate-data");
    write_shapes(data.path(), 30);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["run", "--quiet", "--offline", "--"])
        .arg(data.path())
        .current_dir(krate.path())
        .env("CARGO_TARGET_DIR", root.join("target/new-user"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "cargo run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let accuracy: f32 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("test accuracy "))
        .and_then(|rest| rest.strip_suffix(" %"))
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no test accuracy in the output:\n{stdout}"));
    assert!(accuracy >= 90.0, "test accuracy {accuracy} %\n{stdout}");
    assert!(stdout.contains("epoch 8: loss"), "{stdout}");
    assert!(data.path().join("shapes.safetensors").is_file());
}
