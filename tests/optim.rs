//! striate's optimizers, gradient clipping and learning-rate schedules against PyTorch 2.15:
//! several steps of each optimizer from the same start on the same objective, the state it ends
//! with under PyTorch's names, `clip_grad_norm_`, and the rate of every epoch of each scheduler.
//!
//! The numbers come from `tests/fixtures/torch_optim.py` (its docstring says what it writes and
//! how to run it); the settings of each case are repeated here, beside its name.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use striate::optim::{
    clip_grad_norm, Adam, AdamW, LrSchedule, Optimizer, Plateau, PlateauMode, PlateauTracker,
    RmsProp, Sgd, ThresholdMode,
};
use striate::{Error, Init, ParamInfo};

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::Case;

/// The two parameters of the script, `fc.weight` (2, 3) then `fc.bias` (3,).
static TABLE: [ParamInfo; 2] = [
    ParamInfo {
        name: "fc.weight",
        shape: &[2, 3],
        offset: 0,
        len: 6,
        init: Init::Zeros,
    },
    ParamInfo {
        name: "fc.bias",
        shape: &[3],
        offset: 6,
        len: 3,
        init: Init::Zeros,
    },
];

/// `STEPS` and `CLIP` of the script.
const STEPS: usize = 6;
const CLIP: f32 = 0.5;

fn case() -> Case {
    Case::load("optim.safetensors")
}

fn assert_close(what: &str, ours: &[f32], theirs: &[f32], tolerance: f32) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= tolerance * (1.0 + b.abs()),
            "{what}[{i}]: striate {a}, PyTorch {b}\nstriate {ours:?}\nPyTorch {theirs:?}"
        );
    }
}

/// Runs `opt` for `STEPS` steps on the script's objective, clipping first when `clip` is set,
/// and checks the parameters after every step, the norms and the final state.
fn compare(name: &str, mut opt: impl Optimizer, clip: bool) {
    let case = case();
    let (a, b) = (&case.get("a").data, &case.get("b").data);
    let mut w = case.get("w0").data.clone();
    let expected = &case.get(&format!("{name}/w")).data;
    let mut grad = vec![0.0; w.len()];
    let mut norms = Vec::new();
    for step in 0..STEPS {
        for (((g, w), a), b) in grad.iter_mut().zip(&w).zip(a).zip(b) {
            *g = a * w + b;
        }
        if clip {
            norms.push(clip_grad_norm(&mut grad, CLIP).unwrap());
        }
        opt.step(&mut w, &grad).unwrap();
        let n = w.len();
        assert_close(
            &format!("{name}: parameters after step {}", step + 1),
            &w,
            &expected[step * n..(step + 1) * n],
            2e-6,
        );
    }
    if clip {
        assert_close(
            &format!("{name}: norms"),
            &norms,
            &case.get(&format!("{name}/norm")).data,
            1e-6,
        );
    }
    assert_eq!(opt.steps(), STEPS as u64);
    let state = opt.state(&TABLE).unwrap();
    let prefix = format!("{name}/state.");
    let theirs: Vec<_> = case
        .0
        .iter()
        .filter(|t| t.name.starts_with(&prefix))
        .collect();
    assert_eq!(state.len(), theirs.len(), "{name}: state entries {state:?}");
    for t in theirs {
        let key = &t.name[prefix.len()..];
        let (_, ours) = state
            .iter()
            .find(|(n, _)| n == key)
            .unwrap_or_else(|| panic!("{name}: no state `{key}` in {state:?}"));
        assert_close(&format!("{name}: {key}"), ours, &t.data, 2e-6);
    }
}

/// `torch.optim.Adam(p, lr=0.1)`
#[test]
fn adam_matches_pytorch() {
    compare("adam", Adam::new(0.1), false);
}

/// `torch.optim.Adam(p, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)`
#[test]
fn adam_with_weight_decay_matches_pytorch() {
    let adam = Adam::new(0.05).betas(0.8, 0.99).eps(1e-6).weight_decay(0.1);
    compare("adam_decay", adam, false);
}

/// `torch.optim.AdamW(p, lr=0.1)`: the default decoupled weight decay, 0.01.
#[test]
fn adamw_matches_pytorch() {
    compare("adamw", AdamW::new(0.1), false);
}

/// `torch.optim.AdamW(p, lr=0.05, betas=(0.85, 0.95), weight_decay=0.3)`
#[test]
fn adamw_with_weight_decay_matches_pytorch() {
    let adamw = AdamW::new(0.05).betas(0.85, 0.95).weight_decay(0.3);
    compare("adamw_decay", adamw, false);
}

/// `torch.optim.RMSprop(p)`: every default.
#[test]
fn rmsprop_matches_pytorch() {
    compare("rmsprop", RmsProp::default(), false);
}

/// `torch.optim.RMSprop(p, lr=0.01, momentum=0.9, weight_decay=0.1)`
#[test]
fn rmsprop_with_momentum_matches_pytorch() {
    let rmsprop = RmsProp::new(0.01).momentum(0.9).weight_decay(0.1);
    compare("rmsprop_momentum", rmsprop, false);
}

/// `torch.optim.RMSprop(p, lr=0.02, alpha=0.9, centered=True)`
#[test]
fn centered_rmsprop_matches_pytorch() {
    let rmsprop = RmsProp::new(0.02).alpha(0.9).centered(true);
    compare("rmsprop_centered", rmsprop, false);
}

/// `torch.optim.RMSprop(p, lr=0.01, alpha=0.95, eps=1e-4, momentum=0.5, centered=True)`
#[test]
fn centered_rmsprop_with_momentum_matches_pytorch() {
    let rmsprop = RmsProp::new(0.01)
        .alpha(0.95)
        .eps(1e-4)
        .momentum(0.5)
        .centered(true);
    compare("rmsprop_centered_momentum", rmsprop, false);
}

/// `clip_grad_norm_(params, max_norm=0.5)` before each step of `torch.optim.Adam(p, lr=0.1)`
/// and of `torch.optim.SGD(p, lr=0.1, momentum=0.9)`.
#[test]
fn clipped_steps_match_pytorch() {
    compare("adam_clip", Adam::new(0.1), true);
    compare("sgd_clip", Sgd::new(0.1).momentum(0.9), true);
}

/// `clip_grad_norm_` with `max_norm=1.0` over both parameters: one gradient far above the
/// bound, one below it (unchanged), one with a norm of 5.
#[test]
fn clipping_matches_pytorch() {
    let case = case();
    let grads = &case.get("clip/grad").data;
    let clipped = &case.get("clip/clipped").data;
    let norms = &case.get("clip/norm").data;
    for (i, norm) in norms.iter().enumerate() {
        let mut g = grads[i * 9..(i + 1) * 9].to_vec();
        let ours = clip_grad_norm(&mut g, 1.0).unwrap();
        assert_close(&format!("norm {i}"), &[ours], &[*norm], 1e-6);
        assert_close(
            &format!("clipped {i}"),
            &g,
            &clipped[i * 9..(i + 1) * 9],
            1e-6,
        );
    }
    assert_eq!(
        grads[9..18],
        clipped[9..18],
        "below the bound, nothing changes"
    );
}

/// Checks `schedule` with base rate 0.1 against `sched/<name>/lr`, the rates PyTorch's
/// scheduler gave epoch by epoch.
fn compare_schedule(name: &str, schedule: LrSchedule) {
    schedule.validate().unwrap();
    let case = case();
    let theirs = &case.get(&format!("sched/{name}/lr")).data;
    let ours: Vec<f32> = (0..theirs.len())
        .map(|epoch| schedule.lr_at(0.1, epoch))
        .collect();
    assert_close(name, &ours, theirs, 1e-6);
}

/// `StepLR(step_size=3, gamma=0.5)`
#[test]
fn step_schedule_matches_pytorch() {
    compare_schedule(
        "step",
        LrSchedule::Step {
            step_size: 3,
            gamma: 0.5,
        },
    );
}

/// `ExponentialLR(gamma=0.9)`
#[test]
fn exponential_schedule_matches_pytorch() {
    compare_schedule("exponential", LrSchedule::Exponential { gamma: 0.9 });
}

/// `CosineAnnealingLR(T_max=10, eta_min=0.001)` for 25 epochs: down to `eta_min` at 10, back
/// up at 20, as PyTorch's recursive form goes.
#[test]
fn cosine_schedule_matches_pytorch() {
    compare_schedule("cosine", LrSchedule::cosine(10, 0.001));
}

/// `LinearLR(start_factor=0.1, end_factor=1.0, total_iters=4)`, a warm-up, and
/// `LinearLR(start_factor=1.0, end_factor=0.2, total_iters=5)`, a linear decay.
#[test]
fn linear_schedules_match_pytorch() {
    compare_schedule("linear", LrSchedule::linear(0.1, 1.0, 4));
    compare_schedule("linear_decay", LrSchedule::linear(1.0, 0.2, 5));
}

/// `OneCycleLR(max_lr=0.1, total_steps=20, cycle_momentum=False)` and
/// `OneCycleLR(max_lr=0.1, total_steps=16, pct_start=0.25, div_factor=10.0,
/// final_div_factor=100.0, cycle_momentum=False)`.
#[test]
fn one_cycle_schedules_match_pytorch() {
    compare_schedule("one_cycle", LrSchedule::one_cycle(20));
    compare_schedule(
        "one_cycle_custom",
        LrSchedule::OneCycle {
            total_steps: 16,
            pct_start: 0.25,
            div_factor: 10.0,
            final_div_factor: 100.0,
        },
    );
}

/// `SequentialLR([LinearLR(start_factor=0.1, total_iters=5), CosineAnnealingLR(T_max=15)],
/// milestones=[5])`, and `SequentialLR([LinearLR(start_factor=0.25, total_iters=3),
/// StepLR(step_size=2, gamma=0.5), ExponentialLR(gamma=0.8)], milestones=[3, 8])`.
#[test]
fn sequential_schedules_match_pytorch() {
    compare_schedule(
        "warmup_cosine",
        LrSchedule::linear(0.1, 1.0, 5).then(5, LrSchedule::cosine(15, 0.0)),
    );
    compare_schedule(
        "three_phases",
        LrSchedule::linear(0.25, 1.0, 3)
            .then(
                3,
                LrSchedule::Step {
                    step_size: 2,
                    gamma: 0.5,
                },
            )
            .then(8, LrSchedule::Exponential { gamma: 0.8 }),
    );
}

/// Feeds `sched/<name>/metric` to a tracker and checks the rate before each epoch.
fn compare_plateau(name: &str, plateau: Plateau) {
    let case = case();
    let metrics = &case.get(&format!("sched/{name}/metric")).data;
    let mut tracker = PlateauTracker::new(plateau, 0.1).unwrap();
    let mut ours = Vec::new();
    for &metric in metrics {
        ours.push(tracker.lr());
        tracker.observe(metric);
    }
    assert_close(
        name,
        &ours,
        &case.get(&format!("sched/{name}/lr")).data,
        1e-6,
    );
}

/// `ReduceLROnPlateau(factor=0.5, patience=2, threshold=0.01, cooldown=1)` and
/// `ReduceLROnPlateau(mode="max", factor=0.3, patience=1, threshold=0.02,
/// threshold_mode="abs", min_lr=0.005)`.
#[test]
fn reduce_on_plateau_matches_pytorch() {
    compare_plateau(
        "plateau",
        Plateau {
            factor: 0.5,
            patience: 2,
            threshold: 0.01,
            cooldown: 1,
            ..Plateau::default()
        },
    );
    compare_plateau(
        "plateau_max_abs",
        Plateau {
            mode: PlateauMode::Max,
            factor: 0.3,
            patience: 1,
            threshold: 0.02,
            threshold_mode: ThresholdMode::Abs,
            min_lr: 0.005,
            ..Plateau::default()
        },
    );
}

#[test]
fn defaults_are_pytorchs() {
    fn settings(opt: &impl std::fmt::Debug) -> String {
        format!("{opt:?}")
    }
    assert_eq!(Adam::default().lr(), 1e-3);
    assert_eq!(Adam::default().decay(), 0.0);
    assert_eq!(AdamW::default().decay(), 0.01);
    assert!(settings(&Adam::default()).contains("betas: (0.9, 0.999), eps: 1e-8"));
    assert_eq!(RmsProp::default().lr(), 1e-2);
    assert!(settings(&RmsProp::default())
        .contains("alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false"));
    assert_eq!(Plateau::default().patience, 10);
    assert_eq!(
        LrSchedule::one_cycle(10),
        LrSchedule::OneCycle {
            total_steps: 10,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4
        }
    );
}

/// The `Error::Config` name of each bad setting; the optimizer then changes nothing.
#[test]
fn bad_optimizer_settings_are_config_errors() {
    fn check(mut opt: impl Optimizer + std::fmt::Debug, expected: &str) {
        match opt.validate() {
            Err(Error::Config { name, .. }) => assert_eq!(name, expected, "{opt:?}"),
            other => panic!("{opt:?}: expected a config error, found {other:?}"),
        }
        let mut w = [1.0];
        assert!(matches!(
            opt.step(&mut w, &[1.0]),
            Err(Error::Config { .. })
        ));
        assert_eq!((w, opt.steps()), ([1.0], 0), "an invalid optimizer stepped");
    }
    check(Adam::new(-1e-3), "learning rate");
    check(Adam::new(f32::NAN), "learning rate");
    check(Adam::default().betas(1.0, 0.999), "beta1");
    check(Adam::default().betas(-0.1, 0.999), "beta1");
    check(Adam::default().betas(0.9, 1.5), "beta2");
    check(Adam::default().betas(0.9, f32::NAN), "beta2");
    check(Adam::default().eps(-1e-8), "epsilon");
    check(Adam::default().weight_decay(-0.1), "weight decay");
    check(AdamW::new(-0.1), "learning rate");
    check(AdamW::default().weight_decay(f32::INFINITY), "weight decay");
    check(RmsProp::new(-0.01), "learning rate");
    check(RmsProp::default().alpha(-0.5), "alpha");
    check(RmsProp::default().eps(f32::NAN), "epsilon");
    check(RmsProp::default().momentum(-0.9), "momentum");
    check(RmsProp::default().weight_decay(-1.0), "weight decay");
    check(Sgd::new(-0.1), "learning rate");
    let err = Adam::default().betas(0.9, 1.0).validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid beta2: expected a value in [0, 1), found 1"
    );
}

#[test]
fn bad_schedules_are_config_errors() {
    let linear = |start, end| LrSchedule::linear(start, end, 3);
    let cases = [
        (LrSchedule::cosine(0, 0.0), "t_max"),
        (LrSchedule::cosine(10, -0.1), "eta_min"),
        (linear(0.0, 1.0), "start_factor"),
        (linear(1.5, 1.0), "start_factor"),
        (linear(0.5, -0.1), "end_factor"),
        (linear(0.5, f32::NAN), "end_factor"),
        (LrSchedule::one_cycle(0), "total_steps"),
        (
            LrSchedule::OneCycle {
                total_steps: 10,
                pct_start: 1.5,
                div_factor: 25.0,
                final_div_factor: 1e4,
            },
            "pct_start",
        ),
        (
            LrSchedule::OneCycle {
                total_steps: 10,
                pct_start: 0.3,
                div_factor: 0.0,
                final_div_factor: 1e4,
            },
            "div_factor",
        ),
        (
            LrSchedule::Plateau(Plateau {
                factor: 1.0,
                ..Plateau::default()
            }),
            "factor",
        ),
        (
            LrSchedule::Plateau(Plateau {
                min_lr: -1.0,
                ..Plateau::default()
            }),
            "min_lr",
        ),
        (
            LrSchedule::Sequential {
                schedules: vec![LrSchedule::Constant],
                milestones: vec![3],
            },
            "milestones",
        ),
        (
            LrSchedule::Constant
                .then(5, LrSchedule::Constant)
                .then(5, LrSchedule::Constant),
            "milestones",
        ),
        (
            LrSchedule::Constant.then(5, LrSchedule::reduce_on_plateau()),
            "schedules",
        ),
        (
            LrSchedule::Constant.then(5, LrSchedule::cosine(0, 0.0)),
            "t_max",
        ),
    ];
    for (schedule, expected) in cases {
        match schedule.validate() {
            Err(Error::Config { name, .. }) => assert_eq!(name, expected, "{schedule:?}"),
            other => panic!("{schedule:?}: expected a config error, found {other:?}"),
        }
        // Meaningless but no panic, far past the end too.
        for epoch in [0, 1, 7, usize::MAX] {
            let _ = schedule.lr_at(0.1, epoch);
        }
    }
    assert!(PlateauTracker::new(
        Plateau {
            eps: f32::NAN,
            ..Plateau::default()
        },
        0.1
    )
    .is_err());
}

/// Each optimizer's state, saved by name and restored into a fresh one, continues exactly as
/// the original does; wrong names, missing entries and wrong lengths are refused and change
/// nothing.
#[test]
fn state_round_trips_by_name() {
    fn round_trip<O: Optimizer + Clone>(fresh: O, names: &[&str]) {
        let mut opt = fresh.clone();
        let mut w: Vec<f32> = (0..9).map(|i| i as f32 / 4.0 - 1.0).collect();
        for _ in 0..3 {
            let g: Vec<f32> = w.iter().map(|w| 0.5 * w + 0.1).collect();
            opt.step(&mut w, &g).unwrap();
        }
        let saved: Vec<(String, Vec<f32>)> = opt
            .state(&TABLE)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (n, v.to_vec()))
            .collect();
        let found: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(found, names);

        let mut restored = fresh.clone();
        restored.set_state(&TABLE, opt.steps(), &saved).unwrap();
        assert_eq!(restored.steps(), 3);
        let g: Vec<f32> = w.iter().map(|w| 0.5 * w - 0.2).collect();
        let (mut a, mut b) = (w.clone(), w.clone());
        opt.step(&mut a, &g).unwrap();
        restored.step(&mut b, &g).unwrap();
        assert_eq!(a, b, "{names:?}");

        if let Some((first, rest)) = saved.split_first() {
            let untouched = restored
                .buffers()
                .iter()
                .map(|(_, v)| v.to_vec())
                .collect::<Vec<_>>();
            let mut wrong_name = saved.clone();
            wrong_name[0].0 = "fc.gamma.exp_avg".into();
            match restored.set_state(&TABLE, 9, &wrong_name) {
                Err(Error::UnknownParameter { name, known }) => {
                    assert_eq!(name, "fc.gamma.exp_avg");
                    assert!(known.contains(&first.0), "{known}");
                }
                other => panic!("expected an unknown name, found {other:?}"),
            }
            match restored.set_state(&TABLE, 9, rest) {
                Err(Error::MissingEntry { name, .. }) => assert_eq!(name, first.0),
                other => panic!("expected a missing entry, found {other:?}"),
            }
            let mut short = saved.clone();
            short[0].1.pop();
            match restored.set_state(&TABLE, 9, &short) {
                Err(Error::Shape {
                    expected, found, ..
                }) => assert_eq!(
                    (expected[0], found[0]),
                    (short[0].1.len() + 1, short[0].1.len())
                ),
                other => panic!("expected a shape error, found {other:?}"),
            }
            assert_eq!(
                restored.steps(),
                4,
                "a refused state changed the step count"
            );
            let after = restored
                .buffers()
                .iter()
                .map(|(_, v)| v.to_vec())
                .collect::<Vec<_>>();
            assert_eq!(after, untouched, "a refused state changed a buffer");
            // A state for another network's parameters is refused too.
            assert!(matches!(
                restored.state(&TABLE[..1]),
                Err(Error::Shape { .. })
            ));
        }

        restored.set_state::<&str, &[f32]>(&TABLE, 0, &[]).unwrap();
        assert_eq!((restored.steps(), restored.buffers().len()), (0, 0));
    }
    let adam = [
        "fc.weight.exp_avg",
        "fc.bias.exp_avg",
        "fc.weight.exp_avg_sq",
        "fc.bias.exp_avg_sq",
    ];
    round_trip(Adam::new(0.1), &adam);
    round_trip(AdamW::new(0.1), &adam);
    round_trip(
        RmsProp::default(),
        &["fc.weight.square_avg", "fc.bias.square_avg"],
    );
    round_trip(
        RmsProp::default().momentum(0.5).centered(true),
        &[
            "fc.weight.square_avg",
            "fc.bias.square_avg",
            "fc.weight.momentum_buffer",
            "fc.bias.momentum_buffer",
            "fc.weight.grad_avg",
            "fc.bias.grad_avg",
        ],
    );
    round_trip(
        Sgd::new(0.1).momentum(0.9),
        &["fc.weight.momentum_buffer", "fc.bias.momentum_buffer"],
    );
    round_trip(Sgd::new(0.1), &[]);
}

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// Counts the allocations of each thread, so that tests running beside each other do not
/// disturb the count.
struct Counting;

// Safety: every call is passed on to the system allocator unchanged; the count is a plain
// thread-local counter, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // Safety: the caller's guarantees on `layout` are those System needs.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Safety: `ptr` was allocated by `alloc` above, that is by System, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// After the first step, which allocates the buffers, steps allocate nothing.
#[test]
fn steady_steps_do_not_allocate() {
    fn check(mut opt: impl Optimizer, what: &str) {
        let mut w = vec![0.5_f32; 1000];
        let g = vec![0.25_f32; 1000];
        opt.step(&mut w, &g).unwrap();
        let mut clipped = g.clone();
        let before = ALLOCATIONS.with(Cell::get);
        for _ in 0..10 {
            opt.step(&mut w, &g).unwrap();
        }
        let after_steps = ALLOCATIONS.with(Cell::get);
        clip_grad_norm(&mut clipped, 0.1).unwrap();
        let after_clip = ALLOCATIONS.with(Cell::get);
        assert_eq!(after_steps - before, 0, "{what}: steps allocated");
        assert_eq!(after_clip - after_steps, 0, "clipping allocated");
    }
    check(Sgd::new(0.1).momentum(0.9), "SGD");
    check(Adam::default(), "Adam");
    check(AdamW::default(), "AdamW");
    check(RmsProp::default().momentum(0.9).centered(true), "RMSprop");
    // The counter counts: a step's first call allocates its buffers.
    let before = ALLOCATIONS.with(Cell::get);
    Adam::default().step(&mut [1.0], &[1.0]).unwrap();
    assert!(ALLOCATIONS.with(Cell::get) > before);
}
