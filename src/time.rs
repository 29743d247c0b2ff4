//! UTC calendar arithmetic (Howard Hinnant's civil-date algorithms) and RFC 3339 timestamps:
//! the audit record's timestamps, Anthropic's `anthropic-ratelimit-*-reset` headers, and the
//! day and month windows of budgets. Times before 1970 do not occur here.

const DAY_MS: u64 = 86_400_000;

/// (year, month, day) of a day number (days since 1970-01-01).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as u64, month as u64, day as u64)
}

/// Day number of (year, month, day); `None` before 1970.
pub fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let (y, m) = if m <= 2 {
        (y as i64 - 1, m as i64 + 9)
    } else {
        (y as i64, m as i64 - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

/// The UTC month containing `ms` (as year * 12 + month) and the time the next one starts.
pub fn month_window(ms: u64) -> (u64, u64) {
    let (y, m, _) = civil_from_days(ms / DAY_MS);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next = days_from_civil(ny, nm, 1).unwrap_or(0) * DAY_MS;
    (y * 12 + m, next)
}

/// Formats Unix-epoch nanoseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    let millis = (nanos / 1_000_000) % 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

/// Milliseconds since the epoch of an RFC 3339 UTC timestamp (`2025-08-21T12:40:59Z`, optional
/// fraction, `Z` or `+00:00`); `None` for anything else.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    if s.len() < 20 || s.get(4..5)? != "-" || !s.get(10..11)?.eq_ignore_ascii_case("T") {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = s.get(19..)?;
    let (frac, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            let ms: String = r
                .get(..digits)?
                .chars()
                .chain("000".chars())
                .take(3)
                .collect();
            (ms.parse::<u64>().ok()?, r.get(digits..)?)
        }
        None => (0, rest),
    };
    if !matches!(zone, "Z" | "z" | "+00:00") || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, mo, d)?;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_795_224_096_789_000_000),
            "2026-11-21T01:21:36.789Z"
        );
    }

    #[test]
    fn parses_timestamps() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2025-08-21T12:40:59Z"),
            Some(1_755_780_059_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2025-08-21T12:40:59.5Z"),
            Some(1_755_780_059_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2025-08-21T12:40:59+00:00"),
            Some(1_755_780_059_000)
        );
        assert_eq!(
            rfc3339(1_755_780_059_000 * 1_000_000),
            "2025-08-21T12:40:59.000Z"
        );
        for bad in [
            "",
            "2025-08-21",
            "2025-13-01T00:00:00Z",
            "2025-08-21T12:40:59+02:00",
            "1969-12-31T23:59:59Z",
            "garbage-and-more-text",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in (0..30_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days));
        }
        // 2024-12-15 → December 2024, ending at 2025-01-01.
        let (month, next) = month_window(1_734_220_800_000);
        assert_eq!(month, 2024 * 12 + 12);
        assert_eq!(rfc3339(next * 1_000_000), "2025-01-01T00:00:00.000Z");
    }
}
