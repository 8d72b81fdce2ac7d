//! Generates the gRPC code from `proto/okey/v1/*.proto` with a pure-Rust protobuf compiler
//! (protox), so no system `protoc` is needed, and writes the encoded descriptor set that server
//! reflection serves.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        root.join("okey/v1/okey.proto"),
        root.join("okey/v1/lifecycle.proto"),
        root.join("okey/v1/mail.proto"),
        root.join("okey/v1/directory.proto"),
        root.join("okey/v1/support.proto"),
        root.join("okey/v1/requests.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("okey_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::codec::ProtoCodec")
        .compile_fds(fds)?;
    Ok(())
}
