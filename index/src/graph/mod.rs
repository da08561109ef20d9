//! A segment's HNSW graphs, one per graph rung, for maximum-inner-product search.
//!
//! Starbucks-style vectors are unnormalised and compared by raw inner product, which is not a
//! metric: HNSW needs one. The graph therefore indexes the classic MIPS reduction (Bachrach et
//! al., 2014): with `M` the largest norm in the segment, a document `x` becomes
//! `x' = [x, √(M² − |x|²)]` and a query `q` becomes `q' = [q, 0]`, so that
//! `|q' − x'|² = |q|² + M² − 2 q·x`: the nearest `x'` in Euclidean distance is exactly the `x`
//! with the largest inner product. For cosine profiles the vectors are unit length, `M` ≈ 1 and
//! the extra coordinate ≈ 0: the same code does cosine search.
//!
//! Barista builds the graph itself ([`build`]: batch insertion on all cores, HNSW's neighbour
//! heuristic, exact and near duplicates grouped, connectivity repaired) and stores it in its own file
//! ([`layout`]): fixed-width rows of links per level, memory-mapped and searched in place, so
//! opening an index copies nothing and a graph costs what its pages cost. A search scores rows
//! with the scan kernels — for a fixed query, `|q' − x'|²` ranks exactly like `−q·x`, so no
//! augmented copy exists anywhere — with a visited bitset, batched gathers and deleted
//! documents filtered during the walk. On an i8 rung it walks the stored rows; on an f16 or
//! f32 rung it walks the i8 copy the graph file carries and rescores the best of what it found
//! on the stored rows ([`rescored`] of them), so a walk reads 384 bytes per (6,384) row instead
//! of 768 and the stored block is touched only for the rescored rows.

pub mod build;
pub mod layout;

use crate::error::{Error, Result};
use crate::files::{FileRecord, advise_random, check_bytes, map};
use crate::rung::Rung;
use crate::scan::{Kernels, Prepared, Scored, best_first, score_key};
use crate::vectors::BlockData;
use crate::vectors::RungBlock;
use layout::{GraphData, HAS_COPIES, LEN_MASK, Layout, WalkRows, section, section_f32, section_i8};
use memmap2::Mmap;
use std::collections::BinaryHeap;
use std::path::Path;

/// The file name of segment `basename`'s graph on `rung`: `seg-000001.6-384.graph`, or
/// `seg-000001.6-384.i8.graph` when the file carries the i8 copy of the rows that its walks
/// score (graphs on f16 and f32 rungs since format 2; a graph without the copy on such a rung
/// gets one from the writer, see [`needs_rows`]).
pub fn file_name(basename: &str, rung: Rung, rows: bool) -> String {
    let rows = if rows { ".i8" } else { "" };
    format!("{basename}.{}-{}{rows}.graph", rung.layer, rung.dim)
}

/// Whether the graph file `name` on a rung stored as `element` lacks the i8 copy its walks
/// should score (a graph written before graph files carried rows, on an f16 or f32 rung).
pub fn needs_rows(name: &str, element: crate::config::ElementType) -> bool {
    element != crate::config::ElementType::I8 && !name.ends_with(".i8.graph")
}

/// How many of a walk's best results (scored on the i8 copy) are rescored on the stored rows
/// to give the `k` returned: `k` plus a margin of up to [`RESCORE_MARGIN`] for the copy's
/// rounding, which moves a (6,384) score by up to ~2e-3 (BENCHMARKS.md, rung storage) —
/// enough to swap near ties across the k-th place, not to lift a row from far below it.
pub fn rescored(k: usize) -> usize {
    k + k.min(RESCORE_MARGIN)
}

/// The largest margin [`rescored`] adds. On 100,000 SciFact passages (k = 10, ef 50 and 100)
/// a margin of 0 lost 0.009 of exact's top 10 against walking the f16 rows, 5 and more lost
/// nothing (BENCHMARKS.md, "Walking an i8 copy").
pub const RESCORE_MARGIN: usize = 20;

/// A graph file, mapped and checked.
pub struct SegmentGraph {
    map: Mmap,
    layout: Layout,
}

impl std::fmt::Debug for SegmentGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentGraph")
            .field("rung", &(self.layout.layer, self.layout.dim))
            .field("rows", &self.layout.count)
            .field("nodes", &self.layout.nodes)
            .field("levels", &(1 + self.layout.upper.len()))
            .finish()
    }
}

impl SegmentGraph {
    /// Maps the graph file `record` names, verifies it against the record's checksum and checks
    /// its header against the segment (`count` rows of `rung`). Nothing is copied: searches read
    /// the mapping.
    pub fn open(dir: &Path, record: &FileRecord, count: u32, rung: Rung) -> Result<SegmentGraph> {
        let map = map(dir, record)?;
        check_bytes(dir, record, &map)?;
        let path = dir.join(&record.name);
        if !(map.as_ptr() as usize).is_multiple_of(64) {
            return Err(Error::corrupt(&path, "its mapping is not aligned"));
        }
        let layout = Layout::parse(&map, &path, count, rung.dim as u32, rung.layer as u32)?;
        // Verified (a sequential read, with read-around); from here on walks read rows at random.
        advise_random(&map, 0, map.len());
        Ok(SegmentGraph { map, layout })
    }

    /// The MIPS reduction's constant (largest norm among the rows, times 1 + 1e-6).
    pub fn max_norm(&self) -> f32 {
        self.layout.max_norm
    }

    /// Rows of the segment.
    pub fn len(&self) -> usize {
        self.layout.count as usize
    }

    /// Whether the segment has no rows.
    pub fn is_empty(&self) -> bool {
        self.layout.count == 0
    }

    /// Rows in the graph (one per distinct vector; the others are their copies).
    pub fn nodes(&self) -> usize {
        self.layout.nodes as usize
    }

    /// Levels (1 + the top level).
    pub fn levels(&self) -> usize {
        1 + self.layout.upper.len()
    }

    /// Bytes of the file.
    pub fn bytes(&self) -> usize {
        self.map.len()
    }

    /// The i8 copy of the rung's rows this graph's walks score, if the file carries one.
    pub fn rows(&self) -> Option<RungBlock<'_>> {
        let (scales, values) = self.layout.rows?;
        let data = BlockData::I8 { data: section_i8(&self.map, values), scales: section_f32(&self.map, scales) };
        Some(RungBlock { data, dim: self.layout.dim as usize, count: self.layout.count as usize })
    }

    /// Everything the file holds, copied into memory (to write it again with rows added).
    pub fn data(&self) -> GraphData {
        let l = &self.layout;
        let words = |range| section(&self.map, range).to_vec();
        GraphData {
            count: l.count,
            dim: l.dim,
            layer: l.layer,
            m: l.m,
            m0: l.m0,
            entry: l.entry,
            max_norm: l.max_norm,
            nodes: l.nodes,
            level0: words(l.level0),
            upper: l.upper.iter().map(|&(ids, rows)| (words(ids), words(rows))).collect(),
            reps: words(l.reps),
            offsets: words(l.offsets),
            copies: words(l.copies),
            rows: l.rows.map(|(scales, values)| WalkRows {
                scales: section_f32(&self.map, scales).to_vec(),
                data: section_i8(&self.map, values).to_vec(),
            }),
        }
    }

    /// Row `doc`'s first word and links on `level` (empty when it is not on that level).
    fn row(&self, level: usize, doc: u32) -> (u32, &[u32]) {
        let l = &self.layout;
        let (words, stride, index) = if level == 0 {
            (section(&self.map, l.level0), 1 + l.m0 as usize, doc as usize)
        } else {
            let Some(&(ids, rows)) = l.upper.get(level - 1) else { return (0, &[]) };
            let Ok(i) = section(&self.map, ids).binary_search(&doc) else { return (0, &[]) };
            (section(&self.map, rows), 1 + l.m as usize, i)
        };
        match words.get(index * stride..(index + 1) * stride) {
            Some(row) => {
                let len = ((row[0] & LEN_MASK) as usize).min(stride - 1);
                (row[0], &row[1..1 + len])
            }
            None => (0, &[]),
        }
    }

    /// The links of `doc` on `level`.
    pub fn links(&self, level: usize, doc: u32) -> &[u32] {
        self.row(level, doc).1
    }

    /// The other rows `doc` stands for in the graph: exact copies of its vector and rows closer
    /// than [`build::NEAR_DUPLICATE`] to it (empty unless `doc` represents a group).
    pub fn copies(&self, doc: u32) -> &[u32] {
        let l = &self.layout;
        let reps = section(&self.map, l.reps);
        let Ok(g) = reps.binary_search(&doc) else { return &[] };
        let offsets = section(&self.map, l.offsets);
        let copies = section(&self.map, l.copies);
        match (offsets.get(g), offsets.get(g + 1)) {
            (Some(&a), Some(&b)) if a <= b => copies.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Up to `k` documents with the largest inner product with `query` (approximately), best
    /// first, among those `keep` accepts, scored on `block` (the graph rung's rows as stored);
    /// `ef` is the search's candidate list size (at least `k`). A row standing for a group of
    /// copies or near-copies brings its members, each scored on its own row. When the file
    /// carries an i8 copy of the rows the walk scores it, and the best [`rescored`]`(k)` of
    /// what it found are scored again on `block`.
    pub fn search(
        &self,
        block: &RungBlock<'_>,
        kernels: &Kernels,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: &dyn Fn(u32) -> bool,
    ) -> Vec<Scored> {
        let l = &self.layout;
        let count = l.count as usize;
        if query.len() != l.dim as usize || k == 0 || count == 0 || block.count != count || block.dim != query.len() {
            return Vec::new();
        }
        let stored = (block, &kernels.prepare(block, query));
        let Some(rows) = self.rows() else {
            let (mut found, mut members) = self.walk(stored, stored, kernels, k, ef, keep);
            found.append(&mut members);
            return best(found, k);
        };
        let walked = (&rows, &kernels.prepare(&rows, query));
        let (mut found, mut members) = self.walk(walked, stored, kernels, rescored(k), ef, keep);
        found.sort_by(best_first);
        found.truncate(rescored(k));
        let ids: Vec<u32> = found.iter().map(|s| s.doc).collect();
        let mut scores = vec![0f32; ids.len()];
        kernels.score_rows_prepared(block, stored.1, &ids, &mut scores);
        for (s, score) in found.iter_mut().zip(scores) {
            s.score = score;
        }
        found.append(&mut members);
        best(found, k)
    }

    /// The walk of [`SegmentGraph::search`], scoring the rows of `walked` (a block and the
    /// query prepared for it): the `ef` best rows it keeps, and the members of the duplicate
    /// groups it reached scored on `stored`, the rows as stored (a group of near-copies can be
    /// larger than any rescoring margin, and its members may round to the same i8 values: each
    /// is scored on its stored row).
    fn walk(
        &self,
        (walked, query): (&RungBlock<'_>, &Prepared<'_>),
        (block, block_query): (&RungBlock<'_>, &Prepared<'_>),
        kernels: &Kernels,
        k: usize,
        ef: usize,
        keep: &dyn Fn(u32) -> bool,
    ) -> (Vec<Scored>, Vec<Scored>) {
        let l = &self.layout;
        let count = l.count as usize;
        let ef = ef.max(k).min(count);
        let valid = |n: u32| (n as usize) < count;
        // Greedy descent through the upper levels.
        let mut current = l.entry;
        let mut current_score = kernels.score_prepared(walked, query, current);
        for level in (1..self.levels()).rev() {
            loop {
                let mut moved = false;
                for &n in self.links(level, current).iter().filter(|&&n| valid(n)) {
                    let s = kernels.score_prepared(walked, query, n);
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
        // Beam search on level 0.
        let mut visited = vec![0u64; count.div_ceil(64)];
        let mut visit = |doc: u32| -> bool {
            let (word, bit) = (doc as usize / 64, 1u64 << (doc % 64));
            let fresh = visited[word] & bit == 0;
            visited[word] |= bit;
            fresh
        };
        visit(current);
        let mut candidates: BinaryHeap<Best> = BinaryHeap::with_capacity(ef * 2);
        let mut results: BinaryHeap<Worst> = BinaryHeap::with_capacity(ef + 1);
        // Members of the groups of reached rows, each scored on its own row.
        let mut copies: Vec<Scored> = Vec::new();
        let mut members: Vec<u32> = Vec::new();
        let mut member_scores: Vec<f32> = Vec::new();
        let mut admit = |results: &mut BinaryHeap<Worst>, copies: &mut Vec<Scored>, score: f32, doc: u32| {
            let (first, _) = self.row(0, doc);
            if keep(doc) {
                results.push(Worst(score, doc));
            }
            if first & HAS_COPIES != 0 {
                members.clear();
                members.extend(self.copies(doc).iter().copied().filter(|&c| valid(c) && keep(c)));
                member_scores.resize(members.len(), 0.0);
                kernels.score_rows_prepared(block, block_query, &members, &mut member_scores);
                copies.extend(members.iter().zip(&member_scores).map(|(&c, &s)| Scored { score: s, doc: c }));
            }
        };
        candidates.push(Best(current_score, current));
        admit(&mut results, &mut copies, current_score, current);
        let mut fresh = Vec::with_capacity(64);
        let mut scores = Vec::with_capacity(64);
        while let Some(Best(score, doc)) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| score < w.0) {
                break;
            }
            fresh.clear();
            fresh.extend(self.links(0, doc).iter().copied().filter(|&n| valid(n) && visit(n)));
            scores.resize(fresh.len(), 0.0);
            kernels.score_rows_prepared(walked, query, &fresh, &mut scores);
            for (&n, &s) in fresh.iter().zip(&scores) {
                let full = results.len() >= ef;
                if !full || results.peek().is_some_and(|w| s > w.0) {
                    candidates.push(Best(s, n));
                    admit(&mut results, &mut copies, s, n);
                    while results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        (results.into_iter().map(|Worst(score, doc)| Scored { score, doc }).collect(), copies)
    }
}

/// The best `k` of `found`, best first, each document once.
fn best(mut found: Vec<Scored>, k: usize) -> Vec<Scored> {
    found.sort_by(best_first);
    found.dedup_by_key(|s| s.doc);
    found.truncate(k);
    found
}

/// A max-heap entry by score (ties: the lower document first).
#[derive(Clone, Copy, PartialEq)]
pub(crate) struct Best(pub f32, pub u32);
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
pub(crate) struct Worst(pub f32, pub u32);
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
