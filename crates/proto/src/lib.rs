//! The ipamd gRPC contract: messages and services of package `rpc`, generated from
//! `proto/rpc.proto` (upstream field numbers), plus the standard file descriptor for reflection.

#![allow(missing_docs, clippy::all, non_snake_case)]

/// Package `rpc`.
pub mod rpc {
    tonic::include_proto!("rpc");
}

/// Package `vpccni.v1`: this project's additions (CHECK asks the daemon, CNI GC).
pub mod vpccni {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("vpccni.v1");
    }
    pub use v1::*;
}
