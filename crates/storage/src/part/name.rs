use std::fmt;

use miru_model::TenantId;

const DAY_MS: i64 = 86_400_000;

/// The signal a part holds: its key's second segment and file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// `metrics/…​.mpart` (`docs/formats/metrics-part-v2.md`).
    Metrics,
    /// `logs/…​.parquet` (`docs/formats/logs-part-v2.md`).
    Logs,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    pub(crate) fn extension(self) -> &'static str {
        match self {
            Signal::Metrics => ".mpart",
            Signal::Logs => ".parquet",
        }
    }
}

/// Where a part lives and what its object key says about it:
/// `{tenant}/{signal}/{YYYY-MM-DD}/L{level}_{min_ts}_{max_ts}_{wal_segment}_{id}{ext}`,
/// e.g. `…/metrics/…​.mpart` or `…/logs/…​.parquet`.
/// The key carries everything the catalog needs, so listing the store is
/// enough to rebuild it after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartName {
    pub tenant: TenantId,
    pub signal: Signal,
    /// First millisecond of the UTC day the part belongs to.
    pub day_start_ms: i64,
    /// 0 for parts cut from the head, +1 for each compaction.
    pub level: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    /// The WAL segment whose data the part completes (see the WAL spec).
    pub wal_segment: u64,
    /// Unique within the tenant and sorted by creation: see `new_part_id`;
    /// compacted parts take their newest source's id plus a suffix.
    pub id: String,
}

impl PartName {
    pub fn day_of(ts_ms: i64) -> i64 {
        ts_ms.div_euclid(DAY_MS) * DAY_MS
    }

    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/L{}_{}_{}_{}_{}{}",
            self.tenant,
            self.signal.as_str(),
            format_day(self.day_start_ms),
            self.level,
            self.min_ts,
            self.max_ts,
            self.wal_segment,
            self.id,
            self.signal.extension()
        )
    }

    /// Parses a key written by [`PartName::key`]; `None` for any other object.
    pub fn parse(key: &str) -> Option<PartName> {
        let mut it = key.split('/');
        let tenant = TenantId::new(it.next()?).ok()?;
        let signal = match it.next()? {
            "metrics" => Signal::Metrics,
            "logs" => Signal::Logs,
            _ => return None,
        };
        let day_start_ms = parse_day(it.next()?)?;
        let file = it.next()?.strip_suffix(signal.extension())?;
        if it.next().is_some() {
            return None;
        }
        let mut f = file.strip_prefix('L')?.splitn(5, '_');
        let level = f.next()?.parse().ok()?;
        let min_ts = f.next()?.parse().ok()?;
        let max_ts = f.next()?.parse().ok()?;
        let wal_segment = f.next()?.parse().ok()?;
        let id = f.next()?.to_string();
        if id.is_empty() || min_ts > max_ts || PartName::day_of(min_ts) != day_start_ms {
            return None;
        }
        Some(PartName {
            tenant,
            signal,
            day_start_ms,
            level,
            min_ts,
            max_ts,
            wal_segment,
            id,
        })
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.min_ts <= maxt && self.max_ts >= mint
    }
}

impl fmt::Display for PartName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// `YYYY-MM-DD` of a day start, proleptic Gregorian (Howard Hinnant's algorithm).
pub(crate) fn format_day(day_start_ms: i64) -> String {
    let (y, m, d) = miru_model::civil::civil_from_days(day_start_ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip() {
        let n = PartName {
            tenant: TenantId::new("team-a").unwrap(),
            signal: Signal::Metrics,
            day_start_ms: PartName::day_of(1_700_000_000_000),
            level: 2,
            min_ts: 1_700_000_000_000,
            max_ts: 1_700_000_060_000,
            wal_segment: 7,
            id: "1700000000123_ab12".into(),
        };
        assert_eq!(
            n.key(),
            "team-a/metrics/2023-11-14/L2_1700000000000_1700000060000_7_1700000000123_ab12.mpart"
        );
        assert_eq!(PartName::parse(&n.key()), Some(n.clone()));
        assert_eq!(PartName::parse("x/metrics/2023-11-14/junk"), None);
        let logs = PartName {
            signal: Signal::Logs,
            ..n
        };
        assert_eq!(
            logs.key(),
            "team-a/logs/2023-11-14/L2_1700000000000_1700000060000_7_1700000000123_ab12.parquet"
        );
        assert_eq!(PartName::parse(&logs.key()), Some(logs));
        assert_eq!(
            PartName::parse("team-a/logs/2023-11-14/L2_1_2_7_x.mpart"),
            None
        );
    }

    #[test]
    fn days_round_trip() {
        for ms in [-86_400_001i64, 0, 951_782_400_000, 4_102_444_800_000] {
            let d = PartName::day_of(ms);
            assert_eq!(parse_day(&format_day(d)), Some(d), "{ms}");
        }
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(format_day(951_782_400_000), "2000-02-29");
    }
}
