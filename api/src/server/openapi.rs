//! `GET /openapi.json`: the API described in OpenAPI 3, generated from the very types the
//! handlers (de)serialise, then completed with what the server enforces at run time: the
//! limits it was started with (k, batch size, query length, id length), every status each
//! route can answer (with the JSON error body), and every content type. A schema-based fuzzer
//! (schemathesis, in the tests) holds the server to it.

use super::state::{AppState, Limits};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Barista", description = "Coarse-to-fine search over 2D Matryoshka embeddings."),
    paths(
        search_doc,
        upsert_doc,
        get_doc,
        delete_doc,
        stats_doc,
        compact_doc,
        health_doc,
        ready_doc,
        metrics_doc,
        openai_doc,
        models_doc,
        embed_doc
    ),
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
        super::embeddings::Input,
        super::embeddings::InputType,
        super::embeddings::EncodingFormat,
        super::embeddings::EmbeddingsRequest,
        super::embeddings::Embedding,
        super::embeddings::EmbeddingItem,
        super::embeddings::Usage,
        super::embeddings::EmbeddingsResponse,
        super::embeddings::EmbedRequest,
        super::embeddings::ModelCard,
        super::embeddings::ModelList,
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
    /// Machine-readable: invalid_request, malformed_json, invalid_body, not_found (no such
    /// document), no_such_route, model_not_found, overloaded,
    /// missing_api_key, invalid_api_key, writes_disabled, payload_too_large, batch_too_large,
    /// unsupported_media_type, method_not_allowed, invalid_path, locked, insufficient_storage, shutting_down,
    /// internal.
    code: String,
    /// What was wrong and what to do.
    message: String,
}

/// The document, for a server running with `limits`.
pub async fn spec(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(document(&state.limits))
}

/// What each status means, for the routes that can answer it.
const ERRORS: [(&str, &str); 10] = [
    ("400", "Invalid request (a value out of range, an unknown profile, a bad plan or path, …); nothing changed"),
    ("401", "An API key is required and none was sent"),
    ("403", "The API key does not allow this (or writes are off: the server has only a read key)"),
    ("404", "No such document (for /v1/embeddings: the model named is not served here)"),
    ("413", "Body or batch too large"),
    ("415", "The body is not sent as application/json"),
    ("422", "JSON of the wrong shape (an unknown field, a wrong type)"),
    ("500", "The server failed (a bug, or the index cannot be read or written): see its log"),
    ("503", "Overloaded, flushes behind, or shutting down: retry after the Retry-After seconds"),
    ("507", "The disk is full: nothing was written; free space and retry"),
];

/// The statuses a route can answer besides 200, by (method, path).
fn statuses(method: &str, path: &str) -> &'static [&'static str] {
    match (method, path) {
        ("post", "/search") => &["400", "401", "403", "413", "415", "422", "500", "503"],
        ("post", "/documents") => &["400", "401", "403", "413", "415", "422", "500", "503", "507"],
        ("get", "/documents/{id}") => &["400", "401", "403", "404", "500", "503"],
        ("delete", "/documents/{id}") => &["400", "401", "403", "404", "500", "503", "507"],
        ("post", "/admin/compact") => &["401", "403", "500", "503", "507"],
        ("get", "/stats" | "/metrics" | "/v1/models") => &["401", "403"],
        ("post", "/v1/embeddings") => &["400", "401", "403", "404", "413", "415", "422", "500", "503"],
        ("post", "/embed") => &["400", "401", "403", "413", "415", "422", "500", "503"],
        _ => &[],
    }
}

/// The generated document with the server's limits, statuses and content types filled in.
pub fn document(limits: &Limits) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    let mut set = |pointer: &str, extra: Value| {
        if let (Some(Value::Object(target)), Value::Object(extra)) = (doc.pointer_mut(pointer), extra) {
            target.extend(extra);
        }
    };
    let schemas = "/components/schemas";
    set(
        &format!("{schemas}/SearchRequest/properties/k"),
        json!({"minimum": 1, "maximum": limits.max_k, "default": 10}),
    );
    // The server counts bytes (UTF-8); a string of more characters has at least as many, so
    // these bounds are necessary, and the descriptions say the rest.
    set(
        &format!("{schemas}/SearchRequest/properties/query"),
        json!({"minLength": 1, "maxLength": limits.max_query_bytes,
               "description": format!("Query text (encoded progressively), at most {} bytes of UTF-8 and not blank. Exactly one of `query` and `vectors` is needed.", limits.max_query_bytes)}),
    );
    set(&format!("{schemas}/DocumentsBody/properties/documents"), json!({"minItems": 1, "maxItems": limits.max_batch}));
    set(
        &format!("{schemas}/Document/properties/id"),
        json!({"minLength": 1, "maxLength": barista_index::MAX_ID_BYTES}),
    );
    set(&format!("{schemas}/Stage/properties/keep"), json!({"minimum": 1}));
    // One text, or a list of 1 to max_batch texts (the server's batch limit).
    if let Some(input) = doc.pointer_mut(&format!("{schemas}/Input")) {
        *input = json!({"oneOf": [
            {"type": "string", "description": "One text"},
            {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": limits.max_batch,
             "description": "Several texts; the answer keeps their order"}
        ]});
    }
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        for (path, item) in paths.iter_mut() {
            let Value::Object(operations) = item else { continue };
            for (method, operation) in operations.iter_mut() {
                let Some(Value::Object(responses)) = operation.get_mut("responses") else { continue };
                for status in statuses(method, path) {
                    let description = ERRORS.iter().find(|(s, _)| s == status).map_or("", |(_, d)| *d);
                    let entry = responses.entry(status.to_string()).or_insert_with(|| json!({}));
                    entry["description"] = json!(description);
                    entry["content"] = error.clone();
                }
            }
        }
    }
    let metrics_200 = "/paths/~1metrics/get/responses/200";
    if let Some(response) = doc.pointer_mut(metrics_200) {
        response["content"] = json!({"application/openmetrics-text": {"schema": {"type": "string"}}});
    }
    doc
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
        (status = 200, description = "Added or replaced: durable in the write-ahead log and searchable", body = barista_engine::WriteReport),
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
        (status = 200, description = "Deleted: durable in the write-ahead log", body = super::routes::Deleted),
        (status = 404, description = "No such document", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn delete_doc() {}

#[utoipa::path(get, path = "/stats",
    responses((status = 200, description = "Segments (committed and in memory), the write-ahead log, flushes and merges", body = Object)))]
#[allow(dead_code)]
fn stats_doc() {}

#[utoipa::path(post, path = "/admin/compact",
    responses((status = 200, description = "Every segment merged into one (after a flush; segments of at most 1,000,000 live documents past that size); the index's statistics afterwards", body = Object)))]
#[allow(dead_code)]
fn compact_doc() {}

#[utoipa::path(get, path = "/health", responses((status = 200, description = "The process is up", body = super::routes::Status)))]
#[allow(dead_code)]
fn health_doc() {}

#[utoipa::path(get, path = "/ready", responses((status = 200, description = "Index and model loaded", body = super::routes::Status)))]
#[allow(dead_code)]
fn ready_doc() {}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus metrics (OpenMetrics text)", body = String)))]
#[allow(dead_code)]
fn metrics_doc() {}

#[utoipa::path(post, path = "/v1/embeddings", request_body = super::embeddings::EmbeddingsRequest,
    responses(
        (status = 200, description = "OpenAI-compatible embeddings: one vector per input, at the rung chosen by `dimensions` and `layer`", body = super::embeddings::EmbeddingsResponse),
        (status = 404, description = "The model named is not served here", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn openai_doc() {}

#[utoipa::path(get, path = "/v1/models",
    responses((status = 200, description = "The served model (OpenAI's model list)", body = super::embeddings::ModelList)))]
#[allow(dead_code)]
fn models_doc() {}

#[utoipa::path(post, path = "/embed", request_body = super::embeddings::EmbedRequest,
    responses((status = 200, description = "TEI-compatible embeddings: one vector per input, in order", body = Vec<Vec<f32>>)))]
#[allow(dead_code)]
fn embed_doc() {}
