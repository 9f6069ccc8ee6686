//! Restricted Boltzmann machines checked against exact enumeration (every state of a 3×2
//! machine), against scikit-learn's pseudo-likelihood (a fixture from
//! `scripts/sklearn_rbm.py`), and on bad input.

use striate::ndarray::{arr1, arr2, Array1, Array2, ArrayView2};
use striate::prelude::*;
use striate::rbm::{Cd, CdTrainer, Rbm, Visible};

const V: usize = 3;
const H: usize = 2;

/// A 3×2 machine with weights large enough that its units are far from coin tosses.
fn machine() -> Rbm<V, H> {
    let w = arr2(&[[1.5, -1.0, 0.5], [-0.8, 1.2, 1.0]]);
    Rbm::from_parts(
        Visible::Bernoulli,
        w.view(),
        arr1(&[0.2, -0.3, 0.1]).view(),
        arr1(&[-0.4, 0.3]).view(),
    )
    .unwrap()
}

/// The machine's parameters in `f64`, for enumeration.
struct Exact {
    w: Vec<Vec<f64>>,
    b: Vec<f64>,
    c: Vec<f64>,
}

impl Exact {
    fn of(rbm: &Rbm<V, H>) -> Exact {
        let f = |x: &f32| f64::from(*x);
        Exact {
            w: rbm
                .weights()
                .rows()
                .into_iter()
                .map(|r| r.iter().map(f).collect())
                .collect(),
            b: rbm.visible_bias().iter().map(f).collect(),
            c: rbm.hidden_bias().iter().map(f).collect(),
        }
    }

    /// `E(v, h) = −bᵀv − cᵀh − hᵀWv`.
    fn energy(&self, v: &[f64], h: &[f64]) -> f64 {
        let mut e = -dot(&self.b, v) - dot(&self.c, h);
        for (j, hj) in h.iter().enumerate() {
            e -= hj * dot(&self.w[j], v);
        }
        e
    }

    /// `p(hⱼ = 1 | v)`.
    fn hidden_probs(&self, v: &[f64]) -> Vec<f64> {
        (0..H)
            .map(|j| sigmoid(self.c[j] + dot(&self.w[j], v)))
            .collect()
    }

    /// `p(vᵢ = 1 | h)`.
    fn visible_probs(&self, h: &[f64]) -> Vec<f64> {
        (0..V)
            .map(|i| sigmoid(self.b[i] + (0..H).map(|j| self.w[j][i] * h[j]).sum::<f64>()))
            .collect()
    }

    /// `p(v)` for every visible state, by summing `e^(−E)` over every joint state.
    fn marginal(&self) -> Vec<f64> {
        let joint: Vec<f64> = states(V)
            .iter()
            .map(|v| states(H).iter().map(|h| (-self.energy(v, h)).exp()).sum())
            .collect();
        let z: f64 = joint.iter().sum();
        joint.iter().map(|p| p / z).collect()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Every binary vector of length `n`, in the order of the integers they spell (unit 0 first).
fn states(n: usize) -> Vec<Vec<f64>> {
    (0..1usize << n)
        .map(|s| (0..n).map(|i| ((s >> i) & 1) as f64).collect())
        .collect()
}

/// The probability of the binary vector `x` under independent units with probabilities `p`.
fn prob_of(x: &[f64], p: &[f64]) -> f64 {
    x.iter()
        .zip(p)
        .map(|(&x, &p)| if x == 1.0 { p } else { 1.0 - p })
        .product()
}

fn as_f32(states: &[Vec<f64>]) -> Array2<f32> {
    Array2::from_shape_fn((states.len(), states[0].len()), |(s, i)| {
        states[s][i] as f32
    })
}

/// The CD-1 update with learning rate 1 (weights, then hidden biases, then visible biases,
/// flattened) for one data row `v`: its mean and the mean of its square, by enumerating the
/// hidden draw `h` and the visible draw `v'` (the negative statistics are `v'` and `p(h | v')`).
fn cd1_moments(e: &Exact, v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let pos_h = e.hidden_probs(v);
    let update = |v_neg: &[f64]| -> Vec<f64> {
        let neg_h = e.hidden_probs(v_neg);
        let mut u = Vec::new();
        for j in 0..H {
            u.extend((0..V).map(|i| pos_h[j] * v[i] - neg_h[j] * v_neg[i]));
        }
        u.extend((0..H).map(|j| pos_h[j] - neg_h[j]));
        u.extend((0..V).map(|i| v[i] - v_neg[i]));
        u
    };
    let len = H * V + H + V;
    let (mut mean, mut square) = (vec![0.0; len], vec![0.0; len]);
    for h in states(H) {
        let p_h = prob_of(&h, &pos_h);
        let p_v = e.visible_probs(&h);
        for v_neg in states(V) {
            let p = p_h * prob_of(&v_neg, &p_v);
            for (k, u) in update(&v_neg).into_iter().enumerate() {
                mean[k] += p * u;
                square[k] += p * u * u;
            }
        }
    }
    (mean, square)
}

fn flat(rbm: &Rbm<V, H>) -> Vec<f64> {
    let w = rbm.weights().into_iter().chain(rbm.hidden_bias());
    w.chain(rbm.visible_bias()).map(|&x| f64::from(x)).collect()
}

/// CD-1 is biased, so it is checked against its own exact expectation, not the gradient: the
/// mean of many seeded updates must lie within 4.5 standard errors of it, the standard error
/// following from the update's exact variance and the number of updates.
#[test]
fn the_mean_of_cd1_updates_matches_their_exact_expectation() {
    let rbm = machine();
    let e = Exact::of(&rbm);
    let data = [
        vec![1.0, 0.0, 1.0],
        vec![0.0, 1.0, 1.0],
        vec![1.0, 1.0, 0.0],
        vec![0.0, 0.0, 0.0],
    ];
    let n = data.len() as f64;
    // The rows are drawn independently: the batch's update is the mean of theirs.
    let len = H * V + H + V;
    let (mut mean, mut variance) = (vec![0.0; len], vec![0.0; len]);
    for v in &data {
        let (m, sq) = cd1_moments(&e, v);
        for k in 0..len {
            mean[k] += m[k] / n;
            variance[k] += (sq[k] - m[k] * m[k]) / (n * n);
        }
    }
    let batch = as_f32(&data);
    let trials = 20_000;
    let before = flat(&rbm);
    let mut sum = vec![0.0; len];
    for seed in 0..trials {
        let mut trained = rbm.clone();
        let mut trainer = CdTrainer::new(Cd::new(1.0).batch(4).seed(seed)).unwrap();
        trainer.step(&mut trained, batch.view()).unwrap();
        for (s, (a, b)) in sum.iter_mut().zip(flat(&trained).iter().zip(&before)) {
            *s += a - b;
        }
    }
    for k in 0..len {
        let estimate = sum[k] / trials as f64;
        let standard_error = (variance[k] / trials as f64).sqrt();
        assert!(
            (estimate - mean[k]).abs() <= 4.5 * standard_error + 1e-6,
            "parameter {k}: mean of {trials} CD-1 updates {estimate:.5}, exact {:.5} (standard error {standard_error:.5})",
            mean[k]
        );
    }
}

/// The free energy is the log of the joint's sum over the hidden states, so `e^(−F)` summed
/// over the visible states is the partition function, and the log-likelihood built from it has
/// the exact gradient `⟨v hᵀ⟩_data − ⟨v hᵀ⟩_model` (finite differences of it, against
/// enumeration).
#[test]
fn the_free_energy_gives_the_partition_function_and_the_exact_gradient() {
    let rbm = machine();
    let e = Exact::of(&rbm);
    let all = as_f32(&states(V));
    let f = rbm.free_energy(all.view()).unwrap();
    for (s, v) in states(V).iter().enumerate() {
        let joint: f64 = states(H).iter().map(|h| (-e.energy(v, h)).exp()).sum();
        assert!((f64::from(f[s]) + joint.ln()).abs() < 1e-5, "state {s}");
    }
    // The mean log-likelihood of a data set, from the library's free energy.
    let data = arr2(&[[1.0f32, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]);
    let log_likelihood = |r: &Rbm<V, H>| -> f64 {
        let f_all = r.free_energy(all.view()).unwrap();
        let log_z = f_all
            .iter()
            .map(|&f| (-f64::from(f)).exp())
            .sum::<f64>()
            .ln();
        let f_data = r.free_energy(data.view()).unwrap();
        f_data.iter().map(|&f| -f64::from(f) - log_z).sum::<f64>() / 3.0
    };
    let p = e.marginal();
    let data_rows: Vec<Vec<f64>> = data
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&x| x.into()).collect())
        .collect();
    for j in 0..H {
        for i in 0..V {
            let positive: f64 = data_rows
                .iter()
                .map(|v| e.hidden_probs(v)[j] * v[i])
                .sum::<f64>()
                / 3.0;
            let negative: f64 = states(V)
                .iter()
                .zip(&p)
                .map(|(v, p)| p * e.hidden_probs(v)[j] * v[i])
                .sum();
            let exact = positive - negative;
            let eps = 1e-2;
            let shifted = |d: f32| {
                let mut w = rbm.weights().to_owned();
                w[[j, i]] += d;
                let r = Rbm::<V, H>::from_parts(
                    Visible::Bernoulli,
                    w.view(),
                    rbm.visible_bias(),
                    rbm.hidden_bias(),
                )
                .unwrap();
                log_likelihood(&r)
            };
            let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * f64::from(eps));
            assert!(
                (numeric - exact).abs() < 2e-3,
                "w[{j}, {i}]: finite differences {numeric:.5}, exact {exact:.5}"
            );
        }
    }
}

/// Chains run long enough visit the visible states as often as `p(v)` says: a chi-square test
/// over the 8 states (7 degrees of freedom; 24.3 is the 0.1% critical value), seeded, from
/// noise and from data.
#[test]
fn gibbs_frequencies_match_the_exact_distribution() {
    let rbm = machine();
    let p = Exact::of(&rbm).marginal();
    let chains = 20_000;
    let from_noise = rbm.dream(chains, 30, 11).unwrap();
    let from_data = rbm.gibbs(Array2::ones((chains, V)).view(), 30, 12).unwrap();
    for (what, samples) in [("noise", from_noise.samples), ("data", from_data.samples)] {
        let mut counts = [0usize; 8];
        for row in samples.rows() {
            let state: usize = row
                .iter()
                .enumerate()
                .map(|(i, &x)| (x as usize) << i)
                .sum();
            counts[state] += 1;
        }
        let chi2: f64 = counts
            .iter()
            .zip(&p)
            .map(|(&o, &p)| {
                let expected = p * chains as f64;
                (o as f64 - expected).powi(2) / expected
            })
            .sum();
        assert!(
            chi2 < 24.3,
            "from {what}: chi-square {chi2:.1}, counts {counts:?}, p {p:?}"
        );
    }
}

/// The pseudo-likelihood of `score_samples` on fixed weights (a short scikit-learn fit on the
/// built-in digits), with the unit scikit-learn flipped in each row, and the exact
/// pseudo-likelihood over every unit that the script computed with numpy in `float64`.
///
/// Written by `scripts/sklearn_rbm.py --fixture tests/fixtures/rbm_sklearn.json`.
#[test]
fn the_pseudo_likelihood_matches_scikit_learn() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rbm_sklearn.json"
    ))
    .unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let matrix = |key: &str| -> Array2<f32> {
        let rows = fixture[key].as_array().unwrap();
        let cols = rows[0].as_array().unwrap().len();
        Array2::from_shape_fn((rows.len(), cols), |(r, c)| {
            rows[r][c].as_f64().unwrap() as f32
        })
    };
    let vector = |key: &str| -> Array1<f32> {
        fixture[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let (w, data) = (matrix("components"), matrix("data"));
    let rbm = Rbm::<784, 10>::from_parts(
        Visible::Bernoulli,
        w.view(),
        vector("intercept_visible").view(),
        vector("intercept_hidden").view(),
    )
    .unwrap();
    let flipped: Vec<usize> = fixture["flipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as usize)
        .collect();
    let ours = rbm.pseudo_likelihood(data.view(), &flipped).unwrap();
    let close = |a: &Array1<f32>, b: &Array1<f32>, what: &str| {
        for (s, (a, b)) in a.iter().zip(b).enumerate() {
            assert!(
                (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                "{what} of row {s}: ours {a}, scikit-learn's {b}"
            );
        }
    };
    close(&ours, &vector("score_samples"), "pseudo-likelihood");
    close(
        &rbm.exact_pseudo_likelihood(data.view()).unwrap(),
        &vector("exact_pseudo_likelihood"),
        "exact pseudo-likelihood",
    );
    close(
        &rbm.transform(data.view()).unwrap().row(0).to_owned(),
        &matrix("transform").row(0).to_owned(),
        "transform",
    );
}

fn digits(n: usize) -> Array2<f32> {
    let train = Mnist::builtin().train.take(n);
    let images = train.images();
    let flat = images.as_slice().unwrap();
    Array2::from_shape_fn((n, 784), |(s, i)| (flat[s * 784 + i] > 0.5) as u8 as f32)
}

/// PCD on digits raises the pseudo-likelihood and lowers the reconstruction error, the same
/// seed gives the same machine, and the trained weights load into a network by name.
#[test]
fn training_on_digits_improves_the_machine_and_its_weights_load_into_a_network() {
    let data = digits(500);
    let train = || {
        let mut rbm = Rbm::<784, 64>::bernoulli(0);
        let cd = Cd::new(0.05)
            .persistent(true)
            .batch(10)
            .momentum(0.5)
            .seed(3);
        let mut trainer = CdTrainer::new(cd).unwrap();
        for _ in 0..3 {
            trainer.epoch(&mut rbm, data.view()).unwrap();
        }
        assert_eq!(trainer.steps_done(), 150);
        rbm
    };
    let before = Rbm::<784, 64>::bernoulli(0);
    let after = train();
    assert_eq!(after, train());
    let score = |r: &Rbm<784, 64>| {
        r.exact_pseudo_likelihood(data.view())
            .unwrap()
            .mean()
            .unwrap()
    };
    assert!(
        score(&after) > score(&before) + 100.0,
        "{} -> {}",
        score(&before),
        score(&after)
    );
    let error = |r: &Rbm<784, 64>| r.reconstruction_error(data.view()).unwrap();
    assert!(
        error(&after) < 0.5 * error(&before),
        "{} -> {}",
        error(&before),
        error(&after)
    );

    network! {
        struct Mlp { input: [784], fc1: linear(64), sigmoid, fc2: linear(10) }
    }
    let mut net = Mlp::init(0);
    after.init_linear(&mut net, "fc1").unwrap();
    let x = data.view();
    let features = after.transform(x).unwrap();
    // fc1 followed by the sigmoid is the machine's transform.
    network! {
        struct Features { input: [784], fc1: linear(64), sigmoid }
    }
    let mut body = Features::init(0);
    after.init_linear(&mut body, "fc1").unwrap();
    let out = body
        .forward(x.slice(striate::ndarray::s![..5, ..]))
        .unwrap();
    for (a, b) in out
        .iter()
        .zip(features.slice(striate::ndarray::s![..5, ..]))
    {
        assert!((a - b).abs() < 1e-5);
    }
}

/// Gaussian visible units learn standardised real data: the reconstruction error falls.
#[test]
fn a_gaussian_machine_learns_real_valued_data() {
    let data = Array2::from_shape_fn((200, 8), |(s, i)| {
        let t = (s % 4) as f32;
        (t - 1.5) * if i % 2 == 0 { 1.0 } else { -1.0 } + 0.1 * ((s * 7 + i) % 5) as f32
    });
    let mut rbm = Rbm::<8, 6>::gaussian(1);
    let before = rbm.reconstruction_error(data.view()).unwrap();
    let mut trainer = CdTrainer::new(Cd::new(0.01).batch(20).momentum(0.5).seed(2)).unwrap();
    for _ in 0..50 {
        trainer.epoch(&mut rbm, data.view()).unwrap();
    }
    let after = rbm.reconstruction_error(data.view()).unwrap();
    assert!(after < 0.5 * before, "{before} -> {after}");
    assert!(matches!(
        rbm.pseudo_likelihood_seeded(data.view(), 0),
        Err(Error::Config { .. })
    ));
}

fn assert_config(result: striate::Result<impl std::fmt::Debug>, name: &str) {
    match result {
        Err(Error::Config { name: n, .. }) => assert_eq!(n, name),
        other => panic!("expected a Config error for {name}, found {other:?}"),
    }
}

/// Bad settings and bad data are typed errors, and leave the machine as it was.
#[test]
fn bad_input_gives_typed_errors_and_changes_nothing() {
    for lr in [0.0, -0.1, f32::NAN, f32::INFINITY] {
        assert_config(CdTrainer::new(Cd::new(lr)), "learning rate");
    }
    assert_config(CdTrainer::new(Cd::new(0.1).k(0)), "k");
    assert_config(CdTrainer::new(Cd::new(0.1).batch(0)), "batch");
    assert_config(CdTrainer::new(Cd::new(0.1).momentum(1.0)), "momentum");
    assert_config(CdTrainer::new(Cd::new(0.1).momentum(-0.1)), "momentum");
    assert_config(
        CdTrainer::new(Cd::new(0.1).weight_decay(-1.0)),
        "weight decay",
    );

    let mut rbm = machine();
    let original = rbm.clone();
    let mut t = CdTrainer::new(Cd::new(0.1).persistent(true)).unwrap();
    let wrong: ArrayView2<f32> = ArrayView2::from_shape((2, 4), &[0.0; 8]).unwrap();
    let err = t.step(&mut rbm, wrong).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("[0, 3]"), "{err}");
    let empty = Array2::<f32>::zeros((0, 3));
    assert!(matches!(
        t.step(&mut rbm, empty.view()),
        Err(Error::EmptyBatch { .. })
    ));
    assert!(matches!(
        t.epoch(&mut rbm, empty.view()),
        Err(Error::EmptyBatch { .. })
    ));
    let nan = arr2(&[[0.0, f32::NAN, 1.0]]);
    assert!(matches!(
        t.step(&mut rbm, nan.view()),
        Err(Error::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        rbm.free_energy(nan.view()),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(rbm.transform(wrong), Err(Error::Shape { .. })));
    assert!(matches!(rbm.gibbs(wrong, 1, 0), Err(Error::Shape { .. })));
    assert_eq!(rbm, original);
    assert_eq!(t.steps_done(), 0);

    let v = arr2(&[[1.0, 0.0, 1.0]]);
    assert!(matches!(
        rbm.pseudo_likelihood(v.view(), &[0, 1]),
        Err(Error::Shape { .. })
    ));
    assert_config(rbm.pseudo_likelihood(v.view(), &[3]), "flipped units");
    assert_config(rbm.gibbs(v.view(), 0, 0), "k");
    assert_config(rbm.dream(3, 0, 0), "k");
    assert!(matches!(rbm.dream(0, 1, 0), Err(Error::EmptyBatch { .. })));

    let w = rbm.weights().to_owned();
    let (b, c) = (rbm.visible_bias().to_owned(), rbm.hidden_bias().to_owned());
    let short = arr1(&[0.0, 0.0]);
    assert!(matches!(
        Rbm::<V, H>::from_parts(Visible::Bernoulli, w.view(), short.view(), c.view()),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        Rbm::<V, H>::from_parts(Visible::Bernoulli, w.t(), b.view(), c.view()),
        Err(Error::Shape { .. })
    ));
    let inf = arr1(&[0.0, f32::INFINITY]);
    assert!(matches!(
        Rbm::<V, H>::from_parts(Visible::Bernoulli, w.view(), b.view(), inf.view()),
        Err(Error::NonFinite { .. })
    ));

    network! {
        struct Wrong { input: [3], fc1: linear(4), fc2: linear(2) }
    }
    let mut net = Wrong::init(0);
    let params = net.params().as_slice().to_vec();
    assert!(matches!(
        rbm.init_linear(&mut net, "fc1"),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        rbm.init_linear(&mut net, "fc9"),
        Err(Error::UnknownParameter { .. })
    ));
    assert!(matches!(
        rbm.init_linear(&mut net, "fc2"),
        Err(Error::Shape { .. })
    ));
    assert_eq!(net.params().as_slice(), &params[..]);
}

#[path = "common/temp_dir.rs"]
mod temp_dir;

/// `scripts/sklearn_rbm.py --fixture` still writes the committed fixture (to a relative 1e-4:
/// another CPU's BLAS may round differently). It needs Python with scikit-learn and numpy: `$STRIATE_PYTHON`, else `python3`;
/// without them the script says so and the test is skipped with a message (`.ci/run` installs
/// them into a virtual environment).
#[test]
fn the_script_writes_the_committed_fixture() {
    let python = std::env::var("STRIATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = temp_dir::TempDir::new("rbm-fixture");
    let path = dir.path().join("rbm_sklearn.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sklearn_rbm.py");
    let out = match std::process::Command::new(&python)
        .arg(script)
        .arg("--fixture")
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(e) => return println!("skipped: {python} does not run ({e})"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout.starts_with("skipped") {
        return println!("skipped: {python} has no scikit-learn: {stdout}");
    }
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let committed = read(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rbm_sklearn.json"
    )));
    let fresh = read(&path);
    fn numbers(v: &serde_json::Value, out: &mut Vec<f64>) {
        match v {
            serde_json::Value::Number(n) => out.push(n.as_f64().unwrap()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| numbers(x, out)),
            _ => {}
        }
    }
    for key in [
        "components",
        "data",
        "flipped",
        "score_samples",
        "exact_pseudo_likelihood",
        "transform",
    ] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        numbers(&committed[key], &mut a);
        numbers(&fresh[key], &mut b);
        assert_eq!(a.len(), b.len(), "{key}");
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-4 * x.abs().max(1.0),
                "{key}: committed {x}, fresh {y}"
            );
        }
    }
}
