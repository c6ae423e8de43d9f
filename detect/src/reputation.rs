//! IP reputation lists: parsing three common formats and answering "which lists hold this
//! address?" quickly.
//!
//! Formats ([`ListFormat`]):
//! * **plain**: one address, CIDR block or `first-last` range per line; `#` and `;` start a
//!   comment.
//! * **FireHOL netset**: the same grammar; the `#` header carries the list's metadata.
//! * **CrowdSec decisions**: a JSON array of decision objects (`value`, `scope`, `type`,
//!   `duration`, `scenario`, `origin`), or the stream form `{"new": [...], "deleted": [...]}`
//!   of which only `new` is read. Decisions whose scope is neither `Ip` nor `Range` (countries,
//!   AS numbers, user names) are skipped. `duration` is relative to when the list was fetched,
//!   so expiry is left to the engine that fetches and refreshes the list.
//!
//! [`Reputation`] merges lists into one table per address family: every address range is cut
//! into disjoint intervals, each pointing at the set of [`ListHit`]s that cover it, sorted by
//! start. A lookup is one binary search (about 20 comparisons for a million intervals) and
//! touches no allocator. Overlapping entries, within a list or across lists, all report.
//!
//! Parse errors name the list (its file name when loaded from a file) and the line.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::DetectError;

/// The text format of a reputation list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// One address, CIDR or range per line, `#`/`;` comments.
    Plain,
    /// FireHOL's `.netset` / `.ipset` files.
    FireholNetset,
    /// CrowdSec decisions JSON.
    CrowdsecDecisions,
}

/// What a lookup reports for one matching list (and, for CrowdSec lists, one kind of
/// decision in it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListHit {
    /// The list's name.
    pub list: String,
    /// The CrowdSec scenario (`crowdsecurity/ssh-bf`), if the list has one.
    pub scenario: Option<String>,
    /// The CrowdSec decision type (`ban`, `captcha`), if the list has one.
    pub decision: Option<String>,
    /// The CrowdSec origin (`CAPI`, `cscli`, `lists`), if the list has one.
    pub origin: Option<String>,
}

/// An inclusive address range of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpRange {
    V4(u32, u32),
    V6(u128, u128),
}

/// One parsed list.
#[derive(Debug, Clone)]
pub struct ReputationList {
    name: String,
    hits: Vec<ListHit>,
    /// (range, index into `hits`)
    entries: Vec<(IpRange, u32)>,
}

/// Parses `text` in `format` into a list called `name` (used in errors and in hits).
pub fn parse(format: ListFormat, name: &str, text: &str) -> Result<ReputationList, DetectError> {
    ReputationList::parse(format, name, text)
}

impl ReputationList {
    /// Parses `text` in `format` into a list called `name`.
    pub fn parse(
        format: ListFormat,
        name: &str,
        text: &str,
    ) -> Result<ReputationList, DetectError> {
        match format {
            ListFormat::Plain | ListFormat::FireholNetset => parse_lines(name, text),
            ListFormat::CrowdsecDecisions => parse_crowdsec(name, text),
        }
    }

    /// Reads and parses the file at `path`; the list is named after the file.
    pub fn load(format: ListFormat, path: &Path) -> Result<ReputationList, DetectError> {
        let text = std::fs::read_to_string(path).map_err(|source| DetectError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        ReputationList::parse(format, &name, &text)
    }

    /// The list's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many entries (addresses, blocks or ranges) it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn plain_hit(name: &str) -> ListHit {
    ListHit {
        list: name.to_owned(),
        scenario: None,
        decision: None,
        origin: None,
    }
}

fn parse_lines(name: &str, text: &str) -> Result<ReputationList, DetectError> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split(['#', ';']).next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let range = parse_range(entry).map_err(|message| DetectError::Reputation {
            file: name.to_owned(),
            line: n + 1,
            message,
        })?;
        entries.push((range, 0));
    }
    Ok(ReputationList {
        name: name.to_owned(),
        hits: vec![plain_hit(name)],
        entries,
    })
}

/// Parses `1.2.3.4`, `1.2.3.0/24`, `2001:db8::/32` or `1.2.3.4-1.2.3.9`.
fn parse_range(s: &str) -> Result<IpRange, String> {
    if let Some((first, last)) = s.split_once('-') {
        let (a, b) = (parse_ip(first.trim())?, parse_ip(last.trim())?);
        return match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => Ok(IpRange::V4(a.into(), b.into())),
            (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => Ok(IpRange::V6(a.into(), b.into())),
            _ => Err(format!("`{s}` is not a range of one family, first ≤ last")),
        };
    }
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => {
            let p: u8 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{p}` is not a prefix length"))?;
            (parse_ip(a.trim())?, Some(p))
        }
        None => (parse_ip(s)?, None),
    };
    match addr {
        IpAddr::V4(a) => {
            let p = prefix.unwrap_or(32);
            if p > 32 {
                return Err(format!("prefix /{p} is longer than 32"));
            }
            let host = u32::MAX.checked_shr(u32::from(p)).unwrap_or(0);
            let base = u32::from(a) & !host;
            Ok(IpRange::V4(base, base | host))
        }
        IpAddr::V6(a) => {
            let p = prefix.unwrap_or(128);
            if p > 128 {
                return Err(format!("prefix /{p} is longer than 128"));
            }
            let host = u128::MAX.checked_shr(u32::from(p)).unwrap_or(0);
            let base = u128::from(a) & !host;
            Ok(IpRange::V6(base, base | host))
        }
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| format!("`{s}` is not an IP address"))
}

// ---- CrowdSec decisions -------------------------------------------------------------------

/// A decision as written in the JSON.
#[derive(Deserialize)]
struct RawDecision {
    #[serde(deserialize_with = "address_or_other")]
    value: Value,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// Accepted for the shape; expiry is the engine's job.
    #[serde(default)]
    #[allow(dead_code)]
    duration: Option<String>,
    #[serde(default)]
    scenario: Option<String>,
    #[serde(default)]
    origin: Option<String>,
}

/// A decision's `value`: an address when it is spelled like one, anything else (a country,
/// an AS number, a user name) kept for the scope check.
enum Value {
    Address(IpRange),
    Other(String),
}

/// Parses address-like values while serde_json is positioned at them, so a malformed address
/// is reported at its own line.
fn address_or_other<'de, D: de::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let s = String::deserialize(d)?;
    let t = s.trim();
    let address_like = (t.contains('.') || t.contains(':'))
        && t.bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'/' | b'-' | b' '));
    if address_like {
        parse_range(t)
            .map(Value::Address)
            .map_err(de::Error::custom)
    } else {
        Ok(Value::Other(s))
    }
}

/// A decision with its address checked against its scope. A value that is not spelled like
/// an address but has scope `Ip` is reported at the line after the decision.
#[derive(Deserialize)]
#[serde(try_from = "RawDecision")]
struct Decision {
    /// `None` for scopes other than `Ip` and `Range`.
    range: Option<IpRange>,
    kind: Option<String>,
    scenario: Option<String>,
    origin: Option<String>,
}

impl TryFrom<RawDecision> for Decision {
    type Error = String;
    fn try_from(d: RawDecision) -> Result<Decision, String> {
        let scope = d.scope.as_deref().unwrap_or("ip");
        let range = if scope.eq_ignore_ascii_case("ip") || scope.eq_ignore_ascii_case("range") {
            match d.value {
                Value::Address(r) => Some(r),
                Value::Other(v) => return Err(format!("`{v}` is not an IP address or range")),
            }
        } else {
            None
        };
        Ok(Decision {
            range,
            kind: d.kind,
            scenario: d.scenario,
            origin: d.origin,
        })
    }
}

/// (scenario, decision type, origin): what distinguishes two hits of one CrowdSec list.
type HitKey = (Option<String>, Option<String>, Option<String>);

/// Collects decisions while serde walks the document, so that an invalid address is reported
/// by serde_json with the line it is on.
struct Collector<'a> {
    name: &'a str,
    hits: Vec<ListHit>,
    index: HashMap<HitKey, u32>,
    entries: Vec<(IpRange, u32)>,
}

impl Collector<'_> {
    fn add<E: de::Error>(&mut self, d: Decision) -> Result<(), E> {
        let Some(range) = d.range else {
            return Ok(());
        };
        let key = (d.scenario, d.kind, d.origin);
        let hit = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                let i = u32::try_from(self.hits.len()).map_err(|_| E::custom("too many kinds"))?;
                self.hits.push(ListHit {
                    list: self.name.to_owned(),
                    scenario: key.0.clone(),
                    decision: key.1.clone(),
                    origin: key.2.clone(),
                });
                self.index.insert(key, i);
                i
            }
        };
        self.entries.push((range, hit));
        Ok(())
    }
}

/// Deserializes a sequence of decisions into the collector.
struct DecisionSeq<'c, 'a>(&'c mut Collector<'a>);

impl<'de> DeserializeSeed<'de> for DecisionSeq<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for DecisionSeq<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of CrowdSec decisions")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(()) // `"new": null` in the stream form
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(d) = seq.next_element::<Decision>()? {
            self.0.add(d)?;
        }
        Ok(())
    }
}

/// The document: an array, or the stream object whose `new` member is one.
struct Document<'c, 'a>(&'c mut Collector<'a>);

impl<'de> Visitor<'de> for Document<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of CrowdSec decisions or an object with `new`")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(()) // a LAPI's `GET /v1/decisions` with no decision answers `null`
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        DecisionSeq(self.0).visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "new" {
                map.next_value_seed(DecisionSeq(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

fn parse_crowdsec(name: &str, text: &str) -> Result<ReputationList, DetectError> {
    let mut collector = Collector {
        name,
        hits: Vec::new(),
        index: HashMap::new(),
        entries: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    de::Deserializer::deserialize_any(&mut de, Document(&mut collector))
        .and_then(|()| de.end())
        .map_err(|e| {
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_owned(),
                None => message,
            };
            DetectError::Reputation {
                file: name.to_owned(),
                line: e.line(),
                message,
            }
        })?;
    Ok(ReputationList {
        name: name.to_owned(),
        hits: collector.hits,
        entries: collector.entries,
    })
}

// ---- The merged lookup table --------------------------------------------------------------

/// An address key: `u32` for IPv4, `u128` for IPv6.
trait Key: Copy + Ord {
    const MAX: Self;
    fn succ(self) -> Option<Self>;
    fn pred(self) -> Option<Self>;
}

impl Key for u32 {
    const MAX: u32 = u32::MAX;
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl Key for u128 {
    const MAX: u128 = u128::MAX;
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

/// Disjoint, sorted intervals, each with the hits covering it.
#[derive(Debug, Clone)]
struct Table<K> {
    starts: Vec<K>,
    ends: Vec<K>,
    /// (offset, len) into `pool` for each interval.
    sets: Vec<(u32, u32)>,
    pool: Vec<u32>,
}

impl<K: Key> Table<K> {
    /// Builds the table from inclusive ranges tagged with a global hit index.
    fn build(mut ranges: Vec<(K, K, u32)>) -> Table<K> {
        // Sweep: +hit at each start, -hit just past each end.
        let mut events: Vec<(K, bool, u32)> = Vec::with_capacity(ranges.len() * 2);
        for &(s, e, h) in &ranges {
            events.push((s, true, h));
            if let Some(after) = e.succ() {
                events.push((after, false, h));
            }
        }
        ranges.clear();
        events.sort_unstable_by_key(|e| e.0);

        let mut table = Table {
            starts: Vec::new(),
            ends: Vec::new(),
            sets: Vec::new(),
            pool: Vec::new(),
        };
        let mut active: BTreeMap<u32, u32> = BTreeMap::new();
        let mut current: Vec<u32> = Vec::new();
        let mut i = 0;
        while i < events.len() {
            let pos = events[i].0;
            while i < events.len() && events[i].0 == pos {
                let (_, add, h) = events[i];
                if add {
                    *active.entry(h).or_insert(0) += 1;
                } else if let Some(c) = active.get_mut(&h) {
                    *c -= 1;
                    if *c == 0 {
                        active.remove(&h);
                    }
                }
                i += 1;
            }
            if active.is_empty() {
                continue;
            }
            // This interval runs until just before the next event (or to the end of space).
            // Events are sorted and grouped, so the next position is above `pos`.
            let end = match events.get(i) {
                Some(next) => match next.0.pred() {
                    Some(e) if e >= pos => e,
                    _ => continue,
                },
                None => K::MAX,
            };
            current.clear();
            current.extend(active.keys().copied());
            table.push(pos, end, &current);
        }
        table
    }

    fn push(&mut self, start: K, end: K, set: &[u32]) {
        let last = self.sets.len().checked_sub(1);
        if let Some(l) = last {
            let (off, len) = self.sets[l];
            let prev = &self.pool[off as usize..(off + len) as usize];
            if prev == set {
                // Adjacent to the previous interval with the same hits: extend it.
                if self.ends[l].succ() == Some(start) {
                    self.ends[l] = end;
                    return;
                }
                self.starts.push(start);
                self.ends.push(end);
                self.sets.push((off, len));
                return;
            }
        }
        let off = self.pool.len() as u32;
        self.pool.extend_from_slice(set);
        self.starts.push(start);
        self.ends.push(end);
        self.sets.push((off, set.len() as u32));
    }

    fn lookup(&self, key: K) -> &[u32] {
        let i = self.starts.partition_point(|&s| s <= key);
        let Some(i) = i.checked_sub(1) else {
            return &[];
        };
        if self.ends[i] < key {
            return &[];
        }
        let (off, len) = self.sets[i];
        self.pool
            .get(off as usize..(off + len) as usize)
            .unwrap_or(&[])
    }
}

/// A set of reputation lists merged for lookup. Immutable once built: the engine builds a new
/// one when a list refreshes and swaps it in.
#[derive(Debug, Clone)]
pub struct Reputation {
    hits: Vec<ListHit>,
    lists: Vec<(String, usize)>,
    v4: Table<u32>,
    v6: Table<u128>,
}

impl Reputation {
    /// Merges `lists` into one lookup structure.
    pub fn new(lists: impl IntoIterator<Item = ReputationList>) -> Reputation {
        let mut hits = Vec::new();
        let mut names = Vec::new();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for list in lists {
            let base = hits.len() as u32;
            names.push((list.name.clone(), list.entries.len()));
            for (range, h) in list.entries {
                match range {
                    IpRange::V4(s, e) => v4.push((s, e, base + h)),
                    IpRange::V6(s, e) => v6.push((s, e, base + h)),
                }
            }
            hits.extend(list.hits);
        }
        Reputation {
            hits,
            lists: names,
            v4: Table::build(v4),
            v6: Table::build(v6),
        }
    }

    /// The hits of every list holding `ip`, each once. IPv4-mapped IPv6 addresses
    /// (`::ffff:1.2.3.4`) are looked up as IPv4.
    pub fn lookup(&self, ip: IpAddr) -> impl Iterator<Item = &ListHit> + '_ {
        let ids = match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        };
        ids.iter().filter_map(|&i| self.hits.get(i as usize))
    }

    /// Whether any list holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.lookup(ip).next().is_some()
    }

    /// The merged lists' names and entry counts.
    pub fn lists(&self) -> &[(String, usize)] {
        &self.lists
    }

    /// How many disjoint intervals the tables hold (IPv4, IPv6).
    pub fn interval_counts(&self) -> (usize, usize) {
        (self.v4.starts.len(), self.v6.starts.len())
    }
}

impl Default for Reputation {
    fn default() -> Self {
        Reputation::new(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn names<'a>(r: &'a Reputation, a: &str) -> Vec<&'a str> {
        r.lookup(ip(a)).map(|h| h.list.as_str()).collect()
    }

    #[test]
    fn plain_and_firehol() {
        let plain = parse(
            ListFormat::Plain,
            "plain",
            "# bad hosts\n1.2.3.4\n10.0.0.0/8 ; private\n2001:db8::/32\n5.5.5.1-5.5.5.9\n",
        )
        .expect("parses");
        assert_eq!(plain.len(), 4);
        let firehol = parse(
            ListFormat::FireholNetset,
            "firehol_level1",
            "#\n# firehol_level1\n#\n10.1.0.0/16\n192.0.2.0/24\n",
        )
        .expect("parses");
        let r = Reputation::new([plain, firehol]);
        assert_eq!(names(&r, "1.2.3.4"), ["plain"]);
        assert!(names(&r, "1.2.3.5").is_empty());
        assert_eq!(names(&r, "10.1.2.3"), ["plain", "firehol_level1"]);
        assert_eq!(names(&r, "10.2.0.0"), ["plain"]);
        assert_eq!(names(&r, "192.0.2.255"), ["firehol_level1"]);
        assert_eq!(names(&r, "5.5.5.9"), ["plain"]);
        assert!(names(&r, "5.5.5.10").is_empty());
        assert_eq!(names(&r, "2001:db8:1::1"), ["plain"]);
        assert_eq!(names(&r, "::ffff:1.2.3.4"), ["plain"]);
        assert!(names(&r, "2001:db9::1").is_empty());
    }

    #[test]
    fn extremes_of_the_address_space() {
        let l = parse(
            ListFormat::Plain,
            "all",
            "0.0.0.0/0\n::/0\n255.255.255.255\n",
        )
        .expect("parses");
        let r = Reputation::new([l]);
        assert_eq!(names(&r, "0.0.0.0"), ["all"]);
        assert_eq!(names(&r, "255.255.255.255"), ["all"]);
        assert_eq!(
            names(&r, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ["all"]
        );
        assert_eq!(r.lookup(ip("255.255.255.255")).count(), 1);
    }

    #[test]
    fn crowdsec_decisions() {
        let text = r#"[
  {"value": "1.2.3.4", "scope": "Ip", "type": "ban", "duration": "3h59m", "scenario": "crowdsecurity/ssh-bf", "origin": "CAPI"},
  {"value": "7.7.7.0/24", "scope": "Range", "type": "ban", "duration": "1h", "scenario": "crowdsecurity/http-probing", "origin": "CAPI"},
  {"value": "CN", "scope": "Country", "type": "ban", "duration": "1h", "scenario": "manual", "origin": "cscli"},
  {"value": "7.7.7.7", "scope": "Ip", "type": "captcha", "duration": "1h", "scenario": "crowdsecurity/http-probing", "origin": "CAPI"}
]"#;
        let l = parse(ListFormat::CrowdsecDecisions, "capi", text).expect("parses");
        assert_eq!(l.len(), 3);
        let r = Reputation::new([l]);
        let hits: Vec<_> = r.lookup(ip("7.7.7.7")).collect();
        assert_eq!(hits.len(), 2);
        assert!(
            hits.iter()
                .any(|h| h.decision.as_deref() == Some("captcha"))
        );
        let hit = r.lookup(ip("1.2.3.4")).next().expect("listed");
        assert_eq!(hit.scenario.as_deref(), Some("crowdsecurity/ssh-bf"));
        assert_eq!(hit.origin.as_deref(), Some("CAPI"));

        let stream = r#"{"new": [{"value": "9.9.9.9", "scope": "Ip"}], "deleted": null}"#;
        let l = parse(ListFormat::CrowdsecDecisions, "stream", stream).expect("parses");
        assert_eq!(l.len(), 1);
        // a LAPI with no decision
        let none = parse(ListFormat::CrowdsecDecisions, "empty", "null").expect("parses");
        assert_eq!(none.len(), 0);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse(ListFormat::Plain, "bad.txt", "1.2.3.4\n\n1.2.3.400\n").unwrap_err();
        assert!(e.to_string().contains("bad.txt:3"), "{e}");
        let e = parse(ListFormat::Plain, "bad.txt", "1.2.3.0/33\n").unwrap_err();
        assert!(e.to_string().contains("bad.txt:1"), "{e}");
        let json = "[\n {\"value\": \"1.2.3.4\", \"scope\": \"Ip\"},\n {\"value\": \"1.2.3.999\", \"scope\": \"Ip\"}\n]";
        let e = parse(ListFormat::CrowdsecDecisions, "d.json", json).unwrap_err();
        assert!(e.to_string().contains("d.json:3"), "{e}");
        let e = parse(
            ListFormat::CrowdsecDecisions,
            "d.json",
            "[\n{\"scope\": 1}]",
        )
        .unwrap_err();
        assert!(e.to_string().contains("d.json:2"), "{e}");
    }
}
