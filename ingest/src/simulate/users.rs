//! Benign traffic: interactive users of the shop (browsers and the mobile app, with JWT
//! sessions, refreshes and re-logins, office NATs and roaming) and server-to-server API clients.

use std::collections::VecDeque;

use rand::Rng;

use super::SimRequest;
use super::actors::Ctx;
use super::plan::{
    APP_SESSION_MAX_S, APP_TOKEN_TTL_S, BROWSER_SESSION_MAX_S, BROWSER_TOKEN_TTL_S, ClientPlan,
    ClientRoute, UserPlan,
};
use super::stacks;
use super::traffic::{
    self, CATEGORIES, Draft, RESIDENTIAL, SEARCH_TERMS, Service, SimRng, Who, chance, error_body,
    exponential, index, lognormal, maybe_server_error, popular_product, product_exists, secs_us,
    uniform, weighted,
};

struct Session {
    sid: String,
    jwt: String,
    login_us: i64,
    exp_us: i64,
}

#[derive(Clone, Copy, Debug)]
enum Act {
    Login {
        ok: bool,
    },
    Refresh,
    /// A call made with an access token that has just expired: 401, then a refresh.
    Stale(Route),
    Api(Route),
    Asset(Asset),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Route {
    Product(u32),
    Reviews(u32),
    Recommendations(u32),
    List {
        category: u8,
        page: u8,
    },
    Search {
        term: u8,
        page: u8,
    },
    Cart,
    CartAdd,
    CartRemove(u32),
    Me,
    MeUpdate,
    Orders,
    Order(u32),
    Checkout,
    Notifications,
    Wishlist,
    /// Analytics beacon (`navigator.sendBeacon`: cookies, no Authorization header).
    Beacon,
    Report(u32),
    Export(u8),
}

#[derive(Clone, Copy, Debug)]
enum Asset {
    AppJs,
    VendorJs,
    Css,
    Font,
    Favicon,
    Image(u32),
}

#[derive(Clone, Copy, Debug)]
enum Page {
    Home,
    Product,
    Search,
    Category,
    Cart,
    AddToCart,
    Checkout,
    Account,
    Order,
    Wishlist,
    Reports,
}

const PAGES: &[(Page, u32)] = &[
    (Page::Home, 6),
    (Page::Product, 34),
    (Page::Search, 16),
    (Page::Category, 12),
    (Page::Cart, 7),
    (Page::AddToCart, 6),
    (Page::Checkout, 2),
    (Page::Account, 5),
    (Page::Order, 3),
    (Page::Wishlist, 3),
];

pub(super) struct UserState<'a> {
    plan: &'a UserPlan,
    ip: String,
    session: Option<Session>,
    queue: VecDeque<Act>,
    pages_left: u32,
    /// Path of the page the browser shows (sent as `Referer` after the web origin); `None` for
    /// the app.
    referer: Option<String>,
    last_product: u32,
    /// Whether the browser has the static bundle cached (answered 304).
    cached: bool,
}

impl<'a> UserState<'a> {
    pub(super) fn new(plan: &'a UserPlan, rng: &mut SimRng, ctx: &Ctx<'_>) -> (UserState<'a>, i64) {
        let start = ctx.start_us;
        let (max_s, ttl_s) = session_limits(plan);
        let session = if let Some(p) = &plan.pinned {
            Some(Session {
                sid: p.sid.clone(),
                jwt: p.jwt.clone(),
                login_us: i64::MIN,
                exp_us: i64::MAX,
            })
        } else if chance(rng, if plan.app { 0.9 } else { 0.6 }) {
            // Logged in before the run; the current token was issued (or refreshed) recently.
            let login_us = start - secs_us(uniform(rng, 60.0, max_s * 0.9));
            let iat_us = (start - secs_us(uniform(rng, 0.0, ttl_s as f64))).max(login_us);
            let iat = iat_us.div_euclid(1_000_000);
            let sid = traffic::session_id(rng);
            let jwt = traffic::jwt(rng, &ctx.plan.issuer, &plan.name, &sid, iat, iat + ttl_s);
            Some(Session {
                sid,
                jwt,
                login_us,
                exp_us: (iat + ttl_s) * 1_000_000,
            })
        } else {
            None
        };
        let first = if chance(rng, 0.3) {
            // Already mid-visit when the run starts.
            start + secs_us(uniform(rng, 0.0, 60.0))
        } else {
            start + secs_us(uniform(rng, 0.0, 1.0) * visit_gap_s(rng, start))
        };
        let state = UserState {
            plan,
            ip: plan.home_ip.clone(),
            session,
            queue: VecDeque::with_capacity(8),
            pages_left: 0,
            referer: None,
            last_product: 1,
            cached: false,
        };
        let first = state.keep_victim_active(rng, start, first);
        (state, first)
    }

    pub(super) fn step(&mut self, rng: &mut SimRng, now: i64, ctx: &Ctx<'_>) -> SimRequest {
        if self.queue.is_empty() {
            self.start_visit(rng, now, ctx);
        }
        let mut act = self.queue.pop_front().unwrap_or(Act::Api(Route::Me));
        if let Act::Api(route) = act {
            let expired = self.plan.pinned.is_none()
                && route.sends_token()
                && self.session.as_ref().is_some_and(|s| s.exp_us <= now);
            if expired {
                self.queue.push_front(act);
                act = if chance(rng, 0.2) {
                    self.queue.push_front(Act::Refresh);
                    Act::Stale(route)
                } else {
                    Act::Refresh
                };
            }
        }
        self.emit(rng, act, now, ctx)
    }

    /// Time of the next request, planning the next page or visit when this one is done.
    pub(super) fn schedule(&mut self, rng: &mut SimRng, now: i64) -> i64 {
        if !self.queue.is_empty() {
            // The rest of the page: XHRs and assets a few milliseconds apart.
            return now + secs_us(lognormal(rng, 0.08, 0.9).clamp(0.002, 3.0));
        }
        if self.pages_left > 0 {
            self.pages_left -= 1;
            self.plan_page(rng, false);
            let think = lognormal(rng, 7.0, 0.9).clamp(0.8, 300.0);
            return now + secs_us(think);
        }
        let next = now + secs_us(visit_gap_s(rng, now));
        self.keep_victim_active(rng, now, next)
    }

    /// A session-theft victim stays active while the thief is: no idle gap crosses into or
    /// spans the thief's window.
    fn keep_victim_active(&self, rng: &mut SimRng, now: i64, next: i64) -> i64 {
        match &self.plan.pinned {
            Some(p) if now < p.active_to_us && next > p.active_from_us => {
                let resume = now.max(p.active_from_us) + secs_us(uniform(rng, 5.0, 45.0));
                next.min(resume)
            }
            _ => next,
        }
    }

    fn start_visit(&mut self, rng: &mut SimRng, now: i64, ctx: &Ctx<'_>) {
        let pool = &ctx.plan.mobile_pool;
        self.ip = if self.plan.roams && !pool.is_empty() && chance(rng, 0.4) {
            pool[index(rng, pool.len())].clone()
        } else if !self.plan.app && self.plan.proxy_xff.is_none() && chance(rng, 0.03) {
            // Travelling: a hotel or café network.
            traffic::ip_in(rng, RESIDENTIAL)
        } else {
            self.plan.home_ip.clone()
        };
        if self.plan.pinned.is_none() {
            let (max_s, _) = session_limits(self.plan);
            let must_login = match &self.session {
                None => true,
                Some(s) => (now - s.login_us) as f64 > max_s * 1e6 || chance(rng, 0.03),
            };
            if must_login {
                self.session = None;
                if chance(rng, 0.05) {
                    self.queue.push_back(Act::Login { ok: false });
                }
                self.queue.push_back(Act::Login { ok: true });
            }
        }
        self.cached = chance(rng, 0.7);
        self.pages_left = (exponential(rng, 6.0) as u32).min(60);
        self.plan_page(rng, true);
    }

    fn plan_page(&mut self, rng: &mut SimRng, first: bool) {
        let browser = !self.plan.app;
        if first && browser {
            self.queue.push_back(Act::Asset(Asset::AppJs));
            self.queue.push_back(Act::Asset(Asset::VendorJs));
            self.queue.push_back(Act::Asset(Asset::Css));
            if chance(rng, 0.5) {
                self.queue.push_back(Act::Asset(Asset::Font));
            }
            if chance(rng, 0.3) {
                self.queue.push_back(Act::Asset(Asset::Favicon));
            }
        }
        let page = if first {
            Page::Home
        } else if self.plan.staff && chance(rng, 0.15) {
            Page::Reports
        } else {
            weighted(rng, PAGES)
        };
        let images = |rng: &mut SimRng, q: &mut VecDeque<Act>, n: u32| {
            if browser {
                for _ in 0..n {
                    q.push_back(Act::Asset(Asset::Image(popular_product(rng))));
                }
            }
        };
        let page_path: String = match page {
            Page::Home => {
                self.queue.push_back(Act::Api(Route::Recommendations(0)));
                self.queue.push_back(Act::Api(Route::List {
                    category: index(rng, CATEGORIES.len()) as u8,
                    page: 1,
                }));
                let n = rng.random_range(2..=5);
                images(rng, &mut self.queue, n);
                "/".into()
            }
            Page::Product => {
                let id = popular_product(rng);
                self.last_product = id;
                self.queue.push_back(Act::Api(Route::Product(id)));
                if browser {
                    self.queue.push_back(Act::Asset(Asset::Image(id)));
                }
                if chance(rng, 0.5) {
                    self.queue.push_back(Act::Api(Route::Reviews(id)));
                }
                if chance(rng, 0.4) {
                    self.queue.push_back(Act::Api(Route::Recommendations(id)));
                }
                format!("/products/{id}")
            }
            Page::Search => {
                let term = index(rng, SEARCH_TERMS.len()) as u8;
                let page = if chance(rng, 0.2) {
                    rng.random_range(2..=4)
                } else {
                    1
                };
                self.queue.push_back(Act::Api(Route::Search { term, page }));
                let n = rng.random_range(0..=4);
                images(rng, &mut self.queue, n);
                format!("/search?q={}", SEARCH_TERMS[usize::from(term)])
            }
            Page::Category => {
                let category = index(rng, CATEGORIES.len()) as u8;
                let page = if chance(rng, 0.3) {
                    rng.random_range(2..=6)
                } else {
                    1
                };
                self.queue
                    .push_back(Act::Api(Route::List { category, page }));
                let n = rng.random_range(0..=4);
                images(rng, &mut self.queue, n);
                format!("/c/{}", CATEGORIES[usize::from(category)])
            }
            Page::Cart => {
                self.queue.push_back(Act::Api(Route::Cart));
                if chance(rng, 0.15) {
                    self.queue
                        .push_back(Act::Api(Route::CartRemove(popular_product(rng))));
                }
                "/cart".into()
            }
            Page::AddToCart => {
                self.queue.push_back(Act::Api(Route::CartAdd));
                self.queue.push_back(Act::Api(Route::Cart));
                format!("/products/{}", self.last_product)
            }
            Page::Checkout => {
                self.queue.push_back(Act::Api(Route::Cart));
                self.queue.push_back(Act::Api(Route::Me));
                self.queue.push_back(Act::Api(Route::Checkout));
                "/checkout".into()
            }
            Page::Account => {
                self.queue.push_back(Act::Api(Route::Me));
                if chance(rng, 0.5) {
                    self.queue.push_back(Act::Api(Route::Orders));
                }
                if chance(rng, 0.05) {
                    self.queue.push_back(Act::Api(Route::MeUpdate));
                }
                "/account".into()
            }
            Page::Order => {
                self.queue.push_back(Act::Api(Route::Orders));
                self.queue.push_back(Act::Api(Route::Order(
                    rng.random_range(1_000_000..9_999_999),
                )));
                "/account/orders".into()
            }
            Page::Wishlist => {
                self.queue.push_back(Act::Api(Route::Wishlist));
                "/wishlist".into()
            }
            Page::Reports => {
                if chance(rng, 0.6) {
                    self.queue
                        .push_back(Act::Api(Route::Report(rng.random_range(10_000..99_999))));
                } else {
                    self.queue
                        .push_back(Act::Api(Route::Export(rng.random_range(0..3))));
                }
                "/admin/reports".into()
            }
        };
        if chance(rng, 0.3) {
            self.queue.push_back(Act::Api(Route::Notifications));
        }
        if chance(rng, if browser { 0.35 } else { 0.15 }) {
            self.queue.push_back(Act::Api(Route::Beacon));
        }
        self.referer = browser.then_some(page_path);
    }

    fn who(&self, with_token: bool, with_session: bool) -> Who {
        let s = self.session.as_ref();
        Who {
            client_ip: self.ip.clone(),
            forwarded_for: self.plan.proxy_xff.iter().cloned().collect(),
            identity: if with_token {
                s.map(|_| self.plan.name.clone())
            } else {
                None
            },
            session: if with_session {
                s.map(|s| s.sid.clone())
            } else {
                None
            },
            jwt: if with_token {
                s.map(|s| s.jwt.clone())
            } else {
                None
            },
            api_key: None,
            user_agent: self.plan.ua,
            referer: None,
            tls_version: self.plan.tls,
            stack: stacks::of_user_agent(self.plan.ua),
        }
    }

    fn emit(&mut self, rng: &mut SimRng, act: Act, now: i64, ctx: &Ctx<'_>) -> SimRequest {
        let referer = self
            .referer
            .as_ref()
            .map(|p| format!("{}{}", ctx.plan.web_origin, p));
        let (who, draft) = match act {
            Act::Login { ok } => {
                let mut who = self.who(false, false);
                who.identity = Some(self.plan.name.clone());
                let draft = login_draft(rng, &self.plan.name, ok);
                if ok {
                    let (_, ttl_s) = session_limits(self.plan);
                    let sid = traffic::session_id(rng);
                    let iat = now.div_euclid(1_000_000);
                    let jwt = traffic::jwt(
                        rng,
                        &ctx.plan.issuer,
                        &self.plan.name,
                        &sid,
                        iat,
                        iat + ttl_s,
                    );
                    self.session = Some(Session {
                        sid,
                        jwt,
                        login_us: now,
                        exp_us: (iat + ttl_s) * 1_000_000,
                    });
                }
                (who, draft)
            }
            Act::Refresh => {
                let who = self.who(false, true);
                let (_, ttl_s) = session_limits(self.plan);
                let draft = Draft {
                    method: "POST",
                    path: "/api/v1/auth/refresh".into(),
                    status: 200,
                    body_in: 0,
                    bytes_out: 780 + rng.random_range(0..60),
                    upstream_ms: lognormal(rng, 25.0, 0.4),
                    service: Service::Auth,
                };
                if let Some(s) = &mut self.session {
                    let iat = now.div_euclid(1_000_000);
                    s.jwt = traffic::jwt(
                        rng,
                        &ctx.plan.issuer,
                        &self.plan.name,
                        &s.sid,
                        iat,
                        iat + ttl_s,
                    );
                    s.exp_us = (iat + ttl_s) * 1_000_000;
                }
                (who, draft)
            }
            Act::Stale(route) => {
                let who = self.who(true, true);
                let mut draft = user_draft(rng, route, self.last_product);
                draft.status = 401;
                draft.bytes_out = error_body(rng, 401);
                draft.upstream_ms = lognormal(rng, 0.4, 0.3);
                (who, draft)
            }
            Act::Api(route) => {
                let token = route.sends_token();
                let who = self.who(token, true);
                let draft = if self.session.is_none() && token {
                    let mut d = user_draft(rng, route, self.last_product);
                    d.status = 401;
                    d.bytes_out = error_body(rng, 401);
                    d
                } else {
                    user_draft(rng, route, self.last_product)
                };
                (who, draft)
            }
            Act::Asset(asset) => (self.who(false, true), asset_draft(rng, asset, self.cached)),
        };
        let who = Who { referer, ..who };
        traffic::finish(rng, now, ctx.host, who, draft, None)
    }
}

/// `(session lifetime in seconds, access-token lifetime in seconds)`.
fn session_limits(plan: &UserPlan) -> (f64, i64) {
    if plan.app {
        (APP_SESSION_MAX_S, APP_TOKEN_TTL_S)
    } else {
        (BROWSER_SESSION_MAX_S, BROWSER_TOKEN_TTL_S)
    }
}

/// Idle time between two visits of a user, shorter at busy hours.
fn visit_gap_s(rng: &mut SimRng, now: i64) -> f64 {
    (lognormal(rng, 1500.0, 1.0) / traffic::diurnal(now)).clamp(120.0, 8.0 * 3600.0)
}

impl Route {
    /// Whether the call carries the `Authorization: Bearer` token (beacons cannot).
    fn sends_token(self) -> bool {
        !matches!(self, Route::Beacon)
    }
}

pub(super) fn login_draft(rng: &mut SimRng, username: &str, ok: bool) -> Draft {
    Draft {
        method: "POST",
        path: "/login".into(),
        status: if ok { 200 } else { 401 },
        body_in: 38 + username.len() as u64 + rng.random_range(8..24),
        bytes_out: if ok {
            820 + rng.random_range(0..80)
        } else {
            error_body(rng, 401)
        },
        // Password hashing dominates.
        upstream_ms: lognormal(rng, 180.0, 0.25),
        service: Service::Auth,
    }
}

pub(super) fn user_draft(rng: &mut SimRng, route: Route, last_product: u32) -> Draft {
    let g = Draft::get;
    let mut d = match route {
        Route::Product(id) => {
            if product_exists(id) {
                g(
                    format!("/api/v1/products/{id}"),
                    200,
                    lognormal(rng, 4200.0, 0.35) as u64,
                    lognormal(rng, 14.0, 0.5),
                    Service::Products,
                )
            } else {
                g(
                    format!("/api/v1/products/{id}"),
                    404,
                    error_body(rng, 404),
                    lognormal(rng, 6.0, 0.4),
                    Service::Products,
                )
            }
        }
        Route::Reviews(id) => g(
            format!("/api/v1/products/{id}/reviews?page=1&sort=recent"),
            200,
            lognormal(rng, 6500.0, 0.6) as u64,
            lognormal(rng, 22.0, 0.5),
            Service::Products,
        ),
        Route::Recommendations(id) => g(
            if id == 0 {
                "/api/v1/recommendations?context=home".into()
            } else {
                format!("/api/v1/recommendations?context=product:{id}")
            },
            200,
            lognormal(rng, 9000.0, 0.3) as u64,
            lognormal(rng, 45.0, 0.5),
            Service::Search,
        ),
        Route::List { category, page } => g(
            format!(
                "/api/v1/products?category={}&page={page}&sort=popular",
                CATEGORIES[usize::from(category) % CATEGORIES.len()]
            ),
            200,
            lognormal(rng, 18_000.0, 0.3) as u64,
            lognormal(rng, 35.0, 0.5),
            Service::Products,
        ),
        Route::Search { term, page } => {
            let term = SEARCH_TERMS[usize::from(term) % SEARCH_TERMS.len()];
            let path = if page > 1 {
                format!("/api/v1/search?q={term}&page={page}")
            } else {
                format!("/api/v1/search?q={term}")
            };
            g(
                path,
                200,
                lognormal(rng, 22_000.0, 0.6) as u64,
                lognormal(rng, 60.0, 0.6),
                Service::Search,
            )
        }
        Route::Cart => g(
            "/api/v1/cart".into(),
            200,
            lognormal(rng, 2500.0, 0.4) as u64,
            lognormal(rng, 12.0, 0.5),
            Service::Orders,
        ),
        Route::CartAdd => {
            let out_of_stock = chance(rng, 0.015);
            Draft {
                method: "POST",
                path: "/api/v1/cart/items".into(),
                status: if out_of_stock { 409 } else { 201 },
                body_in: 48 + (u64::from(last_product).ilog10() as u64) + rng.random_range(0..30),
                bytes_out: if out_of_stock {
                    error_body(rng, 409)
                } else {
                    lognormal(rng, 2600.0, 0.3) as u64
                },
                upstream_ms: lognormal(rng, 25.0, 0.4),
                service: Service::Orders,
            }
        }
        Route::CartRemove(id) => Draft {
            method: "DELETE",
            path: format!("/api/v1/cart/items/{id}"),
            status: 204,
            body_in: 0,
            bytes_out: 0,
            upstream_ms: lognormal(rng, 15.0, 0.4),
            service: Service::Orders,
        },
        Route::Me => g(
            "/api/v1/users/me".into(),
            200,
            lognormal(rng, 950.0, 0.15) as u64,
            lognormal(rng, 8.0, 0.4),
            Service::Users,
        ),
        Route::MeUpdate => {
            let invalid = chance(rng, 0.05);
            Draft {
                method: "PATCH",
                path: "/api/v1/users/me".into(),
                status: if invalid { 422 } else { 200 },
                body_in: rng.random_range(80..220),
                bytes_out: if invalid {
                    error_body(rng, 422)
                } else {
                    lognormal(rng, 980.0, 0.1) as u64
                },
                upstream_ms: lognormal(rng, 30.0, 0.4),
                service: Service::Users,
            }
        }
        Route::Orders => g(
            "/api/v1/orders?page=1&limit=10".into(),
            200,
            lognormal(rng, 5200.0, 0.5) as u64,
            lognormal(rng, 30.0, 0.5),
            Service::Orders,
        ),
        Route::Order(id) => g(
            format!("/api/v1/orders/{id}"),
            200,
            lognormal(rng, 2600.0, 0.3) as u64,
            lognormal(rng, 18.0, 0.5),
            Service::Orders,
        ),
        Route::Checkout => {
            let declined = chance(rng, 0.03);
            Draft {
                method: "POST",
                path: "/api/v1/orders".into(),
                status: if declined { 402 } else { 201 },
                body_in: rng.random_range(400..1200),
                bytes_out: if declined {
                    error_body(rng, 402)
                } else {
                    lognormal(rng, 2300.0, 0.2) as u64
                },
                upstream_ms: lognormal(rng, 260.0, 0.4),
                service: Service::Orders,
            }
        }
        Route::Notifications => {
            let unchanged = chance(rng, 0.3);
            g(
                "/api/v1/notifications?unread=true".into(),
                if unchanged { 304 } else { 200 },
                if unchanged {
                    0
                } else {
                    lognormal(rng, 1200.0, 0.6) as u64
                },
                lognormal(rng, 6.0, 0.4),
                Service::Users,
            )
        }
        Route::Wishlist => g(
            "/api/v1/wishlist".into(),
            200,
            lognormal(rng, 3200.0, 0.5) as u64,
            lognormal(rng, 15.0, 0.4),
            Service::Users,
        ),
        Route::Beacon => Draft {
            method: "POST",
            path: "/api/v1/events".into(),
            status: 204,
            body_in: rng.random_range(300..1500),
            bytes_out: 0,
            upstream_ms: lognormal(rng, 3.0, 0.4),
            service: Service::Events,
        },
        Route::Report(id) => {
            let bytes = lognormal(rng, 400_000.0, 0.8).clamp(20_000.0, 3_000_000.0);
            g(
                format!("/api/v1/reports/{id}/download"),
                200,
                bytes as u64,
                lognormal(rng, 250.0, 0.5) + bytes / 50_000.0,
                Service::Reports,
            )
        }
        Route::Export(dataset) => {
            let bytes = lognormal(rng, 900_000.0, 0.7).clamp(50_000.0, 4_000_000.0);
            let name = ["orders", "returns", "inventory"][usize::from(dataset) % 3];
            g(
                format!("/api/v1/export?dataset={name}&format=csv&period=last_30_days"),
                200,
                bytes as u64,
                lognormal(rng, 400.0, 0.5) + bytes / 40_000.0,
                Service::Reports,
            )
        }
    };
    if let Some((status, bytes, upstream_ms)) = maybe_server_error(rng) {
        d.status = status;
        d.bytes_out = bytes;
        d.upstream_ms = upstream_ms;
    }
    d
}

fn asset_draft(rng: &mut SimRng, asset: Asset, cached: bool) -> Draft {
    let (path, size): (String, f64) = match asset {
        Asset::AppJs => ("/static/js/app.3f9a1c2e.js".into(), 281_344.0),
        Asset::VendorJs => ("/static/js/vendor.8b41d7f0.js".into(), 612_870.0),
        Asset::Css => ("/static/css/main.5e2c9a71.css".into(), 48_213.0),
        Asset::Font => ("/static/fonts/inter-var.woff2".into(), 98_120.0),
        Asset::Favicon => ("/favicon.ico".into(), 15_086.0),
        Asset::Image(id) => {
            let path = format!("/static/img/products/{id}.webp");
            if !product_exists(id) {
                return Draft::get(path, 404, 146, lognormal(rng, 1.5, 0.5), Service::Static);
            }
            (path, lognormal(rng, 38_000.0, 0.5))
        }
    };
    // Images are cached independently of the bundle.
    let not_modified = match asset {
        Asset::Image(_) => chance(rng, 0.2),
        _ => cached,
    };
    Draft::get(
        path,
        if not_modified { 304 } else { 200 },
        if not_modified { 0 } else { size as u64 },
        lognormal(rng, 2.0, 0.6),
        Service::Static,
    )
}

// ---------------------------------------------------------------------------------------------
// Benign API clients.

pub(super) fn client_request(
    rng: &mut SimRng,
    c: &ClientPlan,
    now: i64,
    ctx: &Ctx<'_>,
) -> SimRequest {
    let route = c.routes[index(rng, c.routes.len())];
    let sku = rng.random_range(100_000..999_999);
    let g = Draft::get;
    let mut d = match route {
        ClientRoute::Inventory => g(
            format!("/api/v1/inventory/SKU-{sku}"),
            200,
            lognormal(rng, 420.0, 0.2) as u64,
            lognormal(rng, 9.0, 0.4),
            Service::Inventory,
        ),
        ClientRoute::ProductsUpdated => g(
            format!(
                "/api/v1/products?updated_since={}&page={}&limit=200",
                now.div_euclid(1_000_000) - 300,
                rng.random_range(1..=3)
            ),
            200,
            lognormal(rng, 60_000.0, 0.5) as u64,
            lognormal(rng, 80.0, 0.5),
            Service::Products,
        ),
        ClientRoute::OrderStatus => g(
            format!(
                "/api/v1/orders/{}/status",
                rng.random_range(1_000_000..9_999_999)
            ),
            200,
            lognormal(rng, 310.0, 0.1) as u64,
            lognormal(rng, 11.0, 0.4),
            Service::Orders,
        ),
        ClientRoute::CreateOrder => Draft {
            method: "POST",
            path: "/api/v1/orders".into(),
            status: 201,
            body_in: rng.random_range(600..2000),
            bytes_out: lognormal(rng, 2300.0, 0.2) as u64,
            upstream_ms: lognormal(rng, 220.0, 0.4),
            service: Service::Orders,
        },
        ClientRoute::Prices => g(
            format!("/api/v1/prices?sku=SKU-{sku}&currency=EUR"),
            200,
            lognormal(rng, 260.0, 0.1) as u64,
            lognormal(rng, 7.0, 0.4),
            Service::Products,
        ),
        ClientRoute::WebhookAck => Draft {
            method: "POST",
            path: "/api/v1/webhooks/ack".into(),
            status: 204,
            body_in: rng.random_range(90..160),
            bytes_out: 0,
            upstream_ms: lognormal(rng, 5.0, 0.4),
            service: Service::Orders,
        },
        ClientRoute::Shipment => Draft {
            method: "PUT",
            path: format!("/api/v1/shipments/{}", rng.random_range(100_000..999_999)),
            status: 200,
            body_in: rng.random_range(300..600),
            bytes_out: lognormal(rng, 400.0, 0.2) as u64,
            upstream_ms: lognormal(rng, 35.0, 0.4),
            service: Service::Orders,
        },
    };
    if d.method == "GET" && chance(rng, 0.01) {
        d.status = 404;
        d.bytes_out = error_body(rng, 404);
    } else if chance(rng, 0.003) {
        d.status = 429;
        d.bytes_out = error_body(rng, 429);
        d.upstream_ms = 0.2;
    } else if let Some((status, bytes, upstream_ms)) = maybe_server_error(rng) {
        d.status = status;
        d.bytes_out = bytes;
        d.upstream_ms = upstream_ms;
    }
    let who = Who {
        client_ip: c.ip.clone(),
        forwarded_for: Vec::new(),
        identity: None,
        session: None,
        jwt: None,
        api_key: Some(c.key.clone()),
        user_agent: c.ua,
        referer: None,
        tls_version: c.tls,
        stack: stacks::of_user_agent(c.ua),
    };
    traffic::finish(rng, now, ctx.host, who, d, None)
}
