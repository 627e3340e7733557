//! Calendar dates of Unix days, without a date-time dependency.

/// `(year, month, day)` of a day counted from 1970-01-01, proleptic
/// Gregorian (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// RFC 3339 in UTC with nanoseconds, as Loki prints times in messages:
/// `2026-11-21T20:17:00.000000001Z`.
pub fn rfc3339_nanos(unix_ns: i64) -> String {
    let base = rfc3339_millis(unix_ns);
    // `rfc3339_millis` always ends in `.mmmZ`: widen the fraction.
    format!(
        "{}.{:09}Z",
        &base[..base.len() - 5],
        unix_ns.rem_euclid(1_000_000_000)
    )
}

/// RFC 3339 in UTC with milliseconds: `2026-11-21T20:17:00.000Z`.
pub fn rfc3339_millis(unix_ns: i64) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let millis = unix_ns.rem_euclid(1_000_000_000) / 1_000_000;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(951_782_400_123_000_000),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339_millis(1_795_292_220_000_000_000),
            "2026-11-21T20:17:00.000Z"
        );
        assert_eq!(rfc3339_millis(-1_000_000), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            rfc3339_nanos(1_000_000_007),
            "1970-01-01T00:00:01.000000007Z"
        );
    }
}
