//! Prometheus remote write 1.0 and 2.0: content-type negotiation, snappy
//! block decoding and translation of both protobuf schemas into a
//! [`WriteBatch`](miru_model::WriteBatch).

pub mod proto_v1;
pub mod proto_v2;
mod translate;
mod wire_v1;

pub use proto_v1::encode_v1_for_tests;
pub use translate::{RemoteWriteError, decode_v1, decode_v1_reference, decode_v2};

/// Which remote write protobuf message a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteWriteVersion {
    V1,
    V2,
}

/// Picks the schema from `Content-Type`, as the 2.0 spec requires. A missing
/// header means 1.0 (old senders omit it). `Err` carries the text for a 415.
pub fn negotiate(content_type: Option<&str>) -> Result<RemoteWriteVersion, String> {
    let Some(ct) = content_type else {
        return Ok(RemoteWriteVersion::V1);
    };
    let mut parts = ct.split(';').map(str::trim);
    let media = parts.next().unwrap_or("").to_ascii_lowercase();
    if media != "application/x-protobuf" {
        return Err(format!(
            "unsupported content type {ct:?}: expected application/x-protobuf (remote write 1.0 or 2.0)"
        ));
    }
    let mut proto = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("proto")
        {
            proto = Some(v.trim().trim_matches('"').to_string());
        }
    }
    match proto.as_deref() {
        None | Some("prometheus.WriteRequest") => Ok(RemoteWriteVersion::V1),
        Some("io.prometheus.write.v2.Request") => Ok(RemoteWriteVersion::V2),
        Some(other) => Err(format!(
            "unsupported remote write message {other:?}: expected prometheus.WriteRequest or io.prometheus.write.v2.Request"
        )),
    }
}

/// Whether `Content-Encoding` is acceptable: snappy, or absent (tolerated).
pub fn check_encoding(content_encoding: Option<&str>) -> Result<(), String> {
    match content_encoding.map(|e| e.trim().to_ascii_lowercase()) {
        None => Ok(()),
        Some(e) if e == "snappy" => Ok(()),
        Some(e) => Err(format!(
            "unsupported content encoding {e:?}: remote write requires snappy"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_versions() {
        assert_eq!(negotiate(None), Ok(RemoteWriteVersion::V1));
        assert_eq!(
            negotiate(Some("application/x-protobuf")),
            Ok(RemoteWriteVersion::V1)
        );
        assert_eq!(
            negotiate(Some("application/x-protobuf;proto=prometheus.WriteRequest")),
            Ok(RemoteWriteVersion::V1)
        );
        assert_eq!(
            negotiate(Some(
                "application/x-protobuf; proto=io.prometheus.write.v2.Request"
            )),
            Ok(RemoteWriteVersion::V2)
        );
        assert!(negotiate(Some("application/json")).is_err());
        assert!(negotiate(Some("application/x-protobuf;proto=foo.Bar")).is_err());
        assert!(check_encoding(Some("gzip")).is_err());
        assert!(check_encoding(Some("snappy")).is_ok());
    }
}
