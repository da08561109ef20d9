//! Choosing the graph rung by measurement.
//!
//! A graph shortlist can only be as good as its rung: if the final top 10 (the exhaustive
//! search at the largest rung) is not among a rung's own best `N` documents, no graph on that
//! rung finds it with a shortlist of `N`. So, for sample queries, each rung's exhaustive top `N`
//! is compared with the final top 10 ([`RungQuality`]). A smaller rung qualifies when its top
//! `N` keeps a target share; the largest rung always qualifies, with a far shorter walk (it
//! looks for the final top 10 itself, [`super::plan::GRAPH_FINAL_BALANCED`] candidates).
//! Among the qualifying rungs [`choose_graph_rung`] takes the one whose walk reads the fewest
//! bytes, estimated as candidates × bytes per row (a walk scores a roughly fixed multiple of its
//! `ef` in scattered rows, each a cache miss, so its cost follows the bytes it touches; ties go
//! to the smaller rung, whose vector is ready after fewer layers). The shares are an upper
//! bound on what the graph's approximate shortlist keeps.

use super::plan::GRAPH_FINAL_BALANCED;
use barista_index::Rung;
use serde::Serialize;

/// The shortlist depths [`crate::Engine::rung_quality`] reports by default: the `fast` and
/// `balanced` graph shortlists ([`super::plan::GRAPH_FAST`], [`super::plan::GRAPH_BALANCED`])
/// and their neighbours.
pub const DEPTHS: &[usize] = &[100, 300, 1000, 3000];

/// How well one rung's exhaustive shortlist holds the final top 10, over sample queries.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RungQuality {
    /// The rung.
    pub rung: Rung,
    /// Bytes a graph walk reads per row of this rung: its dimensions, as walks score i8 rows
    /// (the stored ones, or the copy a graph on an f16 or f32 rung carries).
    pub row_bytes: usize,
    /// `(N, share)`: the share (0–1) of the final top 10 found in this rung's exhaustive top
    /// `N`, over all sample queries' 10 × queries final hits.
    pub kept: Vec<(usize, f64)>,
    /// Mean over queries of this rung's best score (raw inner product, or cosine for cosine
    /// models).
    pub top1_score: f64,
    /// Mean over the queries with at least 100 hits of this rung's 100th best score (0 when
    /// the index holds fewer than 100 documents): with `top1_score`, the spread a shortlist
    /// threshold works in.
    pub top100_score: f64,
}

impl RungQuality {
    /// The share kept at shortlist depth `depth` (`None` if it was not measured).
    pub fn kept_at(&self, depth: usize) -> Option<f64> {
        self.kept.iter().find(|(d, _)| *d == depth).map(|(_, share)| *share)
    }
}

/// The graph rung for rows ordered smallest rung first (as [`crate::Engine::rung_quality`]
/// returns them): among the smaller rungs whose exhaustive top `depth` keeps at least `target`
/// of the final top 10 (a walk of `depth` candidates), and the largest rung (a walk of
/// [`GRAPH_FINAL_BALANCED`] candidates), the one with the fewest estimated bytes read per walk,
/// candidates × `row_bytes`. `None` only for empty rows or an unmeasured depth.
pub fn choose_graph_rung(rows: &[RungQuality], depth: usize, target: f64) -> Option<Rung> {
    let (last, smaller) = rows.split_last()?;
    last.kept_at(depth)?;
    let qualifying = smaller
        .iter()
        .filter(|row| row.kept_at(depth).is_some_and(|share| share >= target))
        .map(|row| (depth.saturating_mul(row.row_bytes), row.rung));
    let largest = (GRAPH_FINAL_BALANCED.saturating_mul(last.row_bytes), last.rung);
    // `min_by_key` keeps the first of equal costs: the smaller rung.
    qualifying.chain([largest]).min_by_key(|(cost, _)| *cost).map(|(_, rung)| rung)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(layer: usize, dim: usize, bytes: usize, kept: f64) -> RungQuality {
        RungQuality {
            rung: Rung::new(layer, dim),
            row_bytes: dim * bytes,
            kept: vec![(1000, kept)],
            top1_score: 0.0,
            top100_score: 0.0,
        }
    }

    #[test]
    fn the_cheapest_qualifying_rung_is_chosen() {
        // The shared model at a million passages (BENCHMARKS.md, "Millions of documents"); every
        // walk reads one byte per dimension (the largest rung, stored in f16, through the
        // graph's i8 copy).
        let shared = [row(3, 96, 1, 0.812), row(4, 128, 1, 0.883), row(5, 256, 1, 0.954), row(6, 384, 1, 1.0)];
        // (5,256) qualifies, but 1,000 × 256 bytes is more than 100 × 384: the largest rung.
        assert_eq!(choose_graph_rung(&shared, 1000, 0.95), Some(Rung::new(6, 384)));
        // Were (3,96)'s top 1,000 good enough, 1,000 × 96 bytes would still cost more.
        assert_eq!(choose_graph_rung(&shared, 1000, 0.80), Some(Rung::new(6, 384)));
        // A strong small rung wins: 1,000 × 32 bytes.
        let strong = [row(1, 32, 1, 0.96), row(3, 96, 1, 0.99), row(6, 384, 1, 1.0)];
        assert_eq!(choose_graph_rung(&strong, 1000, 0.95), Some(Rung::new(1, 32)));
        // Equal costs: the smaller rung (its vector is ready sooner).
        let tie = [row(2, 64, 1, 1.0), row(4, 128, 1, 1.0), row(6, 640, 1, 1.0)];
        assert_eq!(choose_graph_rung(&tie, 1000, 0.95), Some(Rung::new(2, 64)));
        let tie = [row(4, 64, 1, 1.0), row(6, 640, 1, 1.0)];
        assert_eq!(choose_graph_rung(&tie, 1000, 0.95), Some(Rung::new(4, 64)));
        assert_eq!(choose_graph_rung(&shared, 300, 0.95), None, "an unmeasured depth");
        assert_eq!(choose_graph_rung(&[], 1000, 0.95), None);
    }
}
