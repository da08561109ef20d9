//! The handlers: parse, check limits and keys, hand the work to a pool, answer in JSON.

use super::auth::Access;
use super::error::ApiError;
use super::state::AppState;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use barista_engine::{Document, DocumentBatch, IndexStats, SearchRequest, SearchResponse, WriteReport};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Body of `POST /documents`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentsBody {
    /// Documents to add or replace (by id); their texts are embedded by the server.
    pub documents: Vec<Document>,
}

/// Answer of `DELETE /documents/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The id.
    pub id: String,
    /// Live documents afterwards.
    pub live: u64,
}

/// Answer of `GET /health` and `GET /ready`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: &'static str,
    /// Live documents (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<u64>,
}

pub(super) async fn run<T: Send + 'static>(
    state: &AppState,
    pool: &super::pool::Pool,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let receiver = pool.try_run(f).map_err(|_| {
        state.metrics.rejected_busy.inc();
        ApiError::busy()
    })?;
    receiver.await.map_err(|_| ApiError::internal("the request failed inside the server (a bug): see its log"))?
}

/// `POST /search`
pub async fn search(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    state.keys.check(&headers, Access::Read)?;
    let Json(request) = body?;
    let limits = &state.limits;
    if request.k == 0 || request.k > limits.max_k {
        return Err(ApiError::bad_request(format!("k must be between 1 and {}, not {}", limits.max_k, request.k)));
    }
    if let Some(query) = &request.query
        && query.len() > limits.max_query_bytes
    {
        return Err(ApiError::bad_request(format!(
            "the query is {} bytes; the limit is {} (only the first {} tokens are encoded anyway)",
            query.len(),
            limits.max_query_bytes,
            state.engine.encoder().profile().query_max_length
        )));
    }
    let engine = state.engine.clone();
    let response = run(&state, &state.searches, move || engine.search(&request).map_err(ApiError::from)).await?;
    state.metrics.observe_search(&response.timings);
    Ok(Json(response))
}

/// `POST /documents`
pub async fn upsert(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<DocumentsBody>, JsonRejection>,
) -> Result<Json<WriteReport>, ApiError> {
    state.keys.check(&headers, Access::Write)?;
    let Json(body) = body?;
    let limits = &state.limits;
    if body.documents.is_empty() {
        return Err(ApiError::bad_request("`documents` is empty"));
    }
    if body.documents.len() > limits.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "{} documents in one request; the limit is {}: split the batch",
                body.documents.len(),
                limits.max_batch
            ),
        ));
    }
    // Checked here, once (the engine's rules), so that a bad batch is refused before it waits
    // for an encoder thread; the engine trusts the checked batch.
    let batch = DocumentBatch::check(&body.documents)?;
    let engine = state.engine.clone();
    let report = run(&state, &state.writes, move || engine.add_batch(&batch).map_err(ApiError::from)).await?;
    state.metrics.documents.set(report.live as i64);
    Ok(Json(report))
}

/// `GET /documents/{id}`
pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Document>, ApiError> {
    state.keys.check(&headers, Access::Read)?;
    let Path(id) = id?;
    let engine = state.engine.clone();
    let wanted = id.clone();
    match run(&state, &state.searches, move || engine.get(&wanted).map_err(ApiError::from)).await? {
        Some(doc) => Ok(Json(doc)),
        None => Err(ApiError::not_found(format!("no document with id {id:?}"))),
    }
}

/// `DELETE /documents/{id}`
pub async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Deleted>, ApiError> {
    state.keys.check(&headers, Access::Write)?;
    let Path(id) = id?;
    let engine = state.engine.clone();
    let wanted = id.clone();
    let report = run(&state, &state.writes, move || engine.delete(&[wanted.as_str()]).map_err(ApiError::from)).await?;
    state.metrics.documents.set(report.live as i64);
    if report.deleted == 0 {
        return Err(ApiError::not_found(format!("no document with id {id:?}")));
    }
    Ok(Json(Deleted { id, live: report.live }))
}

/// `GET /stats`: segments, the write-ahead log, flushes and merges.
pub async fn stats(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<IndexStats>, ApiError> {
    state.keys.check(&headers, Access::Read)?;
    Ok(Json(state.engine.stats()))
}

/// `POST /admin/compact`: a full merge, answered when it is committed.
pub async fn compact(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<IndexStats>, ApiError> {
    state.keys.check(&headers, Access::Write)?;
    let engine = state.engine.clone();
    run(&state, &state.admin, move || {
        engine.compact(&|_, _, _| {}).map_err(ApiError::from)?;
        Ok(engine.stats())
    })
    .await
    .map(Json)
}

/// `GET /health`: the process is up.
pub async fn health() -> Json<Status> {
    Json(Status { status: "ok", documents: None })
}

/// `GET /ready`: the index and model are loaded and serving.
pub async fn ready(State(state): State<Arc<AppState>>) -> Json<Status> {
    Json(Status { status: "ready", documents: Some(state.engine.index().snapshot().len()) })
}

/// `GET /metrics`
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.keys.check(&headers, Access::Read)?;
    state.metrics.documents.set(state.engine.index().snapshot().len() as i64);
    for pool in [&state.searches, &state.writes, &state.admin] {
        state.metrics.observe_pool(pool);
    }
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response())
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such route: see GET /openapi.json")
}

/// Known route, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method: see GET /openapi.json",
    )
}
