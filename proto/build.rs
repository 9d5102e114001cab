//! Compiles `lifeboat/v1/lifeboat.proto` with protox (pure Rust): no system `protoc` needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["lifeboat/v1/lifeboat.proto"], ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Smaller starting buffers per call (src/codec.rs).
        .codec_path("crate::codec::Codec")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=lifeboat");
    Ok(())
}
