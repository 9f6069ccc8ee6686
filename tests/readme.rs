//! The README shows every compile error exactly as the compiler prints it: each message of
//! every `tests/ui/*.stderr` must appear in it, so that a changed message cannot leave the
//! README behind.

#[test]
fn readme_shows_every_compile_error() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(format!("{root}/tests/ui")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "stderr") {
            let stderr = std::fs::read_to_string(&path).unwrap();
            for line in stderr.lines().filter(|l| l.starts_with("error")) {
                assert!(
                    readme.contains(line),
                    "README.md lacks this message from {}:\n{line}",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} messages found");
}
