//! Immutable metrics parts on the object store (format:
//! `docs/formats/metrics-part-v2.md`; v1 parts are still read). A part holds the samples of many
//! series of one tenant and one UTC day, sorted by labels.

mod chunk;
mod name;
mod read;
mod write;

pub use name::{PartName, Signal};
pub(crate) use read::decode_kind;
pub use read::{PartIndex, PartReader};
pub use write::PartWriter;

pub(crate) use chunk::{decode as decode_chunk, encode as encode_chunk};

/// Magic at the start and the end of every part file.
pub const PART_MAGIC: &[u8; 8] = b"MIRUMPT1";
/// Current part format version, written in the footer. Version 1 (no
/// chunk kinds, floats only) is still read.
pub const PART_VERSION: u16 = 2;

/// What a series chunk holds. A series with both floats and native
/// histograms in one part has one index entry of each kind, floats first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChunkKind {
    Float = 0,
    Histogram = 1,
}
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
