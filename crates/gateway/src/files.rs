//! `/v1/files`, as OpenAI's Files API for batches: upload a batch input (multipart, streamed
//! to disk, bounded by `[batches] max_file_bytes`), list, retrieve, download and delete
//! files, batch outputs included. Every file belongs to the tenant that uploaded it (or
//! whose batch wrote it); to any other tenant it does not exist (404, never listed).
//!
//! The store keeps the rows and the contents; what a file object looks like is here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use dispatch::{DispatchError, ErrorKind};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::listing::{self, Bounds};
use crate::log::RequestLog;
use crate::store::{FileRow, Store, StoreError, unix_now};

/// Bytes of a form field other than the file (`purpose`) read at most.
const SMALL_FIELD: usize = 1024;

/// Multipart framing and small fields allowed on top of the file itself.
pub(crate) const FORM_OVERHEAD: u64 = 1 << 20;

/// The only purpose this gateway stores uploads for.
const PURPOSE: &str = "batch";

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A 404 for an id the tenant has no such object for.
pub(crate) fn no_such(what: &str, id: &str) -> DispatchError {
    DispatchError {
        kind: ErrorKind::NotFound,
        ..DispatchError::invalid("id", format!("No such {what} object: {id}"))
    }
}

/// The file object.
pub(crate) fn object(f: &FileRow) -> Value {
    json!({
        "id": f.id,
        "object": "file",
        "bytes": f.bytes,
        "created_at": f.created_at,
        "expires_at": null,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "status_details": null,
    })
}

fn too_large(max: u64) -> DispatchError {
    DispatchError::new(
        ErrorKind::TooLarge,
        format!(
            "the file is larger than the gateway's limit of {} bytes ([batches] max_file_bytes in its config)",
            protocol::fmt::thousands(max)
        ),
    )
    .with_code("file_too_large")
}

fn multipart_error(e: MultipartError, max: u64) -> DispatchError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(max)
    } else {
        DispatchError::invalid(
            "file",
            format!("the multipart body could not be read: {}", e.body_text()),
        )
    }
}

/// An upload's temporary file, removed when dropped while it holds a path.
struct PartFile(Option<std::path::PathBuf>);

impl Drop for PartFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Streams the `file` part to `path`; returns its file name and size.
async fn write_part(
    mut field: Field<'_>,
    path: &std::path::Path,
    max: u64,
) -> Result<(String, u64), DispatchError> {
    let filename = field
        .file_name()
        .filter(|n| !n.is_empty())
        .unwrap_or("upload.jsonl")
        .to_owned();
    let io = |action, e| DispatchError::from(StoreError::io(action, path, e));
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| io("creating", e))?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 18, file);
    let mut bytes = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, max))? {
        bytes += chunk.len() as u64;
        if bytes > max {
            return Err(too_large(max));
        }
        out.write_all(&chunk).await.map_err(|e| io("writing", e))?;
    }
    out.flush().await.map_err(|e| io("writing", e))?;
    out.get_mut()
        .sync_all()
        .await
        .map_err(|e| io("syncing", e))?;
    Ok((filename, bytes))
}

/// Reads a small text field.
async fn small_text(mut field: Field<'_>, name: &str, max: u64) -> Result<String, DispatchError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, max))? {
        buf.extend_from_slice(&chunk);
        if buf.len() > SMALL_FIELD {
            return Err(DispatchError::invalid(
                name,
                format!("{name} is longer than {SMALL_FIELD} bytes"),
            ));
        }
    }
    String::from_utf8(buf).map_err(|_| DispatchError::invalid(name, format!("{name} is not UTF-8")))
}

fn check_purpose(purpose: &str) -> Result<(), DispatchError> {
    if purpose == PURPOSE {
        Ok(())
    } else {
        Err(DispatchError::invalid(
            "purpose",
            format!(
                "purpose '{purpose}' is not supported: this gateway stores files for batches (purpose=batch)"
            ),
        ))
    }
}

/// Reads the form: the file goes to `part` as it arrives.
async fn read_form(
    mut form: Multipart,
    part: &std::path::Path,
    max: u64,
) -> Result<(String, u64), DispatchError> {
    let mut purpose: Option<String> = None;
    let mut file: Option<(String, u64)> = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error(e, max))?
    {
        match field.name() {
            Some("purpose") => {
                let p = small_text(field, "purpose", max).await?;
                // Refused before a file that follows it is read.
                check_purpose(&p)?;
                purpose = Some(p);
            }
            Some("file") => {
                if file.is_some() {
                    return Err(DispatchError::invalid(
                        "file",
                        "the form has more than one 'file' part: upload one file per request",
                    ));
                }
                file = Some(write_part(field, part, max).await?);
            }
            // Other fields (`expires_after[...]`) are accepted and not applied: files are
            // kept until deleted.
            _ => {}
        }
    }
    let Some(purpose) = purpose else {
        return Err(DispatchError::invalid(
            "purpose",
            "the form has no 'purpose' field: send purpose=batch",
        ));
    };
    check_purpose(&purpose)?;
    file.ok_or_else(|| {
        DispatchError::invalid(
            "file",
            "the form has no 'file' part: send the JSONL file as a file part named 'file'",
        )
    })
}

/// `POST /v1/files`.
pub(crate) async fn upload(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let mut log = RequestLog::new(st.clone(), "/v1/files", Instant::now());
    let result = upload_inner(&st, req, &mut log).await;
    log.respond(result)
}

async fn upload_inner(
    st: &AppState,
    req: Request,
    log: &mut RequestLog,
) -> Result<Response, DispatchError> {
    log.tenant = st.keys.tenant(req.headers())?;
    let max = st.batches.max_file_bytes();
    if req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max.saturating_add(FORM_OVERHEAD))
    {
        return Err(too_large(max));
    }
    let form = Multipart::from_request(req, &()).await.map_err(|e| {
        DispatchError::invalid(
            "file",
            format!(
                "the body must be multipart/form-data with a 'file' part and purpose=batch ({})",
                e.body_text()
            ),
        )
    })?;
    let store = st.batches.store().await?;
    let id = batch::record::new_id("file-");
    let (rel, part) = store.upload_paths(&id);
    // Removed on every way out but the rename below, a client that leaves included.
    let mut guard = PartFile(Some(part.clone()));
    let (filename, bytes) = read_form(form, &part, max).await?;
    let row = FileRow {
        id,
        tenant: log.tenant.clone(),
        filename,
        purpose: PURPOSE.to_owned(),
        bytes,
        created_at: unix_now(),
        path: rel,
    };
    let stored = row.clone();
    guard.0 = None;
    store
        .run(move |s| {
            let to = s.content_path(&stored);
            let renamed = std::fs::rename(&part, &to);
            if let Err(e) = renamed {
                let _ = std::fs::remove_file(&part);
                return Err(StoreError::io("renaming", &part, e));
            }
            s.add_file(&stored).inspect_err(|_| {
                let _ = std::fs::remove_file(&to);
            })
        })
        .await?;
    Ok(json_response(StatusCode::OK, &object(&row)))
}

/// The tenant's file `id`.
async fn find(
    st: &AppState,
    headers: &HeaderMap,
    id: &str,
    log: &mut RequestLog,
) -> Result<(Arc<Store>, FileRow), DispatchError> {
    log.tenant = st.keys.tenant(headers)?;
    let store = st.batches.store().await?;
    let (tenant, owned) = (log.tenant.clone(), id.to_owned());
    let row = store
        .run(move |s| s.file(Some(&tenant), &owned))
        .await?
        .ok_or_else(|| no_such("File", id))?;
    Ok((store, row))
}

/// `GET /v1/files`.
pub(crate) async fn list(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let mut log = RequestLog::new(st.clone(), "/v1/files", Instant::now());
    let result = async {
        log.tenant = st.keys.tenant(&headers)?;
        let q = listing::parse(
            query,
            Bounds {
                default_limit: 10_000,
                max_limit: 10_000,
                filters: true,
            },
        )?;
        let store = st.batches.store().await?;
        let tenant = log.tenant.clone();
        let (purpose, after) = (q.purpose.clone(), q.after.clone());
        let page = store
            .run(move |s| {
                s.files(
                    &tenant,
                    purpose.as_deref(),
                    q.order,
                    after.as_deref(),
                    q.limit,
                )
            })
            .await?
            .ok_or_else(|| listing::unknown_cursor(q.after.as_deref().unwrap_or_default()))?;
        let data = page.items.iter().map(object).collect();
        Ok(json_response(
            StatusCode::OK,
            &listing::object(data, page.has_more),
        ))
    }
    .await;
    log.respond(result)
}

/// `GET /v1/files/{id}`.
pub(crate) async fn retrieve(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut log = RequestLog::new(st.clone(), "/v1/files/{id}", Instant::now());
    let result = find(&st, &headers, &id, &mut log)
        .await
        .map(|(_, row)| json_response(StatusCode::OK, &object(&row)));
    log.respond(result)
}

/// `GET /v1/files/{id}/content`: the bytes, streamed from disk.
pub(crate) async fn content(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut log = RequestLog::new(st.clone(), "/v1/files/{id}/content", Instant::now());
    let result = async {
        let (store, row) = find(&st, &headers, &id, &mut log).await?;
        let path = store.content_path(&row);
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DispatchError::new(
                    ErrorKind::NotFound,
                    format!("the content of file {id} is gone from the gateway's data directory"),
                )
            } else {
                StoreError::io("opening", &path, e).into()
            }
        })?;
        let mut r = Response::new(Body::from_stream(
            tokio_util::io::ReaderStream::with_capacity(file, 1 << 16),
        ));
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(row.bytes));
        Ok(r)
    }
    .await;
    log.respond(result)
}

/// `DELETE /v1/files/{id}`.
pub(crate) async fn delete(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut log = RequestLog::new(st.clone(), "/v1/files/{id}", Instant::now());
    let result = async {
        log.tenant = st.keys.tenant(&headers)?;
        let store = st.batches.store().await?;
        let (tenant, owned) = (log.tenant.clone(), id.clone());
        store
            .run(move |s| {
                let row = s.delete_file(&tenant, &owned)?;
                if row.is_some() {
                    // The content goes now unless an unfinished batch still reads it.
                    s.purge()?;
                }
                Ok(row)
            })
            .await?
            .ok_or_else(|| no_such("File", &id))?;
        Ok(json_response(
            StatusCode::OK,
            &json!({"id": id, "object": "file", "deleted": true}),
        ))
    }
    .await;
    log.respond(result)
}
