//! Per-block token filters of a logs part (`docs/formats/logs-blooms-v1.md`):
//! one small Bloom filter per block of rows over the lines' n-grams and
//! short tokens and over the structured-metadata pairs, so a needle search
//! (`|= "4bf92f3577b34da6"`) or an exact metadata filter
//! (`| trace_id="…"`) skips the blocks that cannot hold it without reading
//! their pages.
//!
//! Why n-grams and not whole tokens: `|=` is a substring match, so a needle
//! may be any part of a token (a trace id prefix). A token's n-grams are
//! indexed at every [`GRAM_STEP`]-th offset from its start, plus its last
//! one: half the keys of every offset, and a needle of `GRAM_LEN +
//! GRAM_STEP - 1` bytes or more still contains indexed n-grams whatever its
//! offset inside the token (the query tries each offset class). Shorter
//! pieces are covered only when the needle shows they are whole tokens.

/// Rows per block. Parquet pages are cut at block boundaries too, so a
/// skipped block is a skipped page of every column.
pub(crate) const BLOCK_ROWS: usize = 4096;
/// Length of the n-grams taken inside tokens.
pub(crate) const GRAM_LEN: usize = 6;
/// Offsets inside a token at which n-grams are indexed.
pub(crate) const GRAM_STEP: usize = 2;
/// Bits per distinct key; with one hash a key absent from the block passes
/// with probability about 0.4, so a needle with several n-grams is rarely a
/// false positive, at a quarter of a byte per key.
const BITS_PER_KEY: f64 = 2.0;
const HASHES: u32 = 1;
const MAGIC: &[u8; 8] = b"MIRUBLM1";

/// Seeds keep line keys and metadata pairs apart.
const LINE_SEED: u64 = 0x6c69_6e65;
const PAIR_SEED: u64 = 0x7061_6972;

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The murmur3 64-bit finaliser: every input bit reaches every output bit.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A piece of at most 7 bytes packed with its length: distinct pieces give
/// distinct integers before mixing.
fn short_key(piece: &[u8]) -> u64 {
    debug_assert!(piece.len() < 8);
    let mut v = piece.len() as u64;
    for &b in piece {
        v = (v << 8) | u64::from(b);
    }
    mix(v ^ LINE_SEED.rotate_left(56))
}

fn long_key(seed: u64, parts: &[&[u8]]) -> u64 {
    // FNV-1a over the parts with a separator, then the finaliser.
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for p in parts {
        for &b in *p {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// Calls `f` with the key of every indexed n-gram and short token of
/// `line`.
fn line_keys(line: &[u8], mut f: impl FnMut(u64)) {
    let mut i = 0;
    while i < line.len() {
        if !is_token_byte(line[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < line.len() && is_token_byte(line[i]) {
            i += 1;
        }
        let token = &line[start..i];
        if token.len() < GRAM_LEN {
            f(short_key(token));
        } else {
            let last = token.len() - GRAM_LEN;
            for at in (0..=last).step_by(GRAM_STEP) {
                f(short_key(&token[at..at + GRAM_LEN]));
            }
            if !last.is_multiple_of(GRAM_STEP) {
                f(short_key(&token[last..]));
            }
        }
    }
}

/// A metadata pair is one key of a query on its own (a needle has many
/// n-grams), so it is inserted as several keys: a block without it passes
/// with the filter's fill ratio to that power (about 0.02).
const PAIR_KEYS: usize = 4;

fn pair_keys(name: &str, value: &str) -> [u64; PAIR_KEYS] {
    let h = long_key(PAIR_SEED, &[name.as_bytes(), value.as_bytes()]);
    std::array::from_fn(|i| mix(h ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

/// What a block's filter must hold for a line of it to contain a needle:
/// every key of `all`, and for each entry of `any_of` every key of at least
/// one of its alternatives.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct NeedleKeys {
    pub(crate) all: Vec<u64>,
    pub(crate) any_of: Vec<Vec<Vec<u64>>>,
}

impl NeedleKeys {
    /// Whether the needle tells nothing (every block may match).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.all.is_empty() && self.any_of.is_empty()
    }

    pub(crate) fn extend(&mut self, other: NeedleKeys) {
        self.all.extend(other.all);
        self.any_of.extend(other.any_of);
    }
}

/// The keys a line must hold to contain `needle`.
pub(crate) fn needle_keys(needle: &str) -> NeedleKeys {
    let b = needle.as_bytes();
    let mut out = NeedleKeys::default();
    let mut i = 0;
    while i < b.len() {
        if !is_token_byte(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_token_byte(b[i]) {
            i += 1;
        }
        let run = &b[start..i];
        // A run with a non-token byte before it inside the needle starts a
        // token of the line; one with a non-token byte after it ends one.
        // At the needle's edges it may be part of a longer token.
        let (starts, ends) = (start > 0, i < b.len());
        if run.len() < GRAM_LEN {
            if starts && ends {
                out.all.push(short_key(run));
            }
            continue;
        }
        let grams: Vec<u64> = run.windows(GRAM_LEN).map(short_key).collect();
        let last = grams.len() - 1;
        if ends {
            // A token's last n-gram is always indexed.
            out.all.push(grams[last]);
        }
        if starts {
            out.all.extend(grams.iter().step_by(GRAM_STEP));
            continue;
        }
        // The run's offset inside its token is unknown: for each offset
        // class, the n-grams that would be at indexed offsets.
        let mut alternatives = Vec::with_capacity(GRAM_STEP);
        for class in 0..GRAM_STEP {
            let keys: Vec<u64> = (0..=last)
                .filter(|j| (class + j).is_multiple_of(GRAM_STEP))
                .map(|j| grams[j])
                .collect();
            if keys.is_empty() {
                // Possible offset with no indexed n-gram: no constraint.
                alternatives.clear();
                break;
            }
            alternatives.push(keys);
        }
        if !alternatives.is_empty() {
            out.any_of.push(alternatives);
        }
    }
    out.all.sort_unstable();
    out.all.dedup();
    out
}

/// The keys of a structured-metadata pair a row must carry.
pub(crate) fn metadata_keys(name: &str, value: &str) -> [u64; PAIR_KEYS] {
    pair_keys(name, value)
}

/// Collects the keys of one block while the part is written.
#[derive(Default)]
pub(crate) struct BlockBuilder {
    keys: Vec<u64>,
}

impl BlockBuilder {
    pub(crate) fn add_line(&mut self, line: &str) {
        line_keys(line.as_bytes(), |k| self.keys.push(k));
    }

    pub(crate) fn add_metadata(&mut self, name: &str, value: &str) {
        self.keys.extend(pair_keys(name, value));
    }

    /// The block's filter as 64-bit words; the builder is empty again.
    pub(crate) fn finish(&mut self) -> Vec<u64> {
        let mut keys = std::mem::take(&mut self.keys);
        keys.sort_unstable();
        keys.dedup();
        let bits = ((keys.len() as f64 * BITS_PER_KEY).ceil() as u64).max(64);
        let words = bits.div_ceil(64) as usize;
        let mut filter = vec![0u64; words];
        for k in keys {
            for bit in positions(k, words) {
                filter[bit / 64] |= 1 << (bit % 64);
            }
        }
        filter
    }
}

/// Bit positions of a key in a filter of `words` words: two independent
/// 32-bit halves of the key, each mapped onto the bit range by
/// multiplication (no power-of-two size needed).
fn positions(key: u64, words: usize) -> impl Iterator<Item = usize> {
    let bits = words as u64 * 64;
    let halves = [key & 0xffff_ffff, key >> 32];
    (0..HASHES as usize).map(move |i| ((halves[i] * bits) >> 32) as usize)
}

/// The filters of every block of a part, as read back.
#[derive(Debug)]
pub(crate) struct PartBlooms {
    pub(crate) block_rows: usize,
    /// Word offsets of each block's filter in `words` (one more than the
    /// number of blocks).
    offsets: Vec<usize>,
    words: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BloomsError {
    #[error("not a logs blooms object (bad magic)")]
    Magic,
    #[error("truncated")]
    Truncated,
    #[error("checksum mismatch")]
    Checksum,
    #[error("unsupported parameters (gram length {gram_len}, hashes {hashes})")]
    Parameters { gram_len: u32, hashes: u32 },
}

impl PartBlooms {
    pub(crate) fn encode(block_rows: usize, blocks: &[Vec<u64>]) -> Vec<u8> {
        let total: usize = blocks.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(24 + 4 * blocks.len() + 8 * total + 4);
        out.extend_from_slice(MAGIC);
        for v in [
            block_rows as u32,
            GRAM_LEN as u32,
            HASHES,
            blocks.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for b in blocks {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        }
        for w in blocks.iter().flatten() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Result<PartBlooms, BloomsError> {
        if b.len() < 28 {
            return Err(if b.starts_with(MAGIC) || b.len() < 8 {
                BloomsError::Truncated
            } else {
                BloomsError::Magic
            });
        }
        if &b[..8] != MAGIC {
            return Err(BloomsError::Magic);
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(BloomsError::Checksum);
        }
        let u32_at = |at: usize| -> Result<u32, BloomsError> {
            body.get(at..at + 4)
                .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
                .ok_or(BloomsError::Truncated)
        };
        let block_rows = u32_at(8)? as usize;
        let (gram_len, hashes) = (u32_at(12)?, u32_at(16)?);
        if gram_len as usize != GRAM_LEN || hashes != HASHES || block_rows == 0 {
            return Err(BloomsError::Parameters { gram_len, hashes });
        }
        let blocks = u32_at(20)? as usize;
        // Bounded by the bytes present before anything is allocated.
        if blocks > (body.len() - 24) / 4 {
            return Err(BloomsError::Truncated);
        }
        let mut offsets = Vec::with_capacity(blocks + 1);
        offsets.push(0);
        let mut at = 24;
        for _ in 0..blocks {
            let n = u32_at(at)? as usize;
            at += 4;
            offsets.push(offsets.last().expect("not empty") + n);
        }
        let total = *offsets.last().expect("not empty");
        if body.len() != at + total * 8 {
            return Err(BloomsError::Truncated);
        }
        let words = body[at..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(PartBlooms {
            block_rows,
            offsets,
            words,
        })
    }

    pub(crate) fn blocks(&self) -> usize {
        self.offsets.len() - 1
    }

    pub(crate) fn approx_bytes(&self) -> usize {
        self.words.len() * 8 + self.offsets.len() * 8 + 64
    }

    /// Whether a line of block `i` may contain the needle.
    pub(crate) fn may_contain_needle(&self, i: usize, n: &NeedleKeys) -> bool {
        self.may_contain_all(i, &n.all)
            && n.any_of
                .iter()
                .all(|alts| alts.iter().any(|keys| self.may_contain_all(i, keys)))
    }

    /// Whether block `i` may hold every key. A block without words (none
    /// written) may hold anything.
    pub(crate) fn may_contain_all(&self, i: usize, keys: &[u64]) -> bool {
        let Some(filter) = self.offsets.get(i..i + 2).map(|r| &self.words[r[0]..r[1]]) else {
            return true;
        };
        if filter.is_empty() {
            return true;
        }
        keys.iter().all(|&k| {
            positions(k, filter.len()).all(|bit| filter[bit / 64] & (1 << (bit % 64)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(lines: &[&str]) -> PartBlooms {
        let mut b = BlockBuilder::default();
        for l in lines {
            b.add_line(l);
        }
        b.add_metadata("trace_id", "abc123");
        let words = b.finish();
        PartBlooms::decode(&PartBlooms::encode(BLOCK_ROWS, &[words])).unwrap()
    }

    #[test]
    fn every_substring_of_a_line_passes_its_block() {
        let lines = [
            "level=error msg=\"connection refused\" trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
            "GET /api/users/5353 200 12ms user=u-067495 äöü-straße",
            "x",
        ];
        let f = block(&lines);
        for l in lines {
            for s in 0..l.len() {
                for e in s + 1..=l.len() {
                    if let Some(needle) = l.get(s..e) {
                        assert!(
                            f.may_contain_needle(0, &needle_keys(needle)),
                            "needle {needle:?} of {l:?} pruned"
                        );
                    }
                }
            }
        }
        assert!(f.may_contain_all(0, &metadata_keys("trace_id", "abc123")));
    }

    #[test]
    fn absent_needles_are_pruned() {
        let f = block(&["level=info msg=ok trace_id=4bf92f3577b34da6a3ce929d0e0e4736"]);
        let mut pruned = 0;
        for i in 0..200 {
            let needle = format!("{:016x}", mix(i));
            pruned += usize::from(!f.may_contain_needle(0, &needle_keys(&needle)));
        }
        assert!(pruned >= 190, "only {pruned} of 200 random ids pruned");
        // Whole short tokens are checked when the needle shows their edges.
        let words: Vec<String> = (0..100).map(|i| format!(" w{i:03} ")).collect();
        let pruned = words
            .iter()
            .filter(|w| !f.may_contain_needle(0, &needle_keys(w)))
            .count();
        assert!(pruned >= 45, "only {pruned} of 100 absent words pruned");
        assert!(f.may_contain_needle(0, &needle_keys(" msg=ok ")));
        assert!(!f.may_contain_all(0, &metadata_keys("trace_id", "abc124")));
    }

    #[test]
    fn needles_without_information_match_everything() {
        assert!(needle_keys("err").is_empty());
        assert!(needle_keys("=").is_empty());
        // Exactly one n-gram at an unknown offset: it may not be indexed.
        assert!(needle_keys("abcdef").is_empty());
        assert_eq!(needle_keys(" err ").all.len(), 1);
        let k = needle_keys("abcdefg");
        assert_eq!((k.all.len(), k.any_of.len(), k.any_of[0].len()), (0, 1, 2));
        // Token start known: every other n-gram; end known: the last too.
        assert_eq!(needle_keys(" abcdefghi").all.len(), 2);
        assert_eq!(needle_keys(" abcdefghi ").all.len(), 3);
    }

    #[test]
    fn decoding_rejects_damage() {
        let words = block(&["a b c"]);
        let bytes = PartBlooms::encode(BLOCK_ROWS, &[vec![1, 2, 3]]);
        assert_eq!(words.blocks(), 1);
        for cut in 0..bytes.len() {
            assert!(PartBlooms::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert!(matches!(
            PartBlooms::decode(&flipped),
            Err(BloomsError::Checksum)
        ));
        assert!(PartBlooms::decode(&bytes).is_ok());
    }
}
