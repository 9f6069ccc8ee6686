//! striate's optimizers and gradient clipping against PyTorch 2.15: several steps of each
//! optimizer from the same start on the same objective, the state it ends with under PyTorch's
//! names, and `clip_grad_norm_`; bad settings; the state by name; no allocation per step.
//! (The schedules are in tests/schedules.rs.)
//!
//! The numbers come from `tests/fixtures/torch_optim.py` (its docstring says what it writes and
//! how to run it); the settings of each case are repeated here, beside its name.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use striate::optim::{clip_grad_norm, Adam, AdamW, LrSchedule, Optimizer, Plateau, RmsProp, Sgd};
use striate::{Error, Init, ParamInfo};

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{assert_close, Case};

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
