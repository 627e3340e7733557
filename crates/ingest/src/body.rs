//! Request body decompression shared by every protocol: snappy block
//! (remote write, Loki push) and gzip/deflate (OTLP, JSON pushes), always
//! bounded so that a small compressed body cannot expand without limit.

use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("malformed snappy block: {0}")]
    Snappy(snap::Error),
    #[error(
        "decompressed body is {size} bytes, over the limit of {limit} bytes (max_request_body_bytes)"
    )]
    TooLarge { size: usize, limit: usize },
    #[error("malformed {encoding} body: {source}")]
    Inflate {
        encoding: &'static str,
        source: std::io::Error,
    },
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
}

/// Decodes a snappy block, checking the announced length against `limit`
/// before allocating.
pub fn decode_snappy(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let len = snap::raw::decompress_len(body).map_err(BodyError::Snappy)?;
    if len > limit {
        return Err(BodyError::TooLarge { size: len, limit });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(BodyError::Snappy)
}

/// Decodes a body by its `Content-Encoding` (`gzip`, `deflate`, `snappy`,
/// `identity` or none), bounded by `limit` decompressed bytes.
pub fn decode_content_encoding(
    body: &[u8],
    encoding: Option<&str>,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase());
    match enc.as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > limit {
                return Err(BodyError::TooLarge {
                    size: body.len(),
                    limit,
                });
            }
            Ok(body.to_vec())
        }
        Some("gzip") | Some("x-gzip") => inflate(flate2::read::GzDecoder::new(body), "gzip", limit),
        Some("deflate") => inflate(flate2::read::ZlibDecoder::new(body), "deflate", limit),
        Some("snappy") => decode_snappy(body, limit),
        Some(other) => Err(BodyError::UnsupportedEncoding(other.to_string())),
    }
}

fn inflate(r: impl Read, encoding: &'static str, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    // Read one byte past the limit to tell "exactly at" from "over".
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|source| BodyError::Inflate { encoding, source })?;
    if out.len() > limit {
        return Err(BodyError::TooLarge {
            size: out.len(),
            limit,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_is_bounded() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&vec![b'a'; 10_000]).unwrap();
        let gz = e.finish().unwrap();
        assert_eq!(
            decode_content_encoding(&gz, Some("gzip"), 10_000)
                .unwrap()
                .len(),
            10_000
        );
        assert!(matches!(
            decode_content_encoding(&gz, Some("gzip"), 9_999),
            Err(BodyError::TooLarge { .. })
        ));
        assert!(decode_content_encoding(b"xx", Some("br"), 10).is_err());
    }

    #[test]
    fn snappy_length_checked_first() {
        let c = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; 5000])
            .unwrap();
        assert!(matches!(
            decode_snappy(&c, 100),
            Err(BodyError::TooLarge {
                size: 5000,
                limit: 100
            })
        ));
    }
}
