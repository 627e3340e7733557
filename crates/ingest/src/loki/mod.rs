//! Loki's push protocol (`/loki/api/v1/push`): the wire types (which
//! `miru loadgen logs` also encodes), the decoder to log streams and the
//! per-entry validation a Loki distributor applies.

mod decode;
pub mod push;
mod validate;

pub use decode::{PushError, decode_push, parse_stream_labels};
pub use validate::{LogReason, LogValidation, validate_streams};
