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
//!   automaton per target) or `re` (a case-insensitive byte regex).
//!
//! Each target also gets a *gate*: one Aho-Corasick automaton over the literal entries and the
//! literals each regex entry needs (derived from its syntax by [`crate::prefilter`]). A text is
//! first run through the gate; only the regexes whose literals it contains are then run, one by
//! one, and a text the gate finds nothing in costs one pass. The gated scan reports exactly
//! what matching every entry would; the ungated one (`scan_reference`, one `RegexSet` per
//! target) is kept for the tests that check this.
//!
//! Blank lines and lines starting with `#` are ignored.

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::DetectError;
use crate::evidence::{AttackClass, Strength};
use crate::prefilter;

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
    /// One matcher per regex entry, in list order (`regex_rules[i]` is the rule of `regexes[i]`).
    regexes: Vec<Regex>,
    regex_rules: Vec<u32>,
    /// The regex sources, for the reference matcher built on demand.
    regex_sources: Vec<&'static str>,
    gate: Option<Gate>,
    /// The whole-list `RegexSet`, as matched before the gate existed; built on first use by
    /// [`TargetMatcher::scan_reference`].
    reference: OnceLock<Option<RegexSet>>,
}

/// Which entries of one target could match a text, found with one cheap pass.
///
/// Built from the literal entries themselves and from the necessary literals of every regex
/// entry (see [`crate::prefilter`]): each regex has one or two *requirements*, sets of literals
/// of which a matching text contains at least one each. A regex is run only when every one of
/// its requirements was seen; a text in which the automaton finds nothing at all runs only the
/// regexes in `always` (those with no derivable literal; none of the built-in ones).
#[derive(Debug)]
struct Gate {
    /// The literal entries and every regex's first (most selective) requirement: a text this
    /// finds nothing in can match no literal entry and meet no regex's requirements.
    primary: AhoCorasick,
    /// Every literal of every requirement, for naming the candidates once `primary` matched.
    automaton: AhoCorasick,
    /// For each automaton pattern, the (regex, requirement) pairs it satisfies; empty for the
    /// literal entries' own patterns.
    satisfies: Vec<Vec<(u16, u8)>>,
    /// Regexes with a single requirement: their second one counts as met from the start.
    single: Candidates,
    /// Regexes to run on every text.
    always: Candidates,
}

impl Gate {
    /// The regexes whose requirements `haystack` meets (plus `always`), or `None` when no
    /// literal entry and no regex's first requirement occurs in it (the common case, decided
    /// in one pass).
    fn candidates(&self, haystack: &[u8]) -> Option<Candidates> {
        if !self.primary.is_match(haystack) {
            return None;
        }
        let mut met = [Candidates::default(), self.single];
        for m in self.automaton.find_overlapping_iter(haystack) {
            for &(regex, requirement) in &self.satisfies[m.pattern().as_usize()] {
                met[usize::from(requirement)].insert(regex);
            }
        }
        Some(met[0].both_or(met[1], self.always))
    }
}

// `Gate::candidates` tracks exactly two requirements per regex.
const _: () = assert!(prefilter::MAX_REQUIREMENTS == 2);

/// A set of regex indices of one target, iterated in ascending order.
#[derive(Debug, Clone, Copy, Default)]
struct Candidates([u64; Candidates::WORDS]);

impl Candidates {
    const WORDS: usize = 4;
    /// The most regexes one target can hold and still be gated.
    const CAPACITY: usize = Self::WORDS * 64;

    fn insert(&mut self, i: u16) {
        self.0[usize::from(i) / 64] |= 1 << (i % 64);
    }

    /// The regexes in both sets, plus those in `extra`.
    fn both_or(self, other: Candidates, extra: Candidates) -> Candidates {
        let mut out = Candidates::default();
        for (w, o) in out.0.iter_mut().enumerate() {
            *o = (self.0[w] & other.0[w]) | extra.0[w];
        }
        out
    }

    fn iter(self) -> impl Iterator<Item = usize> {
        self.0.into_iter().enumerate().flat_map(|(w, mut bits)| {
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    w * 64 + b
                })
            })
        })
    }
}

impl TargetMatcher {
    /// Calls `hit` with the index of every rule matching `haystack` (a rule may be reported
    /// more than once): the literal entries in the order the automaton finds them, then the
    /// regex entries in list order. Allocates nothing.
    fn scan(&self, haystack: &[u8], mut hit: impl FnMut(u32)) {
        let Some(gate) = &self.gate else {
            return self.scan_reference(haystack, hit);
        };
        let candidates = match gate.candidates(haystack) {
            Some(candidates) => {
                self.scan_literals(haystack, &mut hit);
                candidates
            }
            // Nothing any entry needs: no literal entry matches, and only `always` can.
            None => gate.always,
        };
        for i in candidates.iter() {
            if self.regexes[i].is_match(haystack)
                && let Some(&rule) = self.regex_rules.get(i)
            {
                hit(rule);
            }
        }
    }

    /// [`TargetMatcher::scan`] without the gate: every literal entry through the
    /// Aho-Corasick automaton and every regex entry through one `RegexSet`, as the detectors
    /// matched before the gate. Kept as the oracle the gated path is tested against.
    fn scan_reference(&self, haystack: &[u8], mut hit: impl FnMut(u32)) {
        self.scan_literals(haystack, &mut hit);
        let set = self.reference.get_or_init(|| {
            (!self.regex_sources.is_empty())
                .then(|| regex_set(&self.regex_sources).expect("compiled once already, when built"))
        });
        if let Some(set) = set
            && set.is_match(haystack)
        {
            for i in set.matches(haystack).iter() {
                if let Some(&rule) = self.regex_rules.get(i) {
                    hit(rule);
                }
            }
        }
    }

    fn scan_literals(&self, haystack: &[u8], hit: &mut impl FnMut(u32)) {
        if let Some(ac) = &self.literals {
            for m in ac.find_overlapping_iter(haystack) {
                if let Some(&rule) = self.literal_rules.get(m.pattern().as_usize()) {
                    hit(rule);
                }
            }
        }
    }

    /// Builds the gate for this target's entries, or `None` when there are too many regexes
    /// to track (then every text takes the reference path).
    fn build_gate(
        literals: &[(&str, u32)],
        regexes: &[(&str, u32)],
    ) -> Result<Option<Gate>, DetectError> {
        if regexes.len() > Candidates::CAPACITY {
            return Ok(None);
        }
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut satisfies: Vec<Vec<(u16, u8)>> = Vec::new();
        let mut primary: Vec<Vec<u8>> = Vec::new();
        for (lit, _) in literals {
            patterns.push(lit.as_bytes().to_vec());
            satisfies.push(Vec::new());
            primary.push(lit.as_bytes().to_vec());
        }
        let mut single = Candidates::default();
        let mut always = Candidates::default();
        for (i, (source, _)) in regexes.iter().enumerate() {
            let i =
                u16::try_from(i).map_err(|_| DetectError::Compile("too many regexes".into()))?;
            let hir = prefilter::parse(source).map_err(DetectError::Compile)?;
            let requirements = prefilter::requirements(&hir);
            match requirements.len() {
                0 => always.insert(i),
                1 => single.insert(i),
                _ => {}
            }
            for (r, set) in (0u8..).zip(requirements) {
                if r == 0 {
                    primary.extend(set.iter().cloned());
                }
                for lit in set {
                    match patterns.iter().position(|p| p.eq_ignore_ascii_case(&lit)) {
                        Some(at) => satisfies[at].push((i, r)),
                        None => {
                            patterns.push(lit);
                            satisfies.push(vec![(i, r)]);
                        }
                    }
                }
            }
        }
        // `primary` runs on every text, so it is a full DFA (one table step per byte); the
        // larger `automaton` runs only on texts `primary` flagged, and stays compact.
        let build = |patterns: &[Vec<u8>], kind: Option<AhoCorasickKind>| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(kind)
                .build(patterns)
                .map_err(|e| DetectError::Compile(e.to_string()))
        };
        Ok(Some(Gate {
            primary: build(&primary, Some(AhoCorasickKind::DFA))?,
            automaton: build(&patterns, None)?,
            satisfies,
            single,
            always,
        }))
    }
}

fn regex_set(sources: &[&str]) -> Result<RegexSet, regex::Error> {
    RegexSetBuilder::new(sources)
        .case_insensitive(true)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

fn regex(source: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(source)
        .case_insensitive(true)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Compiled-size limit of one regex, and of the reference set of all of a target's regexes.
const REGEX_SIZE_LIMIT: usize = 64 << 20;

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
            m.regexes = res
                .iter()
                .map(|(p, _)| regex(p))
                .collect::<Result<_, _>>()
                .map_err(|e| DetectError::Compile(e.to_string()))?;
            m.regex_rules = res.iter().map(|(_, i)| *i).collect();
            m.regex_sources = res.iter().map(|(p, _)| *p).collect();
            m.gate = TargetMatcher::build_gate(lits, res)?;
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

    /// [`PatternSet::scan`] without the prefilter gate: the oracle for differential tests.
    pub(crate) fn scan_reference(
        &self,
        target: Target,
        haystack: &[u8],
        mut hit: impl FnMut(&Rule),
    ) {
        self.matchers[target as usize].scan_reference(haystack, |i| {
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
    use proptest::prelude::*;
    use proptest::string::bytes_regex_parsed;
    use proptest::test_runner::TestRunner;
    use regex_syntax::hir::{Hir, HirKind, Repetition};

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

    /// `hir` with every look-around (`^`, `$`, `\b`) replaced by the empty regex. Its
    /// language contains the original's, and the prefilter treats look-arounds as empty, so
    /// every string it generates must still meet the regex's requirements.
    fn without_looks(hir: &Hir) -> Hir {
        match hir.kind() {
            HirKind::Look(_) => Hir::empty(),
            HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => hir.clone(),
            HirKind::Capture(c) => without_looks(&c.sub),
            HirKind::Repetition(r) => Hir::repetition(Repetition {
                sub: Box::new(without_looks(&r.sub)),
                ..r.clone()
            }),
            HirKind::Concat(hs) => Hir::concat(hs.iter().map(without_looks).collect()),
            HirKind::Alternation(hs) => Hir::alternation(hs.iter().map(without_looks).collect()),
        }
    }

    /// Soundness of the gate: for every regex entry of every target, texts generated from the
    /// regex (mixed case, with random text around them) always name it a candidate.
    #[test]
    fn gate_lets_every_match_through() {
        let set = PatternSet::compile(BUILTIN).expect("builtin patterns compile");
        // A runner counts successes across runs, so each regex gets a fresh one.
        let runner = || {
            TestRunner::new(ProptestConfig {
                cases: 96,
                failure_persistence: None,
                ..ProptestConfig::default()
            })
        };
        let mut checked = 0;
        for matcher in &set.matchers {
            let gate = matcher
                .gate
                .as_ref()
                .expect("every built-in target is gated");
            for (i, source) in matcher.regex_sources.iter().enumerate() {
                let hir = without_looks(&prefilter::parse(source).expect("parses"));
                let texts = (
                    proptest::collection::vec(any::<u8>(), 0..12),
                    bytes_regex_parsed(&hir).expect("generator for the regex"),
                    proptest::collection::vec(any::<u8>(), 0..12),
                );
                runner()
                    .run(&texts, |(before, core, after)| {
                        let text = [before, core, after].concat();
                        let candidates = gate.candidates(&text).unwrap_or(gate.always);
                        prop_assert!(
                            candidates.iter().any(|c| c == i),
                            "{source} not a candidate for {:?}",
                            String::from_utf8_lossy(&text)
                        );
                        Ok(())
                    })
                    .unwrap_or_else(|e| panic!("{e}"));
                checked += 1;
            }
        }
        assert!(checked > 150, "{checked} regexes checked");
    }

    /// The gated scan and the reference scan report the same rules in the same order, on
    /// matching and on non-matching texts (and on texts that meet only some requirements).
    #[test]
    fn gated_scan_equals_reference_scan() {
        let set = PatternSet::compile(BUILTIN).expect("builtin patterns compile");
        // A runner counts successes across runs, so each regex gets a fresh one.
        let runner = || {
            TestRunner::new(ProptestConfig {
                cases: 24,
                failure_persistence: None,
                ..ProptestConfig::default()
            })
        };
        for (t, matcher) in set.matchers.iter().enumerate() {
            for source in &matcher.regex_sources {
                let hir = without_looks(&prefilter::parse(source).expect("parses"));
                let texts = (
                    "[a-z0-9 /._-]{0,10}",
                    bytes_regex_parsed(&hir).expect("generator for the regex"),
                    "[a-z0-9 /.?=&_-]{0,10}",
                );
                runner()
                    .run(&texts, |(before, core, after)| {
                        let text = [before.as_bytes(), &core, after.as_bytes()].concat();
                        // the whole text, and with its first and last bytes cut off
                        for part in [
                            &text[..],
                            &text[text.len().min(1)..],
                            &text[..text.len() / 2],
                        ] {
                            let (mut gated, mut reference) = (Vec::new(), Vec::new());
                            matcher.scan(part, |r| gated.push(r));
                            matcher.scan_reference(part, |r| reference.push(r));
                            prop_assert_eq!(&gated, &reference, "target {}, {:?}", t, part);
                        }
                        Ok(())
                    })
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    /// Every built-in regex has a literal requirement, so a clean text runs no regex at all.
    #[test]
    fn every_builtin_regex_is_gated() {
        let set = PatternSet::compile(BUILTIN).expect("builtin patterns compile");
        for matcher in &set.matchers {
            let gate = matcher.gate.as_ref().expect("gated");
            assert_eq!(gate.always.iter().count(), 0, "{:?}", matcher.regex_sources);
        }
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
