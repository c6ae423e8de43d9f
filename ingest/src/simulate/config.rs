//! The simulator's configuration, its scenarios and its error type.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Largest `duration_secs` accepted: ten years of event time.
pub const MAX_DURATION_SECS: u64 = 10 * 365 * 86_400;
/// Largest `benign_users` accepted (each costs about half a kilobyte while generating).
pub const MAX_BENIGN_USERS: usize = 1_000_000;
/// Largest `benign_api_clients` accepted.
pub const MAX_BENIGN_API_CLIENTS: usize = 100_000;
/// Largest `attackers_per_scenario` accepted.
pub const MAX_ATTACKERS_PER_SCENARIO: usize = 1_000;
/// Last second whose timestamp every format can write with a four-digit year
/// (9999-12-31T23:59:59Z).
const MAX_UNIX_SECS: i64 = 253_402_300_799;

/// What to simulate. Every field has a default, so `{}` (or an empty TOML table) is a complete
/// configuration; unknown keys are rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Seed of every random choice: the same configuration and seed give the same bytes.
    /// Default 42.
    pub seed: u64,
    /// Event time of the run's start, in seconds since the Unix epoch (a fixed instant, never
    /// "now", so output is reproducible). Default 1_795_500_000 (2026-11-24T06:00:00Z).
    pub start_unix_secs: i64,
    /// Length of the run in event time. Default 3600.
    pub duration_secs: u64,
    /// Benign interactive users (browsers and the mobile app, with JWT sessions). Default 500.
    pub benign_users: usize,
    /// Benign server-to-server clients calling with an API key at a steady rate. Default 20.
    pub benign_api_clients: usize,
    /// Attackers started for each enabled scenario. Default 2.
    pub attackers_per_scenario: usize,
    /// Attack scenarios to run. Default: all of them.
    pub scenarios: Vec<Scenario>,
    /// Host (authority) of the simulated API gateway. Default "api.example.com".
    pub gateway_host: String,
    /// Attackers send requests this many times faster than the scenario's own pace (1 to 10),
    /// so a short run (`vigil demo`) shows what a longer attack does. Default 1.
    pub attack_pace: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            start_unix_secs: 1_795_500_000,
            duration_secs: 3600,
            benign_users: 500,
            benign_api_clients: 20,
            attackers_per_scenario: 2,
            scenarios: Scenario::ALL.to_vec(),
            gateway_host: "api.example.com".to_owned(),
            attack_pace: 1,
        }
    }
}

impl SimConfig {
    /// Checks every key; the error names the first offending key.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.duration_secs == 0 {
            return Err(invalid("duration_secs", "must be at least 1"));
        }
        if self.duration_secs > MAX_DURATION_SECS {
            return Err(invalid(
                "duration_secs",
                format!(
                    "{} is more than the maximum {MAX_DURATION_SECS} (ten years)",
                    self.duration_secs
                ),
            ));
        }
        if self.start_unix_secs < 0 {
            return Err(invalid(
                "start_unix_secs",
                format!("{} is before 1970-01-01T00:00:00Z", self.start_unix_secs),
            ));
        }
        // duration_secs <= MAX_DURATION_SECS, so the sum cannot overflow.
        let end = self
            .start_unix_secs
            .saturating_add(self.duration_secs as i64);
        if end > MAX_UNIX_SECS {
            return Err(invalid(
                "start_unix_secs",
                format!(
                    "the run would end after 9999-12-31T23:59:59Z (start {} + duration {} s)",
                    self.start_unix_secs, self.duration_secs
                ),
            ));
        }
        if self.benign_users > MAX_BENIGN_USERS {
            return Err(invalid(
                "benign_users",
                format!(
                    "{} is more than the maximum {MAX_BENIGN_USERS}",
                    self.benign_users
                ),
            ));
        }
        if self.benign_api_clients > MAX_BENIGN_API_CLIENTS {
            return Err(invalid(
                "benign_api_clients",
                format!(
                    "{} is more than the maximum {MAX_BENIGN_API_CLIENTS}",
                    self.benign_api_clients
                ),
            ));
        }
        if self.attackers_per_scenario > MAX_ATTACKERS_PER_SCENARIO {
            return Err(invalid(
                "attackers_per_scenario",
                format!(
                    "{} is more than the maximum {MAX_ATTACKERS_PER_SCENARIO}",
                    self.attackers_per_scenario
                ),
            ));
        }
        if !(1..=10).contains(&self.attack_pace) {
            return Err(invalid(
                "attack_pace",
                format!("{} is not between 1 and 10", self.attack_pace),
            ));
        }
        for (i, s) in self.scenarios.iter().enumerate() {
            if self.scenarios[..i].contains(s) {
                return Err(invalid(
                    "scenarios",
                    format!("`{}` is listed more than once", s.as_str()),
                ));
            }
        }
        validate_host(&self.gateway_host)?;
        let attackers = self.attackers_per_scenario;
        if attackers > 0 {
            if self.scenarios.contains(&Scenario::SessionTheft) && self.benign_users < attackers {
                return Err(invalid(
                    "benign_users",
                    format!(
                        "{} is fewer than attackers_per_scenario ({attackers}): each \
                         session_theft attacker replays the session of a distinct benign user",
                        self.benign_users
                    ),
                ));
            }
            if self.scenarios.contains(&Scenario::ApiKeyAbuse)
                && self.benign_api_clients < attackers
            {
                return Err(invalid(
                    "benign_api_clients",
                    format!(
                        "{} is fewer than attackers_per_scenario ({attackers}): each \
                         api_key_abuse attacker abuses the key of a distinct benign API client",
                        self.benign_api_clients
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Event-time start of the run, in microseconds.
    pub(crate) fn start_us(&self) -> i64 {
        self.start_unix_secs.saturating_mul(1_000_000)
    }

    /// Event-time end of the run (exclusive), in microseconds.
    pub(crate) fn end_us(&self) -> i64 {
        self.start_us()
            .saturating_add((self.duration_secs as i64).saturating_mul(1_000_000))
    }
}

fn validate_host(host: &str) -> Result<(), SimError> {
    if host.is_empty() {
        return Err(invalid("gateway_host", "must not be empty"));
    }
    if host.len() > 253 {
        return Err(invalid("gateway_host", "is longer than 253 characters"));
    }
    let ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    if !ok {
        return Err(invalid(
            "gateway_host",
            format!("{host:?} is not a host name (letters, digits, `.`, `-`, `_`, `:port`)"),
        ));
    }
    Ok(())
}

fn invalid(key: &'static str, message: impl Into<String>) -> SimError {
    SimError::InvalidConfig {
        key,
        message: message.into(),
    }
}

/// Why a simulation could not be set up. All are caller (configuration) errors: retrying the
/// same input fails the same way.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// A configuration key has an unusable value.
    #[error("invalid simulate config: `{key}` {message}")]
    InvalidConfig {
        /// The offending key, as written in the configuration.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A scenario name that is not one of [`Scenario::ALL`].
    #[error("unknown scenario `{name}` (expected one of: {expected})")]
    UnknownScenario {
        /// The name given.
        name: String,
        /// The accepted names, comma separated.
        expected: &'static str,
    },
    /// A format name that is not one of [`crate::simulate::SimFormat::ALL`].
    #[error("unknown simulate format `{name}` (expected one of: {expected})")]
    UnknownFormat {
        /// The name given.
        name: String,
        /// The accepted names, comma separated.
        expected: &'static str,
    },
}

/// A labelled attack scenario. Each attacker of a scenario is labelled by the subjects an
/// engine should act on (see [`crate::simulate::Label`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// One IP trying many username/password pairs on `/login` (label: `ip`).
    CredentialStuffing,
    /// A botnet of many IPs, each trying a few passwords of one account (label: `identity`).
    DistributedBruteForce,
    /// A crawler walking the product catalogue at a machine-regular pace (label: `identity`
    /// and `session` when logged in, else `ip`).
    Scraping,
    /// An IP probing for leaked files and admin consoles (label: `ip`).
    SensitivePathScan,
    /// A benign user's session and JWT replayed from another network and client (label:
    /// `session`).
    SessionTheft,
    /// A leaked API key used at a high rate from many IPs on new routes (label: `api_key`).
    ApiKeyAbuse,
    /// An account walking sequential user ids (label: `identity`).
    IdEnumeration,
    /// An account downloading exports of many megabytes each, steadily (label: `identity`).
    DataExfiltration,
    /// An attacker probing the API's parameters with injection payloads (SQL, XSS, traversal,
    /// command and template injection, SSRF) or known-CVE exploit paths (label: `ip`, and
    /// `identity` when it probes logged in).
    InjectionProbing,
}

const SCENARIO_NAMES: &str = "credential_stuffing, distributed_brute_force, scraping, \
                              sensitive_path_scan, session_theft, api_key_abuse, id_enumeration, \
                              data_exfiltration, injection_probing";

impl Scenario {
    /// Every scenario, in a fixed order.
    pub const ALL: [Scenario; 9] = [
        Scenario::CredentialStuffing,
        Scenario::DistributedBruteForce,
        Scenario::Scraping,
        Scenario::SensitivePathScan,
        Scenario::SessionTheft,
        Scenario::ApiKeyAbuse,
        Scenario::IdEnumeration,
        Scenario::DataExfiltration,
        Scenario::InjectionProbing,
    ];

    /// The scenario's snake_case name, as in labels and configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scenario::CredentialStuffing => "credential_stuffing",
            Scenario::DistributedBruteForce => "distributed_brute_force",
            Scenario::Scraping => "scraping",
            Scenario::SensitivePathScan => "sensitive_path_scan",
            Scenario::SessionTheft => "session_theft",
            Scenario::ApiKeyAbuse => "api_key_abuse",
            Scenario::IdEnumeration => "id_enumeration",
            Scenario::DataExfiltration => "data_exfiltration",
            Scenario::InjectionProbing => "injection_probing",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scenario {
    type Err = SimError;

    /// Accepts the snake_case name, or the same with `-` for `_` (as typed on a command line).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Scenario::ALL
            .into_iter()
            .find(|sc| {
                let name = sc.as_str();
                name.len() == wanted.len()
                    && name
                        .bytes()
                        .zip(wanted.bytes())
                        .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
            })
            .ok_or_else(|| SimError::UnknownScenario {
                name: s.to_owned(),
                expected: SCENARIO_NAMES,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(SimConfig::default().validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_key() {
        let cases: Vec<(SimConfig, &str)> = vec![
            (
                SimConfig {
                    duration_secs: 0,
                    ..SimConfig::default()
                },
                "duration_secs",
            ),
            (
                SimConfig {
                    duration_secs: MAX_DURATION_SECS + 1,
                    ..SimConfig::default()
                },
                "duration_secs",
            ),
            (
                SimConfig {
                    start_unix_secs: -1,
                    ..SimConfig::default()
                },
                "start_unix_secs",
            ),
            (
                SimConfig {
                    start_unix_secs: i64::MAX,
                    ..SimConfig::default()
                },
                "start_unix_secs",
            ),
            (
                SimConfig {
                    benign_users: usize::MAX,
                    ..SimConfig::default()
                },
                "benign_users",
            ),
            (
                SimConfig {
                    benign_api_clients: usize::MAX,
                    ..SimConfig::default()
                },
                "benign_api_clients",
            ),
            (
                SimConfig {
                    attackers_per_scenario: usize::MAX,
                    ..SimConfig::default()
                },
                "attackers_per_scenario",
            ),
            (
                SimConfig {
                    scenarios: vec![Scenario::Scraping, Scenario::Scraping],
                    ..SimConfig::default()
                },
                "scenarios",
            ),
            (
                SimConfig {
                    gateway_host: String::new(),
                    ..SimConfig::default()
                },
                "gateway_host",
            ),
            (
                SimConfig {
                    gateway_host: "a b\"".into(),
                    ..SimConfig::default()
                },
                "gateway_host",
            ),
            (
                SimConfig {
                    benign_users: 1,
                    ..SimConfig::default()
                },
                "benign_users",
            ),
            (
                SimConfig {
                    benign_api_clients: 0,
                    ..SimConfig::default()
                },
                "benign_api_clients",
            ),
        ];
        for (cfg, key) in cases {
            match cfg.validate() {
                Err(SimError::InvalidConfig {
                    key: k,
                    ref message,
                }) => {
                    assert_eq!(k, key, "{message}");
                    let shown = cfg.validate().unwrap_err().to_string();
                    assert!(shown.contains(key), "{shown}");
                }
                other => panic!("expected an error for `{key}`, got {other:?}"),
            }
        }
    }

    #[test]
    fn victims_are_only_needed_when_their_scenario_runs() {
        let cfg = SimConfig {
            benign_users: 0,
            benign_api_clients: 0,
            scenarios: vec![Scenario::Scraping, Scenario::CredentialStuffing],
            ..SimConfig::default()
        };
        assert_eq!(cfg.validate(), Ok(()));
        let cfg = SimConfig {
            benign_users: 0,
            benign_api_clients: 0,
            attackers_per_scenario: 0,
            ..SimConfig::default()
        };
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn scenario_names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.as_str().parse::<Scenario>(), Ok(s));
            assert_eq!(s.as_str().replace('_', "-").parse::<Scenario>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert!(SCENARIO_NAMES.contains(s.as_str()));
        }
        let err = "nope".parse::<Scenario>().unwrap_err().to_string();
        assert!(err.contains("credential_stuffing"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<SimConfig>(r#"{"seed":1,"bogus":2}"#).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let cfg: SimConfig = serde_json::from_str(r#"{"seed":7}"#).unwrap();
        assert_eq!(cfg.seed, 7);
        assert_eq!(cfg.duration_secs, 3600);
    }
}
