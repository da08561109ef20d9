//! The HNSW graph of a segment, over one coarse rung, for maximum-inner-product search.
//!
//! Starbucks-style vectors are unnormalised and compared by raw inner product, which is not a
//! metric: HNSW needs one. The graph therefore indexes the classic MIPS reduction (Bachrach et
//! al., 2014): with `M` the largest norm in the segment, a document `x` becomes
//! `x' = [x, √(M² − |x|²)]` and a query `q` becomes `q' = [q, 0]`, so that
//! `|q' − x'|² = |q|² + M² − 2 q·x`: the nearest `x'` in Euclidean distance is exactly the `x`
//! with the largest inner product. For cosine profiles the vectors are unit length, `M = 1`, the
//! extra coordinate is ~0, and the same code does cosine search.
//!
//! The graph is built with hnsw_rs (parallel insertion), dumped beside the segment's other files,
//! verified against its checksums and reloaded without rebuilding.

use crate::config::GraphParams;
use crate::error::{Error, Result};
use crate::files::{FileRecord, adopt_file, read_verified};
use crate::scan::Kernels;
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::{Hnsw, Neighbour};
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::Distance;
use std::path::Path;

/// Squared Euclidean distance over augmented vectors, with the chosen SIMD kernel.
#[derive(Clone, Copy, Debug)]
pub struct MipsDistance {
    kernels: Kernels,
}

impl Distance<f32> for MipsDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        self.kernels.l2_squared(a, b)
    }
}

type Graph<'a> = Hnsw<'a, f32, MipsDistance>;

self_cell::self_cell!(
    /// A graph reloaded from its dump (hnsw_rs ties the graph's lifetime to its loader).
    struct LoadedGraph {
        owner: HnswIo,
        #[not_covariant]
        dependent: Graph,
    }
);

enum Inner {
    Built(Box<Graph<'static>>),
    Loaded(LoadedGraph),
}

/// A segment's HNSW graph.
pub struct SegmentGraph {
    inner: Inner,
    max_norm: f32,
    dim: usize,
}

// SAFETY: hnsw_rs graphs are built for concurrent search (internal RwLocks); the loader is only
// touched when the graph is created and dropped.
unsafe impl Send for SegmentGraph {}
// SAFETY: as above.
unsafe impl Sync for SegmentGraph {}

impl std::fmt::Debug for SegmentGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentGraph").field("dim", &self.dim).field("max_norm", &self.max_norm).finish()
    }
}

/// Maximum number of HNSW layers.
const MAX_LAYERS: usize = 16;
/// Points inserted between two progress reports.
const PROGRESS_CHUNK: usize = 2048;

/// File names of the dump of segment `basename`.
pub fn dump_names(basename: &str) -> [String; 2] {
    [format!("{basename}.hnsw.graph"), format!("{basename}.hnsw.data")]
}

fn augment(v: &[f32], max_norm: f32) -> Vec<f32> {
    let norm2: f32 = v.iter().map(|x| x * x).sum();
    let mut out = Vec::with_capacity(v.len() + 1);
    out.extend_from_slice(v);
    out.push((max_norm * max_norm - norm2).max(0.0).sqrt());
    out
}

impl SegmentGraph {
    /// Builds the graph over `count` rows of `dim` values, reporting `(inserted, count)`.
    pub fn build(
        vectors: &[f32],
        dim: usize,
        params: &GraphParams,
        kernels: Kernels,
        progress: &dyn Fn(usize, usize),
    ) -> SegmentGraph {
        let count = vectors.len() / dim.max(1);
        let max_norm =
            vectors.chunks_exact(dim).map(|v| v.iter().map(|x| x * x).sum::<f32>().sqrt()).fold(0.0f32, f32::max);
        // Round up a hair so that rounding never makes the extra coordinate imaginary.
        let max_norm = max_norm * (1.0 + 1e-6);
        let augmented: Vec<Vec<f32>> = vectors.chunks_exact(dim).map(|v| augment(v, max_norm)).collect();
        let hnsw = Graph::new(
            params.max_connections,
            count.max(1),
            MAX_LAYERS,
            params.ef_construction,
            MipsDistance { kernels },
        );
        let mut done = 0;
        for chunk in augmented.chunks(PROGRESS_CHUNK).enumerate() {
            let (c, rows) = chunk;
            let batch: Vec<(&[f32], usize)> =
                rows.iter().enumerate().map(|(i, v)| (v.as_slice(), c * PROGRESS_CHUNK + i)).collect();
            hnsw.parallel_insert_slice(&batch);
            done += rows.len();
            progress(done, count);
        }
        let mut hnsw = hnsw;
        hnsw.set_searching_mode(true);
        SegmentGraph { inner: Inner::Built(Box::new(hnsw)), max_norm, dim }
    }

    /// Dumps the graph as `dir/{basename}.hnsw.{graph,data}`, synced, and returns their records.
    pub fn save(&self, dir: &Path, basename: &str) -> Result<Vec<FileRecord>> {
        let names = dump_names(basename);
        for name in &names {
            if dir.join(name).exists() {
                return Err(Error::InvalidInput(format!(
                    "{} already exists; index files are never overwritten",
                    dir.join(name).display()
                )));
            }
        }
        let written = match &self.inner {
            Inner::Built(g) => g.file_dump(dir, basename),
            Inner::Loaded(l) => l.with_dependent(|_, g| g.file_dump(dir, basename)),
        }
        .map_err(|e| Error::write(dir.join(&names[0]), std::io::Error::other(e.to_string())))?;
        if written != basename {
            return Err(Error::write(
                dir.join(&names[0]),
                std::io::Error::other(format!("hnsw_rs wrote {written} instead")),
            ));
        }
        names.iter().map(|n| adopt_file(dir, n)).collect()
    }

    /// Reloads a dumped graph after verifying both files against their records.
    pub fn load(
        dir: &Path,
        basename: &str,
        records: &[FileRecord],
        dim: usize,
        max_norm: f32,
        kernels: Kernels,
    ) -> Result<SegmentGraph> {
        let names = dump_names(basename);
        if records.len() != 2 || records.iter().zip(&names).any(|(r, n)| &r.name != n) {
            return Err(Error::corrupt(dir.join(&names[0]), "the manifest's graph files do not match the segment"));
        }
        for record in records {
            read_verified(dir, record)?;
        }
        let io = HnswIo::new(dir, basename);
        let distance = MipsDistance { kernels };
        let loaded = LoadedGraph::try_new(io, |io| io.load_hnsw_with_dist(distance))
            .map_err(|e| Error::corrupt(dir.join(&names[0]), format!("the graph does not load ({e})")))?;
        let points = loaded.with_dependent(|_, g| (g.get_nb_point(), g.get_point_indexation().get_data_dimension()));
        if points.1 != dim + 1 && points.0 > 0 {
            return Err(Error::corrupt(
                dir.join(&names[1]),
                format!("the graph holds {}-dimensional points, expected {}", points.1, dim + 1),
            ));
        }
        let mut loaded = loaded;
        loaded.with_dependent_mut(|_, g| g.set_searching_mode(true));
        Ok(SegmentGraph { inner: Inner::Loaded(loaded), max_norm, dim })
    }

    /// Largest norm among the indexed vectors (times 1 + 1e-6).
    pub fn max_norm(&self) -> f32 {
        self.max_norm
    }

    /// Number of indexed points.
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Built(g) => g.get_nb_point(),
            Inner::Loaded(l) => l.with_dependent(|_, g| g.get_nb_point()),
        }
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `k` documents with the largest inner product with `query` (approximately), among
    /// those `keep` accepts; `ef` is the search's candidate list size.
    pub fn search(&self, query: &[f32], k: usize, ef: usize, keep: &dyn Fn(u32) -> bool) -> Vec<u32> {
        if query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        let mut q = Vec::with_capacity(self.dim + 1);
        q.extend_from_slice(query);
        q.push(0.0);
        let filter = |id: &usize| keep(*id as u32);
        let run = |g: &Graph<'_>| -> Vec<Neighbour> { g.search_filter(&q, k, ef.max(k), Some(&filter)) };
        let found = match &self.inner {
            Inner::Built(g) => run(g),
            Inner::Loaded(l) => l.with_dependent(|_, g| run(g)),
        };
        found.into_iter().map(|n| n.d_id as u32).collect()
    }
}
