//! The miru server: configuration, start-up wiring, and the HTTP and gRPC
//! APIs per family. The binary in `main.rs` only parses flags and calls in.
//!
//! Input: network requests. Output: responses, with data handed to
//! `miru-ingest` for decoding and `miru-storage` for keeping.

pub mod app;
pub mod cli;
pub mod config;
pub mod duration;
pub mod export;
pub mod grpc;
pub mod http;
pub mod loadgen;
pub mod logql;
pub mod pipeline;
pub mod query;
pub mod runtime_config;
pub mod self_metrics;
pub mod tail;
pub mod tenant;
