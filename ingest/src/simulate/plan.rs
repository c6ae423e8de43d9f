//! The cast of a simulation, decided once from the seed: benign users and API clients with
//! their addresses and devices, attackers with their windows and targets, and the labels.
//! Nothing here changes while requests are generated, so every call of
//! [`super::Simulation::requests`] replays the same traffic.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};

use super::injection::Payloads;
use super::stacks::{self, Stack};
use super::traffic::{
    self, APPS, BOT_TOOLS, BOTNET, BROWSERS, CLOUD, CORPORATE, CRAWLERS, HOSTING, LIBRARIES,
    MOBILE, PRODUCT_MAX, RESIDENTIAL, SCANNERS, SimRng, UaMode, chance, index, uniform, weighted,
};
use super::{Label, Scenario, SimConfig};
use crate::normalize::api_key_id;

/// Browser sessions end after this long (re-login), app sessions after [`APP_SESSION_MAX_S`].
pub(crate) const BROWSER_SESSION_MAX_S: f64 = 10.0 * 3600.0;
pub(crate) const APP_SESSION_MAX_S: f64 = 14.0 * 86_400.0;
/// Access-token lifetimes; clients refresh them with the session's refresh cookie.
pub(crate) const BROWSER_TOKEN_TTL_S: i64 = 30 * 60;
pub(crate) const APP_TOKEN_TTL_S: i64 = 60 * 60;

pub(crate) struct Plan {
    pub users: Vec<UserPlan>,
    pub clients: Vec<ClientPlan>,
    pub attacks: Vec<AttackPlan>,
    pub labels: Vec<Label>,
    /// Carrier-grade-NAT egress addresses that mobile users roam across.
    pub mobile_pool: Vec<String>,
    pub issuer: String,
    pub web_origin: String,
}

/// A benign interactive user.
pub(crate) struct UserPlan {
    pub name: String,
    /// Home broadband or the office NAT.
    pub home_ip: String,
    /// Internal address added to `X-Forwarded-For` by an office's explicit proxy.
    pub proxy_xff: Option<String>,
    pub ua: &'static str,
    /// The shop's mobile app (no static assets, no referer, long sessions).
    pub app: bool,
    /// Roams onto mobile networks between visits.
    pub roams: bool,
    /// Staff account that downloads reports and exports now and then.
    pub staff: bool,
    pub tls: &'static str,
    /// Set for the victims of session theft: one session for the whole run, and activity
    /// guaranteed while the thief is active.
    pub pinned: Option<PinnedSession>,
}

pub(crate) struct PinnedSession {
    pub sid: String,
    pub jwt: String,
    pub active_from_us: i64,
    pub active_to_us: i64,
}

/// A benign server-to-server client authenticating with an API key.
pub(crate) struct ClientPlan {
    pub key: String,
    pub ip: String,
    pub ua: &'static str,
    pub tls: &'static str,
    pub routes: Vec<ClientRoute>,
    pub period_s: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientRoute {
    Inventory,
    ProductsUpdated,
    OrderStatus,
    CreateOrder,
    Prices,
    WebhookAck,
    Shipment,
}

const CLIENT_ROUTES: [ClientRoute; 7] = [
    ClientRoute::Inventory,
    ClientRoute::ProductsUpdated,
    ClientRoute::OrderStatus,
    ClientRoute::CreateOrder,
    ClientRoute::Prices,
    ClientRoute::WebhookAck,
    ClientRoute::Shipment,
];

/// An account an attacker logged into (its first request is that login).
pub(crate) struct Account {
    pub name: String,
    pub sid: String,
    pub jwt: String,
}

pub(crate) struct AttackPlan {
    pub scenario: Scenario,
    pub start_us: i64,
    /// Exclusive; never after the run's end.
    pub end_us: i64,
    pub kind: AttackKind,
    /// The attacker's program (its fingerprints), whatever user agents it sends.
    pub stack: &'static Stack,
}

pub(crate) enum AttackKind {
    CredentialStuffing {
        ip: String,
        ua: UaMode,
        /// Sends a random `X-Forwarded-For` with every request, hoping the gateway trusts it.
        spoof_xff: bool,
        median_interval_s: f64,
    },
    DistributedBruteForce {
        target: String,
        botnet: Vec<String>,
        mean_interval_s: f64,
    },
    Scraping {
        account: Option<Account>,
        ip: String,
        ua: &'static str,
        period_s: f64,
        first_id: u32,
        stride: u32,
    },
    SensitivePathScan {
        ip: String,
        ua: UaMode,
        /// Index walk over the probe list: `(offset + k * stride) % len`.
        offset: usize,
        stride: usize,
        count: usize,
        mean_interval_s: f64,
    },
    SessionTheft {
        victim: usize,
        ip: String,
        ua: &'static str,
        tls: &'static str,
    },
    ApiKeyAbuse {
        client: usize,
        ips: Vec<String>,
        mean_interval_s: f64,
    },
    IdEnumeration {
        account: Account,
        ip: String,
        ua: &'static str,
        first_id: u64,
        median_interval_s: f64,
    },
    DataExfiltration {
        account: Account,
        ip: String,
        ua: &'static str,
        period_s: f64,
    },
    InjectionProbing {
        /// Probes logged in (odd attackers) or anonymously.
        account: Option<Account>,
        ip: String,
        ua: UaMode,
        payloads: Payloads,
        mean_interval_s: f64,
    },
}

/// Attack windows: `(shortest, longest)` in seconds, before clamping to the run's end.
fn attack_length_s(s: Scenario) -> (f64, f64) {
    match s {
        Scenario::CredentialStuffing => (240.0, 600.0),
        Scenario::DistributedBruteForce => (480.0, 1200.0),
        Scenario::Scraping => (420.0, 900.0),
        Scenario::SensitivePathScan => (300.0, 600.0),
        Scenario::SessionTheft => (300.0, 900.0),
        Scenario::ApiKeyAbuse => (240.0, 480.0),
        Scenario::IdEnumeration => (300.0, 720.0),
        Scenario::DataExfiltration => (600.0, 1800.0),
        Scenario::InjectionProbing => (240.0, 720.0),
    }
}

/// Number of distinct sensitive-path probes ([`super::attacks`] renders them).
pub(crate) fn probe_count() -> usize {
    super::attacks::PROBE_PATHS.len() * super::attacks::PROBE_PREFIXES.len()
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A stride coprime with `len`, so `(offset + k * stride) % len` visits every index once.
fn coprime_stride(rng: &mut SimRng, len: usize) -> usize {
    const CANDIDATES: [usize; 10] = [7, 11, 13, 17, 19, 23, 29, 31, 37, 41];
    for _ in 0..CANDIDATES.len() {
        let s = CANDIDATES[index(rng, CANDIDATES.len())];
        if len > 0 && gcd(s, len) == 1 {
            return s;
        }
    }
    1
}

struct Builder<'c> {
    cfg: &'c SimConfig,
    rng: SimRng,
    used_ips: HashSet<u32>,
    accounts: AccountNumbers,
    issuer: String,
    /// Office egress NATs, each shared by many benign users.
    offices: Vec<String>,
}

/// Draws distinct account numbers for every account in the run, spread over a range ten times
/// larger than needed, so an account's number says nothing about its role.
struct AccountNumbers {
    used: HashSet<u64>,
    range: u64,
}

impl AccountNumbers {
    fn next(&mut self, rng: &mut SimRng) -> String {
        let mut n = rng.random_range(1..=self.range);
        while !self.used.insert(n) {
            n = rng.random_range(1..=self.range);
        }
        format!("user-{n}")
    }
}

impl Plan {
    pub(crate) fn build(cfg: &SimConfig) -> Plan {
        let attackers = cfg.attackers_per_scenario * cfg.scenarios.len();
        let accounts = AccountNumbers {
            used: HashSet::with_capacity(cfg.benign_users + attackers),
            range: ((cfg.benign_users + attackers) as u64 * 10).max(10_000),
        };
        let mut b = Builder {
            cfg,
            rng: SimRng::seed_from_u64(cfg.seed),
            used_ips: HashSet::new(),
            accounts,
            issuer: traffic::issuer(&cfg.gateway_host),
            offices: Vec::new(),
        };
        let mobile_pool: Vec<String> = (0..(cfg.benign_users / 12).max(16))
            .map(|_| traffic::ip_in(&mut b.rng, MOBILE))
            .collect();
        let mut users = b.users();
        let mut clients = b.clients();
        let mut attacks = Vec::new();
        let mut labels = Vec::new();
        for &scenario in &cfg.scenarios {
            let victims = b.distinct(users.len(), cfg.attackers_per_scenario);
            let client_victims = b.distinct(clients.len(), cfg.attackers_per_scenario);
            for i in 0..cfg.attackers_per_scenario {
                let attack = b.attack(scenario, i, &victims, &client_victims, &mut users, &clients);
                labels.extend(attack_labels(&attack, &users, &clients));
                attacks.push(attack);
            }
        }
        // A stable order (by start, then plan order) reads better in the labels file.
        labels.sort_by_key(|l| l.start_us);
        clients.shrink_to_fit();
        Plan {
            users,
            clients,
            attacks,
            labels,
            mobile_pool,
            issuer: b.issuer,
            web_origin: traffic::web_origin(&cfg.gateway_host),
        }
    }
}

impl Builder<'_> {
    fn users(&mut self) -> Vec<UserPlan> {
        let n = self.cfg.benign_users;
        // Offices: about one NAT per 150 users, each shared by the users assigned to it.
        self.offices = (0..(n / 150).max(1))
            .map(|_| traffic::unique_ip(&mut self.rng, CORPORATE, &mut self.used_ips))
            .collect();
        let offices = self.offices.clone();
        let mut users = Vec::with_capacity(n);
        let mut last_home: Option<String> = None;
        for _ in 0..n {
            let rng = &mut self.rng;
            let name = self.accounts.next(rng);
            let app = chance(rng, 0.35);
            let ua = if app {
                weighted(rng, APPS)
            } else {
                weighted(rng, BROWSERS)
            };
            let mobile_browser = ua.contains("iPhone") || ua.contains("Android");
            let office = !app && chance(rng, 0.18);
            let (home_ip, proxy_xff) = if office {
                let ip = offices[index(rng, offices.len())].clone();
                let xff = chance(rng, 0.4).then(|| traffic::internal_ip(rng));
                (ip, xff)
            } else if let (Some(prev), true) = (&last_home, chance(rng, 0.06)) {
                // A second person in the same household.
                (prev.clone(), None)
            } else {
                (
                    traffic::unique_ip(rng, RESIDENTIAL, &mut self.used_ips),
                    None,
                )
            };
            if !office {
                last_home = Some(home_ip.clone());
            }
            let rng = &mut self.rng;
            users.push(UserPlan {
                name,
                home_ip,
                proxy_xff,
                ua,
                app,
                roams: app || mobile_browser,
                staff: !app && chance(rng, 0.02),
                tls: if chance(rng, 0.03) {
                    "TLSv1.2"
                } else {
                    "TLSv1.3"
                },
                pinned: None,
            });
        }
        users
    }

    fn clients(&mut self) -> Vec<ClientPlan> {
        (0..self.cfg.benign_api_clients)
            .map(|_| {
                let ip = traffic::unique_ip(&mut self.rng, CLOUD, &mut self.used_ips);
                let rng = &mut self.rng;
                let key = traffic::api_key(rng);
                let ua = weighted(rng, LIBRARIES);
                let tls = if ua.starts_with("Apache") || chance(rng, 0.25) {
                    "TLSv1.2"
                } else {
                    "TLSv1.3"
                };
                let n = rng.random_range(2..=4);
                let mut routes = Vec::with_capacity(n);
                while routes.len() < n {
                    let r = CLIENT_ROUTES[index(rng, CLIENT_ROUTES.len())];
                    if !routes.contains(&r) {
                        routes.push(r);
                    }
                }
                let period_s = traffic::lognormal(rng, 6.0, 0.8).clamp(1.0, 60.0);
                ClientPlan {
                    key,
                    ip,
                    ua,
                    tls,
                    routes,
                    period_s,
                }
            })
            .collect()
    }

    /// `k` distinct indices below `n` (fewer when `n < k`).
    fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(k.min(n));
        if n == 0 {
            return out;
        }
        if k >= n {
            out.extend(0..n);
            return out;
        }
        while out.len() < k {
            let i = index(&mut self.rng, n);
            if !out.contains(&i) {
                out.push(i);
            }
        }
        out
    }

    fn window(&mut self, scenario: Scenario) -> (i64, i64) {
        let start = self.cfg.start_us();
        let end = self.cfg.end_us();
        let half = (end - start) / 2;
        let lo = half / 25;
        let offset = lo + (self.rng.random::<f64>() * (half - lo) as f64) as i64;
        let (short, long) = attack_length_s(scenario);
        let len = traffic::secs_us(uniform(&mut self.rng, short, long));
        let s = start + offset.clamp(0, half.max(1) - 1);
        (s, s.saturating_add(len).min(end))
    }

    fn account(&mut self, login_us: i64) -> Account {
        let name = self.accounts.next(&mut self.rng);
        let sid = traffic::session_id(&mut self.rng);
        let iat = login_us.div_euclid(1_000_000);
        let jwt = traffic::jwt(&mut self.rng, &self.issuer, &name, &sid, iat, iat + 3600);
        Account { name, sid, jwt }
    }

    fn attack(
        &mut self,
        scenario: Scenario,
        i: usize,
        victims: &[usize],
        client_victims: &[usize],
        users: &mut [UserPlan],
        clients: &[ClientPlan],
    ) -> AttackPlan {
        let (start_us, end_us) = self.window(scenario);
        let kind = match scenario {
            Scenario::CredentialStuffing => {
                let ip = traffic::unique_ip(&mut self.rng, HOSTING, &mut self.used_ips);
                let rng = &mut self.rng;
                let ua = match rng.random_range(0..4) {
                    0 => UaMode::Fixed(traffic::browser(rng)),
                    1 => UaMode::RotateBrowsers,
                    _ => UaMode::Fixed(traffic::pick(rng, BOT_TOOLS)),
                };
                AttackKind::CredentialStuffing {
                    ip,
                    ua,
                    spoof_xff: chance(rng, 0.3),
                    median_interval_s: uniform(rng, 0.35, 0.8),
                }
            }
            Scenario::DistributedBruteForce => {
                let target = match victims.get(i) {
                    Some(&v) => users[v].name.clone(),
                    None => self.accounts.next(&mut self.rng),
                };
                let mean_interval_s = uniform(&mut self.rng, 0.8, 1.6);
                let expected = (end_us - start_us) as f64 / 1e6 / mean_interval_s;
                let size = (expected / 3.0).clamp(40.0, 5000.0) as usize;
                let botnet = (0..size)
                    .map(|_| traffic::unique_ip(&mut self.rng, BOTNET, &mut self.used_ips))
                    .collect();
                AttackKind::DistributedBruteForce {
                    target,
                    botnet,
                    mean_interval_s,
                }
            }
            Scenario::Scraping => {
                // Even attackers log in (labelled by identity and session), odd ones crawl
                // anonymously (labelled by IP).
                let account = i.is_multiple_of(2).then(|| self.account(start_us));
                let ip = traffic::unique_ip(&mut self.rng, HOSTING, &mut self.used_ips);
                let rng = &mut self.rng;
                let ua = traffic::pick(rng, CRAWLERS);
                AttackKind::Scraping {
                    account,
                    ip,
                    ua,
                    period_s: uniform(rng, 0.3, 0.6),
                    first_id: rng.random_range(1..=PRODUCT_MAX),
                    stride: if chance(rng, 0.5) { 1 } else { 7 },
                }
            }
            Scenario::SensitivePathScan => {
                let ip = traffic::unique_ip(&mut self.rng, HOSTING, &mut self.used_ips);
                let rng = &mut self.rng;
                let len = probe_count();
                let ua = match rng.random_range(0..10) {
                    0..=3 => UaMode::Fixed(traffic::pick(rng, SCANNERS)),
                    4..=6 => UaMode::Rotate(SCANNERS),
                    _ => UaMode::Fixed(traffic::browser(rng)),
                };
                AttackKind::SensitivePathScan {
                    ip,
                    ua,
                    offset: index(rng, len),
                    stride: coprime_stride(rng, len),
                    count: rng.random_range(len / 2..=len),
                    mean_interval_s: uniform(rng, 0.6, 1.4),
                }
            }
            Scenario::SessionTheft => {
                // validate() guarantees a distinct victim per attacker.
                let victim = victims.get(i).copied().unwrap_or(0);
                let ip = if chance(&mut self.rng, 0.5) {
                    traffic::unique_ip(&mut self.rng, HOSTING, &mut self.used_ips)
                } else {
                    traffic::unique_ip(&mut self.rng, BOTNET, &mut self.used_ips)
                };
                let rng = &mut self.rng;
                let (ua, tls) = if let Some(u) = users.get_mut(victim) {
                    let sid = traffic::session_id(rng);
                    let login_s = self.cfg.start_unix_secs - rng.random_range(600..7200);
                    let ttl = (self.cfg.duration_secs as i64 + 86_400).min(30 * 86_400);
                    let jwt =
                        traffic::jwt(rng, &self.issuer, &u.name, &sid, login_s, login_s + ttl);
                    u.pinned = Some(PinnedSession {
                        sid,
                        jwt,
                        active_from_us: start_us - 120_000_000,
                        active_to_us: end_us + 120_000_000,
                    });
                    // Another kind of client than the victim's.
                    let ua = loop {
                        let candidate = if chance(rng, 0.3) {
                            traffic::pick(rng, BOT_TOOLS)
                        } else {
                            traffic::browser(rng)
                        };
                        if candidate != u.ua {
                            break candidate;
                        }
                    };
                    (
                        ua,
                        if u.tls == "TLSv1.3" {
                            "TLSv1.2"
                        } else {
                            "TLSv1.3"
                        },
                    )
                } else {
                    (traffic::browser(rng), "TLSv1.3")
                };
                AttackKind::SessionTheft {
                    victim,
                    ip,
                    ua,
                    tls,
                }
            }
            Scenario::ApiKeyAbuse => {
                let client = client_victims.get(i).copied().unwrap_or(0);
                let n = self.rng.random_range(20..=60);
                let ips = (0..n)
                    .map(|k| {
                        let blocks = if k % 3 == 0 { HOSTING } else { BOTNET };
                        traffic::unique_ip(&mut self.rng, blocks, &mut self.used_ips)
                    })
                    .collect();
                AttackKind::ApiKeyAbuse {
                    client,
                    ips,
                    // Far above the key's usual rate, whatever that is.
                    mean_interval_s: uniform(&mut self.rng, 0.25, 0.5)
                        .min(clients.get(client).map_or(1.0, |c| c.period_s / 10.0)),
                }
            }
            Scenario::IdEnumeration => {
                let account = self.account(start_us);
                let blocks = if chance(&mut self.rng, 0.5) {
                    HOSTING
                } else {
                    RESIDENTIAL
                };
                let ip = traffic::unique_ip(&mut self.rng, blocks, &mut self.used_ips);
                let rng = &mut self.rng;
                let ua = if chance(rng, 0.5) {
                    traffic::pick(rng, BOT_TOOLS)
                } else {
                    traffic::browser(rng)
                };
                AttackKind::IdEnumeration {
                    account,
                    ip,
                    ua,
                    first_id: if i == 0 {
                        1001
                    } else {
                        rng.random_range(1000..50_000)
                    },
                    median_interval_s: uniform(rng, 0.5, 1.2),
                }
            }
            Scenario::DataExfiltration => {
                let account = self.account(start_us);
                // An insider: usually from an office NAT shared with colleagues, else from home.
                let ip = if !self.offices.is_empty() && chance(&mut self.rng, 0.6) {
                    self.offices[index(&mut self.rng, self.offices.len())].clone()
                } else {
                    traffic::unique_ip(&mut self.rng, RESIDENTIAL, &mut self.used_ips)
                };
                let rng = &mut self.rng;
                let ua = if chance(rng, 0.3) {
                    "curl/8.5.0"
                } else {
                    traffic::browser(rng)
                };
                AttackKind::DataExfiltration {
                    account,
                    ip,
                    ua,
                    period_s: uniform(rng, 15.0, 35.0),
                }
            }
            Scenario::InjectionProbing => {
                let account = (i % 2 == 1).then(|| self.account(start_us));
                let ip = traffic::unique_ip(&mut self.rng, HOSTING, &mut self.used_ips);
                let rng = &mut self.rng;
                let payloads = Payloads::ALL[(i + index(rng, 5)) % Payloads::ALL.len()];
                let ua = match (payloads, rng.random_range(0..3)) {
                    (Payloads::Sqli, 0) => UaMode::Fixed(SCANNERS[0]),
                    (Payloads::CveScan, 0) => UaMode::Fixed(SCANNERS[3]),
                    (Payloads::Mixed, 0) => UaMode::Fixed(SCANNERS[7]),
                    (_, 1) => UaMode::RotateBrowsers,
                    _ => UaMode::Fixed(traffic::browser(rng)),
                };
                AttackKind::InjectionProbing {
                    account,
                    ip,
                    ua,
                    payloads,
                    mean_interval_s: uniform(rng, 0.4, 2.5),
                }
            }
        };
        let stack = attack_stack(&kind, users);
        AttackPlan {
            scenario,
            start_us,
            end_us,
            kind,
            stack,
        }
    }
}

/// An attacker's program: its tool's, or a script's behind a borrowed browser user agent; a
/// botnet runs one program on all its bots; a stolen session is replayed from another program
/// than its owner's.
fn attack_stack(kind: &AttackKind, users: &[UserPlan]) -> &'static Stack {
    let mode = |ua: &UaMode, key: &str| match *ua {
        UaMode::Fixed(ua) => stacks::of_tool(ua, key),
        UaMode::Rotate(pool) => stacks::of_tool(pool[0], key),
        UaMode::RotateBrowsers => stacks::scripted(key),
    };
    match kind {
        AttackKind::CredentialStuffing { ip, ua, .. }
        | AttackKind::SensitivePathScan { ip, ua, .. }
        | AttackKind::InjectionProbing { ip, ua, .. } => mode(ua, ip),
        AttackKind::DistributedBruteForce { target, .. } => stacks::scripted(target),
        AttackKind::Scraping { ip, ua, .. } => stacks::of_tool(ua, ip),
        AttackKind::SessionTheft { victim, ip, ua, .. } => {
            let own = stacks::of_user_agent(ua);
            let victims = users.get(*victim).map(|u| stacks::of_user_agent(u.ua));
            if victims == Some(own) {
                stacks::scripted(ip)
            } else {
                own
            }
        }
        AttackKind::ApiKeyAbuse { ips, .. } => {
            stacks::scripted(ips.first().map_or("", String::as_str))
        }
        // A logged-in account: a browser (a script in its console) or a tool.
        AttackKind::IdEnumeration { ua, .. } | AttackKind::DataExfiltration { ua, .. } => {
            stacks::of_user_agent(ua)
        }
    }
}

fn attack_labels(a: &AttackPlan, users: &[UserPlan], clients: &[ClientPlan]) -> Vec<Label> {
    let label = |kind: &'static str, id: &str| Label {
        kind,
        id: id.to_owned(),
        scenario: a.scenario,
        start_us: a.start_us,
    };
    match &a.kind {
        AttackKind::CredentialStuffing { ip, .. } | AttackKind::SensitivePathScan { ip, .. } => {
            vec![label("ip", ip)]
        }
        AttackKind::DistributedBruteForce { target, .. } => vec![label("identity", target)],
        AttackKind::Scraping { account, ip, .. } => match account {
            Some(acc) => vec![label("identity", &acc.name), label("session", &acc.sid)],
            None => vec![label("ip", ip)],
        },
        AttackKind::SessionTheft { victim, .. } => users
            .get(*victim)
            .and_then(|u| u.pinned.as_ref())
            .map(|p| vec![label("session", &p.sid)])
            .unwrap_or_default(),
        AttackKind::ApiKeyAbuse { client, .. } => clients
            .get(*client)
            .map(|c| vec![label("api_key", &api_key_id(&c.key))])
            .unwrap_or_default(),
        AttackKind::IdEnumeration { account, .. }
        | AttackKind::DataExfiltration { account, .. } => vec![label("identity", &account.name)],
        AttackKind::InjectionProbing { account, ip, .. } => match account {
            Some(acc) => vec![label("ip", ip), label("identity", &acc.name)],
            None => vec![label("ip", ip)],
        },
    }
}
