//! What a detector found: attack classes, their strength, and where in the request they were.

use std::fmt::{self, Write as _};

/// A family of attack recognised in request content.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttackClass {
    /// SQL injection.
    Sqli = 0,
    /// Cross-site scripting.
    Xss = 1,
    /// Path traversal (`../`).
    Traversal = 2,
    /// Local or remote file inclusion (`/etc/passwd`, `php://filter`, a remote script URL).
    FileInclusion = 3,
    /// OS command injection.
    Cmdi = 4,
    /// Server-side template injection.
    Ssti = 5,
    /// Server-side request forgery: internal or metadata targets in parameters.
    Ssrf = 6,
    /// Probes for files and consoles that should never be served (`.env`, `.git/`, backups).
    SensitiveFile = 7,
    /// A known scanner or attack tool in the user agent.
    ScannerUa = 8,
    /// A request matching a published exploit for a known CVE.
    CveProbe = 9,
    /// A protocol anomaly: unknown method, over-long URI, malformed or evasive encoding.
    Protocol = 10,
}

impl AttackClass {
    /// Every class, in discriminant order.
    pub const ALL: [AttackClass; 11] = [
        AttackClass::Sqli,
        AttackClass::Xss,
        AttackClass::Traversal,
        AttackClass::FileInclusion,
        AttackClass::Cmdi,
        AttackClass::Ssti,
        AttackClass::Ssrf,
        AttackClass::SensitiveFile,
        AttackClass::ScannerUa,
        AttackClass::CveProbe,
        AttackClass::Protocol,
    ];

    /// The stable name used in events, tables and pattern ids.
    pub const fn as_str(self) -> &'static str {
        match self {
            AttackClass::Sqli => "sqli",
            AttackClass::Xss => "xss",
            AttackClass::Traversal => "traversal",
            AttackClass::FileInclusion => "file_inclusion",
            AttackClass::Cmdi => "cmdi",
            AttackClass::Ssti => "ssti",
            AttackClass::Ssrf => "ssrf",
            AttackClass::SensitiveFile => "sensitive_file",
            AttackClass::ScannerUa => "scanner_ua",
            AttackClass::CveProbe => "cve_probe",
            AttackClass::Protocol => "protocol",
        }
    }

    /// Parses [`AttackClass::as_str`] back; `cve` is accepted for [`AttackClass::CveProbe`],
    /// because CVE detector ids read `cve.CVE-…`.
    pub fn from_name(name: &str) -> Option<AttackClass> {
        if name == "cve" {
            return Some(AttackClass::CveProbe);
        }
        AttackClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    const fn bit(self) -> u16 {
        1 << self as u8
    }
}

impl fmt::Display for AttackClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strength {
    /// Suspicious but seen in benign traffic now and then (a backup-file extension, a private
    /// address in a URL parameter). Worth a score, not a block on its own.
    Weak,
    /// Confirmed attack syntax (a libinjection fingerprint, `{{7*7}}`, a CVE exploit path).
    Strong,
}

impl Strength {
    /// `"weak"` or `"strong"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Strength::Weak => "weak",
            Strength::Strong => "strong",
        }
    }
}

/// Where in the request a match was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// The path (decoded).
    Path,
    /// A query parameter, by its decoded name (lossily made UTF-8).
    Query(String),
    /// A header, by its lowercase name (`"user-agent"`, `"referer"`).
    Header(&'static str),
    /// The request method.
    Method,
    /// The protocol version.
    Protocol,
    /// The whole target (path and query together).
    Uri,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Path => f.write_str("path"),
            Location::Query(name) => write!(f, "query parameter `{name}`"),
            Location::Header(name) => write!(f, "header `{name}`"),
            Location::Method => f.write_str("method"),
            Location::Protocol => f.write_str("protocol version"),
            Location::Uri => f.write_str("URI"),
        }
    }
}

/// One detector that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The attack class.
    pub class: AttackClass,
    /// How sure the detector is.
    pub strength: Strength,
    /// Stable detector id, e.g. `"sqli.libinjection"`, `"traversal.dotdot"`,
    /// `"cve.CVE-2021-41773"`.
    pub detector: &'static str,
    /// Where it fired.
    pub location: Location,
}

/// Everything the detectors found in one request. Reused across requests: [`Evidence::clear`]
/// keeps the allocation.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    classes: u16,
    strong: u16,
    matches: Vec<Match>,
    /// Every [`Evidence::push`] since the last clear, duplicates included: a part of the
    /// request is clean only if inspecting it pushed nothing, and a duplicate (the same
    /// detector at the same location, already found in another part) still means it was not.
    pushes: usize,
}

impl Evidence {
    /// Empty evidence.
    pub fn new() -> Evidence {
        Evidence::default()
    }

    /// Forgets every match, keeping the capacity.
    pub fn clear(&mut self) {
        self.classes = 0;
        self.strong = 0;
        self.matches.clear();
        self.pushes = 0;
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.matches.is_empty()
    }

    /// The classes found, in [`AttackClass::ALL`] order, each once.
    pub fn classes(&self) -> impl Iterator<Item = AttackClass> + '_ {
        AttackClass::ALL
            .into_iter()
            .filter(move |c| self.classes & c.bit() != 0)
    }

    /// Whether `class` was found.
    pub fn has(&self, class: AttackClass) -> bool {
        self.classes & class.bit() != 0
    }

    /// The strongest match for `class`, if any.
    pub fn strength(&self, class: AttackClass) -> Option<Strength> {
        if self.strong & class.bit() != 0 {
            Some(Strength::Strong)
        } else if self.has(class) {
            Some(Strength::Weak)
        } else {
            None
        }
    }

    /// Every match, in the order found; a detector appears once per location.
    pub fn matches(&self) -> &[Match] {
        &self.matches
    }

    /// A one-line summary for logs and decision reasons, e.g.
    /// `"sqli in query parameter `id`; scanner_ua in header `user-agent`"`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut seen: Vec<(AttackClass, &Location)> = Vec::new();
        for m in &self.matches {
            if seen.contains(&(m.class, &m.location)) {
                continue;
            }
            seen.push((m.class, &m.location));
            if !out.is_empty() {
                out.push_str("; ");
            }
            let _ = write!(out, "{} in {}", m.class, m.location);
        }
        out
    }

    /// How many matches were pushed since the last clear, duplicates included; unchanged
    /// across a step means the step found nothing.
    pub(crate) fn pushes(&self) -> usize {
        self.pushes
    }

    /// Records a match unless the same detector already fired at the same location.
    pub(crate) fn push(
        &mut self,
        class: AttackClass,
        strength: Strength,
        detector: &'static str,
        location: impl FnOnce() -> Location,
    ) {
        self.pushes += 1;
        let location = location();
        if self
            .matches
            .iter()
            .any(|m| m.detector == detector && m.location == location)
        {
            return;
        }
        self.classes |= class.bit();
        if strength == Strength::Strong {
            self.strong |= class.bit();
        }
        self.matches.push(Match {
            class,
            strength,
            detector,
            location,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in AttackClass::ALL {
            assert_eq!(AttackClass::from_name(c.as_str()), Some(c));
        }
        assert_eq!(AttackClass::from_name("cve"), Some(AttackClass::CveProbe));
    }

    #[test]
    fn describe_and_dedupe() {
        let mut e = Evidence::new();
        let q = || Location::Query("id".into());
        e.push(AttackClass::Sqli, Strength::Strong, "sqli.libinjection", q);
        e.push(AttackClass::Sqli, Strength::Weak, "sqli.union", q);
        e.push(AttackClass::Sqli, Strength::Strong, "sqli.libinjection", q);
        e.push(
            AttackClass::ScannerUa,
            Strength::Weak,
            "scanner_ua.x",
            || Location::Header("user-agent"),
        );
        assert_eq!(e.matches().len(), 3);
        assert_eq!(
            e.describe(),
            "sqli in query parameter `id`; scanner_ua in header `user-agent`"
        );
        assert_eq!(e.strength(AttackClass::Sqli), Some(Strength::Strong));
        assert_eq!(e.strength(AttackClass::ScannerUa), Some(Strength::Weak));
        assert_eq!(
            e.classes().collect::<Vec<_>>(),
            vec![AttackClass::Sqli, AttackClass::ScannerUa]
        );
        e.clear();
        assert!(e.is_empty());
    }
}
