//! Compiles `proto/` with protox (pure Rust, no protoc) into tonic/prost code, and keeps the
//! encoded descriptor set for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from("../../proto");
    let files = [
        "billing/common/v1/money.proto",
        "billing/ledger/v1/ledger.proto",
        "billing/invoicing/v1/invoicing.proto",
        "billing/events/v1/events.proto",
        "billing/notifier/v1/notifier.proto",
    ];
    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(files)?;

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    for file in compiler.files() {
        if let Some(path) = file.path() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("billing_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .include_file("_includes.rs")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
