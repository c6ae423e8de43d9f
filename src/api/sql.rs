//! `POST /v1/sql`: read-only SQL over the store's tables, answered as JSON, CSV or an Arrow IPC
//! stream by `Accept`.
//!
//! - Only queries: `SELECT`, `WITH`, `VALUES`, `EXPLAIN [ANALYZE]` (of a query), `SHOW`, `DESCRIBE`. The
//!   statement is checked on the parsed AST, and the plan again by DataFusion's `SQLOptions`
//!   (no DDL, DML, `COPY` or statements); nothing can read or write a file: the session has
//!   no file-reading table functions and no URL tables.
//! - Limits per query from `[api]`: a timeout, a memory pool, and a row limit — more rows are
//!   cut, and the answer says so (`"truncated": true`, or the `Vigil-Truncated: true` header).
//! - A SQL error is a 400 with DataFusion's message; a query stopped by a limit (time,
//!   memory) is a 422.

use super::{Api, ApiError, JsonBody};
use crate::config::ApiConfig;
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use axum::extract::{FromRequest, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vigil_ingest::store::Store;

/// What a query answered.
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub truncated: bool,
    pub elapsed: Duration,
}

/// Runs read-only queries over the store with the configured limits.
pub struct SqlService {
    store: Option<Arc<Store>>,
    /// Functions, settings and the store's tables, built once; each query gets a copy with
    /// its own memory pool (building this from scratch costs milliseconds per query).
    base: datafusion::execution::SessionState,
    timeout: Duration,
    memory_limit: usize,
    pub max_rows: usize,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    pub sql: String,
}

/// Why a query did not answer.
#[derive(Debug)]
pub enum QueryError {
    /// Not a read-only query, or DataFusion refused it: the client's to fix (400).
    Invalid(String),
    /// Stopped by the time or memory limit (422).
    Limit(String),
    Internal(String),
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        classify(e)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "sql", m),
            QueryError::Limit(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "sql-limit", m),
            QueryError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Invalid(m) | QueryError::Limit(m) | QueryError::Internal(m) => {
                f.write_str(m)
            }
        }
    }
}

fn classify(e: DataFusionError) -> QueryError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(m) => {
            QueryError::Limit(format!("the query needs more memory than allowed: {m}"))
        }
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => {
            QueryError::Internal(e.to_string())
        }
        _ => QueryError::Invalid(e.to_string()),
    }
}

/// Whether a parsed statement only reads.
fn read_only(s: &DfStatement) -> bool {
    match s {
        DfStatement::Statement(s) => {
            matches!(
                **s,
                Statement::Query(_)
                    | Statement::ExplainTable { .. }
                    | Statement::ShowTables { .. }
                    | Statement::ShowColumns { .. }
                    | Statement::ShowVariable { .. }
            ) || matches!(&**s, Statement::Explain { statement, analyze: false, .. }
                if matches!(**statement, Statement::Query(_)))
        }
        DfStatement::Explain(e) => read_only(&e.statement),
        DfStatement::CreateExternalTable(_) | DfStatement::CopyTo(_) | DfStatement::Reset(_) => {
            false
        }
    }
}

impl SqlService {
    pub fn new(store: Option<Arc<Store>>, cfg: &ApiConfig) -> Self {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(2);
        let base = SessionContext::new_with_config(config);
        if let Some(store) = &store
            && let Err(e) = store.register(&base)
        {
            // registering fixed, valid providers cannot fail; say so loudly if it ever does
            tracing::error!(error = %e, "cannot register the store's tables for SQL");
        }
        Self {
            base: base.state(),
            store,
            timeout: Duration::from_millis(cfg.sql_timeout_ms),
            memory_limit: cfg.sql_memory_limit_bytes,
            max_rows: cfg.sql_max_rows,
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Adds small in-memory tables to every query's session (the `rules` and `features`
    /// catalogues) and, with a store, the `pillars` view over them and `decisions`
    /// ([`vigil_scoring::pillar::PILLARS_VIEW`]).
    pub async fn register_catalogue(&mut self, tables: Vec<(&'static str, RecordBatch)>) {
        let ctx = SessionContext::new_with_state(self.base.clone());
        for (name, batch) in tables {
            let registered =
                datafusion::datasource::MemTable::try_new(batch.schema(), vec![vec![batch]])
                    .and_then(|t| ctx.register_table(name, Arc::new(t)));
            if let Err(e) = registered {
                tracing::error!(table = name, error = %e, "cannot register a catalogue table");
            }
        }
        if self.store.is_some()
            && let Err(e) = ctx.sql(vigil_scoring::pillar::PILLARS_VIEW).await
        {
            tracing::error!(error = %e, "cannot create the pillars view");
        }
        self.base = ctx.state();
    }

    /// Whether there is a store to query (without one the tables do not exist).
    pub fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// A session over the store's tables with its own memory pool of this service's limit,
    /// sharing the base session's caches (Parquet footers are read once, not per query: the
    /// store's files never change under their names).
    pub fn context(&self) -> Result<SessionContext, QueryError> {
        let runtime = RuntimeEnvBuilder::from_runtime_env(self.base.runtime_env())
            .with_memory_limit(self.memory_limit, 1.0)
            .build_arc()
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        let state =
            datafusion::execution::SessionStateBuilder::new_from_existing(self.base.clone())
                .with_runtime_env(runtime)
                .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// Runs one read-only query, keeping at most `max_rows` rows.
    pub async fn query(&self, sql: &str, max_rows: usize) -> Result<QueryResult, QueryError> {
        let started = Instant::now();
        let r = tokio::time::timeout(self.timeout, self.run(sql, max_rows)).await;
        let r = match r {
            Ok(r) => r.map(|mut q| {
                q.elapsed = started.elapsed();
                q
            }),
            Err(_) => Err(QueryError::Limit(format!(
                "the query ran longer than {} ms (api.sql_timeout_ms)",
                self.timeout.as_millis()
            ))),
        };
        let counter = if r.is_ok() { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        r
    }

    async fn run(&self, sql: &str, max_rows: usize) -> Result<QueryResult, QueryError> {
        let ctx = self.context()?;
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect).map_err(classify)?;
        if !read_only(&statement) {
            return Err(QueryError::Invalid(
                "only queries are accepted (SELECT, WITH, VALUES, EXPLAIN, SHOW, DESCRIBE); \
                 DDL, DML, COPY and statements that read or write files are refused"
                    .into(),
            ));
        }
        let plan = state.statement_to_plan(statement).await.map_err(classify)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(classify)?;
        let df = ctx.execute_logical_plan(plan).await.map_err(classify)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(classify)?;
        let mut batches = Vec::new();
        let mut rows = 0;
        let mut truncated = false;
        while let Some(b) = stream.next().await {
            let b = b.map_err(classify)?;
            let room = max_rows - rows;
            if b.num_rows() > room {
                truncated = true;
                if room > 0 {
                    batches.push(b.slice(0, room));
                    rows += room;
                }
                break;
            }
            rows += b.num_rows();
            batches.push(b);
        }
        Ok(QueryResult {
            schema,
            batches,
            rows,
            truncated,
            elapsed: Duration::ZERO,
        })
    }
}

/// The answer formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Arrow,
}

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The format `Accept` asks for; JSON when it does not say. `None`: none we can give (406).
pub fn negotiate(headers: &HeaderMap) -> Option<Format> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Format::Json);
    };
    let mut best: Option<(f32, Format)> = None;
    for part in accept.split(',') {
        let mut it = part.split(';');
        let media = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let f = match media.as_str() {
            "application/json" | "application/*" | "*/*" => Format::Json,
            "text/csv" | "text/*" => Format::Csv,
            ARROW_STREAM => Format::Arrow,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, f));
        }
    }
    best.map(|(_, f)| f)
}

/// `POST /v1/sql`: `{"sql": "..."}`, or the query itself with `Content-Type: application/sql`
/// or `text/plain`.
pub async fn handle(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/sql") || t.starts_with("text/plain"));
    let req = if raw {
        let bytes = axum::body::Bytes::from_request(req, &())
            .await
            .map_err(|e| ApiError::new(e.status(), "bad-request", e.body_text()))?;
        SqlRequest {
            sql: String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::bad_request("the query is not UTF-8"))?,
        }
    } else {
        JsonBody::<SqlRequest>::from_request(req, &()).await?.0
    };
    let format = negotiate(&headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not-acceptable",
            format!("answers are application/json, text/csv or {ARROW_STREAM}"),
        )
    })?;
    let r = api.sql.query(&req.sql, api.sql.max_rows).await?;
    encode(&r, format)
}

/// The answer in `format`.
pub fn encode(r: &QueryResult, format: Format) -> Result<Response, ApiError> {
    let truncated = HeaderValue::from_static(if r.truncated { "true" } else { "false" });
    let (content_type, body) = match format {
        Format::Json => ("application/json", to_json(r).map_err(ApiError::internal)?),
        Format::Csv => ("text/csv", to_csv(r).map_err(ApiError::internal)?),
        Format::Arrow => (ARROW_STREAM, to_arrow(r).map_err(ApiError::internal)?),
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("vigil-truncated", truncated);
    Ok(resp)
}

/// Rows as a JSON array of objects (nulls written out): the encoding of every row the API
/// answers with.
pub fn json_rows(batches: &[RecordBatch]) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut rows = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut rows);
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    if rows.is_empty() {
        rows.extend_from_slice(b"[]");
    }
    Ok(rows)
}

/// `{"schema":[{"name","type","nullable"}],"rows":[{...}],"row_count":n,"truncated":b,"elapsed_ms":t}`
pub fn to_json(r: &QueryResult) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let schema: Vec<serde_json::Value> = r
        .schema
        .fields()
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name(),
                "type": f.data_type().to_string(),
                "nullable": f.is_nullable(),
            })
        })
        .collect();
    let rows = json_rows(&r.batches)?;
    let mut out = Vec::with_capacity(rows.len() + 256);
    out.extend_from_slice(b"{\"schema\":");
    out.extend_from_slice(
        serde_json::to_string(&schema)
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b",\"rows\":");
    out.extend_from_slice(&rows);
    out.extend_from_slice(
        format!(
            ",\"row_count\":{},\"truncated\":{},\"elapsed_ms\":{:.3}}}",
            r.rows,
            r.truncated,
            r.elapsed.as_secs_f64() * 1000.0
        )
        .as_bytes(),
    );
    Ok(out)
}

/// CSV with a header row; nested values (lists, structs) as their text form.
pub fn to_csv(r: &QueryResult) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let flat = flat_schema(&r.schema);
    let mut out = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        if r.batches.is_empty() {
            w.write(&RecordBatch::new_empty(flat.clone()))?;
        }
        for b in &r.batches {
            w.write(&flatten(b, &flat)?)?;
        }
    }
    Ok(out)
}

fn nested(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
            | DataType::Union(..)
    )
}

fn flat_schema(s: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        s.fields()
            .iter()
            .map(|f| {
                if nested(f.data_type()) {
                    Field::new(f.name(), DataType::Utf8, true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect::<Vec<_>>(),
    ))
}

fn flatten(b: &RecordBatch, flat: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let opts = arrow::util::display::FormatOptions::default();
    let cols = b
        .columns()
        .iter()
        .map(|c| {
            if !nested(c.data_type()) {
                return Ok(c.clone());
            }
            let f = arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts)?;
            let v: StringArray = (0..c.len())
                .map(|i| (!c.is_null(i)).then(|| f.value(i).to_string()))
                .collect();
            Ok(Arc::new(v) as ArrayRef)
        })
        .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
    RecordBatch::try_new(flat.clone(), cols)
}

/// An Arrow IPC stream (schema, then the batches).
pub fn to_arrow(r: &QueryResult) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &r.schema)?;
        for b in &r.batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Option<Format> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        negotiate(&h)
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(Format::Json));
        assert_eq!(accept("text/csv"), Some(Format::Csv));
        assert_eq!(accept(ARROW_STREAM), Some(Format::Arrow));
        assert_eq!(
            accept("text/csv;q=0.5, application/vnd.apache.arrow.stream"),
            Some(Format::Arrow)
        );
        assert_eq!(accept("*/*"), Some(Format::Json));
        assert_eq!(accept("image/png"), None);
        assert_eq!(accept("text/csv;q=0"), None);
    }

    async fn run(sql: &str) -> Result<QueryResult, QueryError> {
        SqlService::new(None, &ApiConfig::default())
            .query(sql, 3)
            .await
    }

    #[tokio::test]
    async fn only_queries_are_accepted() {
        for ok in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
            "VALUES (1), (2)",
        ] {
            assert!(run(ok).await.is_ok(), "{ok}: {:?}", run(ok).await.err());
        }
        for bad in [
            "CREATE TABLE t (a INT)",
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "INSERT INTO t VALUES (1)",
            "DROP TABLE events",
            "SET datafusion.execution.batch_size = 1",
            "SELECT * FROM '/etc/passwd'",
            "SELECT 1; SELECT 2",
        ] {
            match run(bad).await {
                Err(QueryError::Invalid(_)) => {}
                other => panic!("{bad}: {:?}", other.map(|r| r.rows)),
            }
        }
    }

    #[tokio::test]
    async fn rows_are_cut_at_the_limit() {
        let r = run("SELECT * FROM generate_series(1, 10)").await.unwrap();
        assert_eq!(r.rows, 3);
        assert!(r.truncated);
        let r = run("SELECT * FROM generate_series(1, 3)").await.unwrap();
        assert_eq!(r.rows, 3);
        assert!(!r.truncated);
        let json: serde_json::Value = serde_json::from_slice(&to_json(&r).unwrap()).unwrap();
        assert_eq!(json["rows"].as_array().unwrap().len(), 3);
        assert_eq!(json["truncated"], false);
        let csv = String::from_utf8(to_csv(&r).unwrap()).unwrap();
        assert_eq!(csv.lines().count(), 4, "{csv}");
        let arrow = to_arrow(&r).unwrap();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow), None).unwrap();
        let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn timeout_stops_a_query() {
        let svc = SqlService::new(
            None,
            &ApiConfig {
                sql_timeout_ms: 1,
                ..ApiConfig::default()
            },
        );
        let r = svc
            .query(
                "SELECT count(DISTINCT a.value + b.value) FROM generate_series(1, 20000) a, generate_series(1, 20000) b",
                10,
            )
            .await;
        match r {
            Err(QueryError::Limit(m)) => assert!(m.contains("api.sql_timeout_ms"), "{m}"),
            other => panic!("{:?}", other.map(|r| r.rows)),
        }
        assert_eq!(svc.failed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn memory_limit_stops_a_query() {
        let svc = SqlService::new(
            None,
            &ApiConfig {
                sql_memory_limit_bytes: 1 << 20,
                ..ApiConfig::default()
            },
        );
        let r = svc
            .query(
                "SELECT value % 100000 AS k, count(*) FROM generate_series(1, 3000000) GROUP BY k ORDER BY k",
                10,
            )
            .await;
        assert!(matches!(r, Err(QueryError::Limit(_))), "{:?}", r.err());
    }
}
