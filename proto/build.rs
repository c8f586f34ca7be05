//! Generates the MADS messages and gRPC service from proto/ with the vendored protoc.

fn main() -> std::io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(std::io::Error::other)?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".envoy", "::envoy_types::pb::envoy")
        .compile_with_config(config, &["proto/kuma/observability/v1/mads.proto"], &["proto"])
}
