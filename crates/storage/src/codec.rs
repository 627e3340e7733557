//! Byte-level helpers shared by the WAL and part formats: LEB128 varints,
//! zigzag, length-prefixed strings, and a bounds-checked reader that turns
//! truncated input into an error instead of a panic.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("unexpected end of data at byte {0}")]
    Eof(usize),
    #[error("varint too long at byte {0}")]
    VarintOverflow(usize),
    #[error("invalid UTF-8 in string at byte {0}")]
    Utf8(usize),
    #[error("{what} out of range at byte {at}: {value}")]
    Range {
        what: &'static str,
        at: usize,
        value: u64,
    },
}

pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, zigzag(v));
}

pub(crate) fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub(crate) fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Reads the encodings above from a slice, never panicking on bad input.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Bytes not read yet: an upper bound for counts read from the input,
    /// so that a corrupt count cannot make a reader allocate.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline(always)]
    pub(crate) fn uvarint(&mut self) -> Result<u64, CodecError> {
        // Most deltas fit one byte, nearly all the rest two.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        if let Some(&[b0, b1]) = self.buf.get(self.pos..self.pos + 2)
            && b1 < 0x80
        {
            self.pos += 2;
            return Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7);
        }
        self.uvarint_multi()
    }

    #[inline(never)]
    fn uvarint_multi(&mut self) -> Result<u64, CodecError> {
        let start = self.pos;
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = *self.buf.get(self.pos).ok_or(CodecError::Eof(self.pos))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(CodecError::VarintOverflow(start));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(CodecError::VarintOverflow(start));
            }
        }
    }

    /// The next eight bytes as one little-endian word, when each of them
    /// is a whole varint (below 0x80); the position does not move.
    #[inline(always)]
    pub(crate) fn eight_small_varints(&self) -> Option<u64> {
        let b: [u8; 8] = self.buf.get(self.pos..self.pos + 8)?.try_into().ok()?;
        let w = u64::from_le_bytes(b);
        (w & 0x8080_8080_8080_8080 == 0).then_some(w)
    }

    /// Moves past `n` bytes (at most what is left).
    #[inline(always)]
    pub(crate) fn skip_bytes(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    /// Moves past `k` varints without decoding them (each ends with the
    /// first byte below 0x80).
    pub(crate) fn skip_varints(&mut self, k: usize) -> Result<(), CodecError> {
        if k == 0 {
            return Ok(());
        }
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let mut seen = 0;
        for (i, &b) in rest.iter().enumerate() {
            if b < 0x80 {
                seen += 1;
                if seen == k {
                    self.pos += i + 1;
                    return Ok(());
                }
            }
        }
        Err(CodecError::Eof(self.buf.len()))
    }

    #[inline(always)]
    pub(crate) fn varint(&mut self) -> Result<i64, CodecError> {
        self.uvarint().map(unzigzag)
    }

    /// A varint that must fit `usize` and be at most `max` (a length or count).
    pub(crate) fn len(&mut self, what: &'static str, max: usize) -> Result<usize, CodecError> {
        let at = self.pos;
        let v = self.uvarint()?;
        if v > max as u64 {
            return Err(CodecError::Range { what, at, value: v });
        }
        Ok(v as usize)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Eof(self.pos))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(CodecError::Eof(self.pos))?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u32_le(&mut self) -> Result<u32, CodecError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64, CodecError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, CodecError> {
        let n = self.len("string length", self.buf.len())?;
        let at = self.pos;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| CodecError::Utf8(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<i64>(), u in any::<u64>(), s in ".*") {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            put_uvarint(&mut b, u);
            put_str(&mut b, &s);
            prop_assert_eq!(uvarint_len(u), { let mut x = Vec::new(); put_uvarint(&mut x, u); x.len() });
            let mut r = Reader::new(&b);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert_eq!(r.uvarint().unwrap(), u);
            prop_assert_eq!(r.str().unwrap(), s.as_str());
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reader_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&b);
            while !r.is_empty() {
                if r.str().is_err() { break; }
            }
        }
    }
}
