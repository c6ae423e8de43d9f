//! Tokens of space-separated access-log lines (NGINX, Envoy text): bare words, `"quoted"`
//! fields and `[bracketed]` fields, borrowed from the line.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok<'a> {
    Bare(&'a str),
    Quoted(&'a str),
    Bracketed(&'a str),
}

impl<'a> Tok<'a> {
    pub fn text(self) -> &'a str {
        match self {
            Tok::Bare(s) | Tok::Quoted(s) | Tok::Bracketed(s) => s,
        }
    }
}

/// Most tokens of one line; more is not an access-log line of a known shape.
pub const MAX_TOKENS: usize = 40;

/// The tokens of one line, kept on the stack (no allocation per line).
pub struct Tokens<'a> {
    items: [Tok<'a>; MAX_TOKENS],
    len: usize,
}

impl<'a> std::ops::Deref for Tokens<'a> {
    type Target = [Tok<'a>];
    fn deref(&self) -> &[Tok<'a>] {
        &self.items[..self.len]
    }
}

/// Splits `line` into tokens; an unterminated quote or bracket, or more than [`MAX_TOKENS`]
/// tokens, is an error naming the column.
pub fn tokenize(line: &str) -> Result<Tokens<'_>, String> {
    let mut out = Tokens {
        items: [Tok::Bare(""); MAX_TOKENS],
        len: 0,
    };
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let tok = match b[i] {
            b' ' | b'\t' => {
                i += 1;
                continue;
            }
            b'"' => {
                let start = i + 1;
                let mut j = start;
                // Envoy and Traefik escape with backslashes (NGINX writes \xHH): a backslash
                // takes the next byte with it, quote or not.
                loop {
                    let Some(k) = b
                        .get(j..)
                        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                    else {
                        return Err(format!("unterminated quote at column {i}"));
                    };
                    j += k;
                    if b[j] == b'"' {
                        break;
                    }
                    j += 2;
                }
                i = j + 1;
                Tok::Quoted(&line[start..j])
            }
            b'[' => {
                let start = i + 1;
                let Some(len) = memchr::memchr(b']', &b[start..]) else {
                    return Err(format!("unterminated bracket at column {i}"));
                };
                i = start + len + 1;
                Tok::Bracketed(&line[start..start + len])
            }
            _ => {
                let start = i;
                i = memchr::memchr2(b' ', b'\t', &b[start..]).map_or(b.len(), |k| start + k);
                Tok::Bare(&line[start..i])
            }
        };
        if out.len == MAX_TOKENS {
            return Err(format!("more than {MAX_TOKENS} fields"));
        }
        out.items[out.len] = tok;
        out.len += 1;
    }
    Ok(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Undoes NGINX's `\xHH` and Envoy's `\"` / `\\` escapes; borrows when there are none.
/// Escaped bytes that do not form UTF-8 are replaced (U+FFFD).
pub fn unescape(s: &str) -> Cow<'_, str> {
    if memchr::memchr(b'\\', s.as_bytes()).is_none() {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'x' if i + 3 < b.len() => {
                    if let (Some(h), Some(l)) = (hex(b[i + 2]), hex(b[i + 3])) {
                        out.push(h << 4 | l);
                        i += 4;
                        continue;
                    }
                }
                c @ (b'"' | b'\\') => {
                    out.push(c);
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A text field as a value: `-` and empty are absent; escapes undone.
pub fn field(s: &str) -> Option<Cow<'_, str>> {
    crate::record::present(s).map(unescape)
}

/// Reads a count (`-` is absent).
pub fn count(s: &str, what: &str) -> Result<Option<u64>, crate::ParseError> {
    match crate::record::present(s) {
        None => Ok(None),
        Some(t) => t.parse::<u64>().map(Some).map_err(|_| {
            crate::ParseError::new(
                crate::ParseErrorKind::BadNumber,
                format!("{what} `{}` is not a count", crate::record::clip(t)),
            )
        }),
    }
}

/// Reads a status code; 0 is allowed (Envoy logs it when the client left before a response).
pub fn status(s: &str) -> Result<u16, crate::ParseError> {
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|c| *c <= 999)
        .ok_or_else(|| {
            crate::ParseError::new(
                crate::ParseErrorKind::BadStatus,
                format!(
                    "status `{}` is not an HTTP status code",
                    crate::record::clip(s)
                ),
            )
        })
}

/// Sums a list of durations such as NGINX's `$upstream_response_time` (`0.010, 0.020 : 0.005`,
/// one per upstream tried); `-` entries are skipped. `None` when there is no number at all.
pub fn duration_sum(s: &str) -> Result<Option<f64>, ()> {
    if memchr::memchr2(b',', b':', s.as_bytes()).is_none() {
        // One upstream: the common case.
        return match crate::record::present(s) {
            None => Ok(None),
            Some(t) => match plain_decimal(t).map_or_else(|| t.parse::<f64>(), Ok) {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
                _ => Err(()),
            },
        };
    }
    let mut total = None;
    for part in s.split([',', ':']) {
        match crate::record::present(part) {
            None => {}
            Some(t) => {
                let v: f64 = t.parse().map_err(|_| ())?;
                if !v.is_finite() || v < 0.0 {
                    return Err(());
                }
                *total.get_or_insert(0.0) += v;
            }
        }
    }
    Ok(total)
}

/// `digits[.digits]` with at most 15 digits in all (what gateways log for durations: `0.123`)
/// as the same `f64` that `str::parse` gives, without its general machinery; `None` for
/// anything else. Both the digits as an integer (below 2^53) and the power of ten (at most
/// 10^15) are exact in an `f64`, so their quotient is the correctly rounded value, as
/// `str::parse`'s is.
fn plain_decimal(s: &str) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    let (mut digits, mut scale, mut dot) = (0u64, 0usize, false);
    for &c in b {
        match c {
            b'0'..=b'9' => {
                digits = digits * 10 + u64::from(c - b'0');
                scale += usize::from(dot);
            }
            b'.' if !dot => dot = true,
            _ => return None,
        }
    }
    // `.` alone, or more than 15 digits (16 bytes with no dot)
    if b.len() == usize::from(dot) || b.len() - usize::from(dot) > 15 {
        return None;
    }
    Some(digits as f64 / POW10[scale])
}

/// Splits an HTTP request line `METHOD TARGET PROTOCOL`; `None` parts when it is not one (a
/// TLS handshake on a plain port, a bare `-`).
pub fn request_line(s: &str) -> (Option<&str>, Option<&str>, Option<&str>) {
    let mut it = s.split(' ').filter(|p| !p.is_empty());
    let (m, t, p) = (it.next(), it.next(), it.next());
    let valid_method = m.is_some_and(|m| {
        m.len() <= 32
            && m.bytes()
                .all(|c| c.is_ascii_alphabetic() || c == b'-' || c == b'_')
    });
    match (valid_method, t, it.next()) {
        (true, Some(t), None) => (m, Some(t), p),
        _ => (None, None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decimals_parse_as_the_standard_parser_does() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut cases: Vec<String> = [
            "0",
            "0.0",
            "0.000",
            "1",
            "1.",
            ".5",
            "0.123",
            "10.5",
            "999999999999999",
            "99999999999999.9",
            "0.000000000000001",
            "123456789.123456",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..100_000 {
            let int = rng.random_range(0..8usize);
            let frac = rng.random_range(0..9usize);
            let mut s: String = (0..int)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect();
            if frac > 0 || rng.random_bool(0.1) {
                s.push('.');
                s.extend((0..frac).map(|_| char::from(b'0' + rng.random_range(0..10u8))));
            }
            cases.push(s);
        }
        for s in &cases {
            match plain_decimal(s) {
                Some(v) => assert_eq!(Ok(v), s.parse::<f64>(), "{s:?}"),
                // only what it is documented to leave to the standard parser
                None => assert!(s.is_empty() || s == "." || s.len() > 15, "{s:?}"),
            }
        }
        for s in [
            "",
            ".",
            "1e3",
            "-1",
            "+1",
            "1.2.3",
            "0x1",
            " 1",
            "inf",
            "NaN",
            "1234567890123456",
        ] {
            assert_eq!(plain_decimal(s), None, "{s:?}");
        }
    }

    #[test]
    fn tokens() {
        let t = tokenize(r#"a [b c] "d \"e\" f" "" g"#).unwrap();
        assert_eq!(
            &t[..],
            &[
                Tok::Bare("a"),
                Tok::Bracketed("b c"),
                Tok::Quoted(r#"d \"e\" f"#),
                Tok::Quoted(""),
                Tok::Bare("g")
            ]
        );
        assert!(tokenize(r#"a "b"#).is_err());
        assert!(tokenize(r#"a [b"#).is_err());
        assert!(tokenize(r#"a "b\"#).is_err());
        // an escaped backslash ends no quote, an escaped quote neither
        let t = tokenize(r#""x\\" "\"" y"#).unwrap();
        assert_eq!(
            &t[..],
            &[Tok::Quoted(r#"x\\"#), Tok::Quoted(r#"\""#), Tok::Bare("y")]
        );
        assert!(tokenize(&"x ".repeat(MAX_TOKENS + 1)).is_err());
    }

    #[test]
    fn unescapes() {
        assert_eq!(unescape(r"a\x22b\x5Cc"), "a\"b\\c");
        assert_eq!(unescape(r#"q\"x"#), "q\"x");
        assert_eq!(unescape(r"\xzz"), r"\xzz");
        assert_eq!(unescape(r"\xff"), "\u{fffd}");
        assert!((duration_sum("0.010, 0.020 : 0.005").unwrap().unwrap() - 0.035).abs() < 1e-12);
        assert_eq!(duration_sum("-"), Ok(None));
        assert!(duration_sum("x").is_err());
        assert_eq!(
            request_line("GET /a HTTP/1.1"),
            (Some("GET"), Some("/a"), Some("HTTP/1.1"))
        );
        assert_eq!(request_line("\\x16\\x03\\x01"), (None, None, None));
        assert_eq!(request_line("GET /a"), (Some("GET"), Some("/a"), None));
    }
}
