//! Write-ahead log: every accepted write is framed, appended to the current
//! segment and fsync'd before the request is acknowledged. One writer
//! thread owns the file and commits all appends that queued up while the
//! previous fsync ran in one fsync (group commit).
//!
//! Format: `docs/formats/wal-v3.md` (adds log records to `wal-v2.md`).

mod record;
mod replay;
mod writer;

#[cfg(test)]
pub(crate) use record::decode as decode_record;
pub(crate) use record::{Record, RecordBuf};
pub(crate) use replay::replay;
pub(crate) use writer::Wal;

/// Magic at the start of every segment file written (format version 3:
/// `docs/formats/wal-v3.md`).
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"MIRUWAL3";
/// Older segments are still replayed: their records are a subset of
/// version 3's (v2 has no log records, v1 no native histograms either).
pub(crate) const SEGMENT_MAGICS_READ: [&[u8; 8]; 3] = [b"MIRUWAL1", b"MIRUWAL2", b"MIRUWAL3"];

/// Name of segment `seq` inside the WAL directory.
pub(crate) fn segment_file_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")?.parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "wal segment {path} does not start with a known header (MIRUWAL1 to MIRUWAL3): written by a newer version or not a miru WAL; move it away to start"
    )]
    UnknownFormat { path: String },
    #[error("wal writer has stopped after an earlier failure: {0}")]
    Failed(String),
}

#[cfg(test)]
pub(crate) fn record_kind_samples() -> u8 {
    record::RECORD_SAMPLES
}

#[cfg(test)]
pub(crate) fn record_kind_metadata() -> u8 {
    record::RECORD_METADATA
}
