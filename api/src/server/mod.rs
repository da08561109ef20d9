//! The REST server (axum on tokio): routes, limits, keys, metrics, graceful shutdown.
//!
//! Encoding and index work run on bounded pools of plain threads ([`pool`]), never on the
//! runtime's threads; when a pool's queue is full the request is refused with 503 and a
//! Retry-After header. Every write is durable in the index's write-ahead log before it is
//! acknowledged; concurrent writes share one log sync, and flushes and merges run in the
//! index writer's background threads.

mod auth;
mod embeddings;
mod error;
mod metrics;
mod openapi;
mod pool;
mod routes;
mod state;

pub use auth::Keys;
pub use state::Limits;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use barista_engine::Engine;
use state::AppState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Address to listen on (port 0: any free port).
    pub addr: SocketAddr,
    /// API keys.
    pub keys: Keys,
    /// Request limits.
    pub limits: Limits,
    /// Threads running searches and reads.
    pub search_threads: usize,
    /// Threads encoding and writing documents (concurrent writes share log syncs).
    pub write_threads: usize,
    /// Requests allowed to wait for a search thread before 503s.
    pub queue: usize,
}

/// Builds the router for an engine.
fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/search", post(routes::search))
        .route("/documents", post(routes::upsert))
        .route("/documents/{id}", get(routes::get).delete(routes::delete))
        .route("/stats", get(routes::stats))
        .route("/admin/compact", post(routes::compact))
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .route("/v1/embeddings", post(embeddings::openai))
        .route("/v1/models", get(embeddings::models))
        .route("/embed", post(embeddings::tei))
        .route("/openapi.json", get(openapi::spec))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), record))
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .with_state(state)
}

/// Counts and times every request by route.
async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let labels = metrics::RequestLabels { route: route.clone(), method, status: response.status().as_u16() };
    state.metrics.requests.get_or_create(&labels).inc();
    state.metrics.request_seconds.get_or_create(&metrics::RouteLabels { route }).observe(start.elapsed().as_secs_f64());
    response
}

/// Binds `addr` (before the index is opened for writing, so that a port in use fails without
/// touching the index).
///
/// # Errors
/// The address cannot be listened on (in use, not local, no permission), with the address named.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr}: {e} (pass another --addr, or stop what listens there)")
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `engine` on `listener` (from [`bind`]) until `shutdown` resolves, then finishes the
/// requests in flight (and their writes) before returning.
pub async fn serve(
    engine: Engine,
    options: ServerOptions,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = Arc::new(AppState {
        searches: pool::Pool::new("barista-search", options.search_threads, options.queue)?,
        writes: pool::Pool::new("barista-write", options.write_threads, options.queue)?,
        // One full merge at a time; a second request while one runs is refused (503).
        admin: pool::Pool::new("barista-admin", 1, 0)?,
        metrics: metrics::Metrics::new(),
        engine,
        keys: options.keys,
        limits: options.limits,
    });
    state.metrics.documents.set(state.engine.index().snapshot().len() as i64);
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let local = listener.local_addr()?;
    eprintln!("barista: listening on http://{local}");
    axum::serve(listener, router(Arc::clone(&state))).with_graceful_shutdown(shutdown).await?;
    // Requests are done; let the pools finish what they hold.
    state.searches.shutdown();
    state.writes.shutdown();
    state.admin.shutdown();
    eprintln!("barista: stopped");
    Ok(())
}
