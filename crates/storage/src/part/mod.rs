//! Immutable metrics parts on the object store (format:
//! `docs/formats/metrics-part-v1.md`). A part holds the samples of many
//! series of one tenant and one UTC day, sorted by labels.

mod chunk;
mod name;
mod read;
mod write;

pub use name::PartName;
pub use read::{PartIndex, PartReader};
pub use write::PartWriter;

pub(crate) use chunk::{decode as decode_chunk, encode as encode_chunk};

/// Magic at the start and the end of every part file.
pub const PART_MAGIC: &[u8; 8] = b"MIRUMPT1";
/// Current part format version, written in the footer.
pub const PART_VERSION: u16 = 1;
/// Fixed footer size in bytes.
pub const FOOTER_LEN: usize = 72;

#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("part {path}: {what}")]
    Corrupt { path: String, what: String },
    #[error("part {path}: {source}")]
    Codec {
        path: String,
        source: crate::codec::CodecError,
    },
    #[error("part {path}: object store: {source}")]
    Store {
        path: String,
        source: object_store::Error,
    },
}
