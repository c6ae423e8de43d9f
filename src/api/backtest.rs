//! Rule backtests over the stored events: `POST /v1/backtest` and `vigil backtest --data-dir`.

use super::sql::{QueryError, SqlService};
use super::{Api, ApiError, JsonBody};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use datafusion::prelude::col;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use vigil_enforce::{Action, SubjectKind};
use vigil_scoring::ScoringConfig;
use vigil_scoring::backtest::Backtest;
use vigil_scoring::rules::{RuleSpec, Severity};

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestRule {
    #[serde(default = "default_backtest_id")]
    pub id: String,
    pub kind: SubjectKind,
    pub when: String,
}

fn default_backtest_id() -> String {
    "backtest".into()
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    pub rule: BacktestRule,
    pub from: String,
    pub to: String,
    /// Feature windows to compute (seconds); the engine's own by default.
    #[serde(default)]
    pub windows_secs: Option<Vec<u64>>,
    /// Most subjects listed. Default 1000.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `POST /v1/backtest`.
pub async fn handle(
    State(api): State<Arc<Api>>,
    JsonBody(req): JsonBody<BacktestRequest>,
) -> Result<Json<Value>, ApiError> {
    run(&api.sql, &api.scoring, req).await.map(Json)
}

/// Which subjects a rule would have hit between `from` and `to`, with the features computed
/// from the stored events (a DataFusion scan of `events` in time order) as live scoring
/// computes them. Shared by the API and `vigil backtest --data-dir`.
pub async fn run(
    sql: &SqlService,
    scoring: &ScoringConfig,
    req: BacktestRequest,
) -> Result<Value, ApiError> {
    let from = super::subjects::time(&req.from, "from")?;
    let to = super::subjects::time(&req.to, "to")?;
    if to <= from {
        return Err(ApiError::bad_request("`to` must be after `from`"));
    }
    let mut cfg = scoring.clone();
    if let Some(w) = req.windows_secs {
        cfg.features.windows_secs = w;
        cfg.features.distinct_windows = cfg
            .features
            .distinct_windows
            .min(cfg.features.windows_secs.len());
    }
    let spec = RuleSpec {
        id: req.rule.id,
        kind: req.rule.kind,
        when: req.rule.when,
        action: Action::Block,
        ttl_secs: 1,
        severity: Severity::High,
        description: String::new(),
        mode: Default::default(),
        throttle_rps: None,
        pillar: None,
    };
    let mut bt = Backtest::new(&cfg, spec).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = req.limit.unwrap_or(1000);
    if sql.has_store() {
        let ctx = sql.context()?;
        let run = async {
            let df = ctx
                .table("events")
                .await?
                .filter(col("timestamp").gt_eq(super::subjects::ts_lit(from)))?
                .filter(col("timestamp").lt(super::subjects::ts_lit(to)))?
                .sort(vec![col("timestamp").sort(true, false)])?;
            let mut stream = df.execute_stream().await?;
            while let Some(b) = stream.next().await {
                let b = b?;
                tokio::task::block_in_place(|| bt.feed(&b))
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            }
            Ok::<_, datafusion::error::DataFusionError>(())
        };
        tokio::time::timeout(sql.timeout(), run)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "sql-limit",
                    format!(
                        "the backtest ran longer than {} ms (api.sql_timeout_ms)",
                        sql.timeout().as_millis()
                    ),
                )
            })?
            .map_err(QueryError::from)?;
    }
    let mut report = bt.finish();
    let total = report.subjects.len();
    let truncated = total > limit;
    report.subjects.truncate(limit);
    let mut v = serde_json::to_value(&report).map_err(ApiError::internal)?;
    v["subjects_total"] = json!(total);
    v["truncated"] = json!(truncated);
    v["from"] = json!(from);
    v["to"] = json!(to);
    Ok(v)
}
