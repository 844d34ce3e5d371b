//! Compiles `proto/hilt/v1/*.proto` with protox (pure Rust), so building hilt
//! never needs a system `protoc`. The descriptor set is also written out for
//! server reflection. `proto/hilt/echo/v1` is the benchmarks' bare echo
//! service, kept out of that descriptor set (hiltd does not serve it).
use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "hilt/v1/tensor.proto",
        "hilt/v1/device.proto",
        "hilt/v1/hilt.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("hilt_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // A tensor's bytes are shared, not copied: decoded as a slice of
        // the received buffer, encoded straight from the measurement.
        .bytes(".hilt.v1.Tensor.data")
        // Messages reserve their whole length before they are written.
        .codec_path("crate::codec::SizedCodec")
        .compile_fds(fds)?;
    let echo = "hilt/echo/v1/echo.proto";
    println!("cargo:rerun-if-changed={}", root.join(echo).display());
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // As hilt's tensors: payloads shared, not copied.
        .bytes(".hilt.echo.v1")
        .compile_fds(protox::compile([echo], [&root])?)?;
    Ok(())
}
