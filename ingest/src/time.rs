//! Timestamp reading and writing without a calendar library: the formats gateways log
//! (RFC 3339 / ISO 8601, NGINX's `$time_local`, epoch numbers) to UTC microseconds.
//!
//! These sit on the per-line path, so they parse bytes directly; each returns `None` for anything
//! that is not a valid instant (month 13, hour 25, a stray character) rather than guessing.

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn instant(year: i64, month: u32, day: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // 60 admits a leap second, read as the next second's start.
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(h) * 3600
        + i64::from(mi) * 60
        + i64::from(s);
    Some(secs * 1_000_000)
}

/// Reads a UTC offset `Z`, `+HH:MM`, `+HHMM` or `+HH` at the end of `b`; returns seconds east.
fn offset(b: &[u8]) -> Option<i64> {
    match b {
        [] | [b'Z'] | [b'z'] => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest.len() {
                2 => (digits(rest, 0, 2)?, 0),
                4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
                5 if rest[2] == b':' => (digits(rest, 0, 2)?, digits(rest, 3, 2)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i64::from(h * 3600 + m * 60);
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => None,
    }
}

/// RFC 3339 / ISO 8601: `2026-11-24T10:00:00Z`, with optional fraction (any precision,
/// truncated to microseconds), `T` or space, and `Z`/`±HH:MM`/`±HHMM` or no zone (read as UTC).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = i64::from(digits(b, 0, 4)?);
    let mut us = instant(
        year,
        digits(b, 5, 2)?,
        digits(b, 8, 2)?,
        digits(b, 11, 2)?,
        digits(b, 14, 2)?,
        digits(b, 17, 2)?,
    )?;
    let mut i = 19;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        let mut frac = 0i64;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                frac = frac * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..6 {
            frac *= 10;
        }
        us += frac;
    }
    Some(us - offset(&b[i..])? * 1_000_000)
}

fn month_abbrev(b: &[u8]) -> Option<u32> {
    Some(match b {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

/// NGINX `$time_local` / Common Log Format: `24/Nov/2026:10:00:00 +0000` (also AWS API
/// Gateway's `$context.requestTime`).
pub fn parse_clf(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 20 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[14] != b':' {
        return None;
    }
    if b[17] != b':' {
        return None;
    }
    let us = instant(
        i64::from(digits(b, 7, 4)?),
        month_abbrev(&b[3..6])?,
        digits(b, 0, 2)?,
        digits(b, 12, 2)?,
        digits(b, 15, 2)?,
        digits(b, 18, 2)?,
    )?;
    let zone = b[20..].strip_prefix(b" ").unwrap_or(&b[20..]);
    Some(us - offset(zone)? * 1_000_000)
}

/// The last instant the events table holds: 9999-12-31T23:59:59.999999Z, in microseconds.
/// Later ones cannot be written as RFC 3339 (found by `fuzz/`: a 90-digit "epoch" saturated
/// to `i64::MAX`, which Arrow's JSON writer cannot format).
pub const MAX_US: i64 = 253_402_300_799_999_999;

/// An epoch number whose unit is told by its magnitude: seconds (< 10^11, i.e. before the year
/// 5138), milliseconds, microseconds or nanoseconds; `None` past [`MAX_US`].
pub fn from_epoch_auto(v: f64) -> Option<i64> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let us = if v < 1e11 {
        v * 1e6
    } else if v < 1e14 {
        v * 1e3
    } else if v < 1e17 {
        v
    } else {
        v / 1e3
    };
    let us = us.round();
    (us <= MAX_US as f64).then_some(us as i64)
}

/// Any of the above: RFC 3339, CLF, or an epoch number written as a string.
pub fn parse_any(s: &str) -> Option<i64> {
    let t = s.trim();
    let first = *t.as_bytes().first()?;
    if first.is_ascii_digit() && t.len() >= 19 && t.as_bytes()[4] == b'-' {
        return parse_rfc3339(t);
    }
    if t.len() >= 20 && t.as_bytes().get(2) == Some(&b'/') {
        return parse_clf(t);
    }
    t.parse::<f64>().ok().and_then(from_epoch_auto)
}

/// Writes `us` as RFC 3339 UTC with microseconds: `2026-11-24T10:00:00.123456Z`.
pub fn write_rfc3339_us(us: i64, out: &mut String) {
    use std::fmt::Write;
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
}

/// `us` as an RFC 3339 string (see [`write_rfc3339_us`]).
pub fn rfc3339_us(us: i64) -> String {
    let mut s = String::with_capacity(27);
    write_rfc3339_us(us, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_478_400_000_000; // 2026-11-24T00:00:00Z

    #[test]
    fn epochs_past_year_9999_are_not_timestamps() {
        assert_eq!(parse_any(&"4".repeat(90)), None);
        assert_eq!(from_epoch_auto(1e30), None);
        // the largest nanosecond epochs are still timestamps
        assert_eq!(from_epoch_auto(9.0e18), Some(9_000_000_000_000_000));
        assert!(rfc3339_us(MAX_US).starts_with("9999-12-31T23:59:59"));
    }

    #[test]
    fn rfc3339_variants() {
        assert_eq!(parse_rfc3339("2026-11-24T00:00:00Z"), Some(T0));
        assert_eq!(parse_rfc3339("2026-11-24T00:00:00.5Z"), Some(T0 + 500_000));
        assert_eq!(
            parse_rfc3339("2026-11-24T00:00:00.123456789Z"),
            Some(T0 + 123_456)
        );
        assert_eq!(parse_rfc3339("2026-11-24T01:00:00+01:00"), Some(T0));
        assert_eq!(parse_rfc3339("2026-11-23T19:00:00-0500"), Some(T0));
        assert_eq!(parse_rfc3339("2026-11-24 00:00:00"), Some(T0));
        assert_eq!(parse_rfc3339("2026-13-24T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-02-29T00:00:00Z"), None);
        assert!(parse_rfc3339("2028-02-29T00:00:00Z").is_some());
        assert_eq!(parse_rfc3339("2026-11-24T00:00:00.Z"), None);
        assert_eq!(parse_rfc3339("2026-11-24T00:00:00Q"), None);
    }

    #[test]
    fn clf() {
        assert_eq!(parse_clf("24/Nov/2026:00:00:00 +0000"), Some(T0));
        assert_eq!(parse_clf("23/Nov/2026:17:00:00 -0700"), Some(T0));
        assert_eq!(parse_clf("24/Foo/2026:00:00:00 +0000"), None);
        assert_eq!(parse_clf("24/Nov/2026:00:00:00"), Some(T0));
    }

    #[test]
    fn epochs_and_roundtrip() {
        let s = T0 / 1_000_000;
        assert_eq!(from_epoch_auto(s as f64), Some(T0));
        assert_eq!(from_epoch_auto((s * 1000) as f64), Some(T0));
        assert_eq!(from_epoch_auto((s * 1_000_000) as f64), Some(T0));
        assert_eq!(from_epoch_auto(s as f64 * 1e9), Some(T0));
        assert_eq!(parse_any("1795478400.25"), Some(T0 + 250_000));
        assert_eq!(rfc3339_us(T0 + 7), "2026-11-24T00:00:00.000007Z");
        for d in [-1_000_000i64, 0, 1, 59_000, 738_000, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
