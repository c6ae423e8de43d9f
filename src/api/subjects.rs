//! Subjects, decisions, manual decisions, backtests and rule reloads.

use super::auth::Caller;
use super::{Api, ApiError, JsonBody};
use arrow::array::RecordBatch;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::prelude::{col, lit};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use vigil_enforce::{Action, Decision, Subject, SubjectKind, UnixMicros};

fn kind(s: &str) -> Result<SubjectKind, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "unknown subject kind `{s}`: identity, session, ip, api_key or device"
        ))
    })
}

pub(super) fn time(s: &str, name: &str) -> Result<UnixMicros, ApiError> {
    UnixMicros::parse_rfc3339(s)
        .map_err(|_| ApiError::bad_request(format!("`{name}`: `{s}` is not an RFC 3339 time")))
}

pub(super) fn ts_lit(t: UnixMicros) -> datafusion::prelude::Expr {
    lit(datafusion::scalar::ScalarValue::TimestampMicrosecond(
        Some(t.0),
        Some("+00:00".into()),
    ))
}

/// Rows as JSON objects (the SQL API's row encoding).
fn rows_json(batches: &[RecordBatch]) -> Result<Vec<Value>, ApiError> {
    let buf = super::sql::json_rows(batches).map_err(ApiError::internal)?;
    serde_json::from_slice(&buf).map_err(ApiError::internal)
}

/// Recent rows of `decisions` matching `filter`, newest first.
async fn decision_rows(
    api: &Api,
    filter: Vec<datafusion::prelude::Expr>,
    limit: usize,
) -> Result<Vec<Value>, ApiError> {
    if api.store.is_none() {
        return Ok(Vec::new());
    }
    let ctx = api.sql.context()?;
    let run = async {
        let mut df = ctx.table("decisions").await?;
        for f in filter {
            df = df.filter(f)?;
        }
        df.sort(vec![col("issued_at").sort(false, false)])?
            .limit(0, Some(limit))?
            .collect()
            .await
    };
    let batches = tokio::time::timeout(api.sql.timeout(), run)
        .await
        .map_err(|_| ApiError::internal("decisions query timed out"))?
        .map_err(ApiError::internal)?;
    rows_json(&batches)
}

/// `GET /v1/subjects/{kind}/{id}`: the subject's current trust.
pub async fn subject(
    State(api): State<Arc<Api>>,
    Path((k, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let k = kind(&k)?;
    let subject = Subject::new(k, id.clone());
    let assessment = {
        let scorer = api.scorer.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = scorer.lock().unwrap_or_else(|p| p.into_inner());
            s.assess(k, &id)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
    };
    let active = api.decisions.feed.table().get(&subject);
    let recent = decision_rows(
        &api,
        vec![
            col("kind").eq(lit(k.as_str())),
            col("subject").eq(lit(id.as_str())),
        ],
        20,
    )
    .await?;
    if assessment.is_none() && active.is_none() && recent.is_empty() {
        return Err(ApiError::not_found(format!(
            "subject {subject} is not tracked and has no decisions"
        )));
    }
    let features: serde_json::Map<String, Value> = assessment
        .as_ref()
        .map(|a| {
            a.features
                .iter()
                .map(|(n, v)| (n.clone(), v.map_or(Value::Null, |v| json!(v))))
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(json!({
        "subject": {"kind": k.as_str(), "id": id},
        "tracked": assessment.is_some(),
        "score": assessment.as_ref().map(|a| a.score),
        "last_seen": assessment.as_ref().map(|a| UnixMicros(a.last_seen_us)),
        "features_at": assessment.as_ref().map(|a| UnixMicros(a.at_us)),
        "rules": assessment.as_ref().map(|a| a.rules.clone()).unwrap_or_default(),
        "models": assessment.as_ref().map(|a| {
            a.models.iter().map(|(m, s)| (m.clone(), json!(s))).collect::<serde_json::Map<_, _>>()
        }),
        "features": features,
        "decision": active.as_deref(),
        "recent_decisions": recent,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionsQuery {
    kind: Option<String>,
    subject: Option<String>,
    action: Option<String>,
    origin: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// `true`: the decisions in force now (from the engine's table), not the history.
    active: Option<bool>,
    limit: Option<usize>,
}

/// `GET /v1/decisions`: decision history (the `decisions` table), or those in force.
pub async fn list_decisions(
    State(api): State<Arc<Api>>,
    q: Result<Query<DecisionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(100).min(api.sql.max_rows);
    let k = q.kind.as_deref().map(kind).transpose()?;
    let action = q
        .action
        .as_deref()
        .map(|a| {
            serde_json::from_value::<Action>(json!(a)).map_err(|_| {
                ApiError::bad_request(format!(
                    "unknown action `{a}`: allow, monitor, step_up, throttle or block"
                ))
            })
        })
        .transpose()?;
    if q.active == Some(true) {
        let now = UnixMicros::now();
        let mut live: Vec<Arc<Decision>> = api
            .decisions
            .feed
            .table()
            .snapshot_at(now)
            .into_iter()
            .filter(|d| k.is_none_or(|k| d.subject.kind == k))
            .filter(|d| q.subject.as_deref().is_none_or(|s| d.subject.id == s))
            .filter(|d| action.is_none_or(|a| d.action == a))
            .filter(|d| q.origin.as_deref().is_none_or(|o| d.origin == o))
            .collect();
        live.sort_by_key(|d| std::cmp::Reverse(d.issued_at));
        live.truncate(limit);
        let n = live.len();
        return Ok(Json(json!({"decisions": live, "count": n})));
    }
    let mut filter = Vec::new();
    if let Some(k) = k {
        filter.push(col("kind").eq(lit(k.as_str())));
    }
    if let Some(s) = &q.subject {
        filter.push(col("subject").eq(lit(s.as_str())));
    }
    if let Some(a) = action {
        filter.push(col("action").eq(lit(a.as_str())));
    }
    if let Some(o) = &q.origin {
        filter.push(col("origin").eq(lit(o.as_str())));
    }
    if let Some(s) = &q.since {
        filter.push(col("issued_at").gt_eq(ts_lit(time(s, "since")?)));
    }
    if let Some(u) = &q.until {
        filter.push(col("issued_at").lt(ts_lit(time(u, "until")?)));
    }
    let rows = decision_rows(&api, filter, limit).await?;
    let n = rows.len();
    Ok(Json(json!({"decisions": rows, "count": n})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualDecision {
    subject: Subject,
    /// `block`, `throttle`, `step_up`, `monitor`, or `allow` (an allow-list entry).
    action: Action,
    /// How long it applies. Default 3600.
    #[serde(default = "default_manual_ttl")]
    ttl_secs: u64,
    /// Free text kept in the reasons (`note:<reason>`).
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    throttle_rps: Option<f64>,
}

fn default_manual_ttl() -> u64 {
    3600
}

/// `POST /v1/decisions`: a manual decision, through the same feed as automatic ones.
pub async fn manual_decision(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    JsonBody(m): JsonBody<ManualDecision>,
) -> Result<Response, ApiError> {
    if m.subject.id.is_empty() {
        return Err(ApiError::bad_request("`subject.id` must not be empty"));
    }
    if m.ttl_secs == 0 || m.ttl_secs > 365 * 86_400 {
        return Err(ApiError::bad_request(
            "`ttl_secs` must be between 1 and 31536000",
        ));
    }
    let ttl = Duration::from_secs(m.ttl_secs);
    let mut d = if m.action == Action::Allow {
        Decision::allow_list(m.subject.clone(), "manual", ttl)
    } else {
        Decision::new(m.subject.clone(), m.action, 1.0, "manual", ttl)
    };
    d.reasons.push(format!("manual:{}", caller.name));
    if let Some(r) = m.reason.filter(|r| !r.is_empty()) {
        d.reasons.push(format!("note:{r}"));
    }
    if let Some(rps) = m.throttle_rps {
        d.throttle_rps = Some(rps);
    }
    d.validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if m.action == Action::Allow {
        let mut s = api.scorer.lock().unwrap_or_else(|p| p.into_inner());
        s.policy_mut().allow(m.subject.clone(), d.expires_at);
    } else {
        // the manual allow-list entry, if any, ends: an operator's block wins over it
        api.decisions.feed.table().revoke(&m.subject);
        let mut s = api.scorer.lock().unwrap_or_else(|p| p.into_inner());
        s.policy_mut().unallow(&m.subject);
    }
    api.decisions
        .issue(std::slice::from_ref(&d))
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(subject = %d.subject, action = d.action.as_str(), by = %caller.name, "manual decision");
    Ok((StatusCode::CREATED, Json(d)).into_response())
}

/// `DELETE /v1/decisions/{kind}/{id}`: revokes the subject's decision everywhere.
pub async fn revoke(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Path((k, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let subject = Subject::new(kind(&k)?, id);
    {
        let mut s = api.scorer.lock().unwrap_or_else(|p| p.into_inner());
        s.policy_mut().unallow(&subject);
        s.policy_mut().forget(&subject);
    }
    let old = api
        .decisions
        .revoke(subject.clone(), &caller.name)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(%subject, by = %caller.name, "decision revoked");
    Ok(Json(json!({"subject": subject, "revoked": old.as_deref()})))
}

/// `POST /v1/rules/reload`: re-reads the rules file now; on error the old rules stay.
pub async fn reload_rules(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    let s = api.scorer.lock().unwrap_or_else(|p| p.into_inner());
    let rules = s.rules();
    match rules.reload() {
        Ok(n) => Ok(Json(json!({
            "rules": n,
            "path": rules.path().map(|p| p.display().to_string()),
        }))),
        Err(e) => Err(ApiError::bad_request(format!(
            "rules not reloaded, the previous rules stay: {e}"
        ))),
    }
}
