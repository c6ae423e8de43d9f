//! `vigil sql` and `vigil backtest`: against a data directory's store directly (read-only, as
//! `vigil replay --data-dir` or a running engine left it), or against a running engine's API
//! (`/v1/sql`, `/v1/backtest`) over plain HTTP/1.1.

use crate::api::backtest::{BacktestRequest, BacktestRule};
use crate::api::sql::{QueryResult, SqlService};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vigil_ingest::store::Store;

/// What to query: a data directory, or a running engine (and who calls it).
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Query this data directory's store directly (read-only; an engine may be running on it).
    #[arg(long, conflicts_with = "server")]
    pub data_dir: Option<PathBuf>,
    /// A running engine's API, e.g. `http://127.0.0.1:7070`. Default: `server.listen` of
    /// --config, else http://127.0.0.1:7070.
    #[arg(long, alias = "url")]
    pub server: Option<String>,
    /// Config whose `server.listen` names the engine (and whose `[api]` limits and `[scoring]`
    /// apply with --data-dir).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Bearer token (or the VIGIL_TOKEN environment variable).
    #[arg(long, env = "VIGIL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl EngineArgs {
    fn base(&self) -> Result<String> {
        if let Some(u) = &self.server {
            return Ok(u.trim_end_matches('/').to_string());
        }
        let cfg = crate::config::Config::load(self.config.as_deref())?;
        Ok(format!("http://{}", cfg.server.listen))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SqlOutput {
    Table,
    Json,
    Csv,
}

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// The query (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE).
    pub sql: String,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// `table` (the default on a terminal), `csv` or `json` (the default otherwise).
    #[arg(long, value_enum)]
    pub format: Option<SqlOutput>,
}

#[derive(Args, Debug)]
pub struct BacktestArgs {
    /// A rule's `when` expression, or a rules file (every rule in it is backtested).
    pub rule_or_file: String,
    /// Subject kind of an expression rule: identity, session, ip, api_key.
    #[arg(long)]
    pub kind: Option<String>,
    /// Start of the time range (RFC 3339). Default: now minus --since.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the time range (RFC 3339). Default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// Length of the range ending now when --from is not given: `90s`, `30m`, `24h`, `7d`.
    #[arg(long, default_value = "24h")]
    pub since: String,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// `table` (default) or `json` (the API's answer, one line per rule).
    #[arg(long, value_enum, default_value = "table")]
    pub format: SqlOutput,
}

/// One request to the engine; the status, content type and body.
async fn call(
    engine: &EngineArgs,
    method: Method,
    path: &str,
    accept: &str,
    body: Option<String>,
) -> Result<(StatusCode, String, Bytes)> {
    let base = engine.base()?;
    let uri: hyper::Uri = format!("{base}{path}")
        .parse()
        .with_context(|| format!("`{base}` is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("`{base}`: only http:// URLs are supported");
    }
    let host = uri.host().context("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to {base} timed out"))?
    .with_context(|| format!("cannot connect to the engine at {base}"))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::ACCEPT, accept);
    if let Some(t) = &engine.token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, ctype, body))
}

/// The problem detail of an error answer, or its text.
fn failure(status: StatusCode, body: &[u8]) -> anyhow::Error {
    let detail = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    anyhow::anyhow!("{status}: {detail}")
}

/// The data directory's store, opened read-only, and the config that applies.
fn local(
    engine: &EngineArgs,
    dir: &std::path::Path,
) -> Result<(crate::config::Config, Arc<Store>)> {
    let cfg = crate::config::Config::load(engine.config.as_deref())?;
    let store_dir = dir.join("store");
    if !store_dir.is_dir() {
        bail!(
            "{} holds no store (expected {}): give vigil run's data_dir, or vigil replay --data-dir",
            dir.display(),
            store_dir.display()
        );
    }
    let store_cfg = vigil_ingest::store::StoreConfig {
        dir: store_dir,
        ..Default::default()
    };
    let store = Store::open_read_only(store_cfg, crate::run::table_specs())
        .with_context(|| format!("cannot read the store in {}", dir.display()))?;
    Ok((cfg, store))
}

fn print_rows(r: &QueryResult, format: SqlOutput) -> Result<()> {
    use std::io::Write;
    let bytes = match format {
        SqlOutput::Table => {
            println!(
                "{}",
                arrow::util::pretty::pretty_format_batches(&r.batches)?
            );
            eprintln!(
                "{} row{}{} in {:.1} ms",
                r.rows,
                if r.rows == 1 { "" } else { "s" },
                if r.truncated { " (truncated)" } else { "" },
                r.elapsed.as_secs_f64() * 1000.0
            );
            return Ok(());
        }
        SqlOutput::Json => crate::api::sql::to_json(r)?,
        SqlOutput::Csv => crate::api::sql::to_csv(r)?,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    if !bytes.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub fn sql(args: SqlArgs) -> Result<()> {
    use std::io::IsTerminal;
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        SqlOutput::Table
    } else {
        SqlOutput::Json
    });
    let rt = tokio::runtime::Runtime::new()?;
    if let Some(dir) = &args.engine.data_dir {
        let (cfg, store) = local(&args.engine, dir)?;
        let service = SqlService::new(Some(store), &cfg.api);
        let r = rt
            .block_on(service.query(&args.sql, cfg.api.sql_max_rows))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        return print_rows(&r, format);
    }
    rt.block_on(async {
        let accept = match format {
            SqlOutput::Table => crate::api::sql::ARROW_STREAM,
            SqlOutput::Json => "application/json",
            SqlOutput::Csv => "text/csv",
        };
        let body = serde_json::json!({ "sql": args.sql }).to_string();
        let (status, _, bytes) =
            call(&args.engine, Method::POST, "/v1/sql", accept, Some(body)).await?;
        if !status.is_success() {
            return Err(failure(status, &bytes));
        }
        match format {
            SqlOutput::Table => {
                let reader = arrow::ipc::reader::StreamReader::try_new(
                    std::io::Cursor::new(bytes.to_vec()),
                    None,
                )?;
                let batches = reader.collect::<Result<Vec<_>, _>>()?;
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
                eprintln!("{rows} row{}", if rows == 1 { "" } else { "s" });
            }
            _ => {
                use std::io::Write;
                std::io::stdout().write_all(&bytes)?;
                if !bytes.ends_with(b"\n") {
                    println!();
                }
            }
        }
        Ok(())
    })
}

/// `90s`, `30m`, `24h`, `7d` as a duration.
fn parse_span(s: &str) -> Result<Duration> {
    let unit_len = s.chars().last().map_or(0, char::len_utf8);
    let (n, unit) = s.split_at(s.len() - unit_len);
    let n: u64 = n
        .parse()
        .with_context(|| format!("`{s}` is not a span such as 30m, 24h or 7d"))?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("`{s}` is not a span such as 30m, 24h or 7d"),
    };
    let secs = n
        .checked_mul(per)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .with_context(|| format!("`{s}` is longer than a century"))?;
    Ok(Duration::from_secs(secs))
}

#[derive(serde::Deserialize)]
struct RulesFile {
    #[serde(default, rename = "rule")]
    rules: Vec<FileRule>,
}

#[derive(serde::Deserialize)]
struct FileRule {
    id: String,
    kind: vigil_enforce::SubjectKind,
    when: String,
}

pub fn backtest(args: BacktestArgs) -> Result<()> {
    let now = vigil_enforce::UnixMicros::now();
    let to = match &args.to {
        Some(t) => vigil_enforce::UnixMicros::parse_rfc3339(t)?,
        None => now,
    };
    let from = match &args.from {
        Some(f) => vigil_enforce::UnixMicros::parse_rfc3339(f)?,
        None => vigil_enforce::UnixMicros(to.0 - parse_span(&args.since)?.as_micros() as i64),
    };
    let path = std::path::Path::new(&args.rule_or_file);
    let rules: Vec<FileRule> = if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str::<RulesFile>(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            .rules
    } else {
        let kind = args
            .kind
            .as_deref()
            .context("--kind is needed with an expression (identity, session, ip, api_key)")?
            .parse()?;
        vec![FileRule {
            id: "cli".into(),
            kind,
            when: args.rule_or_file.clone(),
        }]
    };
    let local = match &args.engine.data_dir {
        Some(dir) => {
            let (cfg, store) = local(&args.engine, dir)?;
            Some((SqlService::new(Some(store), &cfg.api), cfg.scoring))
        }
        None => None,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        for r in rules {
            let id = r.id.clone();
            let req = BacktestRequest {
                rule: BacktestRule {
                    id: r.id,
                    kind: r.kind,
                    when: r.when,
                },
                from: from.to_rfc3339(),
                to: to.to_rfc3339(),
                windows_secs: None,
                limit: None,
            };
            let v: serde_json::Value = match &local {
                Some((sql, scoring)) => crate::api::backtest::run(sql, scoring, req)
                    .await
                    .map_err(|e| anyhow::anyhow!("rule {id}: {}", e.detail))?,
                None => {
                    let body = serde_json::to_string(&req)?;
                    let (status, _, bytes) = call(
                        &args.engine,
                        Method::POST,
                        "/v1/backtest",
                        "application/json",
                        Some(body),
                    )
                    .await?;
                    if !status.is_success() {
                        return Err(failure(status, &bytes).context(format!("rule {id}")));
                    }
                    serde_json::from_slice(&bytes)?
                }
            };
            if args.format != SqlOutput::Table {
                println!("{v}");
                continue;
            }
            println!(
                "rule {id} ({}): {} subject(s) hit over {} events, {} evaluations",
                v["kind"].as_str().unwrap_or(""),
                v["subjects_total"],
                v["events"],
                v["evaluations"]
            );
            for s in v["subjects"].as_array().into_iter().flatten() {
                println!(
                    "  {:<40} first {}  last {}  hits {}",
                    s["subject"].as_str().unwrap_or(""),
                    s["first_hit"].as_str().unwrap_or(""),
                    s["last_hit"].as_str().unwrap_or(""),
                    s["hits"]
                );
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(parse_span("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_span("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_span("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_span("h").is_err());
        assert!(parse_span("5w").is_err());
        assert!(parse_span("").is_err());
        assert!(parse_span("5é").is_err());
        assert!(parse_span("é").is_err());
        assert!(parse_span("99999999999999999d").is_err());
    }
}
