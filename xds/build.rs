//! Generates the message types from `proto/*.proto` with prost. The protos are parsed by
//! protox (a protobuf compiler written in Rust), so no `protoc` binary is needed.

fn main() {
    let protos = [
        "proto/discovery.proto",
        "proto/workload.proto",
        "proto/authorization.proto",
        "proto/ca.proto",
        "proto/zds.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = match protox::compile(protos, ["proto"]) {
        Ok(d) => d,
        Err(e) => panic!("xds/proto: {e}"),
    };
    if let Err(e) = prost_build::Config::new().compile_fds(descriptors) {
        panic!("xds/proto: code generation failed: {e}");
    }
}
