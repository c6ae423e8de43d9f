//! Attack traffic: one state machine per attacker, driven by its [`AttackPlan`].

use rand::Rng;

use super::SimRequest;
use super::actors::Ctx;
use super::injection::injection_draft;
use super::plan::{Account, AttackKind, AttackPlan};
use super::stacks;
use super::traffic::{
    self, BOT_TOOLS, Draft, PRODUCT_MAX, RESIDENTIAL, Service, SimRng, Who, chance, error_body,
    exponential, index, lognormal, pick, popular_product, product_exists, secs_us, uniform,
    weighted,
};
use super::users::{Route, login_draft, user_draft};

/// Paths a sensitive-path scanner probes, each also tried under every [`PROBE_PREFIXES`] entry.
pub(crate) const PROBE_PATHS: &[&str] = &[
    "/.env",
    "/.env.local",
    "/.env.production",
    "/.env.bak",
    "/.git/config",
    "/.git/HEAD",
    "/.svn/entries",
    "/.DS_Store",
    "/.aws/credentials",
    "/.ssh/id_rsa",
    "/.htpasswd",
    "/.vscode/sftp.json",
    "/.dockerenv",
    "/wp-admin/",
    "/wp-login.php",
    "/wp-config.php.bak",
    "/xmlrpc.php",
    "/actuator/env",
    "/actuator/health",
    "/actuator/heapdump",
    "/actuator/mappings",
    "/server-status",
    "/server-info",
    "/backup.sql",
    "/dump.sql",
    "/db.sql",
    "/backup.zip",
    "/backup.tar.gz",
    "/site.tar.gz",
    "/phpmyadmin/",
    "/pma/",
    "/admin/",
    "/administrator/",
    "/config.json",
    "/config.yml",
    "/settings.py",
    "/docker-compose.yml",
    "/composer.json",
    "/package.json",
    "/swagger.json",
    "/swagger-ui.html",
    "/v2/api-docs",
    "/graphql",
    "/console",
    "/debug/pprof/",
    "/info.php",
    "/phpinfo.php",
    "/test.php",
    "/manager/html",
    "/jenkins/login",
    "/solr/admin/info/system",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/_ignition/execute-solution",
    "/telescope/requests",
    "/storage/logs/laravel.log",
    "/cgi-bin/luci",
    "/owa/auth/logon.aspx",
    "/robots.txt",
    "/static/..%2f..%2f..%2fetc/passwd",
    "/users?id=1%27%20OR%20%271%27=%271",
    "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
    "/products?id=1%20UNION%20SELECT%20username,password%20FROM%20users--",
];

/// Directory prefixes a scanner tries each probe under.
pub(crate) const PROBE_PREFIXES: &[&str] =
    &["", "/api", "/app", "/admin", "/backend", "/old", "/v1"];

pub(super) struct AttackState<'a> {
    plan: &'a AttackPlan,
    /// Requests sent so far.
    k: u64,
}

fn attacker(ip: &str, ua: &'static str) -> Who {
    Who {
        client_ip: ip.to_owned(),
        forwarded_for: Vec::new(),
        identity: None,
        session: None,
        jwt: None,
        api_key: None,
        user_agent: ua,
        referer: None,
        tls_version: "TLSv1.3",
        stack: stacks::of_user_agent(ua),
    }
}

fn logged_in(ip: &str, ua: &'static str, account: &Account) -> Who {
    Who {
        identity: Some(account.name.clone()),
        session: Some(account.sid.clone()),
        jwt: Some(account.jwt.clone()),
        ..attacker(ip, ua)
    }
}

fn rate_limited(rng: &mut SimRng, d: &mut Draft) {
    d.status = 429;
    d.bytes_out = error_body(rng, 429);
    d.upstream_ms = uniform(rng, 0.1, 0.5);
}

impl<'a> AttackState<'a> {
    pub(super) fn new(plan: &'a AttackPlan) -> Self {
        AttackState { plan, k: 0 }
    }

    /// When the attack stops (exclusive).
    pub(super) fn end_us(&self) -> i64 {
        self.plan.end_us
    }

    /// The next attack request, and when the one after it is due (`None`: the attack is over).
    pub(super) fn step(
        &mut self,
        rng: &mut SimRng,
        now: i64,
        ctx: &Ctx<'_>,
    ) -> (SimRequest, Option<i64>) {
        let k = self.k;
        self.k += 1;
        let scenario = Some(self.plan.scenario);
        let (who, draft, next): (Who, Draft, Option<i64>) = match &self.plan.kind {
            AttackKind::CredentialStuffing {
                ip,
                ua,
                spoof_xff,
                median_interval_s,
            } => {
                let users = &ctx.plan.users;
                let real = !users.is_empty() && chance(rng, 0.12);
                let name = if real {
                    users[index(rng, users.len())].name.clone()
                } else {
                    traffic::combo_username(rng)
                };
                let ok = real && chance(rng, 0.25);
                let mut draft = login_draft(rng, &name, ok);
                if draft.status == 401 && chance(rng, 0.02) {
                    rate_limited(rng, &mut draft);
                }
                let mut who = attacker(ip, ua.pick(rng));
                if *spoof_xff {
                    who.forwarded_for = vec![traffic::ip_in(rng, RESIDENTIAL)];
                }
                who.identity = Some(name);
                let wait = lognormal(rng, *median_interval_s, 0.5).min(30.0);
                (who, draft, Some(now + secs_us(wait)))
            }
            AttackKind::DistributedBruteForce {
                target,
                botnet,
                mean_interval_s,
            } => {
                let ip = botnet
                    .get(index(rng, botnet.len()))
                    .map_or("0.0.0.0", String::as_str);
                let mut who = attacker(ip, traffic::browser(rng));
                who.identity = Some(target.clone());
                let mut draft = login_draft(rng, target, false);
                if chance(rng, 0.04) {
                    rate_limited(rng, &mut draft);
                }
                let wait = exponential(rng, *mean_interval_s);
                (who, draft, Some(now + secs_us(wait)))
            }
            AttackKind::Scraping {
                account,
                ip,
                ua,
                period_s,
                first_id,
                stride,
            } => {
                let who = match account {
                    Some(acc) => logged_in(ip, ua, acc),
                    None => attacker(ip, ua),
                };
                let draft = if k % 12 == 11 {
                    g_list(rng, k / 12 + 1)
                } else {
                    let j = k - k / 12;
                    let id = ((u64::from(*first_id) - 1 + j * u64::from(*stride))
                        % u64::from(PRODUCT_MAX)
                        + 1) as u32;
                    product_draft(rng, id)
                };
                let wait = period_s * (1.0 + uniform(rng, -0.03, 0.03));
                (who, draft, Some(now + secs_us(wait)))
            }
            AttackKind::SensitivePathScan {
                ip,
                ua,
                offset,
                stride,
                count,
                mean_interval_s,
            } => {
                let len = PROBE_PATHS.len() * PROBE_PREFIXES.len();
                let i = (offset + k as usize * stride) % len;
                let prefix = PROBE_PREFIXES[i / PROBE_PATHS.len()];
                let probe = PROBE_PATHS[i % PROBE_PATHS.len()];
                let draft = probe_draft(rng, prefix, probe);
                let mut wait = exponential(rng, *mean_interval_s);
                if chance(rng, 0.03) {
                    wait += uniform(rng, 5.0, 25.0);
                }
                let mut who = attacker(ip, ua.pick(rng));
                who.tls_version = "TLSv1.2";
                let next = (self.k < *count as u64).then(|| now + secs_us(wait));
                (who, draft, next)
            }
            AttackKind::SessionTheft {
                victim,
                ip,
                ua,
                tls,
            } => {
                let mut who = attacker(ip, ua);
                who.tls_version = tls;
                if let Some(u) = ctx.plan.users.get(*victim) {
                    who.identity = Some(u.name.clone());
                    if let Some(p) = &u.pinned {
                        who.session = Some(p.sid.clone());
                        who.jwt = Some(p.jwt.clone());
                    }
                }
                if ua.starts_with("Mozilla") {
                    who.referer = Some(format!("{}/account", ctx.plan.web_origin));
                }
                let draft = theft_draft(rng);
                let wait = lognormal(rng, 4.0, 0.7).clamp(0.3, 120.0);
                (who, draft, Some(now + secs_us(wait)))
            }
            AttackKind::ApiKeyAbuse {
                client,
                ips,
                mean_interval_s,
            } => {
                let ip = ips
                    .get(index(rng, ips.len()))
                    .map_or("0.0.0.0", String::as_str);
                let mut who = attacker(ip, pick(rng, BOT_TOOLS));
                who.api_key = ctx.plan.clients.get(*client).map(|c| c.key.clone());
                let mut draft = key_abuse_draft(rng, k);
                if chance(rng, 0.1) {
                    rate_limited(rng, &mut draft);
                }
                let wait = exponential(rng, *mean_interval_s);
                (who, draft, Some(now + secs_us(wait)))
            }
            AttackKind::IdEnumeration {
                account,
                ip,
                ua,
                first_id,
                median_interval_s,
            } => {
                let draft = if k == 0 {
                    login_draft(rng, &account.name, true)
                } else {
                    enumeration_draft(rng, first_id + k - 1)
                };
                let who = if k == 0 {
                    Who {
                        identity: Some(account.name.clone()),
                        ..attacker(ip, ua)
                    }
                } else {
                    logged_in(ip, ua, account)
                };
                let wait = lognormal(rng, *median_interval_s, 0.25);
                (who, draft, Some(now + secs_us(wait)))
            }
            AttackKind::DataExfiltration {
                account,
                ip,
                ua,
                period_s,
            } => {
                let (who, draft, wait) = if k == 0 {
                    let who = Who {
                        identity: Some(account.name.clone()),
                        ..attacker(ip, ua)
                    };
                    (
                        who,
                        login_draft(rng, &account.name, true),
                        uniform(rng, 3.0, 10.0),
                    )
                } else {
                    let who = logged_in(ip, ua, account);
                    let wait = period_s * (1.0 + uniform(rng, -0.08, 0.08));
                    (who, exfiltration_draft(rng, k - 1), wait)
                };
                (who, draft, Some(now + secs_us(wait)))
            }
            AttackKind::InjectionProbing {
                account,
                ip,
                ua,
                payloads,
                mean_interval_s,
            } => {
                let ua = ua.pick(rng);
                let who = match account {
                    Some(acc) => logged_in(ip, ua, acc),
                    None => attacker(ip, ua),
                };
                let draft = injection_draft(rng, *payloads);
                let wait = exponential(rng, *mean_interval_s);
                (who, draft, Some(now + secs_us(wait)))
            }
        };
        // The attacker's own program, whatever user agent it sent.
        let who = Who {
            stack: self.plan.stack,
            ..who
        };
        let pace = i64::from(ctx.attack_pace.max(1));
        let next = next.map(|n| now + (n - now) / pace);
        (
            traffic::finish(rng, now, ctx.host, who, draft, scenario),
            next,
        )
    }
}

fn product_draft(rng: &mut SimRng, id: u32) -> Draft {
    if product_exists(id) {
        Draft::get(
            format!("/api/v1/products/{id}"),
            200,
            lognormal(rng, 4200.0, 0.35) as u64,
            lognormal(rng, 14.0, 0.5),
            Service::Products,
        )
    } else {
        Draft::get(
            format!("/api/v1/products/{id}"),
            404,
            error_body(rng, 404),
            lognormal(rng, 6.0, 0.4),
            Service::Products,
        )
    }
}

fn g_list(rng: &mut SimRng, page: u64) -> Draft {
    Draft::get(
        format!("/api/v1/products?page={page}&limit=100&sort=id"),
        200,
        lognormal(rng, 48_000.0, 0.2) as u64,
        lognormal(rng, 55.0, 0.4),
        Service::Products,
    )
}

fn probe_draft(rng: &mut SimRng, prefix: &str, probe: &str) -> Draft {
    let mut path = String::with_capacity(prefix.len() + probe.len());
    path.push_str(prefix);
    path.push_str(probe);
    let rooted = prefix.is_empty();
    let (status, bytes): (u16, u64) = if probe.starts_with("/.") {
        // The gateway's deny rule for dotfiles.
        (403, error_body(rng, 403))
    } else if probe.contains("%27")
        || probe.contains("%3C")
        || probe.contains("UNION")
        || probe.contains("..%2f")
    {
        (400, error_body(rng, 400))
    } else if rooted && probe == "/actuator/health" {
        (200, 49)
    } else if rooted && probe == "/robots.txt" {
        (200, 118)
    } else if rooted && matches!(probe, "/server-status" | "/server-info") {
        (403, error_body(rng, 403))
    } else if rooted && probe == "/manager/html" {
        (401, error_body(rng, 401))
    } else {
        (404, error_body(rng, 404))
    };
    Draft {
        method: if probe == "/xmlrpc.php" {
            "POST"
        } else {
            "GET"
        },
        body_in: if probe == "/xmlrpc.php" { 214 } else { 0 },
        ..Draft::get(path, status, bytes, lognormal(rng, 3.0, 0.6), Service::Web)
    }
}

fn theft_draft(rng: &mut SimRng) -> Draft {
    #[derive(Clone, Copy)]
    enum T {
        Me,
        Addresses,
        PaymentMethods,
        Orders,
        Order,
        ChangeEmail,
        AddAddress,
        Checkout,
        GiftCards,
        Wishlist,
        Product,
    }
    let t = weighted(
        rng,
        &[
            (T::Me, 25),
            (T::Addresses, 10),
            (T::PaymentMethods, 12),
            (T::Orders, 15),
            (T::Order, 10),
            (T::ChangeEmail, 3),
            (T::AddAddress, 3),
            (T::Checkout, 4),
            (T::GiftCards, 8),
            (T::Wishlist, 5),
            (T::Product, 5),
        ],
    );
    let g = Draft::get;
    match t {
        T::Me => user_draft(rng, Route::Me, 1),
        T::Orders => user_draft(rng, Route::Orders, 1),
        T::Order => {
            let id = rng.random_range(1_000_000..9_999_999);
            user_draft(rng, Route::Order(id), 1)
        }
        T::Checkout => user_draft(rng, Route::Checkout, 1),
        T::Wishlist => user_draft(rng, Route::Wishlist, 1),
        T::Product => {
            let id = popular_product(rng);
            user_draft(rng, Route::Product(id), 1)
        }
        T::Addresses => g(
            "/api/v1/users/me/addresses".into(),
            200,
            lognormal(rng, 1400.0, 0.3) as u64,
            lognormal(rng, 10.0, 0.4),
            Service::Users,
        ),
        T::PaymentMethods => g(
            "/api/v1/users/me/payment-methods".into(),
            200,
            lognormal(rng, 800.0, 0.3) as u64,
            lognormal(rng, 20.0, 0.4),
            Service::Users,
        ),
        T::GiftCards => g(
            "/api/v1/giftcards/balance".into(),
            200,
            lognormal(rng, 240.0, 0.2) as u64,
            lognormal(rng, 12.0, 0.4),
            Service::Orders,
        ),
        T::ChangeEmail => Draft {
            method: "PATCH",
            path: "/api/v1/users/me".into(),
            status: 200,
            body_in: rng.random_range(60..90),
            bytes_out: lognormal(rng, 980.0, 0.1) as u64,
            upstream_ms: lognormal(rng, 30.0, 0.4),
            service: Service::Users,
        },
        T::AddAddress => Draft {
            method: "POST",
            path: "/api/v1/users/me/addresses".into(),
            status: 201,
            body_in: rng.random_range(180..320),
            bytes_out: lognormal(rng, 420.0, 0.1) as u64,
            upstream_ms: lognormal(rng, 28.0, 0.4),
            service: Service::Users,
        },
    }
}

fn key_abuse_draft(rng: &mut SimRng, k: u64) -> Draft {
    let page = k / 4 + 1;
    match rng.random_range(0..100) {
        0..=39 => {
            let id = rng.random_range(1..200_000u32);
            if chance(rng, 0.1) {
                Draft::get(
                    format!("/api/v1/users/{id}"),
                    404,
                    error_body(rng, 404),
                    lognormal(rng, 6.0, 0.4),
                    Service::Users,
                )
            } else {
                Draft::get(
                    format!("/api/v1/users/{id}"),
                    200,
                    lognormal(rng, 1100.0, 0.2) as u64,
                    lognormal(rng, 9.0, 0.4),
                    Service::Users,
                )
            }
        }
        40..=59 => Draft::get(
            format!("/api/v1/export?dataset=users&format=json&page={page}"),
            200,
            lognormal(rng, 250_000.0, 0.4) as u64,
            lognormal(rng, 180.0, 0.4),
            Service::Reports,
        ),
        60..=84 => Draft::get(
            format!("/api/v1/customers?page={page}&limit=100"),
            200,
            lognormal(rng, 40_000.0, 0.3) as u64,
            lognormal(rng, 45.0, 0.4),
            Service::Users,
        ),
        _ => Draft::get(
            format!("/api/v1/admin/orders?status=all&page={page}"),
            403,
            error_body(rng, 403),
            lognormal(rng, 3.0, 0.4),
            Service::Orders,
        ),
    }
}

fn enumeration_draft(rng: &mut SimRng, id: u64) -> Draft {
    let h = xxhash_rust::xxh3::xxh3_64(&id.to_le_bytes());
    let path = format!("/api/v1/users/{id}");
    if h % 100 >= 88 {
        Draft::get(
            path,
            404,
            error_body(rng, 404),
            lognormal(rng, 5.0, 0.4),
            Service::Users,
        )
    } else if (h >> 16) % 100 < 22 {
        // Broken object-level authorization: someone else's profile.
        Draft::get(
            path,
            200,
            lognormal(rng, 1100.0, 0.2) as u64,
            lognormal(rng, 9.0, 0.4),
            Service::Users,
        )
    } else {
        Draft::get(
            path,
            403,
            error_body(rng, 403),
            lognormal(rng, 6.0, 0.4),
            Service::Users,
        )
    }
}

fn exfiltration_draft(rng: &mut SimRng, j: u64) -> Draft {
    let bytes = lognormal(rng, 12_000_000.0, 0.6).clamp(2_000_000.0, 80_000_000.0);
    let path = if j % 3 == 2 {
        format!(
            "/api/v1/reports/{}/download",
            rng.random_range(10_000..99_999)
        )
    } else {
        let dataset = ["customers", "orders", "payments"][(j / 3 % 3) as usize];
        format!(
            "/api/v1/export?dataset={dataset}&format=csv&page={}&page_size=50000",
            j / 9 + 1
        )
    };
    let upstream_ms = lognormal(rng, 400.0, 0.4) + bytes / uniform(rng, 30_000.0, 80_000.0);
    let mut d = Draft::get(path, 200, bytes as u64, upstream_ms, Service::Reports);
    if chance(rng, 0.01) {
        d.status = 504;
        d.bytes_out = 160;
        d.upstream_ms = 15_000.0;
    }
    d
}
