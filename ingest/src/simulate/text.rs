//! Allocation-free writers used by the renderers: integers, fixed-point decimals, UTC
//! timestamps (no chrono), JSON string escaping and nginx's `\xHH` escaping.

/// Appends the decimal digits of `n`.
pub(crate) fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// Appends `n` with a leading `-` when negative.
pub(crate) fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_u64(out, n.unsigned_abs());
}

/// Appends `n` left-padded with zeros to `width` digits.
pub(crate) fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let digits = buf.len() - i;
    for _ in digits..width {
        out.push('0');
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// Appends `value / 10^scale` as a decimal, with trailing zeros of the fraction trimmed but at
/// least `min_frac` fraction digits (`min_frac == 0` and a zero fraction print no point).
pub(crate) fn push_fixed(out: &mut String, value: u64, scale: u32, min_frac: usize) {
    let div = 10u64.pow(scale.min(19));
    push_u64(out, value / div);
    let mut frac = value % div;
    let mut digits = scale as usize;
    while digits > min_frac && frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    if digits > 0 {
        out.push('.');
        push_padded(out, frac, digits);
    }
}

/// Milliseconds as whole microseconds (negative and NaN become 0).
pub(crate) fn ms_to_us(ms: f64) -> u64 {
    (ms * 1000.0).round().max(0.0) as u64
}

/// Milliseconds rounded to whole milliseconds (negative and NaN become 0).
pub(crate) fn ms_round(ms: f64) -> u64 {
    ms.round().max(0.0) as u64
}

/// Appends milliseconds as seconds with exactly three decimals (nginx's `$request_time`).
pub(crate) fn push_secs3(out: &mut String, ms: f64) {
    let ms = ms_round(ms);
    push_u64(out, ms / 1000);
    out.push('.');
    push_padded(out, ms % 1000, 3);
}

/// A UTC calendar instant.
pub(crate) struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

impl Utc {
    pub(crate) fn from_us(ts_us: i64) -> Utc {
        let secs = ts_us.div_euclid(1_000_000);
        let micros = ts_us.rem_euclid(1_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Utc {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            micros,
        }
    }

    fn push_date(&self, out: &mut String) {
        if self.year < 0 {
            out.push('-');
        }
        push_padded(out, self.year.unsigned_abs(), 4);
        out.push('-');
        push_padded(out, u64::from(self.month), 2);
        out.push('-');
        push_padded(out, u64::from(self.day), 2);
    }

    fn push_time(&self, out: &mut String) {
        push_padded(out, u64::from(self.hour), 2);
        out.push(':');
        push_padded(out, u64::from(self.minute), 2);
        out.push(':');
        push_padded(out, u64::from(self.second), 2);
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Fraction digits of an RFC 3339 timestamp.
#[derive(Clone, Copy)]
pub(crate) enum Frac {
    None,
    Millis,
    Micros,
    Nanos,
}

/// `2026-11-24T10:00:00[.fff[fff[fff]]]Z`
pub(crate) fn push_rfc3339(out: &mut String, ts_us: i64, frac: Frac) {
    let t = Utc::from_us(ts_us);
    t.push_date(out);
    out.push('T');
    t.push_time(out);
    match frac {
        Frac::None => {}
        Frac::Millis => {
            out.push('.');
            push_padded(out, u64::from(t.micros / 1000), 3);
        }
        Frac::Micros => {
            out.push('.');
            push_padded(out, u64::from(t.micros), 6);
        }
        Frac::Nanos => {
            out.push('.');
            push_padded(out, u64::from(t.micros), 6);
            out.push_str("000");
        }
    }
    out.push('Z');
}

/// nginx's `$time_iso8601`: `2026-11-24T10:00:00+00:00`.
pub(crate) fn push_iso8601_offset(out: &mut String, ts_us: i64) {
    let t = Utc::from_us(ts_us);
    t.push_date(out);
    out.push('T');
    t.push_time(out);
    out.push_str("+00:00");
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Common log format time: `24/Nov/2026:10:00:00 +0000`.
pub(crate) fn push_clf(out: &mut String, ts_us: i64) {
    let t = Utc::from_us(ts_us);
    push_padded(out, u64::from(t.day), 2);
    out.push('/');
    out.push_str(MONTHS[(t.month.clamp(1, 12) - 1) as usize]);
    out.push('/');
    if t.year < 0 {
        out.push('-');
    }
    push_padded(out, t.year.unsigned_abs(), 4);
    out.push(':');
    t.push_time(out);
    out.push_str(" +0000");
}

/// Unix milliseconds of a microsecond timestamp (floor).
pub(crate) fn unix_ms(ts_us: i64) -> i64 {
    ts_us.div_euclid(1000)
}

/// nginx's `$msec`: seconds with millisecond resolution, `1795500000.123`.
pub(crate) fn push_msec(out: &mut String, ts_us: i64) {
    let ms = unix_ms(ts_us);
    push_i64(out, ms.div_euclid(1000));
    out.push('.');
    push_padded(out, ms.rem_euclid(1000) as u64, 3);
}

/// Appends `s` as a JSON string literal, quotes included.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `b` is ASCII, so `i` is a char boundary.
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `"key":` (the key is a trusted literal without characters to escape).
pub(crate) fn push_key(out: &mut String, key: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
}

/// Appends `s` escaped as nginx escapes variables in a text `log_format`: `"`, `\`, control
/// bytes and bytes >= 0x7f become `\xHH` (upper-case hex). With `space` set, spaces are escaped
/// too (for unquoted fields, so the line keeps its shape).
pub(crate) fn push_nginx_escaped(out: &mut String, s: &str, space: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut start = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape = b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) || (space && b == b' ');
        if !escape {
            i += 1;
            continue;
        }
        if b >= 0x80 {
            // Escape the whole UTF-8 sequence byte by byte, keeping slices on char boundaries.
            let len = s[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&s[start..i]);
            for &c in &bytes[i..i + len] {
                out.push_str("\\x");
                out.push(char::from(HEX[usize::from(c >> 4)]));
                out.push(char::from(HEX[usize::from(c & 0xf)]));
            }
            i += len;
        } else {
            out.push_str(&s[start..i]);
            out.push_str("\\x");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
            i += 1;
        }
        start = i;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut String)) -> String {
        let mut out = String::new();
        f(&mut out);
        out
    }

    #[test]
    fn integers_and_decimals() {
        assert_eq!(s(|o| push_u64(o, 0)), "0");
        assert_eq!(s(|o| push_u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(s(|o| push_i64(o, i64::MIN)), i64::MIN.to_string());
        assert_eq!(s(|o| push_padded(o, 7, 3)), "007");
        assert_eq!(s(|o| push_padded(o, 12345, 3)), "12345");
        assert_eq!(s(|o| push_fixed(o, 12_345, 3, 1)), "12.345");
        assert_eq!(s(|o| push_fixed(o, 12_000, 3, 1)), "12.0");
        assert_eq!(s(|o| push_fixed(o, 12_300, 6, 1)), "0.0123");
        assert_eq!(s(|o| push_fixed(o, 0, 6, 1)), "0.0");
        assert_eq!(s(|o| push_fixed(o, 5_000_000, 6, 0)), "5");
        assert_eq!(s(|o| push_secs3(o, 12.4)), "0.012");
        assert_eq!(s(|o| push_secs3(o, 61_234.6)), "61.235");
        assert_eq!(s(|o| push_secs3(o, f64::NAN)), "0.000");
        assert_eq!(s(|o| push_secs3(o, -5.0)), "0.000");
    }

    #[test]
    fn timestamps() {
        let ts = 1_795_500_000_123_456;
        assert_eq!(
            s(|o| push_rfc3339(o, ts, Frac::Micros)),
            "2026-11-24T06:00:00.123456Z"
        );
        assert_eq!(
            s(|o| push_rfc3339(o, ts, Frac::Millis)),
            "2026-11-24T06:00:00.123Z"
        );
        assert_eq!(
            s(|o| push_rfc3339(o, ts, Frac::Nanos)),
            "2026-11-24T06:00:00.123456000Z"
        );
        assert_eq!(
            s(|o| push_rfc3339(o, ts, Frac::None)),
            "2026-11-24T06:00:00Z"
        );
        assert_eq!(
            s(|o| push_iso8601_offset(o, ts)),
            "2026-11-24T06:00:00+00:00"
        );
        assert_eq!(s(|o| push_clf(o, ts)), "24/Nov/2026:06:00:00 +0000");
        assert_eq!(s(|o| push_msec(o, ts)), "1795500000.123");
        assert_eq!(
            s(|o| push_rfc3339(o, 0, Frac::None)),
            "1970-01-01T00:00:00Z"
        );
        // Leap day and the end of a leap year.
        assert_eq!(
            s(|o| push_rfc3339(o, 951_782_400_000_000, Frac::None)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            s(|o| push_rfc3339(o, 1_735_603_199_000_000, Frac::None)),
            "2024-12-30T23:59:59Z"
        );
        assert_eq!(
            s(|o| push_rfc3339(o, 253_402_300_799_000_000, Frac::None)),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            s(|o| push_rfc3339(o, -1, Frac::Micros)),
            "1969-12-31T23:59:59.999999Z"
        );
        // Extreme inputs must not panic.
        let _ = s(|o| push_clf(o, i64::MIN));
        let _ = s(|o| push_rfc3339(o, i64::MAX, Frac::Nanos));
    }

    #[test]
    fn every_day_of_four_centuries_matches_a_naive_calendar() {
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..(400 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ][(m - 1) as usize];
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn json_escaping_matches_serde_json() {
        for input in [
            "plain",
            "quote\" backslash\\ nl\n tab\t cr\r",
            "\u{0}\u{1f}\u{8}\u{c}",
            "utf8 é ✓ 🚀",
            "",
        ] {
            let mine = s(|o| push_json_str(o, input));
            assert_eq!(mine, serde_json::to_string(input).unwrap());
            let back: String = serde_json::from_str(&mine).unwrap();
            assert_eq!(back, input);
        }
    }

    #[test]
    fn nginx_escaping() {
        assert_eq!(
            s(|o| push_nginx_escaped(o, r#"a "b" \c"#, false)),
            r#"a \x22b\x22 \x5Cc"#
        );
        assert_eq!(s(|o| push_nginx_escaped(o, "a b", true)), r"a\x20b");
        assert_eq!(s(|o| push_nginx_escaped(o, "é\n", false)), r"\xC3\xA9\x0A");
    }
}
