//! Loki's push protocol (`/loki/api/v1/push`): the wire types (which
//! `miru loadgen logs` also encodes) and the decoder to log streams.

mod decode;
pub mod push;

pub use decode::{PushError, decode_push, parse_stream_labels};
