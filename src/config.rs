//! `vigil.toml`: one file, every key documented with its default, environment overrides, and
//! unknown or bad keys reported by their path (`sources.edge.fromat: unknown field`).

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vigil_ingest::normalize::NormalizeConfig;
use vigil_ingest::pipeline::PipelineConfig;
use vigil_ingest::source::SourceConfig;

/// The configuration used when no file is given: an HTTP push source on loopback, a local
/// data directory, no external services.
pub const EMBEDDED_DEFAULT: &str = r#"
data_dir = "vigil-data"

[server]
listen = "127.0.0.1:7070"

[sources.push]
type = "http"
format = "auto"
"#;

/// Prefix of environment overrides: `VIGIL__SERVER__LISTEN=0.0.0.0:7070` sets
/// `server.listen` (path segments separated by `__`).
pub const ENV_PREFIX: &str = "VIGIL__";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for checkpoints, dead letters and the analytics store. Default `vigil-data`.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub pipeline: PipelineConfig,
    pub normalize: NormalizeConfig,
    /// Kafka connection shared by Kafka sources and sinks; absent means no Kafka.
    pub kafka: Option<KafkaConfig>,
    pub dead_letters: DeadLettersConfig,
    /// Named sources: `[sources.NAME]` with `type = "kafka" | "file" | "http" | "stdin"`.
    pub sources: BTreeMap<String, SourceConfig>,
    /// The enforcement proxy; absent means `vigil run` starts none.
    pub proxy: Option<vigil_enforce::ProxyConfig>,
    /// Features, rules and the decision policy.
    pub scoring: vigil_scoring::ScoringConfig,
    /// The analytics store (`events`, `scores`, `decisions`).
    pub store: StoreSettings,
    /// The HTTP API: tokens and SQL limits.
    pub api: ApiConfig,
    /// OpenTelemetry export (OTLP/HTTP).
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// Which stages this process runs: all in one (default), or one of the scale-out roles.
    pub scale: ScaleConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: "vigil-data".into(),
            server: ServerConfig::default(),
            pipeline: PipelineConfig::default(),
            normalize: NormalizeConfig::default(),
            kafka: None,
            dead_letters: DeadLettersConfig::default(),
            sources: BTreeMap::new(),
            proxy: None,
            scoring: vigil_scoring::ScoringConfig::default(),
            store: StoreSettings::default(),
            api: ApiConfig::default(),
            telemetry: crate::telemetry::TelemetryConfig::default(),
            scale: ScaleConfig::default(),
        }
    }
}

/// The stages a `vigil run` process runs (DESIGN.md, "Scale-out").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleRole {
    /// Sources, parsing, scoring, decisions and the store in one process (default).
    #[default]
    All,
    /// Sources and parsing only: every event goes to `scale.events_topic`, once per subject,
    /// keyed by it.
    Parse,
    /// Scoring, decisions and the store only, as a member of `scale.group_id` on
    /// `scale.events_topic`: each instance owns whole partitions, so each subject's state.
    Score,
}

impl ScaleRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleRole::All => "all",
            ScaleRole::Parse => "parse",
            ScaleRole::Score => "score",
        }
    }
}

/// `[scale]`: running the pipeline as separate parse and score processes over Kafka.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleConfig {
    /// `all` (default), `parse` or `score`.
    pub role: ScaleRole,
    /// The topic between the roles: events keyed `kind:id`, one record per subject of an event.
    /// Default `vigil.events`.
    pub events_topic: String,
    /// The `score` role's consumer group. Default `vigil-scoring`.
    pub group_id: String,
    /// On taking over a partition, the `score` role reads again the events of this many seconds
    /// (by record time) before the group's committed offset, to rebuild its subjects' state
    /// before deciding on them. Default 3600 (the longest feature window).
    pub rebuild_secs: u64,
    /// The `score` role's batches: most events in one. Default 4096.
    pub batch_max_events: usize,
    /// The `score` role's batches: longest an event waits for its batch to fill. Default 20 ms.
    pub batch_max_delay_ms: u64,
    /// Extra librdkafka settings for the `score` role's consumer, e.g. `"session.timeout.ms"`.
    pub consumer_options: BTreeMap<String, String>,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        Self {
            role: ScaleRole::All,
            events_topic: "vigil.events".into(),
            group_id: "vigil-scoring".into(),
            rebuild_secs: 3600,
            batch_max_events: 4096,
            batch_max_delay_ms: 20,
            consumer_options: BTreeMap::new(),
        }
    }
}

impl ScaleConfig {
    fn validate(&self, cfg: &Config) -> Result<()> {
        if self.role == ScaleRole::All {
            return Ok(());
        }
        let role = self.role.as_str();
        if cfg.kafka.is_none() {
            bail!("invalid config at `scale.role`: `{role}` needs a `[kafka]` section");
        }
        if self.events_topic.trim().is_empty() {
            bail!("invalid config at `scale.events_topic`: must not be empty");
        }
        match self.role {
            ScaleRole::Parse if cfg.sources.is_empty() => {
                bail!("invalid config at `scale.role`: `parse` needs at least one `[sources.NAME]`")
            }
            ScaleRole::Score if !cfg.sources.is_empty() => bail!(
                "invalid config at `sources`: the `score` role reads `scale.events_topic`; sources belong to the `parse` role"
            ),
            ScaleRole::Score if cfg.proxy.is_some() => bail!(
                "invalid config at `proxy`: run the proxy beside a `parse` or `all` process, or as `vigil proxy`"
            ),
            _ => {}
        }
        if self.group_id.trim().is_empty() {
            bail!("invalid config at `scale.group_id`: must not be empty");
        }
        if self.batch_max_events == 0 || self.batch_max_delay_ms == 0 {
            bail!(
                "invalid config at `scale.batch_max_events`/`scale.batch_max_delay_ms`: must be at least 1"
            );
        }
        Ok(())
    }
}

/// `[store]`: the analytics store under `data_dir`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Keep events, scores and decisions. Default true. When false, sources are acknowledged as
    /// soon as a batch is scored, and SQL sees empty tables.
    pub enabled: bool,
    /// Directory of the Parquet files. Default `<data_dir>/store`.
    pub dir: Option<PathBuf>,
    /// Rows older than this (arrival) are flushed from memory to Parquet. Default 5000 ms.
    pub flush_interval_ms: u64,
    /// Memory held by unflushed rows (all tables) that triggers a flush. Default 67108864 (64 MiB).
    pub hot_max_bytes: usize,
    /// Hour partitions older than this many days are deleted; 0 keeps everything. Default 30.
    pub retention_days: u64,
    /// An hour partition with this many files is compacted into one. Default 8.
    pub compact_min_files: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            flush_interval_ms: 5_000,
            hot_max_bytes: 64 << 20,
            retention_days: 30,
            compact_min_files: 8,
        }
    }
}

impl StoreSettings {
    pub fn store_config(&self, data_dir: &Path) -> vigil_ingest::store::StoreConfig {
        vigil_ingest::store::StoreConfig {
            dir: self.dir.clone().unwrap_or_else(|| data_dir.join("store")),
            flush_interval: std::time::Duration::from_millis(self.flush_interval_ms),
            hot_max_bytes: self.hot_max_bytes,
            retention: (self.retention_days > 0)
                .then(|| std::time::Duration::from_secs(self.retention_days * 86_400)),
            compact_min_files: self.compact_min_files,
            ..Default::default()
        }
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Queries: SQL, subjects, decisions, backtests, metrics, the decision stream.
    Read,
    /// Pushing logs (`/v1/ingest`, `/v1/logs`).
    Ingest,
    /// Everything, including manual decisions and rule reloads.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Ingest => "ingest",
            Role::Admin => "admin",
        }
    }
}

/// One bearer token: `{ name = "ops", token_env = "VIGIL_OPS_TOKEN", role = "admin" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it; recorded as `manual:<name>` in the reasons of its manual decisions.
    pub name: String,
    /// The token itself. Prefer `token_env`.
    #[serde(default)]
    pub token: Option<String>,
    /// Environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    pub role: Role,
}

/// `[api]`: who may call the HTTP API and the limits of SQL queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer tokens. Empty (the default): no authentication, every caller is an admin — keep
    /// the listener on loopback then.
    pub tokens: Vec<TokenConfig>,
    /// Longest a SQL query (or backtest) may run. Default 30000 ms.
    pub sql_timeout_ms: u64,
    /// Memory a SQL query may use. Default 536870912 (512 MiB).
    pub sql_memory_limit_bytes: usize,
    /// Most rows a SQL answer carries; more are cut and the answer says `truncated`. Default 10000.
    pub sql_max_rows: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            sql_timeout_ms: 30_000,
            sql_memory_limit_bytes: 512 << 20,
            sql_max_rows: 10_000,
        }
    }
}

impl ApiConfig {
    /// The tokens with their secrets resolved: `(name, secret, role)`.
    pub fn resolve_tokens(&self) -> Result<Vec<(String, String, Role)>> {
        let mut out = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let secret = match (&t.token, &t.token_env) {
                (Some(s), None) => s.clone(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    anyhow::anyhow!(
                        "invalid config at `api.tokens[{i}].token_env`: environment variable {var} is not set"
                    )
                })?,
                _ => bail!(
                    "invalid config at `api.tokens[{i}]`: give exactly one of `token` and `token_env`"
                ),
            };
            if secret.len() < 16 {
                bail!("invalid config at `api.tokens[{i}]`: a token needs at least 16 characters");
            }
            if t.name.is_empty() {
                bail!("invalid config at `api.tokens[{i}].name`: must not be empty");
            }
            out.push((t.name.clone(), secret, t.role));
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP API (ingest, health, metrics). Default `127.0.0.1:7070`.
    pub listen: String,
    /// Longest a graceful shutdown waits for in-flight requests and batches. Default 10000 ms.
    pub shutdown_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7070".into(),
            shutdown_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`. Required.
    pub brokers: String,
    /// Extra librdkafka settings for every client, e.g. `"security.protocol" = "ssl"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Compacted topic decisions are published to (key `kind:id`). Default `vigil.decisions`.
    #[serde(default = "default_decisions_topic")]
    pub decisions_topic: String,
}

fn default_decisions_topic() -> String {
    "vigil.decisions".into()
}

impl KafkaConfig {
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut v = vec![("bootstrap.servers".to_string(), self.brokers.clone())];
        v.extend(self.options.iter().map(|(k, v)| (k.clone(), v.clone())));
        v
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterType {
    /// NDJSON file (default).
    #[default]
    File,
    /// Kafka topic (needs `[kafka]`).
    Kafka,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLettersConfig {
    /// `file` (default) or `kafka`.
    #[serde(rename = "type")]
    pub kind: DeadLetterType,
    /// File for `type = "file"`. Default `<data_dir>/dead-letters.ndjson`.
    pub path: Option<PathBuf>,
    /// Topic for `type = "kafka"`. Default `vigil.dead-letters`.
    pub topic: String,
}

impl Default for DeadLettersConfig {
    fn default() -> Self {
        Self {
            kind: DeadLetterType::File,
            path: None,
            topic: "vigil.dead-letters".into(),
        }
    }
}

impl DeadLettersConfig {
    pub fn file_path(&self, data_dir: &Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| data_dir.join("dead-letters.ndjson"))
    }
}

/// Sets `path` (segments) in `root` to `value`, read as a TOML value when it parses as one
/// (`8192`, `true`, `["a"]`) and as a string otherwise.
fn set_path(root: &mut toml::Table, path: &[String], value: &str) -> Result<()> {
    let (last, parents) = path.split_last().context("empty override path")?;
    let mut t = root;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("`{}` is not a table", p),
        };
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    t.insert(last.clone(), parsed);
    Ok(())
}

impl Config {
    /// Parses `text` (from `origin`, for messages), applies `env` overrides and validates.
    pub fn parse(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{origin}: {e}"))?;
        for (k, v) in env {
            if let Some(rest) = k.strip_prefix(ENV_PREFIX) {
                let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
                set_path(&mut table, &path, &v)
                    .with_context(|| format!("environment override {k}"))?;
            }
        }
        let de = toml::Value::Table(table);
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("{origin}: invalid config at `{path}`: {}", e.into_inner())
        })?;
        vigil_scoring::reputation::resolve_cache_paths(&mut cfg.scoring.reputation, &cfg.data_dir);
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(cfg)
    }

    /// Reads a config file (or the embedded default when `path` is `None`), with the
    /// process's `VIGIL__*` overrides.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
                p.display().to_string(),
            ),
            None => (
                EMBEDDED_DEFAULT.to_string(),
                "embedded default config".to_string(),
            ),
        };
        Self::parse(&text, &origin, std::env::vars())
    }

    /// Checks what serde cannot: values, and keys that only make sense together.
    pub fn validate(&self) -> Result<()> {
        self.pipeline.validate()?;
        vigil_ingest::normalize::Normalizer::new(self.normalize.clone())?;
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "invalid config at `server.listen`: `{}` is not an address such as 127.0.0.1:7070",
                self.server.listen
            );
        }
        if let Some(k) = &self.kafka
            && k.brokers.trim().is_empty()
        {
            bail!("invalid config at `kafka.brokers`: must not be empty");
        }
        if self.dead_letters.kind == DeadLetterType::Kafka && self.kafka.is_none() {
            bail!("invalid config at `dead_letters.type`: `kafka` needs a `[kafka]` section");
        }
        vigil_scoring::Scorer::new(&self.scoring).map_err(|e| anyhow::anyhow!("{e}"))?;
        self.api.resolve_tokens()?;
        self.telemetry.validate()?;
        self.scale.validate(self)?;
        if self.store.compact_min_files < 2 {
            bail!("invalid config at `store.compact_min_files`: must be at least 2");
        }
        for (key, v) in [
            ("api.sql_timeout_ms", self.api.sql_timeout_ms as usize),
            (
                "api.sql_memory_limit_bytes",
                self.api.sql_memory_limit_bytes,
            ),
            ("api.sql_max_rows", self.api.sql_max_rows),
            (
                "store.flush_interval_ms",
                self.store.flush_interval_ms as usize,
            ),
            ("store.hot_max_bytes", self.store.hot_max_bytes),
        ] {
            if v == 0 {
                bail!("invalid config at `{key}`: must be at least 1");
            }
        }
        if let Some(p) = &self.proxy {
            p.build().map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        for (name, src) in &self.sources {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bail!(
                    "invalid config at `sources.{name}`: source names are letters, digits, `-` and `_`"
                );
            }
            src.format
                .build(&vigil_ingest::formats::FormatOptions {
                    fields: src.fields.clone(),
                })
                .map_err(|e| match e {
                    vigil_ingest::IngestError::Config { key, message } => {
                        anyhow::anyhow!("invalid config at `sources.{name}.{key}`: {message}")
                    }
                    other => other.into(),
                })?;
            if matches!(src.kind, vigil_ingest::source::SourceKind::Kafka(_))
                && self.kafka.is_none()
            {
                bail!(
                    "invalid config at `sources.{name}.type`: a kafka source needs a `[kafka]` section"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config> {
        Config::parse(s, "test.toml", Vec::new())
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = parse(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(c.sources.len(), 1);
    }

    #[test]
    fn unknown_and_bad_keys_are_named_by_path() {
        let e = parse("[sources.edge]\ntype = \"file\"\npaths = [\"/x\"]\nfromat = \"nginx\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("sources.edge"), "{e}");
        assert!(e.to_string().contains("fromat"), "{e}");
        let e = parse("[pipeline]\nbatch_max_events = 0\n").unwrap_err();
        assert!(e.to_string().contains("pipeline.batch_max_events"), "{e}");
        let e = parse("[normalize]\ntrusted_proxies = [\"10.0.0.0/99\"]\n").unwrap_err();
        assert!(
            e.to_string().contains("normalize.trusted_proxies[0]"),
            "{e}"
        );
        let e = parse("[sources.k]\ntype = \"kafka\"\ntopics = [\"t\"]\n").unwrap_err();
        assert!(e.to_string().contains("sources.k.type"), "{e}");
        let e = parse("[sources.j]\ntype = \"stdin\"\nformat = \"json\"\n[sources.j.fields]\nidentity = [\"a..b\"]\n").unwrap_err();
        assert!(
            e.to_string().contains("sources.j.fields.identity[0]"),
            "{e}"
        );
        let e = parse("[server]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(e.to_string().contains("server.listen"), "{e}");
    }

    #[test]
    fn scale_roles_need_what_they_run_on() {
        let kafka = "[kafka]\nbrokers = \"127.0.0.1:9092\"\n";
        let source = "[sources.gw]\ntype = \"kafka\"\nformat = \"nginx\"\ntopics = [\"logs\"]\n";
        let e = parse("[scale]\nrole = \"score\"\n").unwrap_err();
        assert!(e.to_string().contains("`score` needs a `[kafka]`"), "{e}");
        let e = parse(&format!("{kafka}[scale]\nrole = \"parse\"\n")).unwrap_err();
        assert!(e.to_string().contains("`parse` needs at least one"), "{e}");
        let e = parse(&format!("{kafka}{source}[scale]\nrole = \"score\"\n")).unwrap_err();
        assert!(e.to_string().contains("`sources`"), "{e}");
        let e = parse(&format!("{kafka}[scale]\nrole = \"scorer\"\n")).unwrap_err();
        assert!(e.to_string().contains("scorer"), "{e}");
        let c = parse(&format!("{kafka}{source}[scale]\nrole = \"parse\"\n")).unwrap();
        assert_eq!(
            (c.scale.role, c.scale.events_topic.as_str()),
            (ScaleRole::Parse, "vigil.events")
        );
        let c = parse(&format!(
            "{kafka}[scale]\nrole = \"score\"\nrebuild_secs = 60\n"
        ))
        .unwrap();
        assert_eq!((c.scale.role, c.scale.rebuild_secs), (ScaleRole::Score, 60));
        assert_eq!(parse("").unwrap().scale.role, ScaleRole::All);
    }

    #[test]
    fn env_overrides() {
        let c = Config::parse(
            EMBEDDED_DEFAULT,
            "t",
            vec![
                (
                    "VIGIL__SERVER__LISTEN".to_string(),
                    "127.0.0.1:9999".to_string(),
                ),
                (
                    "VIGIL__PIPELINE__BATCH_MAX_EVENTS".to_string(),
                    "17".to_string(),
                ),
                ("OTHER".to_string(), "x".to_string()),
            ],
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9999");
        assert_eq!(c.pipeline.batch_max_events, 17);
    }
}
