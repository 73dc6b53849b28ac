//! Compile `proto/rpc.proto` and `proto/vpccni.proto` with protox (pure Rust), then generate tonic client and server code.

fn main() {
    // Read at run time: a build-script binary reused from another checkout (same target
    // directory, e.g. CI's fresh clone) must not point at that checkout's files.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let proto_dir = std::path::Path::new(&manifest).join("../../proto");
    let files = [proto_dir.join("rpc.proto"), proto_dir.join("vpccni.proto")];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&proto_dir]).expect("proto/*.proto compile");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .expect("code generation");
}
