//! `/v1/batches`, as OpenAI's Batch API: create a batch from an uploaded file, retrieve it
//! (with live request counts while it runs), list a tenant's batches newest first, cancel
//! one. Running them is `jobs`'; what a batch object looks like, and what a create request
//! must say, is here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use batch::progress::Snapshot;
use dispatch::DispatchError;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::files::{json_response, no_such};
use crate::listing::{self, Bounds};
use crate::log::RequestLog;
use crate::store::{BatchRow, Counts, Status, unix_now};

/// The endpoints a batch may run (those `tokenpace batch run` supports).
const ENDPOINTS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/messages"];

/// The fields of a create request. `output_expires_after` is accepted and not applied
/// (outputs are kept until deleted).
const FIELDS: [&str; 5] = [
    "input_file_id",
    "endpoint",
    "completion_window",
    "metadata",
    "output_expires_after",
];

/// The batch object. `live` are the runner's counters while it runs.
pub(crate) fn object(b: &BatchRow, live: Option<Snapshot>, window: std::time::Duration) -> Value {
    let counts = match live {
        Some(s) if s.total > 0 && matches!(b.status, Status::InProgress | Status::Cancelling) => {
            Counts {
                total: s.total,
                completed: s.already_succeeded + s.succeeded,
                failed: s.already_failed + s.failed,
            }
        }
        _ => b.counts,
    };
    json!({
        "id": b.id,
        "object": "batch",
        "endpoint": b.endpoint,
        "errors": b.errors,
        "input_file_id": b.input_file_id,
        "completion_window": b.completion_window,
        "status": b.status.as_str(),
        "output_file_id": b.output_file_id,
        "error_file_id": b.error_file_id,
        "created_at": b.created_at,
        "in_progress_at": b.in_progress_at,
        "expires_at": b.created_at + i64::try_from(window.as_secs()).unwrap_or(i64::MAX / 2),
        "finalizing_at": b.finalizing_at,
        "completed_at": b.completed_at,
        "failed_at": b.failed_at,
        "expired_at": b.expired_at,
        "cancelling_at": b.cancelling_at,
        "cancelled_at": b.cancelled_at,
        "request_counts": {
            "total": counts.total,
            "completed": counts.completed,
            "failed": counts.failed,
        },
        "metadata": b.metadata,
    })
}

/// A create request, checked.
#[derive(Debug, Clone, PartialEq)]
struct Create {
    input_file_id: String,
    endpoint: String,
    metadata: Option<Value>,
}

fn string_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, DispatchError> {
    match obj.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(DispatchError::invalid(name, format!("{name} is empty"))),
        None | Some(Value::Null) => {
            Err(DispatchError::invalid(name, format!("{name} is required")))
        }
        Some(other) => Err(DispatchError::invalid(
            name,
            format!(
                "{name} must be a string, not {}",
                dispatch::error::json_type(other)
            ),
        )),
    }
}

/// Checks a create request's body (OpenAI's rules: `completion_window` is `24h`; up to 16
/// metadata pairs, keys up to 64 characters, string values up to 512).
fn check_create(body: &[u8]) -> Result<Create, DispatchError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        DispatchError::invalid("body", format!("the request body is not valid JSON: {e}"))
    })?;
    let Value::Object(obj) = value else {
        return Err(DispatchError::invalid(
            "body",
            format!(
                "the request body must be a JSON object, not {}",
                dispatch::error::json_type(&value)
            ),
        ));
    };
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(DispatchError::invalid(
            unknown.as_str(),
            format!(
                "Unrecognized request argument supplied: {unknown} (a batch takes {})",
                FIELDS.join(", ")
            ),
        ));
    }
    let input_file_id = string_field(&obj, "input_file_id")?.to_owned();
    let endpoint = string_field(&obj, "endpoint")?;
    if !ENDPOINTS.contains(&endpoint) {
        return Err(DispatchError::invalid(
            "endpoint",
            format!(
                "endpoint '{endpoint}' is not supported: use {}",
                ENDPOINTS.join(", ")
            ),
        ));
    }
    let window = string_field(&obj, "completion_window")?;
    if window != "24h" {
        return Err(DispatchError::invalid(
            "completion_window",
            format!("completion_window '{window}' is not supported: use \"24h\""),
        ));
    }
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            if m.len() > 16 {
                return Err(DispatchError::invalid(
                    "metadata",
                    format!("metadata has {} pairs; at most 16 are allowed", m.len()),
                ));
            }
            for (k, v) in m {
                if k.chars().count() > 64 {
                    return Err(DispatchError::invalid(
                        "metadata",
                        format!("metadata key '{k}' is longer than 64 characters"),
                    ));
                }
                match v {
                    Value::String(s) if s.chars().count() <= 512 => {}
                    Value::String(_) => {
                        return Err(DispatchError::invalid(
                            "metadata",
                            format!("metadata value of '{k}' is longer than 512 characters"),
                        ));
                    }
                    other => {
                        return Err(DispatchError::invalid(
                            "metadata",
                            format!(
                                "metadata value of '{k}' must be a string, not {}",
                                dispatch::error::json_type(other)
                            ),
                        ));
                    }
                }
            }
            Some(Value::Object(m.clone()))
        }
        Some(other) => {
            return Err(DispatchError::invalid(
                "metadata",
                format!(
                    "metadata must be an object of strings, not {}",
                    dispatch::error::json_type(other)
                ),
            ));
        }
    };
    Ok(Create {
        input_file_id,
        endpoint: endpoint.to_owned(),
        metadata,
    })
}

/// `POST /v1/batches`.
pub(crate) async fn create(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut log = RequestLog::new(st.clone(), "/v1/batches", Instant::now());
    let result = async {
        log.tenant = st.keys.tenant(&headers)?;
        let body = body.map_err(|e| DispatchError::invalid("body", e.body_text()))?;
        let req = check_create(&body)?;
        let store = st.batches.store().await?;
        let (tenant, file_id) = (log.tenant.clone(), req.input_file_id.clone());
        let file = store
            .run(move |s| s.file(Some(&tenant), &file_id))
            .await?
            .ok_or_else(|| {
                DispatchError::invalid(
                    "input_file_id",
                    format!(
                        "No such File object: {} (upload it with POST /v1/files, purpose=batch)",
                        req.input_file_id
                    ),
                )
            })?;
        if file.purpose != "batch" {
            return Err(DispatchError::invalid(
                "input_file_id",
                format!(
                    "file {} has purpose '{}': a batch's input is a file uploaded with purpose=batch",
                    file.id, file.purpose
                ),
            ));
        }
        if st.batches.stopping() {
            return Err(crate::store::StoreError::Closed.into());
        }
        let row = BatchRow {
            id: batch::record::new_id("batch_"),
            tenant: log.tenant.clone(),
            endpoint: req.endpoint,
            input_file_id: file.id,
            completion_window: "24h".to_owned(),
            status: Status::Validating,
            output_file_id: None,
            error_file_id: None,
            created_at: unix_now(),
            in_progress_at: None,
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            counts: Counts::default(),
            metadata: req.metadata,
            errors: None,
        };
        let stored = row.clone();
        store.run(move |s| s.add_batch(&stored)).await?;
        st.batches.spawn(&store, row.id.clone());
        Ok(json_response(StatusCode::OK, &object(&row, None, st.batches.completion_window())))
    }
    .await;
    log.respond(result)
}

/// `GET /v1/batches/{id}`.
pub(crate) async fn retrieve(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut log = RequestLog::new(st.clone(), "/v1/batches/{id}", Instant::now());
    let result = async {
        log.tenant = st.keys.tenant(&headers)?;
        let store = st.batches.store().await?;
        let (tenant, owned) = (log.tenant.clone(), id.clone());
        let row = store
            .run(move |s| s.batch(Some(&tenant), &owned))
            .await?
            .ok_or_else(|| no_such("Batch", &id))?;
        Ok(json_response(
            StatusCode::OK,
            &object(
                &row,
                st.batches.live(&row.id),
                st.batches.completion_window(),
            ),
        ))
    }
    .await;
    log.respond(result)
}

/// `GET /v1/batches`: newest first.
pub(crate) async fn list(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let mut log = RequestLog::new(st.clone(), "/v1/batches", Instant::now());
    let result = async {
        log.tenant = st.keys.tenant(&headers)?;
        let q = listing::parse(
            query,
            Bounds {
                default_limit: 20,
                max_limit: 100,
                filters: false,
            },
        )?;
        let store = st.batches.store().await?;
        let (tenant, after) = (log.tenant.clone(), q.after.clone());
        let page = store
            .run(move |s| s.batches(&tenant, after.as_deref(), q.limit))
            .await?
            .ok_or_else(|| listing::unknown_cursor(q.after.as_deref().unwrap_or_default()))?;
        let data = page
            .items
            .iter()
            .map(|b| object(b, st.batches.live(&b.id), st.batches.completion_window()))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &listing::object(data, page.has_more),
        ))
    }
    .await;
    log.respond(result)
}

/// `POST /v1/batches/{id}/cancel`: a validating or running batch stops taking lines; the
/// lines in flight finish, and it ends `cancelled` with what finished.
pub(crate) async fn cancel(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut log = RequestLog::new(st.clone(), "/v1/batches/{id}/cancel", Instant::now());
    let result = async {
        log.tenant = st.keys.tenant(&headers)?;
        let store = st.batches.store().await?;
        let (tenant, owned) = (log.tenant.clone(), id.clone());
        let (changed, row) = store
            .run(move |s| s.request_cancel(&tenant, &owned, unix_now()))
            .await?;
        let row = row.ok_or_else(|| no_such("Batch", &id))?;
        if changed {
            st.batches.cancel(&row.id);
        } else if !matches!(row.status, Status::Cancelling | Status::Cancelled) {
            return Err(DispatchError::invalid(
                "id",
                format!(
                    "batch {id} is {}: only a validating or in_progress batch can be cancelled",
                    row.status.as_str()
                ),
            ));
        }
        Ok(json_response(
            StatusCode::OK,
            &object(
                &row,
                st.batches.live(&row.id),
                st.batches.completion_window(),
            ),
        ))
    }
    .await;
    log.respond(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(body: &str) -> Option<String> {
        check_create(body.as_bytes()).unwrap_err().param
    }

    #[test]
    fn create_requests_are_checked_field_by_field() {
        let ok = check_create(
            br#"{"input_file_id":"file-1","endpoint":"/v1/messages","completion_window":"24h","metadata":{"k":"v"}}"#,
        )
        .unwrap();
        assert_eq!(ok.endpoint, "/v1/messages");
        assert_eq!(ok.metadata, Some(json!({"k": "v"})));
        let base = r#""input_file_id":"file-1","endpoint":"/v1/chat/completions","completion_window":"24h""#;
        assert_eq!(param("[1]").as_deref(), Some("body"));
        assert_eq!(param("{").as_deref(), Some("body"));
        assert_eq!(
            param(r#"{"endpoint":"/v1/chat/completions","completion_window":"24h"}"#).as_deref(),
            Some("input_file_id")
        );
        assert_eq!(
            param(r#"{"input_file_id":"f","endpoint":"/v1/embeddings","completion_window":"24h"}"#)
                .as_deref(),
            Some("endpoint")
        );
        assert_eq!(
            param(r#"{"input_file_id":"f","endpoint":"/v1/completions","completion_window":"1h"}"#)
                .as_deref(),
            Some("completion_window")
        );
        assert_eq!(
            param(&format!("{{{base},\"metadata\":[1]}}")).as_deref(),
            Some("metadata")
        );
        assert_eq!(
            param(&format!("{{{base},\"metadata\":{{\"k\":1}}}}")).as_deref(),
            Some("metadata")
        );
        let many: Vec<String> = (0..17).map(|i| format!("\"k{i}\":\"v\"")).collect();
        assert_eq!(
            param(&format!("{{{base},\"metadata\":{{{}}}}}", many.join(","))).as_deref(),
            Some("metadata")
        );
        assert_eq!(
            param(&format!("{{{base},\"model\":\"x\"}}")).as_deref(),
            Some("model")
        );
        let nulls = check_create(format!("{{{base},\"metadata\":null}}").as_bytes()).unwrap();
        assert_eq!(nulls.metadata, None);
    }
}
