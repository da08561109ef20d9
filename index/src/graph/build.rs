//! Building a segment's HNSW graph over one rung block, on all cores, deterministically.
//!
//! The graph is HNSW (Malkov & Yashunin, 2018) over the MIPS reduction described in the parent
//! module: the similarity of two stored rows `a`, `b` is `a·b + α_a α_b` with
//! `α = √(max_norm² − |x|²)`, which orders pairs exactly as the augmented vectors' Euclidean
//! distance does; a query ranks rows by `q·x`. Scores come from the rows as stored (i8, f16 or
//! f32) through the same kernels searches use.
//!
//! - **Batch insertion** (prefix doubling, as ParlayANN: Manohar et al., 2024): rows are
//!   inserted in document order, in batches of at most 1/64 of the rows already in the graph
//!   (from one row up to 4,096). A batch's rows search the graph as it was before the batch, in
//!   parallel; their links and the reverse links they cause are then applied, level 0 in
//!   parallel over disjoint ranges of rows. The result does not depend on the thread count.
//! - **Neighbour selection**: HNSW's heuristic (Algorithm 4) as hnswlib runs it: candidates in
//!   order of similarity, each dropped when an already kept neighbour is strictly more similar
//!   to it than the new row is. `M` links are chosen per level at insertion; rows hold up to
//!   `M` links above level 0 and `2M` on level 0, re-selected by the same heuristic when
//!   reverse links overflow them.
//! - **Duplicates** enter the graph once. Rows whose stored bytes are equal (the same text
//!   indexed twice) are grouped before insertion; a row whose nearest graph row is closer than
//!   [`NEAR_DUPLICATE`] joins that row's group during insertion. The group's first row
//!   represents it in the graph; a search that reaches it scores every member on its own row.
//!   Identical or nearly identical vectors would otherwise fill each other's link lists, cut
//!   the group off from the rest of the graph and trap the walks that enter it (qdrant#1788,
//!   hnswlib#263).
//! - **Connectivity repair** (as NSG: Fu et al., 2019): after insertion, every row not
//!   reachable on level 0 from the entry point gets a link from the most similar reachable
//!   row with room for one (or from the most similar reachable row, replacing its weakest
//!   link), until all are reachable.

use super::layout::{GraphData, HAS_COPIES, IS_COPY, LEN_MASK, MAX_LEVELS, WalkRows};
use super::{Best, Worst};
use crate::error::{Error, Result};
use crate::scan::{Kernels, Prepared};
use crate::vectors::{BlockData, RungBlock};
use std::collections::{BinaryHeap, HashMap};

/// How to build.
#[derive(Clone, Copy, Debug)]
pub struct BuildParams {
    /// Links per row above level 0 (`M`); level 0 holds `2M`.
    pub m: usize,
    /// Candidate list size while inserting.
    pub ef_construction: usize,
    /// Threads to build with.
    pub threads: usize,
    /// Seed of the level draw.
    pub seed: u64,
}

/// Rows closer than this share of the largest norm (augmented Euclidean distance; for unit
/// vectors, a cosine above 0.99875) to a row already in the graph join its group instead of
/// entering the graph: a tight cluster of near-copies larger than `ef_construction` would
/// otherwise link only to itself and trap every walk that enters it. Members are scored on
/// their own rows whenever their representative is reached.
pub const NEAR_DUPLICATE: f32 = 0.05;

/// The largest batch of rows inserted together.
const MAX_BATCH: usize = 4096;
/// A batch holds at most this fraction of the rows already inserted (1 / N).
const BATCH_FRACTION: usize = 64;

/// SplitMix64's output function (a fixed, well-mixed hash of `x`).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rows as a metric space: stored values, kernels, and each row's MIPS term α.
struct Space<'a> {
    block: RungBlock<'a>,
    kernels: Kernels,
    alpha: Vec<f32>,
    /// Similarity from which a row nearly duplicates another (see [`NEAR_DUPLICATE`]).
    near: f32,
}

/// A row prepared as a query.
struct Query<'p> {
    prepared: &'p Prepared<'p>,
    alpha: f32,
}

impl Space<'_> {
    fn row(&self, i: u32, out: &mut [f32]) {
        let dim = self.block.dim;
        let at = i as usize * dim;
        match self.block.data {
            BlockData::F32(d) => out.copy_from_slice(&d[at..at + dim]),
            BlockData::F16(d) => out.iter_mut().zip(&d[at..at + dim]).for_each(|(o, v)| *o = v.to_f32()),
            BlockData::I8 { data, scales } => {
                out.iter_mut().zip(&data[at..at + dim]).zip(scales).for_each(|((o, &v), s)| *o = f32::from(v) * s)
            }
        }
    }

    /// The stored bytes of row `i` (what duplicates are detected on).
    fn bytes(&self, i: u32) -> &[u8] {
        let dim = self.block.dim;
        let at = i as usize * dim;
        // SAFETY: plain numbers without padding, viewed as bytes (alignment 1), in bounds.
        unsafe {
            match self.block.data {
                BlockData::F32(d) => std::slice::from_raw_parts(d[at..at + dim].as_ptr().cast(), dim * 4),
                BlockData::F16(d) => std::slice::from_raw_parts(d[at..at + dim].as_ptr().cast(), dim * 2),
                BlockData::I8 { data, .. } => std::slice::from_raw_parts(data[at..at + dim].as_ptr().cast(), dim),
            }
        }
    }

    fn score(&self, q: &Query<'_>, n: u32) -> f32 {
        self.kernels.score_prepared(&self.block, q.prepared, n) + q.alpha * self.alpha[n as usize]
    }

    fn scores(&self, q: &Query<'_>, ids: &[u32], out: &mut Vec<f32>) {
        out.resize(ids.len(), 0.0);
        self.kernels.score_rows_prepared(&self.block, q.prepared, ids, out);
        for (o, &n) in out.iter_mut().zip(ids) {
            *o += q.alpha * self.alpha[n as usize];
        }
    }
}

/// Marks of visited rows, cleared in O(1) by an epoch.
struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn new(n: usize) -> Visited {
        Visited { marks: vec![0; n], epoch: 0 }
    }

    fn clear(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `i`; true if it was not marked yet.
    fn insert(&mut self, i: u32) -> bool {
        let slot = &mut self.marks[i as usize];
        let fresh = *slot != self.epoch;
        *slot = self.epoch;
        fresh
    }
}

/// Fixed-width rows of links: `[len, link…]`.
struct Rows {
    stride: usize,
    words: Vec<u32>,
}

impl Rows {
    fn new(rows: usize, cap: usize) -> Rows {
        Rows { stride: cap + 1, words: vec![0; rows * (cap + 1)] }
    }

    fn links(&self, row: usize) -> &[u32] {
        let r = &self.words[row * self.stride..(row + 1) * self.stride];
        &r[1..1 + ((r[0] & LEN_MASK) as usize).min(self.stride - 1)]
    }

    fn set(row: &mut [u32], links: &[u32]) {
        let n = links.len().min(row.len() - 1);
        row[0] = (row[0] & !LEN_MASK) | n as u32;
        row[1..1 + n].copy_from_slice(&links[..n]);
    }
}

/// One level above 0: which rows it holds (`pos[doc]`, or `u32::MAX`) and their links.
struct Upper {
    pos: Vec<u32>,
    ids: Vec<u32>,
    rows: Rows,
}

struct Graph {
    level0: Rows,
    upper: Vec<Upper>,
    entry: u32,
    top: usize,
    m: usize,
}

impl Graph {
    fn links(&self, level: usize, doc: u32) -> &[u32] {
        if level == 0 {
            return self.level0.links(doc as usize);
        }
        let u = &self.upper[level - 1];
        match u.pos[doc as usize] {
            u32::MAX => &[],
            p => u.rows.links(p as usize),
        }
    }

    fn cap(&self, level: usize) -> usize {
        if level == 0 { 2 * self.m } else { self.m }
    }
}

/// What a row's insertion found: its links per level (0 first).
struct Plan {
    doc: u32,
    links: Vec<Vec<u32>>,
    /// A graph row this row nearly duplicates (it joins that row's group instead).
    join: Option<u32>,
}

/// Per-thread scratch.
struct Scratch {
    visited: Visited,
    /// The row being inserted (or repaired).
    query: Vec<f32>,
    /// A candidate's row (neighbour selection).
    row: Vec<f32>,
    ids: Vec<u32>,
    scores: Vec<f32>,
}

impl Scratch {
    fn new(n: usize, dim: usize) -> Scratch {
        Scratch {
            visited: Visited::new(n),
            query: vec![0.0; dim],
            row: vec![0.0; dim],
            ids: Vec::new(),
            scores: Vec::new(),
        }
    }
}

/// The most similar row reachable greedily from `start` on `level`.
fn greedy(
    space: &Space<'_>,
    graph: &Graph,
    q: &Query<'_>,
    start: (f32, u32),
    level: usize,
    s: &mut Scratch,
) -> (f32, u32) {
    let (mut best, mut at) = start;
    loop {
        s.ids.clear();
        s.ids.extend_from_slice(graph.links(level, at));
        if s.ids.is_empty() {
            return (best, at);
        }
        let mut scores = std::mem::take(&mut s.scores);
        space.scores(q, &s.ids, &mut scores);
        let mut moved = false;
        for (&n, &sc) in s.ids.iter().zip(&scores) {
            if sc > best {
                (best, at) = (sc, n);
                moved = true;
            }
        }
        s.scores = scores;
        if !moved {
            return (best, at);
        }
    }
}

/// HNSW's layer search: the `ef` rows most similar to `q` found from `entries` on `level`,
/// most similar first.
fn search_layer(
    space: &Space<'_>,
    graph: &Graph,
    q: &Query<'_>,
    entries: &[(f32, u32)],
    ef: usize,
    level: usize,
    s: &mut Scratch,
) -> Vec<(f32, u32)> {
    s.visited.clear();
    let mut candidates: BinaryHeap<Best> = BinaryHeap::with_capacity(ef * 2);
    let mut results: BinaryHeap<Worst> = BinaryHeap::with_capacity(ef + 1);
    for &(score, doc) in entries {
        if s.visited.insert(doc) {
            candidates.push(Best(score, doc));
            results.push(Worst(score, doc));
            if results.len() > ef {
                results.pop();
            }
        }
    }
    let mut scores = std::mem::take(&mut s.scores);
    while let Some(Best(score, doc)) = candidates.pop() {
        if results.len() >= ef && results.peek().is_some_and(|w| score < w.0) {
            break;
        }
        s.ids.clear();
        for &n in graph.links(level, doc) {
            if s.visited.insert(n) {
                s.ids.push(n);
            }
        }
        space.scores(q, &s.ids, &mut scores);
        for (&n, &sc) in s.ids.iter().zip(&scores) {
            if results.len() < ef || results.peek().is_some_and(|w| sc > w.0) {
                candidates.push(Best(sc, n));
                results.push(Worst(sc, n));
                if results.len() > ef {
                    results.pop();
                }
            }
        }
    }
    s.scores = scores;
    let mut found: Vec<(f32, u32)> = results.into_iter().map(|Worst(sc, d)| (sc, d)).collect();
    found.sort_by_key(|b| std::cmp::Reverse(Best(b.0, b.1)));
    found
}

/// HNSW's neighbour-selection heuristic: up to `m` of `candidates` (most similar to the row
/// first, with their similarity to it), each kept unless a kept one is strictly more similar to
/// it than the row is.
fn select(space: &Space<'_>, candidates: &[(f32, u32)], m: usize, s: &mut Scratch) -> Vec<u32> {
    let mut kept: Vec<u32> = Vec::with_capacity(m);
    let mut row = std::mem::take(&mut s.row);
    let mut scores = std::mem::take(&mut s.scores);
    for &(to_row, c) in candidates {
        if kept.len() >= m {
            break;
        }
        if kept.is_empty() {
            kept.push(c);
            continue;
        }
        space.row(c, &mut row);
        let prepared = space.kernels.prepare(&space.block, &row);
        let q = Query { prepared: &prepared, alpha: space.alpha[c as usize] };
        space.scores(&q, &kept, &mut scores);
        if scores.iter().all(|&to_kept| to_kept <= to_row) {
            kept.push(c);
        }
    }
    s.row = row;
    s.scores = scores;
    kept
}

/// Finds where row `doc` (of level `level`) belongs: its links on every level it has, among the
/// graph as it is.
fn plan_insert(space: &Space<'_>, graph: &Graph, doc: u32, level: usize, ef: usize, s: &mut Scratch) -> Plan {
    let mut row = std::mem::take(&mut s.query);
    space.row(doc, &mut row);
    let prepared = space.kernels.prepare(&space.block, &row);
    let q = Query { prepared: &prepared, alpha: space.alpha[doc as usize] };
    let mut at = (space.score(&q, graph.entry), graph.entry);
    for l in (level + 1..=graph.top).rev() {
        at = greedy(space, graph, &q, at, l, s);
    }
    let mut links = vec![Vec::new(); level + 1];
    let mut entries = vec![at];
    let mut join = None;
    for l in (0..=level.min(graph.top)).rev() {
        let found = search_layer(space, graph, &q, &entries, ef, l, s);
        if l == 0 {
            join = found.first().filter(|f| f.0 >= space.near).map(|f| f.1);
        }
        links[l] = select(space, &found, graph.m, s);
        entries = found;
    }
    s.query = row;
    Plan { doc, links, join }
}

/// Sets `target`'s links to its current ones plus `new` (re-selected when over `cap`).
fn add_links(space: &Space<'_>, row: &mut [u32], target: u32, new: &[u32], cap: usize, s: &mut Scratch) {
    let len = (row[0] & LEN_MASK) as usize;
    let mut all: Vec<u32> = row[1..1 + len].to_vec();
    for &n in new {
        if n != target && !all.contains(&n) {
            all.push(n);
        }
    }
    if all.len() <= cap {
        Rows::set(row, &all);
        return;
    }
    let mut buffer = std::mem::take(&mut s.row);
    space.row(target, &mut buffer);
    let prepared = space.kernels.prepare(&space.block, &buffer);
    let q = Query { prepared: &prepared, alpha: space.alpha[target as usize] };
    let mut scores = Vec::new();
    space.scores(&q, &all, &mut scores);
    s.row = buffer;
    let mut ranked: Vec<(f32, u32)> = scores.into_iter().zip(all).collect();
    ranked.sort_by_key(|b| std::cmp::Reverse(Best(b.0, b.1)));
    let kept = select(space, &ranked, cap, s);
    Rows::set(row, &kept);
}

/// Builds the graph of `block` (rows `0..block.count`), reporting `(inserted, total)`; `cancel`
/// is asked between batches and stops the build with [`Error::Cancelled`]. `layer` is the
/// rung's layer (recorded in the file).
pub fn build(
    block: RungBlock<'_>,
    kernels: Kernels,
    layer: usize,
    params: &BuildParams,
    progress: &dyn Fn(usize, usize),
    cancel: &dyn Fn() -> bool,
) -> Result<GraphData> {
    let count = block.count;
    let dim = block.dim;
    if count > u32::MAX as usize / 2 || params.m < 2 || params.m > 255 {
        return Err(Error::InvalidInput(format!("cannot build a graph of {count} rows with M = {}", params.m)));
    }
    let m = params.m;
    let ef = params.ef_construction.max(m);
    let threads = params.threads.max(1);
    // Norms and the MIPS term.
    let mut space = Space { block, kernels, alpha: vec![0.0; count], near: f32::INFINITY };
    let mut buffer = vec![0.0f32; dim];
    let mut norms = vec![0.0f64; count];
    for (i, norm) in norms.iter_mut().enumerate() {
        space.row(i as u32, &mut buffer);
        *norm = buffer.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        if !norm.is_finite() {
            return Err(Error::InvalidInput(format!("row {i} of the graph rung is not finite")));
        }
    }
    let max_sq = norms.iter().copied().fold(0.0f64, f64::max);
    let max_norm = (max_sq.sqrt() * (1.0 + 1e-6)) as f32;
    let max_sq = f64::from(max_norm) * f64::from(max_norm);
    for (a, n) in space.alpha.iter_mut().zip(&norms) {
        *a = (max_sq - n).max(0.0).sqrt() as f32;
    }
    // |x' − y'|² = 2M² − 2 s(x, y) ≤ (εM)²  ⇔  s(x, y) ≥ M² (1 − ε²/2).
    let eps = f64::from(NEAR_DUPLICATE);
    space.near = (max_sq * (1.0 - eps * eps / 2.0)) as f32;
    drop(norms);
    // Exact duplicates: the first row of each group represents it.
    let mut first_of: HashMap<u128, u32> = HashMap::with_capacity(count);
    let mut rep_of: Vec<u32> = (0..count as u32).collect();
    for i in 0..count as u32 {
        let key = xxhash_rust::xxh3::xxh3_128(space.bytes(i));
        match first_of.get(&key) {
            Some(&r) if space.bytes(r) == space.bytes(i) => rep_of[i as usize] = r,
            Some(_) => {}
            None => {
                first_of.insert(key, i);
            }
        }
    }
    drop(first_of);
    let reps: Vec<u32> = (0..count as u32).filter(|&i| rep_of[i as usize] == i).collect();
    // Levels: ⌊−ln(u) / ln(M)⌋, from a hash of the row number.
    let ml = 1.0 / (m as f64).ln();
    let level_of = |doc: u32| -> usize {
        let u = ((mix(params.seed ^ u64::from(doc)) >> 11) + 1) as f64 / (1u64 << 53) as f64;
        ((-u.ln() * ml) as usize).min(MAX_LEVELS - 1)
    };
    let mut graph = Graph { level0: Rows::new(count, 2 * m), upper: Vec::new(), entry: 0, top: 0, m };
    let Some(&first) = reps.first() else {
        return Ok(finish(graph, layer, count, dim, max_norm, &rep_of, 0, WalkRows::of(&space.block)));
    };
    let add_levels = |graph: &mut Graph, level: usize| {
        while graph.upper.len() < level {
            graph.upper.push(Upper { pos: vec![u32::MAX; count], ids: Vec::new(), rows: Rows::new(0, m) });
        }
    };
    let place = |graph: &mut Graph, doc: u32, level: usize| {
        for l in 1..=level {
            let u = &mut graph.upper[l - 1];
            u.pos[doc as usize] = u.ids.len() as u32;
            u.ids.push(doc);
            u.rows.words.extend(std::iter::repeat_n(0, m + 1));
        }
    };
    let first_level = level_of(first);
    add_levels(&mut graph, first_level);
    place(&mut graph, first, first_level);
    graph.entry = first;
    graph.top = first_level;
    let mut scratch: Vec<Scratch> = (0..threads).map(|_| Scratch::new(count, dim)).collect();
    let mut inserted = 1;
    progress(inserted, reps.len());
    while inserted < reps.len() {
        if cancel() {
            return Err(Error::Cancelled);
        }
        let size = (inserted / BATCH_FRACTION).clamp(1, MAX_BATCH).min(reps.len() - inserted);
        let batch = &reps[inserted..inserted + size];
        // Search, in parallel, against the graph as it was before the batch.
        let plans: Vec<Plan> = {
            let (space, graph) = (&space, &graph);
            let chunk = size.div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .chunks(chunk)
                    .zip(scratch.iter_mut())
                    .map(|(docs, s)| {
                        scope.spawn(move || {
                            docs.iter().map(|&d| plan_insert(space, graph, d, level_of(d), ef, s)).collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
            })
        };
        if plans.len() != size {
            return Err(Error::InvalidInput("a graph build thread failed".into()));
        }
        // Apply: near-duplicates join their groups; the batch's other rows, then reverse links.
        let mut reverse: Vec<(u32, u32, u32)> = Vec::new(); // (level, target, source)
        for plan in &plans {
            if let Some(rep) = plan.join {
                rep_of[plan.doc as usize] = rep;
                continue;
            }
            let level = plan.links.len() - 1;
            add_levels(&mut graph, level);
            place(&mut graph, plan.doc, level);
            for (l, links) in plan.links.iter().enumerate() {
                let row = match l {
                    0 => {
                        let stride = graph.level0.stride;
                        &mut graph.level0.words[plan.doc as usize * stride..(plan.doc as usize + 1) * stride]
                    }
                    _ => {
                        let u = &mut graph.upper[l - 1];
                        let p = u.pos[plan.doc as usize] as usize;
                        &mut u.rows.words[p * (m + 1)..(p + 1) * (m + 1)]
                    }
                };
                Rows::set(row, links);
                reverse.extend(links.iter().map(|&t| (l as u32, t, plan.doc)));
            }
        }
        reverse.sort_unstable();
        apply_reverse(&space, &mut graph, &reverse, threads, &mut scratch);
        for plan in plans.iter().filter(|p| p.join.is_none()) {
            let level = plan.links.len() - 1;
            if level > graph.top {
                graph.top = level;
                graph.entry = plan.doc;
            }
        }
        inserted += size;
        progress(inserted, reps.len());
    }
    let nodes: Vec<u32> = reps.into_iter().filter(|&d| rep_of[d as usize] == d).collect();
    repair(&space, &mut graph, &nodes, ef, &mut scratch[0]);
    Ok(finish(graph, layer, count, dim, max_norm, &rep_of, nodes.len(), WalkRows::of(&space.block)))
}

/// Applies reverse links `(level, target, source)` (sorted): upper levels on this thread,
/// level 0 split over `threads` disjoint ranges of targets.
fn apply_reverse(
    space: &Space<'_>,
    graph: &mut Graph,
    reverse: &[(u32, u32, u32)],
    threads: usize,
    scratch: &mut [Scratch],
) {
    let split = reverse.partition_point(|r| r.0 == 0);
    let (level0, upper) = reverse.split_at(split);
    let m = graph.m;
    for group in upper.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let (l, target) = (group[0].0 as usize, group[0].1);
        let new: Vec<u32> = group.iter().map(|r| r.2).collect();
        let cap = graph.cap(l);
        let u = &mut graph.upper[l - 1];
        let p = u.pos[target as usize] as usize;
        add_links(space, &mut u.rows.words[p * (m + 1)..(p + 1) * (m + 1)], target, &new, cap, &mut scratch[0]);
    }
    if level0.is_empty() {
        return;
    }
    // Split the targets into `threads` ranges of about equal work, at target boundaries.
    let stride = graph.level0.stride;
    let cap = graph.cap(0);
    let mut bounds = vec![0usize];
    for t in 1..threads {
        let mut at = level0.len() * t / threads;
        while at > 0 && at < level0.len() && level0[at].1 == level0[at - 1].1 {
            at += 1;
        }
        if at > *bounds.last().unwrap_or(&0) && at < level0.len() {
            bounds.push(at);
        }
    }
    bounds.push(level0.len());
    let mut rest: &mut [u32] = &mut graph.level0.words;
    let mut offset = 0usize; // the first row `rest` holds
    let mut parts = Vec::with_capacity(bounds.len() - 1);
    for w in bounds.windows(2) {
        let (a, b) = (w[0], w[1]);
        let last_row = level0[b - 1].1 as usize + 1;
        let (mine, tail) = std::mem::take(&mut rest).split_at_mut((last_row - offset) * stride);
        parts.push((&level0[a..b], offset, mine));
        rest = tail;
        offset = last_row;
    }
    std::thread::scope(|scope| {
        for ((edges, first_row, rows), s) in parts.into_iter().zip(scratch.iter_mut()) {
            scope.spawn(move || {
                for group in edges.chunk_by(|a, b| a.1 == b.1) {
                    let target = group[0].1;
                    let new: Vec<u32> = group.iter().map(|r| r.2).collect();
                    let at = (target as usize - first_row) * stride;
                    add_links(space, &mut rows[at..at + stride], target, &new, cap, s);
                }
            });
        }
    });
}

/// Makes every graph row reachable on level 0 from the entry point (see the module docs).
fn repair(space: &Space<'_>, graph: &mut Graph, reps: &[u32], ef: usize, s: &mut Scratch) {
    let count = graph.level0.words.len() / graph.level0.stride;
    let mut reached = vec![false; count];
    let mut stack = Vec::new();
    let mut reach = |graph: &Graph, from: u32, reached: &mut Vec<bool>| {
        if reached[from as usize] {
            return;
        }
        reached[from as usize] = true;
        stack.push(from);
        while let Some(at) = stack.pop() {
            for &n in graph.links(0, at) {
                if !reached[n as usize] {
                    reached[n as usize] = true;
                    stack.push(n);
                }
            }
        }
    };
    reach(&*graph, graph.entry, &mut reached);
    for _pass in 0..4 {
        let missing: Vec<u32> = reps.iter().copied().filter(|&d| !reached[d as usize]).collect();
        if missing.is_empty() {
            return;
        }
        for doc in missing {
            if reached[doc as usize] {
                continue;
            }
            let mut row = std::mem::take(&mut s.query);
            space.row(doc, &mut row);
            let prepared = space.kernels.prepare(&space.block, &row);
            let q = Query { prepared: &prepared, alpha: space.alpha[doc as usize] };
            let mut at = (space.score(&q, graph.entry), graph.entry);
            for l in (1..=graph.top).rev() {
                at = greedy(space, graph, &q, at, l, s);
            }
            let found = search_layer(space, graph, &q, &[at], ef, 0, s);
            s.query = row;
            let reachable: Vec<u32> = found.iter().map(|f| f.1).filter(|&d| d != doc && reached[d as usize]).collect();
            let Some(&best) = reachable.first() else { continue };
            let stride = graph.level0.stride;
            let host = reachable
                .iter()
                .copied()
                .find(|&d| ((graph.level0.words[d as usize * stride] & LEN_MASK) as usize) < stride - 1)
                .unwrap_or(best);
            let row = &mut graph.level0.words[host as usize * stride..(host as usize + 1) * stride];
            let len = (row[0] & LEN_MASK) as usize;
            if len < stride - 1 {
                row[1 + len] = doc;
                row[0] += 1;
            } else {
                row[len] = doc; // replaces the weakest link
            }
            reach(&*graph, doc, &mut reached);
        }
        // A replaced link may have cut something off: look again from the entry point.
        reached.fill(false);
        reach(&*graph, graph.entry, &mut reached);
    }
}

/// The file's content: level 0 for every row (copies flagged, without links), upper levels by
/// ascending document number, the duplicate groups, the i8 copy of the rows when the block is
/// stored wider.
#[allow(clippy::too_many_arguments)]
fn finish(
    graph: Graph,
    layer: usize,
    count: usize,
    dim: usize,
    max_norm: f32,
    rep_of: &[u32],
    nodes: usize,
    rows: Option<WalkRows>,
) -> GraphData {
    let m = graph.m;
    let mut level0 = graph.level0.words;
    let stride = 2 * m + 1;
    let mut groups: HashMap<u32, Vec<u32>> = HashMap::new();
    for doc in 0..rep_of.len() {
        // An exact copy of a row that later joined a near-duplicate group belongs to that
        // group's representative (a graph row, its own representative): searches read one
        // level of groups. Chains are at most two links long; the bound only guards the loop.
        let mut rep = rep_of[doc];
        for _ in 0..8 {
            let next = rep_of[rep as usize];
            if next == rep {
                break;
            }
            rep = next;
        }
        if rep != doc as u32 {
            groups.entry(rep).or_default().push(doc as u32);
            level0[doc * stride] = IS_COPY;
        }
    }
    let mut reps: Vec<u32> = groups.keys().copied().collect();
    reps.sort_unstable();
    let mut offsets = Vec::with_capacity(reps.len() + 1);
    let mut copies = Vec::new();
    offsets.push(0);
    for r in &reps {
        level0[*r as usize * stride] |= HAS_COPIES;
        copies.extend_from_slice(&groups[r]);
        offsets.push(copies.len() as u32);
    }
    let upper = graph
        .upper
        .into_iter()
        .take(graph.top)
        .map(|u| {
            let mut order: Vec<u32> = (0..u.ids.len() as u32).collect();
            order.sort_unstable_by_key(|&p| u.ids[p as usize]);
            let ids: Vec<u32> = order.iter().map(|&p| u.ids[p as usize]).collect();
            let mut rows = Vec::with_capacity(u.rows.words.len());
            for &p in &order {
                rows.extend_from_slice(&u.rows.words[p as usize * (m + 1)..(p as usize + 1) * (m + 1)]);
            }
            (ids, rows)
        })
        .collect();
    GraphData {
        count: count as u32,
        dim: dim as u32,
        layer: layer as u32,
        m: m as u32,
        m0: 2 * m as u32,
        entry: graph.entry,
        max_norm,
        nodes: nodes as u32,
        level0,
        upper,
        reps,
        offsets,
        copies,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::SegmentGraph;
    use crate::scan::Scored;

    /// `n` pseudo-random unit vectors of `dim` values.
    fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let row: Vec<f32> = (0..dim)
                .map(|j| (mix(seed ^ ((i * dim + j) as u64)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                .collect();
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(row.iter().map(|x| x / norm));
        }
        out
    }

    fn params(threads: usize) -> BuildParams {
        BuildParams { m: 8, ef_construction: 64, threads, seed: 7 }
    }

    fn block(v: &[f32], dim: usize) -> RungBlock<'_> {
        RungBlock { data: BlockData::F32(v), dim, count: v.len() / dim }
    }

    /// Writes and maps the graph, as a segment would.
    fn open(data: &GraphData, dir: &std::path::Path) -> SegmentGraph {
        let record = data.write(dir, "g.graph").unwrap();
        SegmentGraph::open(dir, &record, data.count, crate::rung::Rung::new(data.layer as usize, data.dim as usize))
            .unwrap()
    }

    fn search(g: &SegmentGraph, v: &[f32], dim: usize, q: &[f32], k: usize, ef: usize) -> Vec<Scored> {
        g.search(&block(v, dim), &Kernels::default(), q, k, ef, &|_| true)
    }

    #[test]
    fn the_graph_does_not_depend_on_the_thread_count() {
        let dim = 16;
        let v = unit_vectors(3000, dim, 1);
        let one = build(block(&v, dim), Kernels::default(), 2, &params(1), &|_, _| {}, &|| false).unwrap();
        let four = build(block(&v, dim), Kernels::default(), 2, &params(4), &|_, _| {}, &|| false).unwrap();
        assert!(one == four, "the same rows gave different graphs on 1 and 4 threads");
        assert_eq!(one.nodes, 3000);
        assert!(one.upper.len() >= 2, "a graph of 3,000 rows with M = 8 has upper levels");
    }

    #[test]
    fn every_row_is_reachable_and_finds_itself() {
        let dim = 16;
        let v = unit_vectors(4000, dim, 2);
        let data = build(block(&v, dim), Kernels::default(), 2, &params(2), &|_, _| {}, &|| false).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let g = open(&data, dir.path());
        let mut reached = vec![false; 4000];
        let mut stack = vec![data.entry];
        reached[data.entry as usize] = true;
        while let Some(at) = stack.pop() {
            for &n in g.links(0, at) {
                if !std::mem::replace(&mut reached[n as usize], true) {
                    stack.push(n);
                }
            }
        }
        assert!(reached.iter().all(|&r| r), "rows unreachable on level 0");
        for doc in 0..4000u32 {
            let row = &v[doc as usize * dim..(doc as usize + 1) * dim];
            let top = search(&g, &v, dim, row, 1, 64);
            assert_eq!(top[0].doc, doc, "row {doc} did not find itself");
        }
    }

    /// The case: 400 copies of one document among 200 distinct ones. Identical vectors
    /// fill each other's link lists and, once the walk enters them, hide the rest of the graph;
    /// every distinct document must still be found by its own vector at ef 100, and a search
    /// for the copied vector returns every copy.
    #[test]
    fn copies_of_one_document_hide_nothing() {
        let dim = 32;
        for seed in 0..5 {
            let distinct = unit_vectors(200, dim, 100 + seed);
            let copy = unit_vectors(1, dim, 999 + seed);
            // Copies interleaved with the distinct rows, as documents arrive.
            let mut v = Vec::new();
            let mut copies = Vec::new();
            let mut d = 0;
            for row in 0..600u32 {
                if row % 3 == 2 || d == 200 {
                    v.extend_from_slice(&copy);
                    copies.push(row);
                } else {
                    v.extend_from_slice(&distinct[d * dim..(d + 1) * dim]);
                    d += 1;
                }
            }
            let data = build(block(&v, dim), Kernels::default(), 1, &params(2), &|_, _| {}, &|| false).unwrap();
            assert_eq!(data.nodes, 201, "the copies enter the graph once");
            let dir = tempfile::tempdir().unwrap();
            let g = open(&data, dir.path());
            for row in 0..600u32 {
                if copies.contains(&row) {
                    continue;
                }
                let q = &v[row as usize * dim..(row as usize + 1) * dim];
                let top = search(&g, &v, dim, q, 10, 100);
                assert_eq!(top[0].doc, row, "seed {seed}: row {row} is not found by its own vector");
            }
            let all = search(&g, &v, dim, &copy, 400, 400);
            let found: Vec<u32> = all.iter().map(|s| s.doc).filter(|d| copies.contains(d)).collect();
            assert_eq!(found.len(), 400, "seed {seed}: every copy comes back with its representative");
            let top = search(&g, &v, dim, &copy, 10, 100);
            assert!(top.iter().all(|s| copies.contains(&s.doc)), "seed {seed}: the copies score first");
        }
    }

    /// Near-duplicates (the same text with a word changed): 400 vectors spread around one
    /// point among 200 distinct ones, from nearly identical (grouped) to loosely similar (in
    /// the graph), with the default M and ef_construction. Every row — distinct or near-copy —
    /// is found first by its own vector at ef 100.
    #[test]
    fn near_copies_hide_nothing() {
        let dim = 32;
        let defaults = BuildParams { m: 16, ef_construction: 200, threads: 2, seed: 7 };
        for (spread, grouped) in [(1e-3f32, 399), (1e-2, 399), (3e-2, 399), (1e-1, 0), (3e-1, 0)] {
            let distinct = unit_vectors(200, dim, 5);
            let center = unit_vectors(1, dim, 6);
            let noise = unit_vectors(400, dim, 7);
            let mut v = distinct.clone();
            for i in 0..400 {
                let row: Vec<f32> =
                    center.iter().zip(&noise[i * dim..(i + 1) * dim]).map(|(c, n)| c + spread * n).collect();
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.extend(row.iter().map(|x| x / norm));
            }
            let data = build(block(&v, dim), Kernels::default(), 1, &defaults, &|_, _| {}, &|| false).unwrap();
            assert_eq!(600 - data.nodes as usize, grouped, "spread {spread}");
            let dir = tempfile::tempdir().unwrap();
            let g = open(&data, dir.path());
            let missed: Vec<u32> = (0..600u32)
                .filter(|&row| {
                    search(&g, &v, dim, &v[row as usize * dim..(row as usize + 1) * dim], 10, 100)[0].doc != row
                })
                .collect();
            assert!(missed.is_empty(), "spread {spread}: rows not found by their own vector: {missed:?}");
        }
    }

    /// An exact copy of a row that itself joins a near-duplicate group: all three rows share
    /// one group, so a search that reaches the group returns every one of them.
    #[test]
    fn an_exact_copy_of_a_near_copy_comes_back() {
        let dim = 32;
        let distinct = unit_vectors(300, dim, 11);
        let center = unit_vectors(1, dim, 12);
        let noise = unit_vectors(1, dim, 13);
        let near: Vec<f32> = center.iter().zip(&noise).map(|(c, n)| c + 1e-3 * n).collect();
        let norm = near.iter().map(|x| x * x).sum::<f32>().sqrt();
        let near: Vec<f32> = near.iter().map(|x| x / norm).collect();
        // center (row 0, in the graph long before), its near copy (301), and an exact copy of
        // the near copy (302).
        let mut v = center.clone();
        v.extend_from_slice(&distinct);
        v.extend_from_slice(&near);
        v.extend_from_slice(&near);
        let data = build(block(&v, dim), Kernels::default(), 1, &params(1), &|_, _| {}, &|| false).unwrap();
        assert_eq!(data.nodes, 301, "both copies are grouped");
        let dir = tempfile::tempdir().unwrap();
        let g = open(&data, dir.path());
        let top: Vec<u32> = search(&g, &v, dim, &near, 3, 50).iter().map(|s| s.doc).collect();
        let mut sorted = top.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 301, 302], "{top:?}");
    }

    /// A graph on f32 (or f16) rows carries their i8 copy and walks it; what it returns is
    /// rescored on the stored rows (bit for bit the scan's scores), and it finds as much of the
    /// exact top 10 as a walk of the stored rows does. A graph on i8 rows carries no copy.
    #[test]
    fn a_graph_on_wider_rows_walks_its_i8_copy_and_returns_stored_scores() {
        let (dim, n) = (32, 3000);
        let v = unit_vectors(n, dim, 21);
        let data = build(block(&v, dim), Kernels::default(), 2, &params(2), &|_, _| {}, &|| false).unwrap();
        let rows = data.rows.as_ref().expect("an f32 block's graph carries its i8 copy");
        assert_eq!((rows.scales.len(), rows.data.len()), (dim, n * dim));
        let bare = GraphData { rows: None, ..data.clone() };
        let dir = tempfile::tempdir().unwrap();
        let g = open(&data, dir.path());
        let stored = {
            let record = bare.write(dir.path(), "bare.graph").unwrap();
            SegmentGraph::open(dir.path(), &record, bare.count, crate::rung::Rung::new(2, dim)).unwrap()
        };
        assert!(g.rows().is_some() && stored.rows().is_none());
        let kernels = Kernels::default();
        let queries = unit_vectors(100, dim, 22);
        let (mut with_copy, mut without) = (0, 0);
        for q in queries.chunks_exact(dim) {
            let exact: Vec<u32> = kernels.top_k(&block(&v, dim), q, 10, |_| false).iter().map(|s| s.doc).collect();
            let found = search(&g, &v, dim, q, 10, 100);
            assert_eq!(found.len(), 10);
            for s in &found {
                assert_eq!(s.score.to_bits(), kernels.score(&block(&v, dim), q, s.doc).to_bits(), "rescored on f32");
            }
            assert!(found.windows(2).all(|w| w[0].score >= w[1].score), "best first");
            with_copy += found.iter().filter(|s| exact.contains(&s.doc)).count();
            without += search(&stored, &v, dim, q, 10, 100).iter().filter(|s| exact.contains(&s.doc)).count();
        }
        eprintln!("recall@10 at ef 100: i8 walk {with_copy} of 1,000, f32 walk {without}");
        assert!(with_copy + 10 >= without, "the i8 walk found {with_copy} of 1,000, the f32 walk {without}");
        assert!(with_copy >= 900, "recall@10 {}", with_copy as f64 / 1000.0);

        let scales = crate::vectors::i8_scales(&v, dim);
        let bytes: Vec<i8> = v
            .chunks_exact(dim)
            .flat_map(|r| r.iter().zip(&scales).map(|(&x, &s)| crate::vectors::quantize(x, s)))
            .collect();
        let i8_block = RungBlock { data: BlockData::I8 { data: &bytes, scales: &scales }, dim, count: n };
        let data = build(i8_block, Kernels::default(), 2, &params(2), &|_, _| {}, &|| false).unwrap();
        assert!(data.rows.is_none(), "an i8 block is walked as stored");
        assert_eq!(WalkRows::of(&block(&v, dim)).unwrap().data, bytes, "the copy is the i8 storage of the rows");
    }

    #[test]
    fn cancelling_stops_the_build() {
        let v = unit_vectors(5000, 8, 3);
        let err = build(block(&v, 8), Kernels::default(), 1, &params(2), &|_, _| {}, &|| true).unwrap_err();
        assert!(matches!(err, Error::Cancelled));
    }
}
