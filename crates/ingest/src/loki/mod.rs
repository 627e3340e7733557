//! Loki's push protocol (`/loki/api/v1/push`): the wire types (which
//! `miru loadgen logs` also encodes), the decoder to log streams and the
//! per-entry validation a Loki distributor applies, then what it adds
//! (`service_name`, `detected_level`).

mod decode;
mod discover;
pub mod push;
mod validate;

pub use decode::{PushError, decode_push, parse_stream_labels};
pub use discover::{
    DETECTED_LEVEL, SERVICE_NAME, UNKNOWN_SERVICE, default_log_level_fields,
    default_service_name_labels, discover,
};
pub use validate::{LogReason, LogValidation, validate_streams};
