//! Black-box tests: the real `miru` binary on 127.0.0.1, driven over HTTP
//! and gRPC by Rust clients and by the real agents (Prometheus, the
//! OpenTelemetry SDK, python-logging-loki) where they are installed.

#![allow(unreachable_pub)] // test modules share helpers through `pub`

mod external;
mod harness;

mod bad_input;
mod cli;
mod compaction;
mod durability;
mod export_logs;
mod limits;
mod loadgen;
mod logging_loki;
mod logs_at_rest;
mod logs_overload;
mod loki_api;
mod loki_tail;
mod otel_logs;
mod otel_sdk;
mod promql_api;
mod promql_differential;
mod query_overload;
mod real_prometheus;
mod remote_write;
mod s3_store;
