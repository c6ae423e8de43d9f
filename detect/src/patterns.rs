//! The version-controlled pattern lists and their compilation into automata.
//!
//! Every file under `detect/patterns/` has one entry per line:
//!
//! ```text
//! # id                  targets       strength  kind  pattern (rest of the line)
//! traversal.dotdot      path,param    strong    re    (^|[/\\])\.\.+;?[/\\]
//! scanner_ua.sqlmap     ua            strong    lit   sqlmap
//! ```
//!
//! * `id` is the stable detector id; the part before the first `.` names the [`AttackClass`]
//!   (`cve` stands for `cve_probe`).
//! * `targets` is a comma-separated set of `path` (decoded path), `param` (each decoded query
//!   value, and names that are not plain identifiers), `uri` (the whole decoded target, so a
//!   pattern can span path and query or match parameter names), `ua`, `referer`, or `any`
//!   (path, param, ua and referer).
//! * `kind` is `lit` (an ASCII case-insensitive literal, compiled into one Aho-Corasick
//!   automaton per target) or `re` (a case-insensitive byte regex, compiled into one
//!   `RegexSet` per target).
//!
//! Blank lines and lines starting with `#` are ignored.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::DetectError;
use crate::evidence::{AttackClass, Strength};

/// The built-in lists, embedded at compile time: (file name, contents).
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    ("sqli.txt", include_str!("../patterns/sqli.txt")),
    ("xss.txt", include_str!("../patterns/xss.txt")),
    ("traversal.txt", include_str!("../patterns/traversal.txt")),
    (
        "file_inclusion.txt",
        include_str!("../patterns/file_inclusion.txt"),
    ),
    ("cmdi.txt", include_str!("../patterns/cmdi.txt")),
    ("ssti.txt", include_str!("../patterns/ssti.txt")),
    ("ssrf.txt", include_str!("../patterns/ssrf.txt")),
    (
        "sensitive_file.txt",
        include_str!("../patterns/sensitive_file.txt"),
    ),
    ("scanner_ua.txt", include_str!("../patterns/scanner_ua.txt")),
    ("cve.txt", include_str!("../patterns/cve.txt")),
];

/// A part of the request that patterns are matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Path = 0,
    Param = 1,
    Uri = 2,
    UserAgent = 3,
    Referer = 4,
}

const TARGETS: usize = 5;

impl Target {
    fn parse_set(spec: &str) -> Option<u8> {
        let mut set = 0u8;
        for part in spec.split(',') {
            set |= match part {
                "path" => 1 << Target::Path as u8,
                "param" => 1 << Target::Param as u8,
                "uri" => 1 << Target::Uri as u8,
                "ua" => 1 << Target::UserAgent as u8,
                "referer" => 1 << Target::Referer as u8,
                "any" => {
                    1 << Target::Path as u8
                        | 1 << Target::Param as u8
                        | 1 << Target::UserAgent as u8
                        | 1 << Target::Referer as u8
                }
                _ => return None,
            };
        }
        Some(set)
    }
}

/// One entry of a pattern list, once parsed.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: &'static str,
    pub(crate) class: AttackClass,
    pub(crate) strength: Strength,
}

/// The automata for one target.
#[derive(Debug, Default)]
struct TargetMatcher {
    literals: Option<AhoCorasick>,
    literal_rules: Vec<u32>,
    regexes: Option<RegexSet>,
    regex_rules: Vec<u32>,
}

impl TargetMatcher {
    /// Calls `hit` with the index of every rule matching `haystack` (a rule may be reported
    /// more than once). Allocates only when a regex matches.
    fn scan(&self, haystack: &[u8], mut hit: impl FnMut(u32)) {
        if let Some(ac) = &self.literals {
            for m in ac.find_overlapping_iter(haystack) {
                if let Some(&rule) = self.literal_rules.get(m.pattern().as_usize()) {
                    hit(rule);
                }
            }
        }
        if let Some(set) = &self.regexes
            && set.is_match(haystack)
        {
            for i in set.matches(haystack).iter() {
                if let Some(&rule) = self.regex_rules.get(i) {
                    hit(rule);
                }
            }
        }
    }
}

/// All pattern lists, compiled.
#[derive(Debug)]
pub(crate) struct PatternSet {
    pub(crate) rules: Vec<Rule>,
    matchers: [TargetMatcher; TARGETS],
}

impl PatternSet {
    /// Parses and compiles `files` (name, contents). Errors name the file and line.
    pub(crate) fn compile(
        files: &[(&'static str, &'static str)],
    ) -> Result<PatternSet, DetectError> {
        let mut rules = Vec::new();
        let mut literals: [Vec<(&str, u32)>; TARGETS] = Default::default();
        let mut regexes: [Vec<(&str, u32)>; TARGETS] = Default::default();
        for &(file, text) in files {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let err = |message: String| DetectError::Pattern {
                    file: file.to_owned(),
                    line: n + 1,
                    message,
                };
                let mut fields = line.split_whitespace();
                let (Some(id), Some(targets), Some(strength), Some(kind)) =
                    (fields.next(), fields.next(), fields.next(), fields.next())
                else {
                    return Err(err("expected `id targets strength kind pattern`".into()));
                };
                // The pattern is the rest of the line after the fourth field.
                let pattern = rest_after_fields(line, 4).trim();
                if pattern.is_empty() {
                    return Err(err("missing pattern".into()));
                }
                let class_name = id.split('.').next().unwrap_or(id);
                let class = AttackClass::from_name(class_name)
                    .ok_or_else(|| err(format!("id `{id}` does not start with a class name")))?;
                let targets = Target::parse_set(targets)
                    .ok_or_else(|| err(format!("unknown target set `{targets}`")))?;
                let strength = match strength {
                    "strong" => Strength::Strong,
                    "weak" => Strength::Weak,
                    other => return Err(err(format!("strength `{other}` is not strong|weak"))),
                };
                let index = u32::try_from(rules.len()).map_err(|_| err("too many rules".into()))?;
                let bucket = match kind {
                    "lit" => &mut literals,
                    "re" => {
                        // Compile alone first, so that a bad regex is reported at its line.
                        regex::bytes::RegexBuilder::new(pattern)
                            .unicode(false)
                            .build()
                            .map_err(|e| err(format!("bad regex: {e}")))?;
                        &mut regexes
                    }
                    other => return Err(err(format!("kind `{other}` is not lit|re"))),
                };
                for (t, list) in bucket.iter_mut().enumerate() {
                    if targets & (1 << t) != 0 {
                        list.push((pattern, index));
                    }
                }
                rules.push(Rule {
                    id,
                    class,
                    strength,
                });
            }
        }

        let mut matchers: [TargetMatcher; TARGETS] = Default::default();
        for (t, m) in matchers.iter_mut().enumerate() {
            let lits = &literals[t];
            if !lits.is_empty() {
                let ac = AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(lits.iter().map(|(p, _)| p))
                    .map_err(|e| DetectError::Compile(e.to_string()))?;
                m.literals = Some(ac);
                m.literal_rules = lits.iter().map(|(_, i)| *i).collect();
            }
            let res = &regexes[t];
            if !res.is_empty() {
                let set = RegexSetBuilder::new(res.iter().map(|(p, _)| p))
                    .case_insensitive(true)
                    .unicode(false)
                    .size_limit(64 << 20)
                    .build()
                    .map_err(|e| DetectError::Compile(e.to_string()))?;
                m.regexes = Some(set);
                m.regex_rules = res.iter().map(|(_, i)| *i).collect();
            }
        }
        Ok(PatternSet { rules, matchers })
    }

    /// Scans `haystack` as `target`, calling `hit` with each matching rule.
    pub(crate) fn scan(&self, target: Target, haystack: &[u8], mut hit: impl FnMut(&Rule)) {
        self.matchers[target as usize].scan(haystack, |i| {
            if let Some(rule) = self.rules.get(i as usize) {
                hit(rule);
            }
        });
    }
}

/// The part of `line` after its first `n` whitespace-separated fields.
fn rest_after_fields(line: &str, n: usize) -> &str {
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_lists_compile() {
        let set = PatternSet::compile(BUILTIN).expect("builtin patterns compile");
        assert!(set.rules.len() > 100, "{} rules", set.rules.len());
        // every CVE entry names its CVE
        for r in set
            .rules
            .iter()
            .filter(|r| r.class == AttackClass::CveProbe)
        {
            assert!(r.id.starts_with("cve.CVE-"), "{}", r.id);
        }
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = PatternSet::compile(&[("t.txt", "# c\n\nsqli.x param strong re (unclosed\n")])
            .unwrap_err();
        assert!(e.to_string().contains("t.txt:3"), "{e}");
        let e = PatternSet::compile(&[("u.txt", "nope.x param strong lit a\n")]).unwrap_err();
        assert!(e.to_string().contains("u.txt:1"), "{e}");
        let e = PatternSet::compile(&[("v.txt", "sqli.x body strong lit a\n")]).unwrap_err();
        assert!(e.to_string().contains("unknown target"), "{e}");
    }

    #[test]
    fn pattern_keeps_inner_spaces() {
        let set = PatternSet::compile(&[("t.txt", "sqli.x  param  strong  lit  union  select\n")])
            .expect("compiles");
        let mut hits = 0;
        set.scan(Target::Param, b"1 UNION  SELECT 2", |_| hits += 1);
        assert_eq!(hits, 1);
    }
}
