//! ONNX export: a network and its weights as a standard [ONNX](https://onnx.ai) model, for
//! onnxruntime, a phone or a browser.
//!
//! [`Network::export_onnx`] writes the file; [`encode`] gives its
//! bytes. The model uses the default operator set at version [`OPSET`] (file format
//! [`IR_VERSION`]); it computes what [`Network::forward`] computes, in
//! evaluation mode: batch norm normalises with its running statistics and dropout is the
//! identity. Its one input is `input`, of shape `[N, ..]` with the batch size `N` left free (a
//! sequence is `[N, T, F]`), and its one output `output`; the weights are initializers under
//! their PyTorch names (`conv1.weight`, `block1.bn1.running_var`, `features.conv1.bias` for a
//! nested network, which is inlined), but for the recurrent layers', which ONNX's operators
//! take rearranged ([`kinds::Recurrent`]).
//!
//! | layer | ONNX operator |
//! | --- | --- |
//! | `conv2d` | `Conv` |
//! | `conv_transpose2d` | `ConvTranspose` (weight `[in, out, kh, kw]`, as PyTorch's) |
//! | `max_pool`, `avg_pool` | `MaxPool`, `AveragePool` (`count_include_pad = 1`, as striate's) |
//! | `linear` | `Gemm` (`transB = 1`) |
//! | `relu`, `leaky_relu`, `tanh`, `sigmoid` | `Relu`, `LeakyRelu`, `Tanh`, `Sigmoid` |
//! | `batch_norm` | `BatchNormalization` (running statistics) |
//! | `dropout` | `Identity` |
//! | `flatten`, `reshape` | `Flatten`, `Reshape` |
//! | `upsample` | `Resize` (`nearest`: `asymmetric`, `floor`; `bilinear`: `linear`, `half_pixel`) |
//! | residual add, concat | `Add` (`Sum` for more than two), `Concat` along channels |
//! | `linear` on every step of a sequence | `MatMul` by the transposed weight, `Add` |
//! | `rnn`, `lstm`, `gru` | `RNN`, `LSTM`, `GRU`, one per stacked layer, gates reordered ([`kinds::Recurrent`]) |
//! | `last`, `final_state` | `Gather` of the picked steps' features |
//! | `mean_over_time`, `max_over_time` | `ReduceMean`, `ReduceMax` over the steps |
//!
//! # How the exporter learns the graph
//!
//! `network!` emits, beside [`Network::LAYERS`], one exporter value per
//! layer ([`Network::ONNX`], hidden): a value of a type in [`kinds`] that
//! holds the layer's geometry and implements [`Export`]. A new layer kind adds one such type
//! and its `export` function here, and one method in its module of the macro that names it.
//! A kind without one exports as an [`Error::Export`] naming the layer.
//!
//! # Example
//!
//! ```
//! use striate::prelude::*;
//!
//! network! {
//!     struct Net { input: [1, 8, 8], conv: conv2d(4, kernel = 3), relu, flatten, fc: linear(2) }
//! }
//!
//! let bytes = striate::onnx::encode(&Net::init(0))?;
//! assert!(bytes.windows(11).any(|w| w == b"conv.weight"));
//! # Ok::<(), striate::Error>(())
//! ```

use std::path::Path;

use prost::Message;

use crate::compose::table_len;
use crate::{Error, LayerInfo, Network, ParamInfo, Result};

pub mod kinds;
#[allow(clippy::all, missing_docs, rustdoc::all)]
mod proto;

use proto::tensor_proto::DataType;

/// The version of ONNX's default operator set (domain `ai.onnx`) the models use. Version 17
/// (ONNX 1.12, 2022) is read by every onnxruntime since 1.12.
pub const OPSET: i64 = 17;

/// The ONNX file format version the models declare: 8, the one that goes with [`OPSET`] 17.
pub const IR_VERSION: i64 = 8;

/// A protobuf message, and so an ONNX file without external data, holds less than 2 GiB.
const MAX_MODEL_BYTES: usize = i32::MAX as usize;

/// The ONNX model of `net` with its weights, encoded: the bytes that
/// [`Network::export_onnx`] writes.
///
/// # Errors
/// [`Error::NonFinite`] when a parameter or buffer is NaN or infinite (a network that
/// diverged); [`Error::Export`] when a layer's kind has no ONNX form yet, or when the model
/// would be 2 GiB or more, which a protobuf file cannot hold.
pub fn encode<N: Network>(net: &N) -> Result<Vec<u8>> {
    crate::network::check_finite(net.state(), &|name| {
        format!("parameter `{name}` of {} to export to ONNX", N::NAME)
    })?;
    let model = model(net)?;
    let len = model.encoded_len();
    if len > MAX_MODEL_BYTES {
        return Err(Error::Export {
            network: N::NAME,
            reason: format!(
                "the model would be {len} bytes, more than the {MAX_MODEL_BYTES} a protobuf \
                 file holds; striate does not write ONNX's external data files"
            ),
        });
    }
    Ok(model.encode_to_vec())
}

/// Writes [`encode`]'s bytes to `path`, atomically.
pub(crate) fn export<N: Network>(net: &N, path: &Path) -> Result<()> {
    let bytes = encode(net)?;
    crate::io::write_atomically(path, &bytes)
}

fn model<N: Network>(net: &N) -> Result<proto::ModelProto> {
    let mut graph = Graph::default();
    let state = net.state();
    network::<N>(
        &mut graph,
        Scope {
            outer: N::NAME,
            prefix: String::new(),
            params: state.params.as_slice(),
            buffers: state.buffers.as_slice(),
            input: "input".into(),
            output: "output".into(),
        },
    )?;
    let graph = proto::GraphProto {
        name: Some(N::NAME.into()),
        node: graph.nodes,
        initializer: graph.initializers,
        input: vec![value_info("input", N::INPUT_SHAPE)],
        output: vec![value_info("output", N::OUTPUT_SHAPE)],
        doc_string: Some(format!("{}, declared with striate's network!", N::NAME)),
        ..Default::default()
    };
    Ok(proto::ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("striate".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        ..Default::default()
    })
}

/// A float tensor `[N, per_sample..]` with the batch size left free.
fn value_info(name: &str, per_sample: &[usize]) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension::Value, Dimension};
    let batch = Dimension {
        value: Some(Value::DimParam("N".into())),
        ..Default::default()
    };
    let dims = per_sample.iter().map(|&d| Dimension {
        value: Some(Value::DimValue(d as i64)),
        ..Default::default()
    });
    let tensor = proto::type_proto::Tensor {
        elem_type: Some(DataType::Float as i32),
        shape: Some(proto::TensorShapeProto {
            dim: std::iter::once(batch).chain(dims).collect(),
        }),
    };
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The nodes and initializers of the model being built.
#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<proto::NodeProto>,
    initializers: Vec<proto::TensorProto>,
}

/// Where one network's nodes go: inside another, its names get the prefix of the layer that
/// holds it, and its input and output are values of the outer graph.
struct Scope<'a> {
    /// The outermost network, for errors.
    outer: &'static str,
    /// `""`, or `features.` inside the layer `features`.
    prefix: String,
    params: &'a [f32],
    buffers: &'a [f32],
    input: String,
    output: String,
}

/// Adds the nodes of `N` to `graph`, reading `scope.input` and writing `scope.output`.
fn network<N: Network>(graph: &mut Graph, scope: Scope<'_>) -> Result<()> {
    if N::ONNX.len() != N::LAYERS.len() {
        return Err(Error::Export {
            network: scope.outer,
            reason: format!(
                "{} describes {} of its {} layers for ONNX (it was not declared with network!)",
                N::NAME,
                N::ONNX.len(),
                N::LAYERS.len()
            ),
        });
    }
    let last = N::LAYERS.len();
    if last == 0 {
        graph.nodes.push(proto::NodeProto {
            op_type: Some("Identity".into()),
            name: Some(format!("{}identity", scope.prefix)),
            input: vec![scope.input.clone()],
            output: vec![scope.output.clone()],
            ..Default::default()
        });
        return Ok(());
    }
    // Value 0 is the input; value i + 1 the output of layer i.
    let mut values = vec![scope.input.clone()];
    for (i, info) in N::LAYERS.iter().enumerate() {
        let label = if info.name.is_empty() {
            info.kind
        } else {
            info.name
        };
        values.push(if i + 1 == last {
            scope.output.clone()
        } else {
            format!("{}{label}_{}", scope.prefix, i + 1)
        });
    }
    let shape = |v: usize| {
        if v == 0 {
            N::INPUT_SHAPE
        } else {
            N::LAYERS[v - 1].output
        }
    };
    for (i, (info, exporter)) in N::LAYERS.iter().zip(N::ONNX).enumerate() {
        let mut node = Node {
            graph: &mut *graph,
            info,
            outer: scope.outer,
            prefix: &scope.prefix,
            id: format!("{}{}_{}", scope.prefix, info.kind, i + 1),
            inputs: info.inputs.iter().map(|&v| values[v].clone()).collect(),
            input_shapes: info.inputs.iter().map(|&v| shape(v)).collect(),
            output: values[i + 1].clone(),
            params: scope.params,
            params_table: N::PARAMS,
            buffers: scope.buffers,
            buffers_table: N::BUFFERS,
        };
        exporter.export(&mut node)?;
    }
    Ok(())
}

/// What a layer exports as: the ONNX nodes it adds for one layer of a network.
///
/// `network!` emits one value of a type that implements it per layer; [`kinds`] has one type
/// per layer kind.
pub trait Export {
    /// Adds the layer's nodes and initializers through `node`.
    ///
    /// # Errors
    /// [`Error::Export`] (made with [`Node::unsupported`]) when the layer cannot be written.
    fn export(&self, node: &mut Node<'_>) -> Result<()>;
}

/// One layer being exported: its input and output values, its parameters, and the graph its
/// nodes go to.
pub struct Node<'a> {
    graph: &'a mut Graph,
    info: &'static LayerInfo,
    outer: &'static str,
    prefix: &'a str,
    /// The name of its (first) ONNX node, unique in the model: `block1.conv2d_3`.
    id: String,
    inputs: Vec<String>,
    input_shapes: Vec<&'static [usize]>,
    output: String,
    params: &'a [f32],
    params_table: &'static [ParamInfo],
    buffers: &'a [f32],
    buffers_table: &'static [ParamInfo],
}

impl<'a> Node<'a> {
    /// The value the layer reads (its first, for a join).
    pub fn input(&self) -> &str {
        &self.inputs[0]
    }

    /// Every value it reads, in order.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// The shape per sample of its first input.
    pub fn input_shape(&self) -> &'static [usize] {
        self.input_shapes[0]
    }

    /// Its output's shape per sample.
    pub fn output_shape(&self) -> &'static [usize] {
        self.info.output
    }

    /// The initializer of its parameter `<layer>.<suffix>` (`weight`, `bias`), added to the
    /// model; `None` when it has none (a layer declared with `bias = false`).
    pub fn param(&mut self, suffix: &str) -> Option<String> {
        self.tensor(suffix, self.params_table, self.params)
    }

    /// The same for a buffer (`running_mean`, `running_var`).
    pub fn buffer(&mut self, suffix: &str) -> Option<String> {
        self.tensor(suffix, self.buffers_table, self.buffers)
    }

    /// Like [`Node::param`] for a tensor the layer cannot do without: an
    /// [`Error::Export`] when it is not in the network's tables.
    pub fn required(&mut self, suffix: &str) -> Result<String> {
        match self.param(suffix).or_else(|| self.buffer(suffix)) {
            Some(name) => Ok(name),
            None => {
                Err(self.unsupported(&format!("it has no tensor `{}.{suffix}`", self.info.name)))
            }
        }
    }

    fn tensor(
        &mut self,
        suffix: &str,
        table: &'static [ParamInfo],
        store: &[f32],
    ) -> Option<String> {
        let info = self.find(suffix, table)?;
        let name = format!("{}{}", self.prefix, info.name);
        let values = &store[info.offset..info.offset + info.len];
        self.push_floats(name.clone(), info.shape, values);
        Some(name)
    }

    fn find(&self, suffix: &str, table: &'static [ParamInfo]) -> Option<&'static ParamInfo> {
        table.iter().find(|p| {
            p.name
                .strip_prefix(self.info.name)
                .and_then(|rest| rest.strip_prefix('.'))
                == Some(suffix)
        })
    }

    fn push_floats(&mut self, name: String, dims: &[usize], values: &[f32]) {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.graph.initializers.push(proto::TensorProto {
            name: Some(name),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
    }

    /// The values of its parameter `<layer>.<suffix>`, without adding them to the model: for
    /// a layer whose ONNX operator takes its weights rearranged.
    pub fn param_values(&self, suffix: &str) -> Result<&'a [f32]> {
        let params: &'a [f32] = self.params;
        match self.find(suffix, self.params_table) {
            Some(info) => params
                .get(info.offset..info.offset + info.len)
                .ok_or_else(|| self.unsupported("its parameters lie outside the network's store")),
            None => {
                Err(self.unsupported(&format!("it has no tensor `{}.{suffix}`", self.info.name)))
            }
        }
    }

    /// A float initializer `<layer>.<what>` of shape `dims` holding `values` (weights the
    /// layer rearranged for its operator), added to the model.
    pub fn initializer(&mut self, what: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let name = format!("{}{}.{what}", self.prefix, self.info.name);
        self.push_floats(name.clone(), dims, values);
        name
    }

    /// A constant of `int64` values (a shape) as an initializer named after the node.
    pub fn ints(&mut self, what: &str, values: &[i64]) -> String {
        self.constant(what, values.len(), DataType::Int64, |t| {
            t.int64_data = values.to_vec()
        })
    }

    /// A constant of `float` values (scales) as an initializer named after the node.
    pub fn floats(&mut self, what: &str, values: &[f32]) -> String {
        self.constant(what, values.len(), DataType::Float, |t| {
            t.float_data = values.to_vec()
        })
    }

    fn constant(
        &mut self,
        what: &str,
        len: usize,
        dtype: DataType,
        fill: impl FnOnce(&mut proto::TensorProto),
    ) -> String {
        let name = format!("{}.{what}", self.id);
        let mut tensor = proto::TensorProto {
            name: Some(name.clone()),
            dims: vec![len as i64],
            data_type: Some(dtype as i32),
            ..Default::default()
        };
        fill(&mut tensor);
        self.graph.initializers.push(tensor);
        name
    }

    /// Adds the node `op_type` of the default domain, reading `inputs` (`""` for an optional
    /// input left out) and writing the layer's output.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attributes: Vec<Attribute>) {
        let (name, output) = (self.id.clone(), self.output.clone());
        self.push_node(name, op_type, inputs, attributes, output);
    }

    /// Adds a node on the way to the layer's output, for a layer that takes several: the node
    /// `op_type` as [`Node::op`] adds it, writing the value `<node>.<what>`, whose name it
    /// returns, for the next node to read.
    pub fn step(
        &mut self,
        what: &str,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<Attribute>,
    ) -> String {
        let name = format!("{}.{what}", self.id);
        self.push_node(name.clone(), op_type, inputs, attributes, name.clone());
        name
    }

    fn push_node(
        &mut self,
        name: String,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<Attribute>,
        output: String,
    ) {
        self.graph.nodes.push(proto::NodeProto {
            name: Some(name),
            op_type: Some(op_type.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output],
            attribute: attributes.into_iter().map(|a| a.0).collect(),
            ..Default::default()
        });
    }

    /// The error for a layer that cannot be exported, naming it and its kind.
    pub fn unsupported(&self, why: &str) -> Error {
        let layer = match self.info.name {
            "" => format!("layer `{}`", self.info.declaration),
            name => format!(
                "layer `{}{name}` (`{}`)",
                self.prefix, self.info.declaration
            ),
        };
        Error::Export {
            network: self.outer,
            reason: format!("{layer}: {why}"),
        }
    }

    /// The part of the parameter and buffer stores that starts at these offsets: the stores
    /// of a network nested in this one.
    fn nested<N: Network>(&mut self, params: usize, buffers: usize) -> Result<()> {
        let (p_end, b_end) = (params + N::NUM_PARAMS, buffers + table_len(N::BUFFERS));
        let (Some(params), Some(buffers)) = (
            self.params.get(params..p_end),
            self.buffers.get(buffers..b_end),
        ) else {
            return Err(self.unsupported("its parameters lie outside the network's store"));
        };
        network::<N>(
            self.graph,
            Scope {
                outer: self.outer,
                prefix: format!("{}{}.", self.prefix, self.info.name),
                params,
                buffers,
                input: self.inputs[0].clone(),
                output: self.output.clone(),
            },
        )
    }
}

/// An attribute of an ONNX node.
pub struct Attribute(proto::AttributeProto);

impl Attribute {
    fn named(name: &str, kind: proto::attribute_proto::AttributeType) -> proto::AttributeProto {
        proto::AttributeProto {
            name: Some(name.into()),
            r#type: Some(kind as i32),
            ..Default::default()
        }
    }

    /// An integer.
    pub fn int(name: &str, value: i64) -> Attribute {
        use proto::attribute_proto::AttributeType;
        Attribute(proto::AttributeProto {
            i: Some(value),
            ..Attribute::named(name, AttributeType::Int)
        })
    }

    /// A list of integers (sizes: `kernel_shape`, `pads`).
    pub fn ints(name: &str, values: &[usize]) -> Attribute {
        use proto::attribute_proto::AttributeType;
        Attribute(proto::AttributeProto {
            ints: values.iter().map(|&v| v as i64).collect(),
            ..Attribute::named(name, AttributeType::Ints)
        })
    }

    /// A float.
    pub fn float(name: &str, value: f32) -> Attribute {
        use proto::attribute_proto::AttributeType;
        Attribute(proto::AttributeProto {
            f: Some(value),
            ..Attribute::named(name, AttributeType::Float)
        })
    }

    /// A string.
    pub fn string(name: &str, value: &str) -> Attribute {
        use proto::attribute_proto::AttributeType;
        Attribute(proto::AttributeProto {
            s: Some(value.as_bytes().to_vec()),
            ..Attribute::named(name, AttributeType::String)
        })
    }

    /// A list of strings (a recurrent operator's `activations`).
    pub fn strings(name: &str, values: &[&str]) -> Attribute {
        use proto::attribute_proto::AttributeType;
        Attribute(proto::AttributeProto {
            strings: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            ..Attribute::named(name, AttributeType::Strings)
        })
    }
}

#[cfg(test)]
mod tests;
