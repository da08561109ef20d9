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
//! verified against its checksums and reloaded without rebuilding. Its links are then copied into
//! compact arrays and searched by Barista itself, directly on the segment's rung block (for a
//! fixed query, `|q' − x'|²` ranks exactly like `−q·x`, so no augmented copy is needed), with a
//! visited bitset, batched prefetching distance kernels and deleted documents filtered during
//! the walk. hnsw_rs's own search, built for generality (reference-counted points, locks per
//! neighbour list), is ~10× slower at the large candidate lists 2D cascades need.

use crate::config::GraphParams;
use crate::error::{Error, Result};
use crate::files::{FileRecord, adopt_file, read_verified};
use crate::scan::{Kernels, Scored, best_first, score_key};
use crate::vectors::RungBlock;
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::Distance;
use std::collections::BinaryHeap;
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

/// The links of every layer, in compressed sparse rows.
#[derive(Debug, Default)]
struct Links {
    /// `layers[l]`: (offsets, neighbours); `offsets` has one entry per document plus one.
    layers: Vec<(Vec<u32>, Vec<u32>)>,
    /// Where every search starts (a document on the top layer).
    entry: u32,
    /// Documents.
    count: usize,
}

impl Links {
    fn neighbours(&self, layer: usize, doc: u32) -> &[u32] {
        let (offsets, neighbours) = &self.layers[layer];
        &neighbours[offsets[doc as usize] as usize..offsets[doc as usize + 1] as usize]
    }

    /// Copies hnsw_rs's links (origin ids are document numbers `0..count`).
    fn extract(graph: &Graph<'_>, count: usize) -> std::result::Result<Links, String> {
        let points = graph.get_point_indexation();
        let top = points.get_max_level_observed() as usize;
        let mut lists: Vec<Vec<Vec<u32>>> = vec![vec![Vec::new(); count]; top + 1];
        let mut entry = None;
        let mut seen = 0;
        for point in points {
            let doc = point.get_origin_id();
            if doc >= count {
                return Err(format!("the graph holds document {doc} but the segment has {count}"));
            }
            seen += 1;
            let level = point.get_point_id().0 as usize;
            if level == top && entry.is_none() {
                entry = Some(doc as u32);
            }
            for (layer, neighbours) in point.get_neighborhood_id().into_iter().enumerate().take(top + 1) {
                for n in neighbours {
                    if n.d_id >= count {
                        return Err(format!("document {doc} links to {} beyond the segment", n.d_id));
                    }
                    lists[layer][doc].push(n.d_id as u32);
                }
            }
        }
        if seen != count {
            return Err(format!("the graph holds {seen} points but the segment {count} documents"));
        }
        let layers = lists
            .into_iter()
            .map(|per_doc| {
                let mut offsets = Vec::with_capacity(count + 1);
                let mut neighbours = Vec::new();
                offsets.push(0);
                for list in per_doc {
                    neighbours.extend_from_slice(&list);
                    offsets.push(neighbours.len() as u32);
                }
                (offsets, neighbours)
            })
            .collect();
        Ok(Links { layers, entry: entry.unwrap_or(0), count })
    }
}

/// A segment's HNSW graph.
pub struct SegmentGraph {
    links: Links,
    /// The hnsw_rs graph, kept from building until it is saved.
    built: Option<Box<Graph<'static>>>,
    max_norm: f32,
    dim: usize,
}

// Segments are shared across threads; this fails to compile if that ever stops being safe.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SegmentGraph>();
};

impl std::fmt::Debug for SegmentGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentGraph").field("dim", &self.dim).field("points", &self.links.count).finish()
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
    /// Builds the graph over `count` rows of `dim` values, reporting `(inserted, count)`;
    /// `cancel` is asked between chunks of insertions and stops the build
    /// ([`Error::Cancelled`]) when it answers true. Vectors must be finite with finite squared
    /// norms (the writer checks).
    pub fn build(
        vectors: &[f32],
        dim: usize,
        params: &GraphParams,
        kernels: Kernels,
        progress: &dyn Fn(usize, usize),
        cancel: &dyn Fn() -> bool,
    ) -> Result<SegmentGraph> {
        // hnsw_rs panics on NaN distances and some I/O failures: never let that take the
        // process down.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::build_inner(vectors, dim, params, kernels, progress, cancel)
        }))
        .map_err(|panic| {
            let what =
                panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            Error::InvalidInput(format!(
                "the HNSW graph could not be built: {}",
                what.unwrap_or_else(|| "hnsw_rs panicked".into())
            ))
        })?
        .ok_or(Error::Cancelled)
    }

    fn build_inner(
        vectors: &[f32],
        dim: usize,
        params: &GraphParams,
        kernels: Kernels,
        progress: &dyn Fn(usize, usize),
        cancel: &dyn Fn() -> bool,
    ) -> Option<SegmentGraph> {
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
            if cancel() {
                return None;
            }
            let (c, rows) = chunk;
            let batch: Vec<(&[f32], usize)> =
                rows.iter().enumerate().map(|(i, v)| (v.as_slice(), c * PROGRESS_CHUNK + i)).collect();
            hnsw.parallel_insert_slice(&batch);
            done += rows.len();
            progress(done, count);
        }
        let mut hnsw = hnsw;
        hnsw.set_searching_mode(true);
        let links = Links::extract(&hnsw, count).unwrap_or_else(|e| panic!("hnsw_rs built an inconsistent graph: {e}"));
        Some(SegmentGraph { links, built: Some(Box::new(hnsw)), max_norm, dim })
    }

    /// Dumps a freshly built graph as `dir/{basename}.hnsw.{graph,data}`, synced, and returns
    /// their records; hnsw_rs's copy is released afterwards.
    pub fn save(&mut self, dir: &Path, basename: &str) -> Result<Vec<FileRecord>> {
        let names = dump_names(basename);
        for name in &names {
            if dir.join(name).exists() {
                return Err(Error::InvalidInput(format!(
                    "{} already exists; index files are never overwritten",
                    dir.join(name).display()
                )));
            }
        }
        let Some(graph) = self.built.as_ref() else {
            return Err(Error::InvalidInput("only a freshly built graph can be saved".into()));
        };
        let dump = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| graph.file_dump(dir, basename)));
        let written = match dump {
            Ok(result) => {
                result.map_err(|e| Error::write(dir.join(&names[0]), std::io::Error::other(e.to_string())))?
            }
            Err(_) => {
                return Err(Error::write(
                    dir.join(&names[0]),
                    std::io::Error::other("hnsw_rs could not write its dump"),
                ));
            }
        };
        if written != basename {
            return Err(Error::write(
                dir.join(&names[0]),
                std::io::Error::other(format!("hnsw_rs wrote {written} instead")),
            ));
        }
        let records = names.iter().map(|n| adopt_file(dir, n)).collect::<Result<Vec<_>>>()?;
        self.built = None;
        Ok(records)
    }

    /// Reloads a dumped graph after verifying both files against their records.
    pub fn load(
        dir: &Path,
        basename: &str,
        records: &[FileRecord],
        dim: usize,
        count: usize,
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
        let links = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> std::result::Result<Links, String> {
            let graph: Graph<'_> = io.load_hnsw_with_dist(distance).map_err(|e| e.to_string())?;
            if graph.get_nb_point() > 0 && graph.get_point_indexation().get_data_dimension() != dim + 1 {
                return Err(format!(
                    "it holds {}-dimensional points, expected {}",
                    graph.get_point_indexation().get_data_dimension(),
                    dim + 1
                ));
            }
            Links::extract(&graph, count)
        }))
        .map_err(|_| Error::corrupt(dir.join(&names[0]), "the graph does not load (hnsw_rs panicked)"))?
        .map_err(|e| Error::corrupt(dir.join(&names[0]), format!("the graph does not load ({e})")))?;
        Ok(SegmentGraph { links, built: None, max_norm, dim })
    }

    /// Largest norm among the indexed vectors (times 1 + 1e-6).
    pub fn max_norm(&self) -> f32 {
        self.max_norm
    }

    /// Number of indexed points.
    pub fn len(&self) -> usize {
        self.links.count
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `k` documents with the largest inner product with `query` (approximately), best
    /// first, among those `keep` accepts, scored on `block` (the graph rung's rows); `ef` is the
    /// search's candidate list size (at least `k`).
    pub fn search(
        &self,
        block: &RungBlock<'_>,
        kernels: &Kernels,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: &dyn Fn(u32) -> bool,
    ) -> Vec<Scored> {
        let links = &self.links;
        if query.len() != self.dim || k == 0 || links.count == 0 || block.count != links.count || block.dim != self.dim
        {
            return Vec::new();
        }
        let ef = ef.max(k).min(links.count);
        let query = &kernels.prepare(block, query);
        // Greedy descent through the upper layers.
        let mut current = links.entry;
        let mut current_score = kernels.score_prepared(block, query, current);
        for layer in (1..links.layers.len()).rev() {
            loop {
                let mut moved = false;
                for &n in links.neighbours(layer, current) {
                    let s = kernels.score_prepared(block, query, n);
                    if s > current_score {
                        (current, current_score) = (n, s);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        // Beam search on the base layer.
        let mut visited = vec![0u64; links.count.div_ceil(64)];
        let mut visit = |doc: u32| -> bool {
            let (word, bit) = (doc as usize / 64, 1u64 << (doc % 64));
            let fresh = visited[word] & bit == 0;
            visited[word] |= bit;
            fresh
        };
        visit(current);
        let mut candidates: BinaryHeap<Best> = BinaryHeap::with_capacity(ef * 2);
        let mut results: BinaryHeap<Worst> = BinaryHeap::with_capacity(ef + 1);
        candidates.push(Best(current_score, current));
        if keep(current) {
            results.push(Worst(current_score, current));
        }
        let mut fresh = Vec::with_capacity(64);
        let mut scores = Vec::with_capacity(64);
        while let Some(Best(score, doc)) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| score < w.0) {
                break;
            }
            fresh.clear();
            fresh.extend(links.neighbours(0, doc).iter().copied().filter(|&n| visit(n)));
            scores.resize(fresh.len(), 0.0);
            kernels.score_rows_prepared(block, query, &fresh, &mut scores);
            for (&n, &s) in fresh.iter().zip(&scores) {
                let full = results.len() >= ef;
                if !full || results.peek().is_some_and(|w| s > w.0) {
                    candidates.push(Best(s, n));
                    if keep(n) {
                        results.push(Worst(s, n));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut found: Vec<Scored> = results.into_iter().map(|Worst(score, doc)| Scored { score, doc }).collect();
        found.sort_by(best_first);
        found.truncate(k);
        found
    }
}

/// A max-heap entry by score.
#[derive(Clone, Copy, PartialEq)]
struct Best(f32, u32);
impl Eq for Best {}
impl PartialOrd for Best {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Best {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        score_key(self.0).total_cmp(&score_key(other.0)).then(other.1.cmp(&self.1))
    }
}

/// A min-heap entry by score (the worst kept result on top).
#[derive(Clone, Copy, PartialEq)]
struct Worst(f32, u32);
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        score_key(other.0).total_cmp(&score_key(self.0)).then(self.1.cmp(&other.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distance_type_name_is_part_of_the_format() {
        // hnsw_rs stores the distance's type name in the dump and refuses to load a dump whose
        // name differs: renaming or moving `MipsDistance` would make every existing index
        // unreadable. If this fails, keep the old name (or bump the format version).
        assert_eq!(std::any::type_name::<MipsDistance>(), "barista_index::graph::MipsDistance");
    }
}
