//! Writes `runtime/src/onnx/proto.rs`: the prost types of `runtime/src/onnx/onnx.proto`.

use std::path::Path;

fn main() {
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/src/onnx");
    let files = protox::compile([onnx.join("onnx.proto")], [&onnx]).expect("onnx.proto compiles");
    let out = std::env::temp_dir().join(format!("striate-onnx-proto-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("a temporary folder");
    prost_build::Config::new()
        // The comments are the .proto's, beside the generated file; as rustdoc they would be
        // taken for doctests.
        .disable_comments(["."])
        .out_dir(&out)
        .compile_fds(files)
        .expect("prost-build generates the types");
    std::fs::copy(out.join("onnx.rs"), onnx.join("proto.rs")).expect("proto.rs written");
    std::fs::remove_dir_all(&out).ok();
}
