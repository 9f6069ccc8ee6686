//! striate's learning-rate schedules against PyTorch 2.15's schedulers: the rate of every
//! epoch of StepLR, ExponentialLR, CosineAnnealingLR, LinearLR, OneCycleLR, SequentialLR and
//! ReduceLROnPlateau, and bad settings refused.
//!
//! The numbers come from `tests/fixtures/torch_optim.py` (its docstring says what it writes and
//! how to run it); the settings of each case are repeated here, beside its name.

use striate::optim::{LrSchedule, Plateau, PlateauMode, PlateauTracker, ThresholdMode};
use striate::Error;

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{assert_close, Case};

fn case() -> Case {
    Case::load("optim.safetensors")
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
