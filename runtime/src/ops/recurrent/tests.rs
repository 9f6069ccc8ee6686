use super::*;
use crate::ops::test_util::{assert_close, check_gradient, dot, rng, uniform};

const CELLS: [Cell; 4] = [Cell::RnnTanh, Cell::RnnRelu, Cell::Lstm, Cell::Gru];

fn run_forward(x: &[f32], params: &[f32], g: &RecurrentGeom, n: usize) -> Vec<f32> {
    let mut y = vec![f32::NAN; n * g.output_len()];
    let mut aux = vec![f32::NAN; n * g.aux_len()];
    forward(&mut y, &mut aux, x, params, g, n, &mut Vec::new());
    y
}

/// Every cell, stacked or not, in one direction or two, on batches and lengths of 1 and more
/// and sizes that fill no register tile: the fast path gives the reference's outputs.
#[test]
fn forward_matches_the_reference() {
    let mut r = rng(1);
    for cell in CELLS {
        for (layers, dirs) in [(1, 1), (1, 2), (2, 1), (3, 2)] {
            for (n, steps, input, hidden) in
                [(1, 1, 1, 1), (3, 5, 7, 5), (2, 4, 3, 17), (9, 3, 5, 19)]
            {
                let g = RecurrentGeom::new(cell, input, hidden, steps, layers, dirs);
                let x = uniform(&mut r, n * steps * input);
                // PyTorch's initial scale, U(-1/√H, 1/√H), so that deep ReLU stacks do not grow
                // into values whose f32 rounding differs from f64's by more than the tolerance.
                let scale = 1.0 / (hidden as f32).sqrt();
                let p: Vec<f32> = uniform(&mut r, g.param_len())
                    .iter()
                    .map(|v| v * scale)
                    .collect();
                let y = run_forward(&x, &p, &g, n);
                let (want, _) = reference::forward(&x, &p, &g, n);
                assert_close(&format!("{g:?} n={n}"), &y, &want, 1e-5);
            }
        }
    }
}

/// A batch of zero samples writes nothing and does not panic.
#[test]
fn an_empty_batch_is_nothing() {
    let g = RecurrentGeom::new(Cell::Lstm, 3, 4, 5, 2, 2);
    let p = vec![0.5; g.param_len()];
    forward(&mut [], &mut [], &[], &p, &g, 0, &mut Vec::new());
    let mut d_p = vec![0.0; g.param_len()];
    backward(
        Some(&mut []),
        &mut d_p,
        &[],
        &[],
        &p,
        &g,
        0,
        &mut Vec::new(),
    );
    assert!(d_p.iter().all(|&v| v == 0.0));
}

/// Backpropagation through time agrees with finite differences of the forward pass, for
/// every parameter and every input value, on every cell, stacked and bidirectional.
#[test]
fn backward_matches_finite_differences() {
    let mut r = rng(2);
    for cell in CELLS {
        // Batches of 2 take the small-batch products, of 6 the packed ones.
        for (layers, dirs, n) in [(1, 1, 2), (2, 2, 2), (2, 2, 6)] {
            let (steps, input, hidden) = (4, 3, 3);
            let g = RecurrentGeom::new(cell, input, hidden, steps, layers, dirs);
            let x = uniform(&mut r, n * steps * input);
            // Small weights keep ReLU units away from their kink for the differences.
            let p: Vec<f32> = uniform(&mut r, g.param_len())
                .iter()
                .map(|v| v * 0.6)
                .collect();
            let weights = uniform(&mut r, n * g.output_len());
            let mut y = vec![0.0; n * g.output_len()];
            let mut aux = vec![0.0; n * g.aux_len()];
            let mut scratch = Vec::new();
            forward(&mut y, &mut aux, &x, &p, &g, n, &mut scratch);
            let mut d_p = vec![0.0; g.param_len()];
            let mut d_x = vec![0.0; x.len()];
            backward(
                Some(&mut d_x),
                &mut d_p,
                &weights,
                &aux,
                &p,
                &g,
                n,
                &mut scratch,
            );
            let what = format!("{cell:?} layers={layers} dirs={dirs} n={n}");
            check_gradient(&format!("{what} params"), &p, &d_p, 1e-3, 2e-2, |p| {
                dot(&weights, &run_forward(&x, p, &g, n))
            });
            check_gradient(&format!("{what} x"), &x, &d_x, 1e-3, 2e-2, |x| {
                dot(&weights, &run_forward(x, &p, &g, n))
            });
        }
    }
}

/// Gradients are added to what the buffers hold; an absent `d_x` changes nothing else.
#[test]
fn backward_accumulates() {
    let mut r = rng(3);
    let g = RecurrentGeom::new(Cell::Gru, 4, 5, 3, 2, 2);
    let n = 3;
    let x = uniform(&mut r, n * 3 * 4);
    let p = uniform(&mut r, g.param_len());
    let d_y = uniform(&mut r, n * g.output_len());
    let mut y = vec![0.0; n * g.output_len()];
    let mut aux = vec![0.0; n * g.aux_len()];
    let mut scratch = Vec::new();
    forward(&mut y, &mut aux, &x, &p, &g, n, &mut scratch);
    let (mut once, mut twice) = (vec![0.0; g.param_len()], vec![0.0; g.param_len()]);
    backward(None, &mut once, &d_y, &aux, &p, &g, n, &mut scratch);
    backward(None, &mut twice, &d_y, &aux, &p, &g, n, &mut scratch);
    backward(None, &mut twice, &d_y, &aux, &p, &g, n, &mut scratch);
    let doubled: Vec<f32> = once.iter().map(|v| 2.0 * v).collect();
    assert_close("twice", &twice, &doubled, 1e-5);
    let mut d_x = vec![1.0; x.len()];
    let mut again = vec![0.0; g.param_len()];
    backward(
        Some(&mut d_x),
        &mut again,
        &d_y,
        &aux,
        &p,
        &g,
        n,
        &mut scratch,
    );
    assert_close("with d_x", &again, &once, 1e-6);
    assert!(d_x.iter().any(|&v| v != 1.0));
}

/// The scratch a tape reserves is all the kernels grow it to.
#[test]
fn scratch_needed_is_enough() {
    let g = RecurrentGeom::new(Cell::Lstm, 28, 16, 7, 2, 2);
    let n = 5;
    let mut scratch = Vec::with_capacity(scratch_needed(&g, n));
    let cap = scratch.capacity();
    let x = vec![0.1; n * 7 * 28];
    let p = vec![0.01; g.param_len()];
    let mut y = vec![0.0; n * g.output_len()];
    let mut aux = vec![0.0; n * g.aux_len()];
    forward(&mut y, &mut aux, &x, &p, &g, n, &mut scratch);
    let mut d_p = vec![0.0; g.param_len()];
    backward(None, &mut d_p, &y, &aux, &p, &g, n, &mut scratch);
    assert_eq!(scratch.capacity(), cap);
}

/// A slice of the wrong length is a panic naming it, before anything is written.
#[test]
#[should_panic(expected = "recurrent::forward: x has 5 values")]
fn a_short_input_is_named() {
    let g = RecurrentGeom::new(Cell::Lstm, 3, 2, 2, 1, 1);
    let mut y = vec![0.0; g.output_len()];
    let mut aux = vec![0.0; g.aux_len()];
    forward(
        &mut y,
        &mut aux,
        &[0.0; 5],
        &vec![0.0; g.param_len()],
        &g,
        1,
        &mut Vec::new(),
    );
}

/// Dropout between stacked layers: without a generator (evaluation) the output is the one of
/// the same layer without dropout; with one, a fraction `p` of every mask but none of the last
/// layer's output is zero, and backpropagation through the kept masks agrees with finite
/// differences of a forward pass that draws the same masks.
#[test]
fn dropout_between_layers() {
    use rand::SeedableRng;
    let mut r = rng(4);
    for cell in CELLS {
        let (n, steps, input, hidden, layers) = (3, 4, 3, 3, 3);
        let plain = RecurrentGeom::new(cell, input, hidden, steps, layers, 2);
        let g = plain.with_dropout(true);
        let x = uniform(&mut r, n * steps * input);
        let p: Vec<f32> = uniform(&mut r, g.param_len())
            .iter()
            .map(|v| v * 0.6)
            .collect();
        let mut aux = vec![f32::NAN; n * g.aux_len()];
        let mut y = vec![f32::NAN; n * g.output_len()];
        let options = Options::default();
        forward_with(&mut y, &mut aux, &x, &p, &g, n, &mut Vec::new(), options);
        assert_eq!(y, run_forward(&x, &p, &plain, n), "{cell:?}: evaluation");

        let run = |x: &[f32], p: &[f32], aux: &mut [f32]| {
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(9);
            let mut y = vec![f32::NAN; n * g.output_len()];
            let options = Options {
                dropout: Some((0.4, &mut rng)),
                lengths: None,
            };
            forward_with(&mut y, aux, x, p, &g, n, &mut Vec::new(), options);
            y
        };
        let y = run(&x, &p, &mut aux);
        let masks = &aux[aux.len() - n * g.mask_len()..];
        assert!(masks
            .iter()
            .all(|&m| m == 0.0 || (m - 1.0 / 0.6).abs() < 1e-6));
        assert!(masks.contains(&0.0), "{cell:?}: nothing dropped");
        assert_ne!(y, run_forward(&x, &p, &plain, n), "{cell:?}: training");

        let weights = uniform(&mut r, n * g.output_len());
        let mut d_p = vec![0.0; g.param_len()];
        let mut d_x = vec![0.0; x.len()];
        let mut scratch = Vec::new();
        backward(
            Some(&mut d_x),
            &mut d_p,
            &weights,
            &aux,
            &p,
            &g,
            n,
            &mut scratch,
        );
        let mut spare = vec![0.0; aux.len()];
        check_gradient(&format!("{cell:?} params"), &p, &d_p, 1e-3, 2e-2, |p| {
            dot(&weights, &run(&x, p, &mut spare.clone()))
        });
        spare.fill(0.0);
        check_gradient(&format!("{cell:?} x"), &x, &d_x, 1e-3, 2e-2, |x| {
            dot(&weights, &run(x, &p, &mut spare.clone()))
        });
    }
}

/// Over many values the masks drop the fraction `p` asked for.
#[test]
fn dropout_between_layers_drops_the_fraction_asked_for() {
    use rand::SeedableRng;
    let g = RecurrentGeom::new(Cell::Lstm, 2, 8, 10, 3, 1).with_dropout(true);
    let n = 50;
    let x = vec![0.5; n * 10 * 2];
    let params = vec![0.1; g.param_len()];
    let mut y = vec![0.0; n * g.output_len()];
    let mut aux = vec![0.0; n * g.aux_len()];
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
    let options = Options {
        dropout: Some((0.3, &mut rng)),
        lengths: None,
    };
    forward_with(
        &mut y,
        &mut aux,
        &x,
        &params,
        &g,
        n,
        &mut Vec::new(),
        options,
    );
    let masks = &aux[aux.len() - n * g.mask_len()..];
    // 8,000 values: the fraction's standard deviation is 0.005.
    let dropped = masks.iter().filter(|&&m| m == 0.0).count() as f64 / masks.len() as f64;
    assert!((dropped - 0.3).abs() < 0.03, "{dropped}");
}

/// Lengths in a padded batch, PyTorch's `pack_padded_sequence`: each sample's valid steps give
/// what the same sample alone, cut to its length, gives (both directions, every cell, stacked);
/// the output at the padding is zero; and backpropagation through the valid steps agrees with
/// finite differences, no gradient reaching a padded input.
#[test]
fn lengths_ignore_the_padding() {
    let mut r = rng(6);
    for cell in CELLS {
        let (n, steps, input, hidden) = (3, 5, 2, 3);
        let g = RecurrentGeom::new(cell, input, hidden, steps, 2, 2);
        let lengths = [5, 2, 3];
        let x = uniform(&mut r, n * steps * input);
        let p: Vec<f32> = uniform(&mut r, g.param_len())
            .iter()
            .map(|v| v * 0.6)
            .collect();
        let run = |x: &[f32], p: &[f32]| {
            let mut y = vec![f32::NAN; n * g.output_len()];
            let mut aux = vec![f32::NAN; n * g.aux_len()];
            let options = Options {
                dropout: None,
                lengths: Some(&lengths),
            };
            forward_with(&mut y, &mut aux, x, p, &g, n, &mut Vec::new(), options);
            (y, aux)
        };
        let (y, aux) = run(&x, &p);
        let dh = g.output_features();
        for (s, &len) in lengths.iter().enumerate() {
            let len = len as usize;
            let alone = RecurrentGeom { steps: len, ..g };
            let xs = &x[s * steps * input..][..len * input];
            let want = run_forward(xs, &p, &alone, 1);
            let got = &y[s * steps * dh..][..steps * dh];
            assert_close(
                &format!("{cell:?} sample {s}"),
                &got[..len * dh],
                &want,
                1e-5,
            );
            assert!(
                got[len * dh..].iter().all(|&v| v == 0.0),
                "{cell:?}: padding"
            );
        }
        let weights = uniform(&mut r, n * g.output_len());
        let (mut d_p, mut d_x) = (vec![0.0; g.param_len()], vec![0.0; x.len()]);
        let mut scratch = Vec::new();
        backward_with(
            Some(&mut d_x),
            &mut d_p,
            &weights,
            &aux,
            &p,
            &g,
            n,
            &mut scratch,
            Some(&lengths),
        );
        for (s, &len) in lengths.iter().enumerate() {
            let padded = &d_x[(s * steps + len as usize) * input..(s + 1) * steps * input];
            assert!(padded.iter().all(|&v| v == 0.0), "{cell:?}: padded input");
        }
        check_gradient(&format!("{cell:?} params"), &p, &d_p, 1e-3, 2e-2, |p| {
            dot(&weights, &run(&x, p).0)
        });
        check_gradient(&format!("{cell:?} x"), &x, &d_x, 1e-3, 2e-2, |x| {
            dot(&weights, &run(x, &p).0)
        });
    }
}
