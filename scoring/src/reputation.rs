//! IP reputation lists (`[[scoring.reputation]]`) as a feature and a reason: an address on a
//! list gets `reputation_lists` (how many lists name it) among its features, and the lists'
//! names among the reasons of its decisions (`reputation:<name>`). A match never blocks by
//! itself: the default `bad_reputation` rule only monitors; a rule written against
//! `reputation_lists` decides more.
//!
//! Lists are files in the formats `vigil-detect` reads (plain one-per-line, FireHOL netset,
//! CrowdSec decisions JSON), re-read when they change, at most every `refresh_secs` (a feed
//! updater such as `update-ipsets` or `cscli decisions list -o json` writes them); a file that
//! no longer parses keeps the lists loaded before it.

use crate::ScoringError;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use vigil_detect::{ListFormat, Reputation, ReputationList};

/// One `[[scoring.reputation]]` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReputationSource {
    /// Names the list in features' reasons (`reputation:<name>`).
    pub name: String,
    /// The list's file.
    pub path: PathBuf,
    /// `plain` (default), `netset` (FireHOL) or `crowdsec` (decisions JSON).
    #[serde(default = "plain")]
    pub format: String,
    /// The file is checked for changes at most this often. Default 300.
    #[serde(default = "five_minutes")]
    pub refresh_secs: u64,
}

fn plain() -> String {
    "plain".into()
}

fn five_minutes() -> u64 {
    300
}

fn format_of(key: &str, f: &str) -> Result<ListFormat, ScoringError> {
    match f {
        "plain" => Ok(ListFormat::Plain),
        "netset" => Ok(ListFormat::FireholNetset),
        "crowdsec" => Ok(ListFormat::CrowdsecDecisions),
        other => Err(ScoringError::config(
            key,
            format!("`{other}` is not a list format (plain, netset, crowdsec)"),
        )),
    }
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The configured lists, loaded.
pub struct Reputations {
    sources: Vec<(ReputationSource, ListFormat)>,
    lists: Vec<ReputationList>,
    merged: Reputation,
    mtimes: Vec<Option<SystemTime>>,
    checked: Instant,
    every: Duration,
}

impl Reputations {
    /// Loads every list; a missing or malformed file is an error naming its key.
    pub fn load(sources: &[ReputationSource]) -> Result<Self, ScoringError> {
        let mut checked = Vec::with_capacity(sources.len());
        let mut lists = Vec::with_capacity(sources.len());
        for (i, s) in sources.iter().enumerate() {
            let key = format!("scoring.reputation[{i}]");
            if s.name.trim().is_empty() {
                return Err(ScoringError::config(
                    format!("{key}.name"),
                    "must not be empty",
                ));
            }
            let format = format_of(&format!("{key}.format"), &s.format)?;
            lists
                .push(read(s, format).map_err(|m| ScoringError::config(format!("{key}.path"), m))?);
            checked.push((s.clone(), format));
        }
        let every = sources
            .iter()
            .map(|s| Duration::from_secs(s.refresh_secs))
            .min()
            .unwrap_or(Duration::MAX);
        Ok(Self {
            mtimes: sources.iter().map(|s| mtime(&s.path)).collect(),
            merged: Reputation::new(lists.iter().cloned()),
            lists,
            sources: checked,
            checked: Instant::now(),
            every,
        })
    }

    /// Whether any list is configured.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Re-reads the lists whose files changed, if the refresh interval has passed; a list
    /// that no longer parses is kept as it was (and logged).
    pub fn maybe_reload(&mut self) {
        if self.sources.is_empty() || self.checked.elapsed() < self.every {
            return;
        }
        self.checked = Instant::now();
        let mut changed = false;
        for (i, (s, format)) in self.sources.iter().enumerate() {
            let m = mtime(&s.path);
            if m == self.mtimes[i] {
                continue;
            }
            self.mtimes[i] = m;
            match read(s, *format) {
                Ok(l) => {
                    self.lists[i] = l;
                    changed = true;
                }
                Err(e) => {
                    tracing::warn!(list = %s.name, error = %e, "reputation list not reloaded")
                }
            }
        }
        if changed {
            self.merged = Reputation::new(self.lists.iter().cloned());
        }
    }

    /// The names of the lists that hold `ip` (a subject id), sorted, without repeats.
    pub fn lists_of(&self, ip: &str) -> Vec<&str> {
        let Ok(addr) = ip.parse::<IpAddr>() else {
            return Vec::new();
        };
        let mut v: Vec<&str> = self.merged.lookup(addr).map(|h| h.list.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

fn read(s: &ReputationSource, format: ListFormat) -> Result<ReputationList, String> {
    let text = std::fs::read_to_string(&s.path)
        .map_err(|e| format!("cannot read {}: {e}", s.path.display()))?;
    ReputationList::parse(format, &s.name, &text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_load_answer_and_reload_when_their_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, "# test\n203.0.113.0/24\n").unwrap();
        let src = ReputationSource {
            name: "bad".into(),
            path: path.clone(),
            format: "plain".into(),
            refresh_secs: 0,
        };
        let mut r = Reputations::load(std::slice::from_ref(&src)).unwrap();
        assert_eq!(r.lists_of("203.0.113.9"), ["bad"]);
        assert!(r.lists_of("198.51.100.1").is_empty());
        assert!(r.lists_of("not-an-ip").is_empty());
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "198.51.100.1\n").unwrap();
        // a coarse file clock: make the change visible
        let later = SystemTime::now() + Duration::from_secs(2);
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(later).unwrap();
        r.maybe_reload();
        assert_eq!(r.lists_of("198.51.100.1"), ["bad"]);
        assert!(r.lists_of("203.0.113.9").is_empty());
        // a broken file keeps the list as it was
        std::fs::write(&path, "not an address\n").unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(later + Duration::from_secs(2)).unwrap();
        r.maybe_reload();
        assert_eq!(r.lists_of("198.51.100.1"), ["bad"]);

        let bad_format = ReputationSource {
            format: "csv".into(),
            ..src.clone()
        };
        let e = Reputations::load(&[bad_format]).err().unwrap().to_string();
        assert!(e.contains("scoring.reputation[0].format"), "{e}");
        let missing = ReputationSource {
            path: dir.path().join("none.txt"),
            ..src
        };
        let e = Reputations::load(&[missing]).err().unwrap().to_string();
        assert!(e.contains("scoring.reputation[0].path"), "{e}");
    }
}
