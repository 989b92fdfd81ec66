//! Compiles `protos/frames.proto` with prost. The .proto is parsed by protox
//! (pure Rust), so no `protoc` is needed on the build machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=protos/frames.proto");
    let fds = protox::compile(["protos/frames.proto"], ["protos"])?;
    prost_build::Config::new()
        // Audio as `bytes::Bytes`: decoding from a `Bytes` buffer slices it, no copy.
        .bytes(["."])
        .compile_fds(fds)?;
    Ok(())
}
