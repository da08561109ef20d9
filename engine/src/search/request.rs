//! What a search asks for and what it returns (also the JSON of `barista search --json` and of
//! the REST API).

use super::plan::Stage;
use barista_index::Rung;
use serde::{Deserialize, Serialize};

/// A query vector at one rung, from an external encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RungVector {
    /// Layer of the rung.
    pub layer: usize,
    /// Dimensions of the rung (the vector's length).
    pub dim: usize,
    /// The values (normalised or not: Barista normalises for cosine profiles).
    pub vector: Vec<f32>,
}

/// A search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchRequest {
    /// Query text (encoded progressively). Exactly one of `query` and `vectors` is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Query vectors per rung, from an external encoder. A vector at (l, d) also serves any
    /// rung (l, d') with d' < d (truncated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectors: Option<Vec<RungVector>>,
    /// Hits to return.
    #[serde(default = "default_k")]
    pub k: usize,
    /// A named plan (`fast`, `balanced`, `exact`); default `balanced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// An explicit plan (overrides `profile`); the last stage's `keep` is replaced by `k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<Stage>>,
    /// Stop early when the ranking is settled (default: on when the index has calibrated
    /// thresholds for the profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<bool>,
    /// Only documents whose metadata matches: `{"key": value, "other": [v1, v2]}` means
    /// key = value and other ∈ {v1, v2} (JSON equality; array-valued metadata matches on any
    /// element).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub filter: Option<serde_json::Map<String, serde_json::Value>>,
    /// Run a graph shortlist while the query's deeper layers are still being encoded, on
    /// another thread (default on): latency approaches max(encoding, shortlist) + rescoring
    /// instead of their sum. Off runs them one after the other, each on every query thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_encoding: Option<bool>,
    /// Return stored texts.
    #[serde(default)]
    pub include_text: bool,
    /// Return stored metadata.
    #[serde(default)]
    pub include_metadata: bool,
}

fn default_k() -> usize {
    10
}

impl SearchRequest {
    /// A text query with defaults (`k` = 10, the `balanced` profile).
    pub fn text(query: impl Into<String>) -> SearchRequest {
        SearchRequest {
            query: Some(query.into()),
            vectors: None,
            k: default_k(),
            profile: None,
            stages: None,
            adaptive: None,
            filter: None,
            overlap_encoding: None,
            include_text: false,
            include_metadata: false,
        }
    }

    /// Sets `k`.
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Sets the profile.
    pub fn with_profile(mut self, profile: &str) -> Self {
        self.profile = Some(profile.to_string());
        self
    }
}

/// One result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    /// External id.
    pub id: String,
    /// Score at `rung` (inner product; cosine for cosine profiles).
    pub score: f32,
    /// The rung of the stage that scored it last.
    pub rung: Rung,
    /// Stored title, with the text, when asked for (and the document has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Stored text, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Stored metadata, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

/// What one stage did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageReport {
    /// The rung.
    pub rung: Rung,
    /// `graph`, `scan` or `rescore`.
    pub method: String,
    /// Candidates that entered the stage (for the first stage: documents searched).
    pub candidates: usize,
    /// Candidates kept.
    pub kept: usize,
    /// Time to encode the query to this rung (0 when already encoded or given as a vector).
    pub encode_ms: f64,
    /// Time to find or rescore the candidates.
    pub search_ms: f64,
}

/// Where the time went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timings {
    /// Encoding the query (tokenization included).
    pub encode_ms: f64,
    /// HNSW graph search.
    pub graph_ms: f64,
    /// Exhaustive scans.
    pub scan_ms: f64,
    /// Rescoring candidates at larger rungs.
    pub rescore_ms: f64,
    /// Fetching stored fields of the hits.
    pub fetch_ms: f64,
    /// Everything.
    pub total_ms: f64,
}

/// The answer to a search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResponse {
    /// Hits, best first.
    pub hits: Vec<SearchHit>,
    /// The plan's stages that ran, in order.
    pub stages: Vec<StageReport>,
    /// Whether adaptive stopping ended the cascade before its last stage.
    pub stopped_early: bool,
    /// Timings.
    pub timings: Timings,
}
