//! With the `export` feature: ONNX's own schema (`proto/onnx.proto`, from the `onnx` wheel on PyPI)
//! compiled to Rust types by protox, a protobuf compiler in Rust, and prost — so that no `protoc`
//! is needed to build Wick, natively or for wasm32.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    #[cfg(feature = "export")]
    {
        let descriptors = protox::compile(["onnx.proto"], ["proto"])?;
        prost_build::Config::new().compile_fds(descriptors)?;
    }
    Ok(())
}
