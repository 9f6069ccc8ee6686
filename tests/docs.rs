//! The book in `docs/` and the README that points into it cannot drift from the code:
//!
//! - `docs/src/errors.md` shows every compile error exactly as `tests/ui/*.stderr` has it, and
//!   no case that is gone;
//! - every `rust` block of the book, without the lines mdBook hides (`# ...`), is code that is
//!   compiled and run: a block of the README (a doc test of the facade crate), or lines of a
//!   file under `examples/` or `tests/` (not `tests/ui/`, whose files must fail). The book's
//!   examples with no other home are the tests at the end of this file;
//! - every table of the README is in the book too, word for word;
//! - every relative link in the README and the book leads to a file that exists, and an
//!   `#anchor` to a heading of that page, with the id mdBook gives it; the book links only to
//!   its own pages, since its HTML output cannot follow a link out of `docs/src`;
//! - `SUMMARY.md` lists every page once, and every page it lists exists.
//!
//! No new dependency: these files are simple enough to read line by line.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn fail_on(problems: &[String]) {
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension().is_some_and(|e| e == extension)
}

/// `docs/src/*.md`, `SUMMARY.md` among them, sorted.
fn book_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = fs::read_dir(root().join("docs/src"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| has_extension(path, "md"))
        .collect();
    pages.sort();
    assert!(pages.len() > 1, "docs/src has no pages");
    pages
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if has_extension(&path, "rs") {
            files.push(path);
        }
    }
}

/// A fenced code block: its info string (`rust`, `text`, ...) and its lines.
struct CodeBlock<'a> {
    info: &'a str,
    lines: Vec<&'a str>,
}

impl CodeBlock<'_> {
    fn is_rust(&self) -> bool {
        self.info.split(',').next() == Some("rust")
    }
}

/// Markdown split into the lines outside fenced code blocks, with their 1-based numbers, and
/// the blocks.
fn split_markdown(text: &str) -> (Vec<(usize, &str)>, Vec<CodeBlock<'_>>) {
    let mut prose = Vec::new();
    let mut blocks = Vec::new();
    let mut open: Option<CodeBlock> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (open.as_mut(), fence) {
            (None, Some(info)) => {
                open = Some(CodeBlock {
                    info: info.trim(),
                    lines: Vec::new(),
                })
            }
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some(block), None) => block.lines.push(line),
            (None, None) => prose.push((i + 1, line)),
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    (prose, blocks)
}

/// The targets of the inline links `[text](target)` on a line, outside code spans.
fn link_targets(line: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    // Between the first and second backtick is code, between the second and third is not, ...
    for piece in line.split('`').step_by(2) {
        let mut rest = piece;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            targets.push(&after[..end]);
            rest = &after[end..];
        }
    }
    targets
}

/// The ids mdBook gives a page's headings (mdbook-html's `id_from_content` and `unique_id`):
/// the text lowercased, whitespace to `-`, everything but letters, digits, `-` and `_`
/// dropped, and `-1`, `-2`, ... after a repeated id. GitHub's ids for these headings are the
/// same.
fn heading_ids(text: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    for (_, line) in split_markdown(text).0 {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let Some(heading) = heading.trim_start_matches('#').strip_prefix(' ') else {
            continue;
        };
        let id: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c),
                c if c.is_whitespace() => Some('-'),
                _ => None,
            })
            .collect();
        let mut unique = id.clone();
        let mut repeat = 0;
        while !ids.insert(unique.clone()) {
            repeat += 1;
            unique = format!("{id}-{repeat}");
        }
    }
    ids
}

#[test]
fn relative_links_lead_somewhere() {
    let book = root().join("docs/src").canonicalize().unwrap();
    let mut files = vec![root().join("README.md")];
    files.extend(book_pages());
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        for (number, line) in split_markdown(&text).0 {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let here = format!("{}:{number}: link `{target}`", shown(file));
                let (path, anchor) = match target.split_once('#') {
                    Some((path, anchor)) => (path, Some(anchor)),
                    None => (target, None),
                };
                let linked = match path {
                    "" => file.clone(),
                    path => file.parent().unwrap().join(path),
                };
                let Ok(linked) = linked.canonicalize() else {
                    problems.push(format!("{here}: no such file"));
                    continue;
                };
                if file.starts_with(root().join("docs/src")) && !linked.starts_with(&book) {
                    problems.push(format!(
                        "{here}: leads out of the book, which its HTML cannot follow; \
                         name the file in `code` instead"
                    ));
                }
                let Some(anchor) = anchor else {
                    continue;
                };
                if !has_extension(&linked, "md") {
                    problems.push(format!(
                        "{here}: an anchor into a file that is not markdown"
                    ));
                } else if !heading_ids(&read(&linked)).contains(anchor) {
                    problems.push(format!("{here}: no heading there has the id `{anchor}`"));
                }
            }
        }
    }
    fail_on(&problems);
    assert!(checked >= 10, "only {checked} links found");
}

#[test]
fn summary_lists_every_page_once() {
    let book = root().join("docs/src");
    let summary = read(&book.join("SUMMARY.md"));
    let listed: Vec<&str> = split_markdown(&summary)
        .0
        .into_iter()
        .flat_map(|(_, line)| link_targets(line))
        .collect();
    let mut problems = Vec::new();
    for entry in &listed {
        if !book.join(entry).is_file() {
            problems.push(format!("SUMMARY.md lists `{entry}`, which does not exist"));
        }
        if listed.iter().filter(|other| *other == entry).count() > 1 {
            problems.push(format!("SUMMARY.md lists `{entry}` more than once"));
        }
    }
    for page in book_pages() {
        let name = page.file_name().unwrap().to_str().unwrap();
        if name != "SUMMARY.md" && !listed.contains(&name) {
            problems.push(format!("docs/src/{name} is not in SUMMARY.md"));
        }
    }
    fail_on(&problems);
}

#[test]
fn errors_page_is_what_the_compiler_prints() {
    let page = read(&root().join("docs/src/errors.md"));
    let mut cases = HashSet::new();
    let mut problems = Vec::new();
    for entry in fs::read_dir(root().join("tests/ui")).unwrap() {
        let path = entry.unwrap().path();
        if !has_extension(&path, "stderr") {
            continue;
        }
        let case = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let stderr = read(&path);
        let entry = format!(
            "`tests/ui/{case}.rs`:\n\n```text\n{}\n```\n",
            stderr.trim_end()
        );
        if !page.contains(&entry) {
            problems.push(format!(
                "docs/src/errors.md lacks this entry, copied from {}:\n{entry}",
                shown(&path)
            ));
        }
        cases.insert(case);
    }
    for line in page.lines() {
        let case = line.strip_prefix("`tests/ui/");
        if let Some(case) = case.and_then(|rest| rest.strip_suffix(".rs`:")) {
            if !cases.contains(case) {
                problems.push(format!(
                    "docs/src/errors.md shows `tests/ui/{case}.rs`, which has no .stderr"
                ));
            }
        }
    }
    fail_on(&problems);
    assert!(cases.len() >= 20, "only {} cases found", cases.len());
}

#[test]
fn readme_tables_are_in_the_book() {
    let readme = read(&root().join("README.md"));
    let book: Vec<String> = book_pages().iter().map(|page| read(page)).collect();
    let mut tables: Vec<Vec<&str>> = Vec::new();
    let mut previous = 0;
    for (number, line) in split_markdown(&readme).0 {
        if line.starts_with('|') {
            match tables.last_mut() {
                Some(table) if number == previous + 1 => table.push(line),
                _ => tables.push(vec![line]),
            }
            previous = number;
        }
    }
    let mut problems = Vec::new();
    for table in &tables {
        let table = table.join("\n");
        if !book.iter().any(|page| page.contains(&table)) {
            problems.push(format!(
                "README.md has a table that the book lacks:\n{table}"
            ));
        }
    }
    fail_on(&problems);
    assert!(!tables.is_empty(), "README.md has no tables");
}

/// The lines mdBook shows of a `rust` block: not the hidden ones (`# ...` or a lone `#`), and
/// without blank lines at either end.
fn visible<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    let hidden = |line: &&str| {
        let line = line.trim_start();
        line == "#" || line.starts_with("# ")
    };
    let mut visible: Vec<&str> = lines.iter().copied().filter(|l| !hidden(l)).collect();
    while visible.first().is_some_and(|l| l.trim().is_empty()) {
        visible.remove(0);
    }
    while visible.last().is_some_and(|l| l.trim().is_empty()) {
        visible.pop();
    }
    visible
}

/// Whether `needle` appears in `haystack` as consecutive lines, all indented by the same
/// extra whitespace.
fn contains_lines(haystack: &[&str], needle: &[&str]) -> bool {
    haystack.windows(needle.len()).any(|window| {
        let Some(indent) = window[0].strip_suffix(needle[0]) else {
            return false;
        };
        indent.trim().is_empty()
            && window.iter().zip(needle).all(|(have, want)| match *want {
                "" => have.trim().is_empty(),
                want => have.strip_prefix(indent) == Some(want),
            })
    })
}

#[test]
fn book_examples_are_tested_code() {
    let mut homes: Vec<String> = Vec::new();
    // The README's blocks are doc tests, hidden lines included (rustdoc compiles them).
    let readme = read(&root().join("README.md"));
    for block in split_markdown(&readme).1.iter().filter(|b| b.is_rust()) {
        let code: Vec<&str> = block
            .lines
            .iter()
            .map(|line| line.strip_prefix("# ").unwrap_or(line))
            .collect();
        homes.push(code.join("\n"));
    }
    let mut files = Vec::new();
    rust_files(&root().join("examples"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    for file in files {
        if !file.starts_with(root().join("tests/ui")) {
            homes.push(read(&file));
        }
    }

    let home_lines: Vec<Vec<&str>> = homes
        .iter()
        .map(|home| home.lines().map(str::trim_end).collect())
        .collect();

    let mut problems = Vec::new();
    let mut checked = 0;
    for page in book_pages() {
        let text = read(&page);
        for block in split_markdown(&text).1.iter().filter(|b| b.is_rust()) {
            let example = visible(&block.lines);
            if example.is_empty() {
                continue;
            }
            checked += 1;
            if !home_lines.iter().any(|home| contains_lines(home, &example)) {
                problems.push(format!(
                    "{}: the example that begins `{}` is not, line for line, in a rust block of \
                     README.md or in a file under examples/ or tests/; add it to tests/docs.rs as a \
                     test",
                    shown(&page),
                    example[0]
                ));
            }
        }
    }
    fail_on(&problems);
    assert!(checked >= 1, "the book has no rust examples");
}

// The book's examples that have no other home, each as the book shows it (so not formatted by
// rustfmt), then checked.

/// `docs/src/blocks.md`.
#[test]
#[rustfmt::skip]
fn blocks_example() {
    use striate::prelude::*;

    network! {
        /// Two residual blocks, the second downsampling through a projection shortcut, and a
        /// concat block.
        pub struct Small {
            input: [3, 32, 32],
            conv1: conv2d(16, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            block1: residual {
                conv1: conv2d(16, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
                conv2: conv2d(16, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
            },
            relu,
            block2: residual(shortcut = {
                conv: conv2d(32, kernel = 1, stride = 2, bias = false), bn: batch_norm,
            }) {
                conv1: conv2d(32, kernel = 3, stride = 2, pad = 1, bias = false), bn1: batch_norm, relu,
                conv2: conv2d(32, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
            } -> [32, 16, 16],
            relu,
            mix: concat(a = { conv: conv2d(8, kernel = 1), relu }, b = {}) -> [40, 16, 16],
            avg_pool(16), flatten, fc: linear(10),
        }
    }

    assert_eq!(Small::PARAMS[0].name, "conv1.weight");
    assert!(Small::PARAMS.iter().any(|p| p.name == "block2.shortcut.conv.weight"));
    assert!(Small::PARAMS.iter().any(|p| p.name == "mix.a.conv.bias"));
}

/// `docs/src/nested.md`.
#[test]
#[rustfmt::skip]
fn nested_example() -> striate::Result<()> {
    use striate::prelude::*;

    network! {
        /// LeNet-5's convolutional body, trainable on its own.
        pub struct LeNetFeatures {
            input: [1, 28, 28],
            conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
            conv2: conv2d(16, kernel = 5), relu, max_pool(2),
        }
    }

    network! {
        /// The body under a new head.
        pub struct Classifier {
            input: [1, 28, 28],
            features: LeNetFeatures -> [16, 5, 5],
            flatten,
            fc: linear(10),
        }
    }

    assert_eq!(Classifier::PARAMS[0].name, "features.conv1.weight");
    assert_eq!(Classifier::NUM_PARAMS, LeNetFeatures::NUM_PARAMS + 4_010);
    let body = LeNetFeatures::init(1); // trained on its own, say
    let mut net = Classifier::init(2);
    net.set_part("features", &body)?; // the trained body in the classifier
    let again: LeNetFeatures = net.part("features")?; // and back out

    assert_eq!(again.params().as_slice(), body.params().as_slice());
    Ok(())
}

/// `docs/src/api.md`: the training step by hand.
#[rustfmt::skip]
mod training_step_example {
    use striate::prelude::*;

    network! {
        struct Classifier { input: [1, 28, 28], flatten, fc: linear(10) }
    }

    fn main() -> striate::Result<()> {
        let mut net = Classifier::init(42);
        let mut tape = Tape::new();          // activations, reused from step to step
        let mut grads = net.gradients();     // same names as the parameters
        let mut opt = Sgd::new(0.01).momentum(0.9);
        let x = Array4::<f32>::zeros((64, 1, 28, 28));
        let labels = vec![3; 64];

        let logits = net.forward_train(x.view(), &mut tape)?;
        let (loss, d_logits) = cross_entropy(logits, &labels)?;
        grads.zero();
        net.backward(&mut tape, d_logits.view(), &mut grads)?;
        opt.step(net.params_mut().as_mut_slice(), grads.params().as_slice())?;
        println!("loss {loss:.4}");
        Ok(())
    }

    #[test]
    fn runs() -> striate::Result<()> {
        main()
    }
}

/// `docs/src/augmentation.md`: training on augmented digits.
#[test]
#[rustfmt::skip]
fn augmentation_example() -> striate::Result<()> {
    use striate::data::augment::{Elastic, Intensity, Rotate, Scale, Translate};
    use striate::prelude::*;

    network! {
        struct Digits { input: [1, 28, 28], flatten, fc: linear(10) }
    }

    let mnist = Mnist::builtin();
    let train = mnist.train.take(2_000);
    let augmentation = Augmentation::new(42)         // the seed of every random draw
        .then(Translate::pixels(-2.0..=2.0)?)       // up to 2 pixels along each axis
        .then(Rotate::degrees(-15.0..=15.0)?)
        .then(Scale::factor(0.9..=1.1)?)
        .then(Elastic::new(34.0, 4.0)?)             // alpha, sigma
        .then(Intensity::default());

    let mut net = Digits::init(0);
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.1)).augment(augmentation);
    let history = trainer.fit(&train, Fit::epochs(2).validation(&mnist.test).progress(false))?;
    // Training batches are augmented; the validation set is not.
    assert!(history.last().unwrap().validation.as_ref().unwrap().accuracy() > 0.75);
    Ok(())
}

/// `docs/src/augmentation.md`: a step of your own.
#[rustfmt::skip]
mod own_step_example {
    use striate::data::augment::{Augment, Augmentation, ImageShape, RngCore};
    use striate::ndarray::Array4;

    /// Adds noise, uniform in [-amount, amount], to every pixel.
    #[derive(Debug)]
    struct Noise {
        amount: f32,
    }

    impl Augment for Noise {
        fn apply(&self, out: &mut [f32], input: &[f32], _shape: ImageShape,
                 rng: &mut dyn RngCore, _scratch: &mut Vec<f32>) {
            for (o, x) in out.iter_mut().zip(input) {
                let u = rng.next_u32() as f32 / u32::MAX as f32; // in [0, 1]
                *o = x + self.amount * (2.0 * u - 1.0);
            }
        }
    }

    #[test]
    fn adds_noise() -> striate::Result<()> {
        let mut images = Array4::<f32>::from_elem((2, 1, 4, 4), 0.5);
        let mut noisy = Augmentation::new(1).then(Noise { amount: 0.1 });
        noisy.apply(images.view_mut(), 0, &[0, 1])?;
        assert!(images.iter().all(|v| (0.4..=0.6).contains(v)));
        assert!(images.iter().any(|&v| v != 0.5));
        Ok(())
    }
}

/// `docs/src/runtime.md`: another optimizer, a composed schedule, clipping and the state.
#[rustfmt::skip]
mod optimizer_example {
    use striate::optim::LrSchedule;
    use striate::prelude::*;

    network! {
        struct Classifier { input: [1, 28, 28], flatten, fc: linear(10) }
    }

    fn main() -> striate::Result<()> {
        let train = Mnist::builtin().train.take(256);
        let mut net = Classifier::init(0);
        // Two epochs of linear warm-up from a tenth of the rate, then cosine annealing.
        let schedule = LrSchedule::linear(0.1, 1.0, 2).then(2, LrSchedule::cosine(8, 0.0));
        let mut trainer = Trainer::new(&mut net, AdamW::new(1e-3).weight_decay(0.05))
            .schedule(schedule)
            .clip_grad_norm(1.0);
        trainer.fit(&train, Fit::epochs(4).batch(32))?;

        // The moments by parameter name ("fc.weight.exp_avg", ...) and the step count.
        let opt = trainer.optimizer();
        for (name, values) in opt.state(trainer.net().params().table())? {
            println!("{name}: {} values", values.len());
        }
        assert_eq!(opt.steps(), 4 * 8);
        Ok(())
    }

    #[test]
    fn runs() -> striate::Result<()> {
        main()
    }
}

/// The runtime's and geometry's rustdoc examples are shown on the `striate` pages, so they
/// are written as a user of `striate` writes them: `striate::...`, never the internal
/// `striate_runtime` or `striate_geometry`, which a user's crate cannot name.
#[test]
fn doc_examples_name_the_facade() {
    let mut files = Vec::new();
    rust_files(&root().join("runtime/src"), &mut files);
    rust_files(&root().join("geometry/src"), &mut files);
    let mut problems = Vec::new();
    for path in &files {
        let name = shown(path);
        for (i, line) in read(path).lines().enumerate() {
            let doc = line.trim_start();
            let is_doc = doc.starts_with("///") || doc.starts_with("//!");
            if is_doc
                && (doc.contains("use striate_runtime")
                    || doc.contains("use striate_geometry")
                    || doc.contains("striate_runtime::"))
            {
                problems.push(format!("{name}:{}: {}", i + 1, doc));
            }
        }
    }
    fail_on(&problems);
    assert!(files.len() > 20, "only {} files found", files.len());
}

/// The `network!` page (the doc comment of its re-export) names every layer of the book's
/// table and the forms of the language, so it cannot fall behind the language.
#[test]
fn the_network_macro_page_summarises_the_language() {
    let lib = read(&root().join("src/lib.rs"));
    let end = lib
        .find("pub use striate_macros::network;")
        .expect("the re-export");
    let docs: Vec<&str> = lib[..end]
        .lines()
        .rev()
        .take_while(|l| l.starts_with("///"))
        .collect();
    let docs = docs.into_iter().rev().collect::<Vec<_>>().join("\n");
    let language = read(&root().join("docs/src/language.md"));
    let mut problems = Vec::new();
    let mut kinds = 0;
    for row in language.lines().filter(|l| l.starts_with("| `")) {
        for part in row.split('|').nth(1).unwrap().split('`').skip(1).step_by(2) {
            let kind: String = part
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            kinds += 1;
            if !docs.contains(&format!("`{kind}")) {
                problems.push(format!("the network! page does not mention `{kind}`"));
            }
        }
    }
    for form in [
        "residual",
        "concat",
        "-> [",
        "input: [",
        "```\n/// use striate::prelude::*;",
    ] {
        if !docs.contains(form) {
            problems.push(format!("the network! page lacks `{form}`"));
        }
    }
    fail_on(&problems);
    assert!(kinds >= 10, "only {kinds} layers in the book's table");
}
