//! What an index is configured with when it is created: the model that made its vectors, the
//! rungs it stores and how, and the graph's parameters.

use crate::error::{Error, Result};
use crate::rung::Rung;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How the values of a rung block are stored.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    /// 32-bit floats.
    #[default]
    F32,
    /// IEEE half precision: half the bytes, scores within ~1e-3 of f32.
    F16,
    /// Signed bytes with one f32 scale per dimension (symmetric, `x ≈ scale[j] · q`): a quarter
    /// of f32, for the coarse rungs that only shortlist and rescore.
    I8,
}

impl ElementType {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            ElementType::F32 => 4,
            ElementType::F16 => 2,
            ElementType::I8 => 1,
        }
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElementType::F32 => "f32",
            ElementType::F16 => "f16",
            ElementType::I8 => "i8",
        })
    }
}

impl FromStr for ElementType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(ElementType::F32),
            "f16" => Ok(ElementType::F16),
            "i8" => Ok(ElementType::I8),
            other => Err(format!("unknown element type '{other}': expected f32, f16 or i8")),
        }
    }
}

/// One stored rung and its element type.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct StoredRung {
    /// The rung.
    pub rung: Rung,
    /// How its values are stored.
    pub element: ElementType,
}

/// HNSW parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct GraphParams {
    /// Indexes (into the stored rungs) of the rungs that get a graph, ascending (usually one:
    /// the smallest rung whose shortlist keeps the final top hits; see BENCHMARKS.md).
    pub rungs: Vec<usize>,
    /// Links per node above level 0 (HNSW's `M`; level 0 holds `2M`).
    pub max_connections: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Segments with fewer documents get no graph: they are scanned (at the graph rung) even
    /// when a plan asks for the graph, which below this size costs about what a walk does.
    #[serde(default = "default_graph_min_docs")]
    pub min_docs: u64,
}

/// Default of [`GraphParams::min_docs`].
pub const DEFAULT_GRAPH_MIN_DOCS: u64 = 20_000;

fn default_graph_min_docs() -> u64 {
    DEFAULT_GRAPH_MIN_DOCS
}

impl Default for GraphParams {
    fn default() -> Self {
        GraphParams { rungs: vec![0], max_connections: 16, ef_construction: 200, min_docs: DEFAULT_GRAPH_MIN_DOCS }
    }
}

impl GraphParams {
    /// One graph, on the `rung`-th stored rung, with the other defaults.
    pub fn on(rung: usize) -> GraphParams {
        GraphParams { rungs: vec![rung], ..GraphParams::default() }
    }

    /// Whether a segment of `docs` documents gets a graph.
    pub fn wanted(&self, docs: usize) -> bool {
        docs as u64 >= self.min_docs.max(1)
    }
}

/// Everything fixed at creation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct IndexConfig {
    /// Identity of the model that encoded the vectors (name and fingerprint, as the engine
    /// defines it); an index refuses vectors from another model.
    pub model: String,
    /// The model's 2D profile as JSON (owned by the engine; stored verbatim).
    pub profile: String,
    /// Stored rungs, smallest first: the order of the blocks in every vector file.
    pub rungs: Vec<StoredRung>,
    /// The graph.
    pub graph: GraphParams,
}

impl IndexConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        if self.rungs.is_empty() {
            return bad("an index needs at least one stored rung".into());
        }
        for r in &self.rungs {
            if r.rung.dim == 0 {
                return bad(format!("stored rung {} has no dimensions", r.rung));
            }
        }
        for pair in self.rungs.windows(2) {
            let (a, b) = (pair[0].rung, pair[1].rung);
            if a == b || b.layer < a.layer || b.dim < a.dim {
                return bad(format!("stored rungs must grow from small to large, but {b} follows {a}"));
            }
        }
        if let Some(&r) = self.graph.rungs.iter().find(|&&r| r >= self.rungs.len()) {
            return bad(format!("the graph rung index {r} is out of range ({} stored rungs)", self.rungs.len()));
        }
        if self.graph.rungs.windows(2).any(|w| w[0] >= w[1]) {
            return bad(format!("the graph rungs {:?} must be distinct and ascending", self.graph.rungs));
        }
        if !(2..=255).contains(&self.graph.max_connections) {
            return bad(format!("max_connections is {}; it must be between 2 and 255", self.graph.max_connections));
        }
        if self.graph.ef_construction == 0 {
            return bad("ef_construction must be at least 1".into());
        }
        Ok(())
    }

    /// Position of `rung` among the stored rungs.
    pub fn rung_index(&self, rung: Rung) -> Option<usize> {
        self.rungs.iter().position(|r| r.rung == rung)
    }

    /// The rungs that get a graph, smallest first.
    pub fn graph_rungs(&self) -> Vec<Rung> {
        self.graph.rungs.iter().map(|&r| self.rungs[r].rung).collect()
    }
}
