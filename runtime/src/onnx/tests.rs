//! The error of a layer kind without an exporter; the structure of whole exported models and
//! their runs in onnxruntime are the facade's `tests/onnx.rs`, where `network!` declares them.

use super::{Export, Graph, Node};
use crate::{Error, LayerInfo};

/// A kind without an exporter is an error naming the layer and its kind.
#[test]
fn a_kind_without_an_exporter_is_named() {
    static INFO: LayerInfo = LayerInfo {
        name: "enc",
        kind: "attention",
        declaration: "attention(16)",
        inputs: &[0],
        output: &[16],
        params: 0,
        receptive_field: [1, 1],
        macs: 0,
        depth: 0,
        note: "",
    };
    let mut graph = Graph::default();
    let mut node = Node {
        graph: &mut graph,
        info: &INFO,
        outer: "Seq",
        prefix: "",
        id: "attention_1".into(),
        inputs: vec!["input".into()],
        input_shapes: vec![&[8]],
        output: "output".into(),
        params: &[],
        params_table: &[],
        buffers: &[],
        buffers_table: &[],
    };
    let err = super::kinds::Unsupported.export(&mut node).unwrap_err();
    assert!(matches!(err, Error::Export { network: "Seq", .. }));
    assert_eq!(
        err.to_string(),
        "ONNX export of Seq: layer `enc` (`attention(16)`): its kind has no ONNX exporter yet \
         (striate::onnx lists the kinds it writes)"
    );
    assert!(graph.nodes.is_empty() && graph.initializers.is_empty());
}
