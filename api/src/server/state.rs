//! What every handler shares.

use super::auth::Keys;
use super::metrics::Metrics;
use super::pool::Pool;
use barista_engine::Engine;
use serde::{Deserialize, Serialize};

/// Request limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Longest query text, in bytes.
    pub max_query_bytes: usize,
    /// Most documents per `POST /documents`.
    pub max_batch: usize,
    /// Largest `k`.
    pub max_k: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: 16 << 20, max_query_bytes: 16 << 10, max_batch: 1000, max_k: 1000 }
    }
}

/// The server's shared state.
pub struct AppState {
    pub engine: Engine,
    pub keys: Keys,
    pub limits: Limits,
    /// Searches and reads.
    pub searches: Pool,
    /// Writes: encoding, then the index writer's group commit.
    pub writes: Pool,
    /// Full merges (one at a time).
    pub admin: Pool,
    pub metrics: Metrics,
}
