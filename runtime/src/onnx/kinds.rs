//! One exporter per layer kind: a type holding what the kind's ONNX node needs (its geometry,
//! as the generated code holds it for the kernel), whose [`Export::export`] adds the node.
//!
//! `network!` names these types in its [`Network::ONNX`](crate::Network::ONNX) table; they are
//! public for that, not for use by hand.

use std::marker::PhantomData;

use super::{Attribute, Export, Node};
use crate::ops::activation::Activation as Function;
use crate::ops::batch_norm::BatchNormGeom;
use crate::ops::conv2d::Conv2dGeom;
use crate::ops::conv_transpose2d::ConvTranspose2dGeom;
use crate::ops::linear::LinearGeom;
use crate::ops::pool::Pool2dGeom;
use crate::ops::recurrent::{Cell, RecurrentGeom};
use crate::ops::sequence::TimeGeom;
use crate::ops::upsample::{UpsampleGeom, UpsampleMode};
use crate::{Network, Result};

/// The attributes of a sliding window: `kernel_shape`, `strides`, and `pads` (ONNX's begin of
/// each axis, then end of each).
fn window(kernel: [usize; 2], stride: [usize; 2], [ph, pw]: [usize; 2]) -> Vec<Attribute> {
    vec![
        Attribute::ints("kernel_shape", &kernel),
        Attribute::ints("strides", &stride),
        Attribute::ints("pads", &[ph, pw, ph, pw]),
    ]
}

/// Adds a convolution `op` (`Conv`, `ConvTranspose`) reading `x, weight[, bias]`, with the
/// window's attributes and `extra`.
fn convolution(
    node: &mut Node<'_>,
    op: &str,
    window: Vec<Attribute>,
    extra: Vec<Attribute>,
) -> Result<()> {
    let inputs = weighted(node)?;
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let dense = [
        Attribute::ints("dilations", &[1, 1]),
        Attribute::int("group", 1),
    ];
    node.op(
        op,
        &inputs,
        window.into_iter().chain(extra).chain(dense).collect(),
    );
    Ok(())
}

/// The inputs `x, weight[, bias]` of a layer whose bias may be left out.
fn weighted(node: &mut Node<'_>) -> Result<Vec<String>> {
    let weight = node.required("weight")?;
    let mut inputs = vec![node.input().to_string(), weight];
    inputs.extend(node.param("bias"));
    Ok(inputs)
}

/// `conv2d`: `Conv`.
pub struct Conv2d(pub Conv2dGeom);

impl Export for Conv2d {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let g = &self.0;
        let w = window([g.k_h, g.k_w], [g.stride_h, g.stride_w], [g.pad_h, g.pad_w]);
        convolution(node, "Conv", w, vec![])
    }
}

/// `conv_transpose2d`: `ConvTranspose`, whose weight is `[in, out, kh, kw]` as PyTorch's and
/// striate's.
pub struct ConvTranspose2d(pub ConvTranspose2dGeom);

impl Export for ConvTranspose2d {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let g = &self.0;
        let w = window([g.k_h, g.k_w], [g.stride_h, g.stride_w], [g.pad_h, g.pad_w]);
        let output_pad = [g.output_pad_h, g.output_pad_w];
        let extra = vec![Attribute::ints("output_padding", &output_pad)];
        convolution(node, "ConvTranspose", w, extra)
    }
}

/// The attributes of both poolings; floor rounding is ONNX's `ceil_mode = 0`.
fn pool_attributes(g: &Pool2dGeom) -> Vec<Attribute> {
    let mut attributes = window([g.k_h, g.k_w], [g.stride_h, g.stride_w], [g.pad_h, g.pad_w]);
    attributes.push(Attribute::int("ceil_mode", 0));
    attributes
}

/// `max_pool`: `MaxPool`, whose padded cells never win, as striate's.
pub struct MaxPool(pub Pool2dGeom);

impl Export for MaxPool {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let x = node.input().to_string();
        node.op("MaxPool", &[&x], pool_attributes(&self.0));
        Ok(())
    }
}

/// `avg_pool`: `AveragePool`, dividing by the whole window, padding included, as striate's.
pub struct AvgPool(pub Pool2dGeom);

impl Export for AvgPool {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let x = node.input().to_string();
        let mut attributes = pool_attributes(&self.0);
        attributes.push(Attribute::int("count_include_pad", 1));
        node.op("AveragePool", &[&x], attributes);
        Ok(())
    }
}

/// `linear`: `Gemm` with the weight `[out, in]` transposed; on every step of a sequence
/// `[N, T, in]`, `MatMul` by the transposed weight, then `Add` of the bias.
pub struct Linear(pub LinearGeom);

impl Export for Linear {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        if node.input_shape().len() != 2 {
            let inputs = weighted(node)?;
            let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            node.op("Gemm", &inputs, vec![Attribute::int("transB", 1)]);
            return Ok(());
        }
        // Gemm takes matrices only; MatMul broadcasts `[in, out]` over the batch and the steps.
        let x = node.input().to_string();
        let weight = node.required("weight")?;
        let transposed = node.step("weight_t", "Transpose", &[&weight], perm(&[1, 0]));
        match node.param("bias") {
            Some(bias) => {
                let product = node.step("matmul", "MatMul", &[&x, &transposed], vec![]);
                node.op("Add", &[&product, &bias], vec![]);
            }
            None => node.op("MatMul", &[&x, &transposed], vec![]),
        }
        Ok(())
    }
}

/// `Transpose`'s attribute.
fn perm(axes: &[usize]) -> Vec<Attribute> {
    vec![Attribute::ints("perm", axes)]
}

/// `relu`, `leaky_relu`, `tanh`, `sigmoid`: the operator of that name.
pub struct Activation(pub Function);

impl Export for Activation {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let x = node.input().to_string();
        let (op, attributes) = match self.0 {
            Function::Relu => ("Relu", vec![]),
            Function::LeakyRelu(slope) => ("LeakyRelu", vec![Attribute::float("alpha", slope)]),
            Function::Tanh => ("Tanh", vec![]),
            Function::Sigmoid => ("Sigmoid", vec![]),
        };
        node.op(op, &[&x], attributes);
        Ok(())
    }
}

/// `batch_norm`: `BatchNormalization` in inference, with the running statistics.
pub struct BatchNorm(pub BatchNormGeom);

impl Export for BatchNorm {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let x = node.input().to_string();
        let names = ["weight", "bias", "running_mean", "running_var"]
            .map(|suffix| node.required(suffix))
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let [scale, bias, mean, var] = [0, 1, 2, 3].map(|i| names[i].as_str());
        node.op(
            "BatchNormalization",
            &[&x, scale, bias, mean, var],
            vec![
                Attribute::float("epsilon", self.0.eps),
                Attribute::float("momentum", 1.0 - self.0.momentum),
            ],
        );
        Ok(())
    }
}

/// `dropout`: `Identity`, as in evaluation.
pub struct Dropout;

impl Export for Dropout {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let x = node.input().to_string();
        node.op("Identity", &[&x], vec![]);
        Ok(())
    }
}

/// `flatten`: `Flatten` after the batch axis.
pub struct Flatten;

impl Export for Flatten {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let x = node.input().to_string();
        node.op("Flatten", &[&x], vec![Attribute::int("axis", 1)]);
        Ok(())
    }
}

/// `reshape`: `Reshape` to `[N, dims..]`, the batch size copied from the input (`0`).
pub struct Reshape;

impl Export for Reshape {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let x = node.input().to_string();
        let dims: Vec<i64> = std::iter::once(0)
            .chain(node.output_shape().iter().map(|&d| d as i64))
            .collect();
        let shape = node.ints("shape", &dims);
        node.op("Reshape", &[&x, &shape], vec![]);
        Ok(())
    }
}

/// `upsample`: `Resize` by the factor along height and width.
///
/// Nearest takes input `floor(i / f)` (`asymmetric`, `floor`); bilinear samples at
/// `(i + 0.5) / f - 0.5`, clamped to the input (`half_pixel`, PyTorch's `align_corners = False`).
pub struct Upsample(pub UpsampleGeom);

impl Export for Upsample {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let x = node.input().to_string();
        let f = self.0.factor as f32;
        let scales = node.floats("scales", &[1.0, 1.0, f, f]);
        let attributes = match self.0.mode {
            UpsampleMode::Nearest => vec![
                Attribute::string("mode", "nearest"),
                Attribute::string("coordinate_transformation_mode", "asymmetric"),
                Attribute::string("nearest_mode", "floor"),
            ],
            UpsampleMode::Bilinear => vec![
                Attribute::string("mode", "linear"),
                Attribute::string("coordinate_transformation_mode", "half_pixel"),
            ],
        };
        node.op("Resize", &[&x, "", &scales], attributes);
        Ok(())
    }
}

/// Where a residual block's branches meet: `Add`, or `Sum` of more than two.
pub struct Add;

impl Export for Add {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let inputs = node.inputs().to_vec();
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let op = if inputs.len() == 2 { "Add" } else { "Sum" };
        node.op(op, &inputs, vec![]);
        Ok(())
    }
}

/// Where a concat block's branches meet: `Concat` along channels (or features), axis 1.
pub struct Concat;

impl Export for Concat {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let inputs = node.inputs().to_vec();
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        node.op("Concat", &inputs, vec![Attribute::int("axis", 1)]);
        Ok(())
    }
}

/// `rnn`, `lstm`, `gru`: ONNX's `RNN`, `LSTM` and `GRU`, one node per stacked layer, each
/// with both directions for a bidirectional layer (`direction = "bidirectional"`).
///
/// Those operators read and write time-major sequences (`layout = 0`: `X [T, N, I]`,
/// `Y [T, D, N, H]`), which onnxruntime's kernels require, so the input is transposed to
/// `[T, N, I]` first, each layer's `Y` is transposed and reshaped to `[T, N, D·H]` for the
/// next, and the last one's to striate's `[N, T, D·H]`. The weights go in rearranged as
/// ONNX's inputs `W [D, G·H, I]`, `R [D, G·H, H]` and `B [D, 2·G·H]` (`W_b` then `R_b`),
/// initializers `<layer>.W_l<k>`, `.R_l<k>`, `.B_l<k>` per stacked layer `k`, with the gates
/// in ONNX's order ([`LSTM_GATES`], [`GRU_GATES`]); a GRU has `linear_before_reset = 1`,
/// PyTorch's `r ⊙ (W_hn h + b_hn)`.
pub struct Recurrent(pub RecurrentGeom);

/// The PyTorch gate of each of ONNX's LSTM gates: ONNX orders them `i, o, f, c`, PyTorch
/// `i, f, g, o` (`c` is PyTorch's cell candidate `g`).
pub const LSTM_GATES: [usize; 4] = [0, 3, 1, 2];

/// The PyTorch gate of each of ONNX's GRU gates: ONNX orders them `z, r, h`, PyTorch
/// `r, z, n`.
pub const GRU_GATES: [usize; 3] = [1, 0, 2];

/// Appends `values` (a weight `[G·H, cols]` or a bias `[G·H]`, gate after gate) to `out`
/// with gate `k` of the result taken from gate `order[k]`.
fn reorder_gates(out: &mut Vec<f32>, values: &[f32], order: &[usize]) {
    let block = values.len() / order.len();
    for &gate in order {
        out.extend_from_slice(&values[gate * block..][..block]);
    }
}

impl Export for Recurrent {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let g = &self.0;
        let (dirs, rows) = (g.directions, g.gate_rows());
        let (op, order): (&str, &[usize]) = match g.cell {
            Cell::RnnTanh | Cell::RnnRelu => ("RNN", &[0]),
            Cell::Lstm => ("LSTM", &LSTM_GATES),
            Cell::Gru => ("GRU", &GRU_GATES),
        };
        let attributes = || {
            let mut a = vec![
                Attribute::int("hidden_size", g.hidden as i64),
                Attribute::string(
                    "direction",
                    if dirs == 2 {
                        "bidirectional"
                    } else {
                        "forward"
                    },
                ),
            ];
            match g.cell {
                Cell::RnnTanh => a.push(Attribute::strings("activations", &["Tanh"; 2][..dirs])),
                Cell::RnnRelu => a.push(Attribute::strings("activations", &["Relu"; 2][..dirs])),
                Cell::Lstm => {}
                Cell::Gru => a.push(Attribute::int("linear_before_reset", 1)),
            }
            a
        };
        let x = node.input().to_string();
        let mut sequence = node.step("time_major", "Transpose", &[&x], perm(&[1, 0, 2]));
        let features = node.ints("shape", &[0, 0, g.output_features() as i64]);
        for l in 0..g.layers {
            let cols = g.layer_input(l);
            let (mut w, mut r, mut b) = (Vec::new(), Vec::new(), Vec::new());
            for d in 0..dirs {
                let tail = format!("l{l}{}", if d == 1 { "_reverse" } else { "" });
                reorder_gates(
                    &mut w,
                    node.param_values(&format!("weight_ih_{tail}"))?,
                    order,
                );
                reorder_gates(
                    &mut r,
                    node.param_values(&format!("weight_hh_{tail}"))?,
                    order,
                );
                reorder_gates(
                    &mut b,
                    node.param_values(&format!("bias_ih_{tail}"))?,
                    order,
                );
                reorder_gates(
                    &mut b,
                    node.param_values(&format!("bias_hh_{tail}"))?,
                    order,
                );
            }
            let w = node.initializer(&format!("W_l{l}"), &[dirs, rows, cols], &w);
            let r = node.initializer(&format!("R_l{l}"), &[dirs, rows, g.hidden], &r);
            let b = node.initializer(&format!("B_l{l}"), &[dirs, 2 * rows], &b);
            // y: [T, D, N, H]
            let y = node.step(
                &format!("y_l{l}"),
                op,
                &[&sequence, &w, &r, &b],
                attributes(),
            );
            if l + 1 == g.layers {
                let batch_major = node.step("batch_major", "Transpose", &[&y], perm(&[2, 0, 1, 3]));
                node.op("Reshape", &[&batch_major, &features], vec![]);
            } else {
                let steps = node.step(
                    &format!("y_l{l}_tnd"),
                    "Transpose",
                    &[&y],
                    perm(&[0, 2, 1, 3]),
                );
                sequence = node.step(
                    &format!("x_l{}", l + 1),
                    "Reshape",
                    &[&steps, &features],
                    vec![],
                );
            }
        }
        Ok(())
    }
}

/// `last`, `final_state`: `Gather` of the picked steps' features from each sample's sequence
/// flattened to `[T·F]`: the last step's, or for a bidirectional layer's `final_state` the
/// first half of the features from the last step and the second half, which ran backward in
/// time, from the first, as `ops::sequence::pick_forward` picks them.
pub struct Pick(pub TimeGeom);

impl Export for Pick {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let g = &self.0;
        let dirs = g.directions.max(1);
        let part = g.features / dirs;
        let mut indices = Vec::with_capacity(g.features);
        for d in 0..dirs {
            let step = if d == 0 { g.steps.saturating_sub(1) } else { 0 };
            indices.extend((0..part).map(|j| (step * g.features + d * part + j) as i64));
        }
        let x = node.input().to_string();
        let shape = node.ints("shape", &[0, -1]);
        let flat = node.step("flat", "Reshape", &[&x, &shape], vec![]);
        let indices = node.ints("indices", &indices);
        node.op(
            "Gather",
            &[&flat, &indices],
            vec![Attribute::int("axis", 1)],
        );
        Ok(())
    }
}

/// `embedding`: the token ids (whole numbers in the model's float input) `Cast` to `int64`,
/// then a `Gather` of the weight's rows (axis 0), giving `[N, T, dim]`.
pub struct Embedding;

impl Export for Embedding {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        let x = node.input().to_string();
        let weight = node.required("weight")?;
        // TensorProto.DataType INT64.
        let ids = node.step("ids", "Cast", &[&x], vec![Attribute::int("to", 7)]);
        node.op("Gather", &[&weight, &ids], vec![Attribute::int("axis", 0)]);
        Ok(())
    }
}

/// `mean_over_time`: `ReduceMean` over the steps (axis 1; an attribute at opset 17).
pub struct MeanOverTime;

impl Export for MeanOverTime {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        over_time(node, "ReduceMean")
    }
}

/// `max_over_time`: `ReduceMax` over the steps.
pub struct MaxOverTime;

impl Export for MaxOverTime {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        over_time(node, "ReduceMax")
    }
}

fn over_time(node: &mut Node<'_>, op: &str) -> Result<()> {
    let x = node.input().to_string();
    let attributes = vec![Attribute::ints("axes", &[1]), Attribute::int("keepdims", 0)];
    node.op(op, &[&x], attributes);
    Ok(())
}

/// A network nested in another: its nodes inlined, its names under the layer's (`features.`),
/// its parameters and buffers those of the outer stores from these offsets.
pub struct Nested<N> {
    params: usize,
    buffers: usize,
    network: PhantomData<fn() -> N>,
}

impl<N: Network> Nested<N> {
    /// The network `N` whose parameters start at `params` in the outer parameter store and
    /// whose buffers start at `buffers`.
    pub const fn at(params: usize, buffers: usize) -> Nested<N> {
        Nested {
            params,
            buffers,
            network: PhantomData,
        }
    }
}

impl<N: Network> Export for Nested<N> {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        node.nested::<N>(self.params, self.buffers)
    }
}

/// A layer of a kind that has no exporter yet: exporting the network is an error naming it.
pub struct Unsupported;

impl Export for Unsupported {
    fn export(&self, node: &mut Node<'_>) -> Result<()> {
        Err(node.unsupported(
            "its kind has no ONNX exporter yet (striate::onnx lists the kinds it writes)",
        ))
    }
}
