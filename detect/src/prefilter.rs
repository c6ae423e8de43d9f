//! Necessary literals of a regex: what a haystack must contain for the regex to match it.
//!
//! Most request parts are clean, and on clean text running a `RegexSet` of a hundred patterns
//! is the single most expensive step of [`crate::Detectors::inspect`]. This module reads each
//! pattern's syntax tree and derives a small set of literals such that **every match of the
//! pattern contains at least one of them** (ASCII case-insensitively). One Aho-Corasick pass
//! over those literals then names the few patterns that could match; the others are skipped
//! without being run.
//!
//! Soundness is by construction, node by node:
//!
//! * [`exact`] is the complete, finite set of strings a node can match, or `None` when that set
//!   is large or infinite. Look-arounds (`^`, `$`, `\b`) match only the empty string.
//! * [`required`] is a set such that every string the node matches contains one element as a
//!   substring, or `None` when no such set is known. Every concatenation contributes candidate
//!   sets (runs of adjacent exact children, multiplied out; a repetition of at least `n` copies
//!   of an exact child; a non-exact child's own required set), any one of which is sound; the
//!   rarest is chosen. An alternation's set is the union of its branches' sets.
//!
//! Literals are lowercased and searched ASCII case-insensitively, which only widens them: the
//! patterns are compiled case-insensitively anyway, and a literal that came from a
//! case-sensitive part still matches what it matched before.
//!
//! The property tests in `patterns` generate strings from every built-in pattern and check that
//! the pattern is always named a candidate.

use regex_syntax::hir::{Class, Hir, HirKind};

/// A set of literals (lowercased, deduplicated).
pub(crate) type Literals = Vec<Vec<u8>>;

/// Sets larger than this are given up on (`None`): they would make the automaton big (a
/// cache-missing table on every byte) and say little.
const MAX_SET: usize = 64;
/// Multiplying out a run stops at this many strings: `\s` between two words would otherwise
/// turn one literal into six, and a shorter literal is nearly as selective.
const MAX_PRODUCT: usize = 12;
/// Exact strings longer than this are given up on; a required literal that long is already as
/// selective as it gets.
const MAX_LEN: usize = 48;
/// A character class with more distinct (case-folded) bytes than this is not worth listing.
const MAX_CLASS: usize = 8;

/// Parses `pattern` exactly as the matchers compile it (case-insensitive, bytes, no Unicode),
/// so that the tree analysed is the tree that runs.
pub(crate) fn parse(pattern: &str) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .case_insensitive(true)
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())
}

/// Literals one of which every match of `hir` contains, or `None` if none could be derived.
/// Never returns an empty set or a set containing the empty string.
pub(crate) fn required(hir: &Hir) -> Option<Literals> {
    required_inner(hir).and_then(usable)
}

/// Up to [`MAX_REQUIREMENTS`] sets of literals, each of which is [`required`] on its own: a
/// match of `hir` contains one literal of *every* set. Two independent conditions, such as
/// `cmdi.separator_recon`'s shell separator and its command name, filter far better than
/// either alone. Empty when nothing could be derived.
pub(crate) fn requirements(hir: &Hir) -> Vec<Literals> {
    if let Some(set) = exact(hir).and_then(usable) {
        return vec![set];
    }
    match hir.kind() {
        HirKind::Capture(c) => requirements(&c.sub),
        HirKind::Repetition(r) if r.min > 0 && exact(&r.sub).is_none() => requirements(&r.sub),
        HirKind::Concat(children) => {
            let mut sets = concat_candidates(children);
            sets.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
            sets.dedup();
            sets.truncate(MAX_REQUIREMENTS);
            sets
        }
        _ => required(hir).into_iter().collect(),
    }
}

/// How many independent literal sets [`requirements`] returns at most.
pub(crate) const MAX_REQUIREMENTS: usize = 2;

fn required_inner(hir: &Hir) -> Option<Literals> {
    if let Some(set) = exact(hir) {
        return usable(set);
    }
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) | HirKind::Literal(_) | HirKind::Class(_) => None,
        HirKind::Capture(c) => required_inner(&c.sub),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                return None;
            }
            match exact(&r.sub) {
                Some(sub) => power(&sub, r.min).and_then(usable),
                None => required_inner(&r.sub),
            }
        }
        HirKind::Alternation(alts) => {
            let mut union = Vec::new();
            for alt in alts {
                union.extend(required_inner(alt)?);
            }
            normalize(union)
        }
        HirKind::Concat(children) => concat_candidates(children)
            .into_iter()
            .min_by(|a, b| cost(a).total_cmp(&cost(b))),
    }
}

/// Sets of literals each of which every match of the concatenation `children` contains: runs
/// of adjacent exact children multiplied out, repetitions of exact children, and the
/// requirements of the other children.
fn concat_candidates(children: &[Hir]) -> Vec<Literals> {
    let mut candidates: Vec<Literals> = Vec::new();
    let mut run: Literals = vec![Vec::new()];
    for child in children {
        if let Some(set) = exact(child) {
            run = match product(&run, &set) {
                Some(joined) => joined,
                None => {
                    candidates.push(std::mem::take(&mut run));
                    set
                }
            };
            continue;
        }
        // A repetition of at least `min` copies of an exact set: the run continues into its
        // first `min` copies, and the text after it follows its last `min` copies.
        if let HirKind::Repetition(r) = child.kind()
            && r.min > 0
            && let Some(sub) = exact(&r.sub)
            && let Some(copies) = power(&sub, r.min)
        {
            if let Some(joined) = product(&run, &copies) {
                candidates.push(joined);
            } else {
                candidates.push(std::mem::take(&mut run));
                candidates.push(copies.clone());
            }
            run = copies;
            continue;
        }
        candidates.push(std::mem::replace(&mut run, vec![Vec::new()]));
        if let Some(set) = required_inner(child) {
            candidates.push(set);
        }
    }
    candidates.push(run);
    candidates.into_iter().filter_map(usable).collect()
}

/// The complete set of strings `hir` matches, if it is small and finite.
pub(crate) fn exact(hir: &Hir) -> Option<Literals> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(vec![Vec::new()]),
        HirKind::Literal(lit) => (lit.0.len() <= MAX_LEN).then(|| vec![lit.0.to_ascii_lowercase()]),
        HirKind::Class(class) => class_bytes(class)
            .map(|bytes| {
                let mut folded: Vec<u8> = bytes.iter().map(u8::to_ascii_lowercase).collect();
                folded.sort_unstable();
                folded.dedup();
                folded.into_iter().map(|b| vec![b]).collect()
            })
            .filter(|set: &Literals| !set.is_empty() && set.len() <= MAX_CLASS),
        HirKind::Capture(c) => exact(&c.sub),
        HirKind::Repetition(r) => {
            if r.max != Some(r.min) {
                return None;
            }
            power(&exact(&r.sub)?, r.min)
        }
        HirKind::Concat(children) => {
            let mut acc: Literals = vec![Vec::new()];
            for child in children {
                acc = product(&acc, &exact(child)?)?;
            }
            Some(acc)
        }
        HirKind::Alternation(alts) => {
            let mut union = Vec::new();
            for alt in alts {
                union.extend(exact(alt)?);
            }
            normalize(union)
        }
    }
}

/// The bytes a class matches, if it is small enough to list. Unicode classes cannot occur with
/// Unicode off, but are handled when they are all ASCII.
fn class_bytes(class: &Class) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match class {
        Class::Bytes(c) => {
            for r in c.ranges() {
                if usize::from(r.end() - r.start()) >= MAX_CLASS * 2 {
                    return None;
                }
                out.extend(r.start()..=r.end());
            }
        }
        Class::Unicode(c) => {
            for r in c.ranges() {
                let (start, end) = (u32::from(r.start()), u32::from(r.end()));
                if end > 0x7F || end - start >= (MAX_CLASS * 2) as u32 {
                    return None;
                }
                out.extend((start..=end).map(|b| b as u8));
            }
        }
    }
    (out.len() <= MAX_CLASS * 2).then_some(out)
}

/// Every `a` followed by every `b`, if the result stays small.
fn product(a: &Literals, b: &Literals) -> Option<Literals> {
    if a.len().saturating_mul(b.len()) > MAX_PRODUCT {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            if x.len() + y.len() > MAX_LEN {
                return None;
            }
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    normalize(out)
}

/// `set` concatenated with itself `n` times.
fn power(set: &Literals, n: u32) -> Option<Literals> {
    let mut acc: Literals = vec![Vec::new()];
    for _ in 0..n {
        acc = product(&acc, set)?;
    }
    Some(acc)
}

fn normalize(mut set: Literals) -> Option<Literals> {
    set.sort_unstable();
    set.dedup();
    (set.len() <= MAX_SET).then_some(set)
}

/// A set is usable as a requirement when it is non-empty and has no empty literal (which every
/// text contains, so it would require nothing).
fn usable(set: Literals) -> Option<Literals> {
    (!set.is_empty() && set.iter().all(|l| !l.is_empty())).then_some(set)
}

/// Roughly how often a position in decoded request text starts one of the literals: lower is a
/// better filter. Letters dominate such text; URL punctuation is common, SQL punctuation less
/// so, and markup, shell and template punctuation rare.
fn cost(set: &Literals) -> f64 {
    set.iter()
        .map(|lit| {
            lit.iter()
                .take(4)
                .map(|&b| match b {
                    b'a'..=b'z' => 0.1,
                    b'/' => 0.05,
                    b'0'..=b'9' | b'.' | b'-' | b'_' | b' ' => 0.03,
                    b'=' | b':' | b',' => 0.01,
                    b'(' | b')' | b';' | b'&' | b'"' | b'\'' | b'+' | b'?' => 0.005,
                    _ => 0.001,
                })
                .product::<f64>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pattern: &str) -> Option<Vec<String>> {
        let hir = parse(pattern).expect("parses");
        required(&hir).map(|set| {
            set.into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect()
        })
    }

    #[test]
    fn literals_join_across_case_folded_letters() {
        assert_eq!(req(r"\bunion\b"), Some(vec!["union".into()]));
        assert_eq!(req(r"/\.env(\.[a-z]+)?(/|$)"), Some(vec!["/.env".into()]));
    }

    #[test]
    fn alternations_union_and_repetitions_count() {
        assert_eq!(
            req(r"[/\\]\.\.+;?$"),
            Some(vec!["/..".into(), "\\..".into()])
        );
        assert_eq!(
            req(r"(sleep|benchmark)\s*\(\s*\d"),
            Some(vec!["benchmark".into(), "sleep".into()])
        );
    }

    #[test]
    fn the_rarest_part_of_a_concatenation_is_chosen() {
        // `{` is rarer in URLs than a parenthesis
        let set = req(r"\(\s*\)\s*\{\s*:?\s*;?\s*\}\s*;").expect("some requirement");
        assert_eq!(set, vec!["{".to_string()]);
    }

    #[test]
    fn nothing_is_required_of_optional_or_wide_patterns() {
        assert_eq!(req(r"a?"), None);
        assert_eq!(req(r"[a-z]+"), None);
        assert_eq!(req(r"x|[0-9]*"), None);
        assert_eq!(req(r"^$"), None);
    }
}
