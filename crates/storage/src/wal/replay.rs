use std::io::Read;
use std::path::Path;

use super::record::{Record, decode};
use super::{SEGMENT_MAGIC, SEGMENT_MAGICS_READ, WalError, parse_segment_file_name};

/// What replay found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReplayStats {
    pub(crate) segments: u64,
    pub(crate) records: u64,
    /// Bytes cut from segment tails that ended in a torn or corrupt frame.
    pub(crate) truncated_bytes: u64,
    /// Bytes after a bad frame in a closed (not the newest) segment.
    pub(crate) corrupt_bytes: u64,
    pub(crate) last_segment: Option<u64>,
}

/// Reads every segment in order and hands each record to `apply`. A torn
/// or corrupt frame ends that segment: the process died mid-write, and
/// nothing after it was acknowledged. The file is truncated there so the
/// bad tail is not read again.
pub(crate) fn replay(
    dir: &Path,
    mut apply: impl FnMut(u64, Record),
) -> Result<ReplayStats, WalError> {
    let mut stats = ReplayStats::default();
    let mut segs: Vec<(u64, std::path::PathBuf)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let seq = e.file_name().to_str().and_then(parse_segment_file_name)?;
                Some((seq, e.path()))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(stats),
        Err(source) => {
            return Err(WalError::Io {
                path: dir.display().to_string(),
                source,
            });
        }
    };
    segs.sort();
    let last = segs.last().map(|(seq, _)| *seq);
    for (seq, path) in segs {
        let io = |source| WalError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut data = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(io)?;
        stats.segments += 1;
        stats.last_segment = Some(seq);
        if data.len() < SEGMENT_MAGIC.len() {
            // Created but its header never reached the disk: nothing in it
            // was acknowledged.
            tracing::warn!(segment = %path.display(), "empty wal segment skipped");
            continue;
        }
        let magic = &data[..SEGMENT_MAGIC.len()];
        if !SEGMENT_MAGICS_READ.iter().any(|m| magic == *m) {
            return Err(WalError::UnknownFormat {
                path: path.display().to_string(),
            });
        }
        let mut pos = SEGMENT_MAGIC.len();
        let good_end = loop {
            if pos == data.len() {
                break pos;
            }
            let Some(header) = data.get(pos..pos + 9) else {
                break pos;
            };
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let kind = header[8];
            let Some(payload) = data.get(pos + 9..pos + 9 + len) else {
                break pos;
            };
            let mut h = crc32fast::Hasher::new();
            h.update(&[kind]);
            h.update(payload);
            if h.finalize() != crc {
                break pos;
            }
            match decode(kind, payload) {
                Ok(rec) => {
                    stats.records += 1;
                    apply(seq, rec);
                }
                Err(e) => {
                    tracing::error!(segment = %path.display(), offset = pos, error = %e, "undecodable wal record skipped");
                }
            }
            pos += 9 + len;
        };
        if good_end < data.len() && Some(seq) != last {
            // Only the newest segment can end in a torn write; a bad frame in
            // an older one is corruption. Keep the file as it is for
            // inspection and go on with what could be read.
            stats.corrupt_bytes += (data.len() - good_end) as u64;
            tracing::error!(segment = %path.display(), offset = good_end, bytes = data.len() - good_end, "corrupt frame in a closed wal segment; the rest of this segment is not replayed");
        } else if good_end < data.len() {
            stats.truncated_bytes += (data.len() - good_end) as u64;
            tracing::warn!(segment = %path.display(), offset = good_end, bytes = data.len() - good_end, "wal segment ends in a torn frame; truncating");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(good_end as u64).and_then(|_| f.sync_all()))
                .map_err(io)?;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::segment_file_name;

    #[test]
    fn refuses_unknown_header_and_truncates_only_the_newest_segment() {
        let dir = tempfile::tempdir().unwrap();
        let frame = |payload: &[u8]| {
            let mut h = crc32fast::Hasher::new();
            h.update(&[2]);
            h.update(payload);
            let mut f = (payload.len() as u32).to_le_bytes().to_vec();
            f.extend_from_slice(&h.finalize().to_le_bytes());
            f.push(2);
            f.extend_from_slice(payload);
            f
        };
        // A valid empty-ish record is not needed: a torn frame is enough.
        let mut closed = SEGMENT_MAGIC.to_vec();
        closed.extend_from_slice(&frame(b"xx")[..6]);
        let mut newest = SEGMENT_MAGIC.to_vec();
        newest.extend_from_slice(&frame(b"yy")[..7]);
        std::fs::write(dir.path().join(segment_file_name(1)), &closed).unwrap();
        std::fs::write(dir.path().join(segment_file_name(2)), &newest).unwrap();
        let st = replay(dir.path(), |_, _| {}).unwrap();
        assert_eq!((st.corrupt_bytes, st.truncated_bytes), (6, 7));
        // The closed segment is kept as it was; the newest is truncated.
        assert_eq!(
            std::fs::read(dir.path().join(segment_file_name(1))).unwrap(),
            closed
        );
        assert_eq!(
            std::fs::read(dir.path().join(segment_file_name(2)))
                .unwrap()
                .len(),
            8
        );

        std::fs::write(dir.path().join(segment_file_name(3)), b"MIRUWAL9 future").unwrap();
        let err = replay(dir.path(), |_, _| {}).unwrap_err();
        assert!(matches!(err, WalError::UnknownFormat { .. }), "{err}");
    }

    #[test]
    fn version_1_and_2_segments_are_still_replayed() {
        for magic in [b"MIRUWAL1", b"MIRUWAL2"] {
            replay_one_sample_segment(magic);
        }
    }

    fn replay_one_sample_segment(magic: &[u8; 8]) {
        let dir = tempfile::tempdir().unwrap();
        let t = miru_model::TenantId::anonymous();
        let mut b = super::super::RecordBuf::default();
        b.samples(
            &t,
            &[(
                1,
                miru_model::Sample {
                    timestamp_ms: 5,
                    value: 2.0,
                },
            )],
        );
        let (kind, payload) = &b.records[0];
        let mut seg = magic.to_vec();
        let mut h = crc32fast::Hasher::new();
        h.update(&[*kind]);
        h.update(payload);
        seg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        seg.extend_from_slice(&h.finalize().to_le_bytes());
        seg.push(*kind);
        seg.extend_from_slice(payload);
        std::fs::write(dir.path().join(segment_file_name(1)), &seg).unwrap();
        let mut seen = Vec::new();
        let st = replay(dir.path(), |_, r| seen.push(r)).unwrap();
        assert_eq!(st.records, 1);
        assert!(
            matches!(&seen[0], super::super::Record::Samples { samples, .. } if samples.len() == 1)
        );
    }
}
