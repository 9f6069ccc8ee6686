//! Data augmentation: each step's geometry on synthetic images with a known answer, identity
//! settings that change nothing, seeded runs that repeat exactly, bad settings refused, the
//! prefetching (worker thread or split over the kernels' threads) giving what a plain loop gives, and the trainer's hook.

use striate::data::augment::{
    Augment, Augmentation, Crop, Elastic, Flip, Intensity, Rotate, Scale, Translate,
};
use striate::ndarray::{s, Array4};
use striate::prelude::*;

/// `n` images `[c, h, w]` of distinct values in [0, 1), different in every pixel.
fn ramp(n: usize, c: usize, h: usize, w: usize) -> Array4<f32> {
    let len = (n * c * h * w) as f32;
    Array4::from_shape_fn((n, c, h, w), |(i, ch, r, col)| {
        // A scrambled but exact ramp: no two pixels alike.
        let k = ((i * c + ch) * h + r) * w + col;
        ((k * 7919) % (n * c * h * w)) as f32 / len
    })
}

/// `images` after one pass of `step` alone, as samples `0..N` of epoch 0.
fn after(step: impl Augment + 'static, images: &Array4<f32>) -> Array4<f32> {
    let mut out = images.clone();
    let indices: Vec<usize> = (0..images.dim().0).collect();
    Augmentation::new(11)
        .then(step)
        .apply(out.view_mut(), 0, &indices)
        .unwrap();
    out
}

/// `image` shifted by whole pixels, `dy` down and `dx` right, zeros shifted in.
fn shifted(image: &Array4<f32>, dy: isize, dx: isize) -> Array4<f32> {
    let (_, _, h, w) = image.dim();
    Array4::from_shape_fn(image.dim(), |(i, c, r, col)| {
        let (sr, sc) = (r as isize - dy, col as isize - dx);
        if sr < 0 || sc < 0 || sr >= h as isize || sc >= w as isize {
            0.0
        } else {
            image[[i, c, sr as usize, sc as usize]]
        }
    })
}

fn max_difference(a: &Array4<f32>, b: &Array4<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_horizontal_flip_reverses_every_row_and_a_vertical_one_the_rows() {
    let images = ramp(2, 3, 4, 5);
    let mirrored = after(Flip::horizontal(1.0).unwrap(), &images);
    assert_eq!(mirrored, images.slice(s![.., .., .., ..;-1]));
    let upside_down = after(Flip::vertical(1.0).unwrap(), &images);
    assert_eq!(upside_down, images.slice(s![.., .., ..;-1, ..]));
    assert_eq!(after(Flip::horizontal(0.0).unwrap(), &images), images);
}

#[test]
fn a_flip_with_probability_one_half_flips_some_samples_and_leaves_the_others() {
    let images = ramp(64, 1, 3, 3);
    let out = after(Flip::horizontal(0.5).unwrap(), &images);
    let mirror = images.slice(s![.., .., .., ..;-1]);
    let flipped = (0..64)
        .filter(|&i| out.slice(s![i, .., .., ..]) == mirror.slice(s![i, .., .., ..]))
        .count();
    let kept = (0..64)
        .filter(|&i| out.slice(s![i, .., .., ..]) == images.slice(s![i, .., .., ..]))
        .count();
    assert_eq!(flipped + kept, 64);
    assert!((16..=48).contains(&flipped), "{flipped} of 64 flipped");
}

#[test]
fn a_quarter_turn_moves_each_pixel_where_it_should() {
    // Counter-clockwise on screen: the pixel at (r, c) of an n x n image goes to
    // (n - 1 - c, r); the top row becomes the left column.
    for n in [4, 5] {
        let images = ramp(1, 2, n, n);
        let turned = after(Rotate::degrees(90.0..=90.0).unwrap(), &images);
        let expected =
            Array4::from_shape_fn(images.dim(), |(i, ch, r, c)| images[[i, ch, c, n - 1 - r]]);
        assert!(
            max_difference(&turned, &expected) < 1e-5,
            "{n}x{n}: {turned:?}"
        );
    }
    let mut dot = Array4::<f32>::zeros((1, 1, 5, 5));
    dot[[0, 0, 2, 4]] = 1.0; // right of the centre
    let turned = after(Rotate::degrees(90.0..=90.0).unwrap(), &dot);
    assert!((turned[[0, 0, 0, 2]] - 1.0).abs() < 1e-5, "{turned:?}"); // above it
    let back = after(Rotate::degrees(-90.0..=-90.0).unwrap(), &turned);
    assert!(max_difference(&back, &dot) < 1e-5);
}

#[test]
fn whole_pixel_translations_shift_exactly() {
    let images = ramp(3, 2, 7, 9);
    for shift in [-3.0f32, -1.0, 2.0] {
        let out = after(Translate::pixels(shift..=shift).unwrap(), &images);
        let expected = shifted(&images, shift as isize, shift as isize);
        assert_eq!(out, expected, "shift {shift}");
    }
}

#[test]
fn scaling_by_two_doubles_distances_from_the_centre() {
    let mut dot = Array4::<f32>::zeros((1, 1, 9, 9));
    dot[[0, 0, 4, 5]] = 1.0;
    dot[[0, 0, 2, 4]] = 0.5;
    let out = after(Scale::factor(2.0..=2.0).unwrap(), &dot);
    assert_eq!(out[[0, 0, 4, 6]], 1.0);
    assert_eq!(out[[0, 0, 0, 4]], 0.5);
    // Between the input's pixels the zoom interpolates: (4, 5) reads (4, 4.5) of the input,
    // halfway between its 0 at (4, 4) and its 1 at (4, 5).
    assert_eq!(out[[0, 0, 4, 5]], 0.5);
}

#[test]
fn a_crop_with_padding_keeps_the_size_and_shifts_by_whole_pixels_within_the_padding() {
    let images = ramp(40, 2, 6, 7);
    let out = after(Crop::pad(2), &images);
    assert_eq!(out.shape(), images.shape());
    let mut shifts = std::collections::HashSet::new();
    for i in 0..40 {
        let one = images.slice(s![i..=i, .., .., ..]).to_owned();
        let got = out.slice(s![i..=i, .., .., ..]).to_owned();
        let shift = (-2..=2)
            .flat_map(|dy| (-2..=2).map(move |dx| (dy, dx)))
            .find(|&(dy, dx)| shifted(&one, dy, dx) == got);
        shifts.insert(shift.unwrap_or_else(|| panic!("sample {i} is no shift of at most 2")));
    }
    assert!(shifts.len() > 5, "only {shifts:?} over 40 samples");
}

#[test]
fn identity_settings_change_nothing() {
    let images = ramp(3, 2, 8, 6);
    let identities: Vec<(&str, Augmentation)> = vec![
        (
            "translate",
            Augmentation::new(1).then(Translate::pixels(0.0..=0.0).unwrap()),
        ),
        (
            "rotate",
            Augmentation::new(1).then(Rotate::degrees(0.0..=0.0).unwrap()),
        ),
        (
            "scale",
            Augmentation::new(1).then(Scale::factor(1.0..=1.0).unwrap()),
        ),
        (
            "flip",
            Augmentation::new(1).then(Flip::vertical(0.0).unwrap()),
        ),
        (
            "elastic, alpha 0",
            Augmentation::new(1).then(Elastic::new(0.0, 4.0).unwrap()),
        ),
        (
            "intensity",
            Augmentation::new(1).then(Intensity::new(0.0..=0.0, 1.0..=1.0, 1.0..=1.0).unwrap()),
        ),
        ("crop, pad 0", Augmentation::new(1).then(Crop::pad(0))),
        ("empty pipeline", Augmentation::new(1)),
    ];
    for (name, mut augmentation) in identities {
        let mut out = images.clone();
        augmentation.apply(out.view_mut(), 3, &[5, 6, 7]).unwrap();
        assert_eq!(out, images, "{name}");
    }
}

#[test]
fn an_elastic_field_moves_pixels_smoothly_by_about_alpha_times_its_smoothed_size() {
    let images = ramp(4, 1, 28, 28);
    let out = after(Elastic::new(34.0, 4.0).unwrap(), &images);
    assert_ne!(out, images);
    // A wide Gaussian leaves a field close to one shift for the whole image: the interior of
    // the result then differs from the input by much less than a noisy field would make it.
    let wide = after(Elastic::new(0.5, 1000.0).unwrap(), &images);
    let noisy = after(Elastic::new(0.5, 0.3).unwrap(), &images);
    let inside = s![.., .., 4..24, 4..24];
    let change = |a: &Array4<f32>| {
        max_difference(
            &a.slice(inside).to_owned(),
            &images.slice(inside).to_owned(),
        )
    };
    assert!(
        change(&wide) < change(&noisy),
        "{} vs {}",
        change(&wide),
        change(&noisy)
    );
}

#[test]
fn intensity_brightens_and_stays_within_zero_and_one() {
    let images = ramp(2, 1, 5, 5);
    let brighter = after(
        Intensity::new(0.2..=0.2, 1.0..=1.0, 1.0..=1.0).unwrap(),
        &images,
    );
    for (b, x) in brighter.iter().zip(&images) {
        assert!((b - (x + 0.2).min(1.0)).abs() < 1e-6);
    }
    let varied = after(Intensity::default(), &images);
    assert!(varied.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_ne!(varied, images);
}

#[test]
fn every_channel_gets_the_same_geometry() {
    let one = ramp(3, 1, 10, 10);
    let three = striate::ndarray::concatenate(
        striate::ndarray::Axis(1),
        &[one.view(), one.view(), one.view()],
    )
    .unwrap();
    let mut out = three.clone();
    Augmentation::digits(4)
        .apply(out.view_mut(), 0, &[0, 1, 2])
        .unwrap();
    for c in 1..3 {
        assert_eq!(out.slice(s![.., c, .., ..]), out.slice(s![.., 0, .., ..]));
    }
}

#[test]
fn seeded_runs_repeat_exactly_and_depend_on_seed_epoch_and_sample() {
    let images = ramp(6, 1, 12, 12);
    let run = |seed: u64, epoch: usize, indices: &[usize]| {
        let mut out = images.clone();
        let everything = Augmentation::digits(seed)
            .then(Flip::horizontal(0.5).unwrap())
            .then(Crop::pad(2));
        everything
            .clone()
            .apply(out.view_mut(), epoch, indices)
            .unwrap();
        out
    };
    let indices = [0, 1, 2, 3, 4, 5];
    assert_eq!(run(9, 2, &indices), run(9, 2, &indices));
    assert_ne!(run(9, 2, &indices), run(10, 2, &indices));
    assert_ne!(run(9, 2, &indices), run(9, 3, &indices));
    // The index decides, not the position in the batch: sample 3 first is sample 3.
    let reordered = run(9, 2, &[3, 1, 2, 0, 4, 5]);
    let first = images.slice(s![0..1, .., .., ..]).to_owned();
    let mut alone = first.clone();
    Augmentation::digits(9)
        .then(Flip::horizontal(0.5).unwrap())
        .then(Crop::pad(2))
        .apply(alone.view_mut(), 2, &[3])
        .unwrap();
    assert_eq!(reordered.slice(s![0..1, .., .., ..]), alone);
}

#[test]
fn bad_settings_are_errors_that_say_what_was_expected_and_found() {
    let message = |e: striate::Error| e.to_string();
    assert_eq!(
        message(Rotate::degrees(20.0..=-20.0).unwrap_err()),
        "invalid rotation in degrees: expected a range with start <= end, found 20.0..=-20.0"
    );
    assert_eq!(
        message(Scale::factor(0.0..=1.2).unwrap_err()),
        "invalid scale factor: expected a range with both ends above 0, found 0.0..=1.2"
    );
    assert_eq!(
        message(Translate::pixels(f32::NAN..=1.0).unwrap_err()),
        "invalid translation in pixels: expected a range with finite ends, found NaN..=1.0"
    );
    assert_eq!(
        message(Flip::horizontal(1.5).unwrap_err()),
        "invalid flip probability: expected a probability from 0 to 1, found 1.5"
    );
    assert_eq!(
        message(Flip::vertical(-0.1).unwrap_err()),
        "invalid flip probability: expected a finite number at least 0, found -0.1"
    );
    assert_eq!(
        message(Elastic::new(-1.0, 4.0).unwrap_err()),
        "invalid elastic alpha: expected a finite number at least 0, found -1.0"
    );
    assert_eq!(
        message(Elastic::new(34.0, 0.0).unwrap_err()),
        "invalid elastic sigma: expected a finite number above 0, found 0.0"
    );
    assert!(matches!(
        Intensity::new(0.0..=0.0, -1.0..=1.0, 1.0..=1.0),
        Err(striate::Error::Config {
            name: "contrast",
            ..
        })
    ));
    assert!(matches!(
        Intensity::new(0.0..=0.0, 1.0..=1.0, 0.0..=1.0),
        Err(striate::Error::Config { name: "gamma", .. })
    ));
    let mut images = ramp(2, 1, 3, 3);
    assert!(matches!(
        Augmentation::digits(0).apply(images.view_mut(), 0, &[0]),
        Err(striate::Error::LabelCount {
            expected: 2,
            found: 1
        })
    ));
}

/// Both ways of preparing batches, a worker thread on a spare core (fewer kernel threads than
/// cores) and the kernels' threads on demand (every core), give what a plain loop of
/// `gather` then `apply` on one thread gives, bit for bit.
#[test]
fn prefetched_batches_are_what_gather_then_apply_give() -> striate::Result<()> {
    let data = Mnist::builtin().train.take(70);
    let order = striate::data::shuffled_indices(data.len(), 3);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut expected = Vec::new();
    let mut by_hand = Augmentation::digits(21).then(Crop::pad(1));
    striate::set_threads(1)?;
    for chunk in order.chunks(16) {
        data.gather(chunk, &mut x, &mut y)?;
        let mut images = Array4::from_shape_vec((chunk.len(), 1, 28, 28), x.clone()).unwrap();
        by_hand.apply(images.view_mut(), 4, chunk)?;
        expected.push((images, y.clone()));
    }
    for threads in [1, cores.max(2)] {
        striate::set_threads(threads)?;
        let mut augmentation = Augmentation::digits(21).then(Crop::pad(1));
        let batches = augmentation.prefetch(&data, &order, 16, 4, |batches| {
            batches
                .map(|b| b.map(|b| (b.images().to_owned(), b.labels().to_vec())))
                .collect::<striate::Result<Vec<_>>>()
        })??;
        assert_eq!(batches, expected, "{threads} threads");
        // `apply` itself splits the samples over the threads, with the same result.
        let mut again = Augmentation::digits(21).then(Crop::pad(1));
        for (chunk, (images, _)) in order.chunks(16).zip(&expected) {
            data.gather(chunk, &mut x, &mut y)?;
            let mut mine = Array4::from_shape_vec((chunk.len(), 1, 28, 28), x.clone()).unwrap();
            again.apply(mine.view_mut(), 4, chunk)?;
            assert_eq!(&mine, images, "{threads} threads");
        }
    }
    Ok(())
}

#[test]
fn prefetch_stops_cleanly_when_the_consumer_stops_early_or_an_index_is_bad() {
    let data = Mnist::builtin().train.take(200);
    let order: Vec<usize> = (0..200).collect();
    let mut augmentation = Augmentation::digits(0);
    let first = augmentation
        .prefetch(&data, &order, 10, 0, |mut batches| {
            batches.next().unwrap().unwrap().labels().to_vec()
        })
        .unwrap();
    assert_eq!(first, &data.labels()[..10]);

    let bad = [0, 1, 500, 2];
    let items = augmentation
        .prefetch(&data, &bad, 2, 0, |batches| {
            batches.map(|b| b.is_ok()).collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(items, [true, false]);
    assert!(augmentation.prefetch(&data, &order, 0, 0, |_| ()).is_err());
}

network! {
    /// A linear classifier of digits.
    struct Digits { input: [1, 28, 28], flatten, fc: linear(10) }
}

/// The parameters after two epochs on 300 digits, with `augmentation` if any.
fn train(augmentation: Option<Augmentation>) -> Vec<f32> {
    let data = Mnist::builtin().train.take(300);
    let mut net = Digits::init(5);
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.05)).shuffle_seed(8);
    if let Some(augmentation) = augmentation {
        trainer = trainer.augment(augmentation);
    }
    trainer
        .fit(&data, Fit::epochs(2).batch(32).progress(false))
        .unwrap();
    net.params().as_slice().to_vec()
}

#[test]
fn the_trainer_augments_reproducibly_and_an_empty_pipeline_is_plain_training() {
    let plain = train(None);
    assert_eq!(train(Some(Augmentation::new(1))), plain);
    let augmented = train(Some(Augmentation::digits(1)));
    assert_ne!(augmented, plain);
    assert_eq!(train(Some(Augmentation::digits(1))), augmented);
    assert_ne!(train(Some(Augmentation::digits(2))), augmented);
}

#[test]
fn consecutive_moves_are_composed_into_one_resampling() {
    let images = ramp(2, 1, 8, 8);
    let run = |augmentation: Augmentation| {
        let mut out = images.clone();
        augmentation
            .clone()
            .apply(out.view_mut(), 0, &[0, 1])
            .unwrap();
        out
    };
    let shift = |by: f32| Translate::pixels(by..=by).unwrap();
    // Half a pixel there and back is no move at all, and three pixels there and back loses
    // nothing to the frame: the two shifts are one map.
    assert_eq!(
        run(Augmentation::new(0).then(shift(0.5)).then(shift(-0.5))),
        images
    );
    assert_eq!(
        run(Augmentation::new(0).then(shift(3.0)).then(shift(-3.0))),
        images
    );
    let turns = Augmentation::new(0)
        .then(Rotate::degrees(30.0..=30.0).unwrap())
        .then(Rotate::degrees(-30.0..=-30.0).unwrap());
    assert!(max_difference(&run(turns), &images) < 1e-5);
    // A step that is no move ends the composition: the shift out loses three rows and
    // columns, which the shift back cannot bring back.
    let identity = Intensity::new(0.0..=0.0, 1.0..=1.0, 1.0..=1.0).unwrap();
    let apart = run(Augmentation::new(0)
        .then(shift(3.0))
        .then(identity)
        .then(shift(-3.0)));
    assert_eq!(
        apart.slice(s![.., .., ..5, ..5]),
        images.slice(s![.., .., ..5, ..5])
    );
    assert!(apart.slice(s![.., .., 5.., ..]).iter().all(|&v| v == 0.0));
    // An elastic field joins the shift before it: with alpha 0 it is that shift, exactly.
    let still = Elastic::new(0.0, 2.0).unwrap();
    assert_eq!(
        run(Augmentation::new(0).then(shift(2.0)).then(still)),
        shifted(&images, 2, 2)
    );
}

#[test]
fn images_in_another_memory_layout_get_the_same_changes() {
    use striate::ndarray::ShapeBuilder;
    let images = ramp(3, 2, 6, 5);
    let mut standard = images.clone();
    let mut column_major = Array4::zeros(images.dim().f());
    column_major.assign(&images);
    assert!(column_major.as_slice().is_none());
    let augmentation = Augmentation::digits(6).then(Crop::pad(1));
    augmentation
        .clone()
        .apply(standard.view_mut(), 1, &[4, 5, 6])
        .unwrap();
    augmentation
        .clone()
        .apply(column_major.view_mut(), 1, &[4, 5, 6])
        .unwrap();
    assert_eq!(column_major, standard);
    assert_ne!(standard, images);
}
