//! Running one query through a stage plan: shortlist at the first rung, then rescore the
//! survivors at each larger rung — continuing the same query encoding, never recomputing a
//! layer — and stop early when the ranking is settled.

use super::adaptive::{StopRule, overlap};
use super::plan::{IndexShape, Shortlist, StagePlan};
use super::request::{RungVector, StageReport, Timings};
use crate::encoder::{Encoder, QueryState, normalize};
use crate::error::{Error, Result};
use crate::kernels::team::Fork;
use crate::model::profile::Similarity;
use barista_index::index::{hit_order, select_hits};
use barista_index::{Hit, Mask, Rung, Snapshot};
use std::sync::Mutex;
use std::time::Instant;

/// Where a query's rung vectors come from.
pub(crate) enum QuerySource<'a> {
    /// A text, encoded progressively.
    Text(QueryState),
    /// Vectors from an external encoder.
    Vectors { given: &'a [RungVector], similarity: Similarity },
}

impl QuerySource<'_> {
    /// The query's vector at `rung` and the time spent encoding for it.
    pub(crate) fn vector(&mut self, rung: Rung) -> Result<(Vec<f32>, f64)> {
        match self {
            QuerySource::Text(state) => {
                let t = Instant::now();
                let v = state.rung(rung)?;
                Ok((v, ms(t)))
            }
            QuerySource::Vectors { given, similarity } => {
                let source = given
                    .iter()
                    .filter(|v| v.layer == rung.layer && v.dim >= rung.dim)
                    .min_by_key(|v| v.dim)
                    .ok_or_else(|| {
                        Error::InvalidRequest(format!(
                            "the plan needs a query vector at rung {rung}, and none was given for layer {} with at least {} dims",
                            rung.layer, rung.dim
                        ))
                    })?;
                let mut v = source.vector[..rung.dim].to_vec();
                if *similarity == Similarity::Cosine {
                    normalize(&mut v);
                }
                Ok((v, 0.0))
            }
        }
    }
}

/// Checks externally given vectors.
pub(crate) fn check_vectors(given: &[RungVector]) -> Result<()> {
    if given.is_empty() {
        return Err(Error::InvalidRequest("`vectors` is empty: give at least one rung vector".into()));
    }
    for v in given {
        if v.vector.len() != v.dim {
            return Err(Error::InvalidRequest(format!(
                "the vector for rung ({},{}) has {} values, not {}",
                v.layer,
                v.dim,
                v.vector.len(),
                v.dim
            )));
        }
        if v.vector.iter().any(|x| !x.is_finite()) {
            return Err(Error::InvalidRequest(format!(
                "the vector for rung ({},{}) holds NaN or infinite values",
                v.layer, v.dim
            )));
        }
    }
    Ok(())
}

pub(crate) fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The outcome of a cascade.
pub(crate) struct Outcome {
    /// The final hits (at most `k`), best first.
    pub hits: Vec<Hit>,
    /// The rung that scored them.
    pub rung: Rung,
    pub reports: Vec<StageReport>,
    pub stopped_early: bool,
    pub timings: Timings,
    /// Ranked candidates after each stage that ran (only when tracing).
    pub trace: Vec<Vec<Hit>>,
}

/// One query's run through a plan (its last stage keeps `k`).
pub(crate) struct Cascade<'a> {
    pub snapshot: &'a Snapshot,
    pub shape: &'a IndexShape,
    pub plan: &'a StagePlan,
    pub k: usize,
    /// Adaptive stopping thresholds, if any.
    pub stop: Option<&'a StopRule>,
    /// Threads for exhaustive scans.
    pub fork: &'a dyn Fork,
    /// Keep every stage's ranking (for calibration).
    pub trace: bool,
    /// Only these documents (per segment), when the request has a metadata filter.
    pub allowed: Option<&'a [Mask]>,
    /// Run a graph shortlist on another thread while the encoder continues to the next
    /// stage's layer (text queries); the encoder's team yields to it meanwhile.
    pub overlap_with: Option<&'a Encoder>,
}

impl Cascade<'_> {
    /// Runs the cascade for one query.
    pub(crate) fn run(&self, source: &mut QuerySource<'_>) -> Result<Outcome> {
        let Cascade { snapshot, shape, plan, k, stop, fork, trace, allowed, overlap_with } = *self;
        let mut timings = Timings::default();
        let mut reports = Vec::with_capacity(plan.stages.len());
        let mut traced = Vec::new();
        let rung_index = |rung: Rung| -> Result<usize> {
            snapshot
                .config()
                .rung_index(rung)
                .ok_or_else(|| Error::InvalidRequest(format!("the index does not store rung {rung}")))
        };
        // Stage 0: the shortlist.
        let first = plan.stages[0];
        let (q, encode_ms) = source.vector(first.rung)?;
        timings.encode_ms += encode_ms;
        let keep0 = if plan.stages.len() == 1 { k } else { first.keep };
        let t = Instant::now();
        // The next stage's query vector, when it was encoded while the shortlist ran.
        let mut ready: Option<(Vec<f32>, f64)> = None;
        let rung0 = rung_index(first.rung)?;
        let (mut candidates, method, search_ms) = match plan.shortlist(shape) {
            Shortlist::Graph { ef } => {
                let ef = ef.max(keep0);
                let next = plan.stages.get(1).map(|s| s.rung);
                match (overlap_with, next, matches!(source, QuerySource::Text(_))) {
                    (Some(encoder), Some(next), true) => {
                        let (hits, vector, walked) =
                            overlapped_graph(snapshot, rung0, &q, keep0, ef, allowed, encoder, source, next)?;
                        ready = Some(vector);
                        (hits, "graph", walked)
                    }
                    _ => (parallel_graph(snapshot, rung0, &q, keep0, ef, fork, allowed)?, "graph", ms(t)),
                }
            }
            Shortlist::Scan => (parallel_scan(snapshot, rung0, &q, keep0, fork, allowed)?, "scan", ms(t)),
        };
        if method == "graph" {
            timings.graph_ms += search_ms;
        } else {
            timings.scan_ms += search_ms;
        }
        reports.push(StageReport {
            rung: first.rung,
            method: method.into(),
            candidates: shape.docs as usize,
            kept: candidates.len(),
            encode_ms,
            search_ms,
        });
        if trace {
            traced.push(sorted_top(&candidates, k));
        }
        let mut rung = first.rung;
        let mut stopped_early = false;
        // Stages 1..: continue the encoding, rescore, cut.
        for (i, stage) in plan.stages.iter().enumerate().skip(1) {
            let last = i + 1 == plan.stages.len();
            let (q, encode_ms) = match ready.take() {
                Some(vector) => vector,
                None => source.vector(stage.rung)?,
            };
            timings.encode_ms += encode_ms;
            let t = Instant::now();
            let entering = candidates.len();
            let stop_k = stop.map_or(k, |rule| rule.k);
            let previous_top = if stop.is_some() { top_addresses(&candidates, stop_k) } else { Vec::new() };
            parallel_rescore(snapshot, rung_index(stage.rung)?, &q, &mut candidates, fork)?;
            if last {
                select_hits(&mut candidates, k);
                candidates.sort_by(hit_order);
            } else {
                // The next stage rescores them all: their order does not matter, only the cut.
                select_hits(&mut candidates, stage.keep);
            }
            let search_ms = ms(t);
            timings.rescore_ms += search_ms;
            reports.push(StageReport {
                rung: stage.rung,
                method: "rescore".into(),
                candidates: entering,
                kept: candidates.len(),
                encode_ms,
                search_ms,
            });
            if trace {
                traced.push(sorted_top(&candidates, k));
            }
            rung = stage.rung;
            if !last && let Some(rule) = stop {
                let current = top_addresses(&candidates, stop_k);
                if rule.should_stop(i, overlap(&current, &previous_top, stop_k)) {
                    stopped_early = true;
                    select_hits(&mut candidates, k);
                    candidates.sort_by(hit_order);
                    break;
                }
            }
        }
        if plan.stages.len() == 1 {
            candidates.sort_by(hit_order);
        }
        candidates.truncate(k);
        Ok(Outcome { hits: candidates, rung, reports, stopped_early, timings, trace: traced })
    }
}

/// The best `k` hits, best first (a copy).
fn sorted_top(hits: &[Hit], k: usize) -> Vec<Hit> {
    let mut top = hits.to_vec();
    select_hits(&mut top, k);
    top.sort_by(hit_order);
    top
}

/// Addresses of the best `k` hits, best first.
fn top_addresses(hits: &[Hit], k: usize) -> Vec<barista_index::DocAddress> {
    sorted_top(hits, k).into_iter().map(|h| h.address).collect()
}

/// Below this many values to read (candidates × dimensions), rescoring on one thread beats a
/// fork. Scattered rows are read at memory latency, so a fork pays off early: from about 170
/// rows of 384 dimensions.
const PARALLEL_RESCORE: usize = 65_536;

/// Rescoring split over the fork's parts.
fn parallel_rescore(snapshot: &Snapshot, rung: usize, query: &[f32], hits: &mut [Hit], fork: &dyn Fork) -> Result<()> {
    let parts = fork.parts();
    let dim = snapshot.config().rungs.get(rung).map_or(0, |r| r.rung.dim);
    if parts == 1 || hits.len() * dim < PARALLEL_RESCORE {
        return Ok(snapshot.rescore(rung, query, hits)?);
    }
    let chunk = hits.len().div_ceil(parts);
    let slots: Vec<Mutex<&mut [Hit]>> = hits.chunks_mut(chunk).map(Mutex::new).collect();
    let failure: Mutex<Option<barista_index::Error>> = Mutex::new(None);
    fork.fork(&|part| {
        if let Some(slot) = slots.get(part) {
            let mut mine = slot.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = snapshot.rescore(rung, query, &mut mine) {
                *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        }
    });
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The graph shortlist split over the fork's parts (segments dealt round-robin), merged
/// (unordered).
fn parallel_graph(
    snapshot: &Snapshot,
    rung: usize,
    query: &[f32],
    keep: usize,
    ef: usize,
    fork: &dyn Fork,
    allowed: Option<&[Mask]>,
) -> Result<Vec<Hit>> {
    let parts = fork.parts().min(snapshot.segment_count()).max(1);
    if parts == 1 {
        return Ok(snapshot.graph_search_in(rung, query, keep, ef, allowed, 0, 1, true)?);
    }
    let results: Vec<Mutex<Option<barista_index::Result<Vec<Hit>>>>> = (0..parts).map(|_| Mutex::new(None)).collect();
    fork.fork(&|part| {
        if part < parts {
            let r = snapshot.graph_search_in(rung, query, keep, ef, allowed, part, parts, true);
            *results[part].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        }
    });
    let mut hits = Vec::new();
    for slot in results {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(r) => hits.extend(r?),
            None => return Err(Error::InvalidRequest("a graph part did not run".into())),
        }
    }
    select_hits(&mut hits, keep);
    Ok(hits)
}

/// A query vector and the milliseconds spent encoding for it.
type Encoded = (Vec<f32>, f64);

/// The graph shortlist on a helper thread and this one, while this one first encodes the query
/// to `next` (the encoder's team runs serially meanwhile: the helper has the other core).
/// Segments are claimed one at a time by whichever thread is free. Returns the shortlist, the
/// next stage's vector with its encoding time, and the walks' total time (ms).
#[allow(clippy::too_many_arguments)]
fn overlapped_graph(
    snapshot: &Snapshot,
    rung: usize,
    query: &[f32],
    keep: usize,
    ef: usize,
    allowed: Option<&[Mask]>,
    encoder: &Encoder,
    source: &mut QuerySource<'_>,
    next: Rung,
) -> Result<(Vec<Hit>, Encoded, f64)> {
    let segments = snapshot.segment_count();
    let claim = std::sync::atomic::AtomicUsize::new(0);
    let found: Mutex<(Vec<Hit>, f64, Option<barista_index::Error>)> = Mutex::new((Vec::new(), 0.0, None));
    let walk = || {
        loop {
            let s = claim.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if s >= segments {
                return;
            }
            let t = Instant::now();
            let r = snapshot.graph_search_in(rung, query, keep, ef, allowed, s, segments, true);
            let took = ms(t);
            let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
            f.1 += took;
            match r {
                Ok(hits) => f.0.extend(hits),
                Err(e) => {
                    f.2.get_or_insert(e);
                }
            }
        }
    };
    let (vector, joined) = std::thread::scope(|scope| {
        let helper = scope.spawn(|| {
            let _caller = encoder.enter();
            walk();
        });
        let vector = source.vector(next);
        walk();
        (vector, helper.join().is_ok())
    });
    if !joined {
        return Err(Error::InvalidRequest("the graph search thread failed".into()));
    }
    let vector = vector?;
    let (mut hits, walked, failure) = found.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = failure {
        return Err(e.into());
    }
    select_hits(&mut hits, keep);
    Ok((hits, vector, walked))
}

/// An exhaustive scan of one rung split over the fork's parts, merged (unordered).
fn parallel_scan(
    snapshot: &Snapshot,
    rung: usize,
    query: &[f32],
    keep: usize,
    fork: &dyn Fork,
    allowed: Option<&[Mask]>,
) -> Result<Vec<Hit>> {
    let parts = fork.parts();
    if parts == 1 {
        return Ok(snapshot.shortlist_part(rung, query, keep, 0, 1, allowed)?);
    }
    let results: Vec<Mutex<Option<barista_index::Result<Vec<Hit>>>>> = (0..parts).map(|_| Mutex::new(None)).collect();
    fork.fork(&|part| {
        let r = snapshot.shortlist_part(rung, query, keep, part, parts, allowed);
        *results[part].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    });
    let mut hits = Vec::new();
    for slot in results {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(r) => hits.extend(r?),
            None => return Err(Error::InvalidRequest("a scan part did not run".into())),
        }
    }
    select_hits(&mut hits, keep);
    Ok(hits)
}
