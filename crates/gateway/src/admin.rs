//! The routes that are not model calls: `/health`, `/metrics` (Prometheus text),
//! `/v1/models` (the routed models), and the errors for unknown routes and wrong methods.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use client::{Api, ForwardRequest};
use dispatch::{DispatchError, ErrorKind};
use serde_json::json;

use crate::AppState;
use crate::calls::error_response;

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `GET /health`.
pub(crate) async fn health(State(st): State<Arc<AppState>>) -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "status": "ok",
            "upstreams": st.dispatcher.config().upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            "cache": st.dispatcher.cache().is_some(),
        }),
    )
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    st.dispatcher.refresh_gauges();
    let mut r = Response::new(Body::from(st.dispatcher.telemetry().render()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `GET /v1/models`: the models clients can name (listed models and aliases); with a
/// single upstream and none listed, the upstream's own list.
pub(crate) async fn models(State(st): State<Arc<AppState>>, req: Request) -> Response {
    if let Err(e) = st.keys.tenant(req.headers()) {
        return error_response(Api::OpenAi, &e);
    }
    let routed = st.dispatcher.routes().models();
    let config = st.dispatcher.config();
    if routed.is_empty()
        && config.upstreams.len() == 1
        && let Some(endpoint) = config.upstreams[0].endpoint(Api::OpenAi)
    {
        let req = ForwardRequest {
            method: http::Method::GET,
            path: "/models".to_owned(),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
            deadline: std::time::Instant::now() + Duration::from_secs(30),
        };
        return match st.dispatcher.client().forward(endpoint, req).await {
            Ok(mut fwd) => match fwd.body.collect(16 << 20).await {
                Ok(body) => {
                    let mut r = Response::new(Body::from(body));
                    *r.status_mut() = fwd.status;
                    if let Some(ct) = fwd.headers.get(http::header::CONTENT_TYPE) {
                        r.headers_mut()
                            .insert(http::header::CONTENT_TYPE, ct.clone());
                    }
                    r.headers_mut().insert(
                        "x-tokenpace-upstream",
                        HeaderValue::from_str(&config.upstreams[0].name)
                            .unwrap_or_else(|_| HeaderValue::from_static("-")),
                    );
                    r
                }
                Err(class) => error_response(
                    Api::OpenAi,
                    &DispatchError::upstream(&config.upstreams[0].name, &class),
                ),
            },
            Err(class) => error_response(
                Api::OpenAi,
                &DispatchError::upstream(&config.upstreams[0].name, &class),
            ),
        };
    }
    let data: Vec<serde_json::Value> = routed
        .iter()
        .map(|(id, upstream)| json!({"id": id, "object": "model", "created": 0, "owned_by": upstream}))
        .collect();
    json_response(StatusCode::OK, json!({"object": "list", "data": data}))
}

fn api_of(path: &str) -> Api {
    if path.starts_with("/v1/messages") {
        Api::Anthropic
    } else {
        Api::OpenAi
    }
}

/// Unknown routes.
pub(crate) async fn not_found(req: Request) -> Response {
    let e = DispatchError::new(
        ErrorKind::NotFound,
        format!(
            "unknown route {} {}: the gateway serves POST /v1/chat/completions, POST /v1/completions, POST /v1/messages, GET /v1/models, /v1/files, /v1/batches, GET /health and GET /metrics",
            req.method(),
            req.uri().path()
        ),
    )
    .with_code("unknown_url");
    error_response(api_of(req.uri().path()), &e)
}

/// A known route with the wrong method.
pub(crate) async fn method_not_allowed(req: Request) -> Response {
    let e = DispatchError::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "{} is not allowed on {} (model calls are POST; /v1/models, /health and /metrics are GET; docs/gateway.md lists every route)",
            req.method(),
            req.uri().path()
        ),
    );
    error_response(api_of(req.uri().path()), &e)
}
