//! The `decisions` table: every decision issued or revoked, as Arrow rows for the store.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `id` | utf8 | the decision's UUID v7 |
//! | `kind`, `subject` | utf8 | the subject (`subject` is its id, as in `scores`) |
//! | `action` | utf8 | `allow`, `monitor`, `step_up`, `throttle`, `block` |
//! | `score` | float64 | trust score behind it |
//! | `reasons` | list<utf8> | `rule:<id>`, `model:<name>@<version>=<p>`, `feature:…`, `manual:<who>` |
//! | `origin` | utf8 | `rule`, `model`, `reputation`, `manual`, `policy` |
//! | `issued_at`, `expires_at` | timestamp(us, UTC) | when it applies |
//! | `throttle_rps` | float64? | rate of a `throttle` |
//! | `allow_list` | bool | an allow-list entry |
//! | `change` | utf8 | `issue`, or `revoke` (the subject's decision was withdrawn at `issued_at`) |

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, ListBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::{Arc, LazyLock};
use vigil_enforce::Decision;

/// What happened to a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Issue,
    Revoke,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Issue => "issue",
            Change::Revoke => "revoke",
        }
    }
}

fn timestamp(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        false,
    )
}

static DECISIONS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new(
            "reasons",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new("origin", DataType::Utf8, false),
        timestamp("issued_at"),
        timestamp("expires_at"),
        Field::new("throttle_rps", DataType::Float64, true),
        Field::new("allow_list", DataType::Boolean, false),
        Field::new("change", DataType::Utf8, false),
    ]))
});

/// Schema of the `decisions` table.
pub fn decisions_schema() -> SchemaRef {
    DECISIONS_SCHEMA.clone()
}

/// The rows of `decisions`, one per `(decision, change)`.
pub fn decisions_batch<'a>(
    rows: impl IntoIterator<Item = (&'a Decision, Change)>,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut id = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut subject = StringBuilder::new();
    let mut action = StringBuilder::new();
    let mut score = Float64Builder::new();
    let mut reasons = ListBuilder::new(StringBuilder::new());
    let mut origin = StringBuilder::new();
    let mut issued = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
    let mut expires = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
    let mut rps = Float64Builder::new();
    let mut allow = BooleanBuilder::new();
    let mut change = StringBuilder::new();
    for (d, c) in rows {
        id.append_value(&d.id);
        kind.append_value(d.subject.kind.as_str());
        subject.append_value(&d.subject.id);
        action.append_value(d.action.as_str());
        score.append_value(d.score);
        for r in &d.reasons {
            reasons.values().append_value(r);
        }
        reasons.append(true);
        origin.append_value(&d.origin);
        issued.append_value(d.issued_at.0);
        expires.append_value(d.expires_at.0);
        rps.append_option(d.throttle_rps);
        allow.append_value(d.allow_list);
        change.append_value(c.as_str());
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(kind.finish()),
        Arc::new(subject.finish()),
        Arc::new(action.finish()),
        Arc::new(score.finish()),
        Arc::new(reasons.finish()),
        Arc::new(origin.finish()),
        Arc::new(issued.finish()),
        Arc::new(expires.finish()),
        Arc::new(rps.finish()),
        Arc::new(allow.finish()),
        Arc::new(change.finish()),
    ];
    RecordBatch::try_new(decisions_schema(), cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vigil_enforce::{Action, Subject, SubjectKind};

    #[test]
    fn rows_follow_the_schema() {
        let mut d = Decision::new(
            Subject::new(SubjectKind::Ip, "203.0.113.7"),
            Action::Block,
            0.9,
            "rule",
            Duration::from_secs(60),
        );
        d.reasons = vec!["rule:scan".into(), "model:abuse@1=0.9".into()];
        let b = decisions_batch([(&d, Change::Issue), (&d, Change::Revoke)]).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.schema(), decisions_schema());
        let reasons = b
            .column_by_name("reasons")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .unwrap();
        assert_eq!(reasons.value_length(0), 2);
    }
}
