//! Loki's push protocol (`/loki/api/v1/push`).
//!
//! So far only the message types, which `miru loadgen logs` encodes; the
//! decoder and validation arrive with log ingestion.

pub mod push;
