//! `logproto.PushRequest` as Loki's `pkg/push/push.proto` defines it on the
//! wire (declared by hand; field numbers are the contract). Bodies are
//! snappy-compressed (block format), `Content-Type: application/x-protobuf`.

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<Stream>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Stream {
    /// The stream's labels in selector syntax: `{app="api", namespace="prod"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<Entry>,
    /// Filled in by Loki's distributor; senders leave it 0.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPair>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn from_unix_nanos(ns: i64) -> Timestamp {
        Timestamp {
            seconds: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }

    pub fn unix_nanos(&self) -> i64 {
        self.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(self.nanos as i64)
    }
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn timestamps_split_into_seconds_and_nanos() {
        for ns in [0, 1, 1_763_700_000_123_456_789, -1, -1_500_000_000] {
            let t = Timestamp::from_unix_nanos(ns);
            assert!((0..1_000_000_000).contains(&t.nanos));
            assert_eq!(t.unix_nanos(), ns);
        }
    }

    /// Bytes as Loki's generated Go code writes them for one entry with
    /// structured metadata (field numbers and wire types are the contract).
    #[test]
    fn encodes_the_wire_layout_loki_reads() {
        let req = PushRequest {
            streams: vec![Stream {
                labels: "{a=\"b\"}".into(),
                entries: vec![Entry {
                    timestamp: Some(Timestamp {
                        seconds: 1,
                        nanos: 2,
                    }),
                    line: "hi".into(),
                    structured_metadata: vec![LabelPair {
                        name: "t".into(),
                        value: "x".into(),
                    }],
                }],
                hash: 0,
            }],
        };
        let want: Vec<u8> = [
            &[0x0a, 29][..], // streams, len 29
            &[0x0a, 7],
            b"{a=\"b\"}",                 // labels
            &[0x12, 18],                  // entries, len 18
            &[0x0a, 4, 0x08, 1, 0x10, 2], // timestamp {1, 2}
            &[0x12, 2],
            b"hi",                                    // line
            &[0x1a, 6, 0x0a, 1, b't', 0x12, 1, b'x'], // structuredMetadata
        ]
        .concat();
        assert_eq!(req.encode_to_vec(), want);
        assert_eq!(PushRequest::decode(&want[..]).unwrap(), req);
    }
}
