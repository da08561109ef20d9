//! `GET /openapi.json`: the API described in OpenAPI 3, generated from the very types the
//! handlers (de)serialise.

use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Barista", description = "Coarse-to-fine search over 2D Matryoshka embeddings."),
    paths(search_doc, upsert_doc, get_doc, delete_doc, health_doc, ready_doc, metrics_doc),
    components(schemas(
        barista_engine::SearchRequest,
        barista_engine::SearchResponse,
        barista_engine::SearchHit,
        barista_engine::RungVector,
        barista_engine::Stage,
        barista_engine::Rung,
        barista_engine::Shortlist,
        barista_engine::search::request::StageReport,
        barista_engine::search::request::Timings,
        barista_engine::Document,
        barista_engine::WriteReport,
        super::routes::DocumentsBody,
        super::routes::Deleted,
        super::routes::Status,
        ErrorBody,
        ErrorDetail,
    ))
)]
struct ApiDoc;

/// Every error: `{"error": {"code", "message"}}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the shape of `error::ApiError`'s body
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // as above
struct ErrorDetail {
    /// Machine-readable: invalid_request, malformed_json, invalid_body, not_found, overloaded,
    /// missing_api_key, invalid_api_key, writes_disabled, payload_too_large, batch_too_large,
    /// unsupported_media_type, method_not_allowed, locked, insufficient_storage, shutting_down,
    /// internal.
    code: String,
    /// What was wrong and what to do.
    message: String,
}

/// The document.
pub async fn spec() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[utoipa::path(post, path = "/search", request_body = barista_engine::SearchRequest,
    responses(
        (status = 200, description = "Hits, the stages that ran, timings", body = barista_engine::SearchResponse),
        (status = 400, description = "Invalid request (k out of range, unknown profile, bad plan, wrong vector length, …)", body = ErrorBody),
        (status = 401, description = "API key missing", body = ErrorBody),
        (status = 403, description = "API key not valid for reading", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 503, description = "Overloaded: retry after the Retry-After seconds", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn search_doc() {}

#[utoipa::path(post, path = "/documents", request_body = super::routes::DocumentsBody,
    responses(
        (status = 200, description = "Added or replaced, committed and searchable", body = barista_engine::WriteReport),
        (status = 400, description = "Invalid documents; nothing was written", body = ErrorBody),
        (status = 401, description = "API key missing", body = ErrorBody),
        (status = 403, description = "API key not valid for writing", body = ErrorBody),
        (status = 413, description = "Body or batch too large", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 503, description = "Overloaded", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn upsert_doc() {}

#[utoipa::path(get, path = "/documents/{id}", params(("id" = String, Path, description = "External id")),
    responses(
        (status = 200, description = "The stored document", body = barista_engine::Document),
        (status = 404, description = "No such document", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn get_doc() {}

#[utoipa::path(delete, path = "/documents/{id}", params(("id" = String, Path, description = "External id")),
    responses(
        (status = 200, description = "Deleted and committed", body = super::routes::Deleted),
        (status = 404, description = "No such document", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn delete_doc() {}

#[utoipa::path(get, path = "/health", responses((status = 200, description = "The process is up", body = super::routes::Status)))]
#[allow(dead_code)]
fn health_doc() {}

#[utoipa::path(get, path = "/ready", responses((status = 200, description = "Index and model loaded", body = super::routes::Status)))]
#[allow(dead_code)]
fn ready_doc() {}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus metrics (OpenMetrics text)", body = String)))]
#[allow(dead_code)]
fn metrics_doc() {}
