//! Compiles the `.proto` files under `proto/` with protox (pure Rust, no system `protoc`) and
//! generates Rust with prost-build. The compiled `FileDescriptorSet` is also written to
//! `OUT_DIR` so the crate can expose it (descriptor tests, JSON via reflection).

use std::{env, error::Error, fs, path::PathBuf};

use protox::prost::Message as _;

const PROTOS: &[&str] = &[
    "mesos/v1/mesos.proto",
    "mesos/v1/scheduler/scheduler.proto",
    "mesos/v1/executor/executor.proto",
    "mesoflow/internal.proto",
    "mesoflow/checkpoint.proto",
    "mesoflow/control.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    for file in PROTOS {
        println!("cargo:rerun-if-changed=proto/{file}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("mesoflow_descriptor_set.bin"),
        fds.encode_to_vec(),
    )?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    Ok(())
}
