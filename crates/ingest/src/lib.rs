//! Wire formats to model batches. Each protocol decoder turns request bytes
//! into a [`miru_model::WriteBatch`]; `validate` checks a batch against the
//! tenant's limits before it reaches storage.
//!
//! Input: request bodies and headers. Output: validated `WriteBatch`es or
//! errors that say what is wrong and where.

pub mod body;
pub mod limits;
pub mod loki;
pub mod otlp;
pub mod remote_write;
pub mod validate;
