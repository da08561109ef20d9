//! Running one row's request for every query: a sequential pass (latency, QPS with one client,
//! the run) and a concurrent pass (QPS with N clients).

use super::RowSpec;
use crate::stats::Latency;
use anyhow::Result;
use barista_datasets::beir::Query;
use barista_engine::metrics::Run;
use barista_engine::{Engine, SearchRequest, SearchResponse};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Untimed queries before each row's timed passes.
const WARMUP: usize = 20;

/// Mean cost of one stage of a row's plan.
#[derive(Clone, Debug, Serialize)]
pub struct StageTime {
    /// The rung.
    pub rung: String,
    /// `graph`, `scan` or `rescore`.
    pub method: String,
    /// Mean time to encode the query up to this rung's layer.
    pub encode_ms: f64,
    /// Mean time to find or rescore the candidates.
    pub search_ms: f64,
    /// Mean candidates in.
    pub candidates: f64,
    /// Mean candidates kept.
    pub kept: f64,
}

/// What running one row produced.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The ranked results per query id.
    pub runs: BTreeMap<String, Run>,
    /// End-to-end latency per query (encoding included), one client.
    pub latency: Latency,
    /// Queries per second with one client.
    pub qps_one: f64,
    /// Client threads of the concurrent pass, and the queries per second it reached.
    pub qps_many: Option<(usize, f64)>,
    /// Mean time per stage.
    pub stages: Vec<StageTime>,
}

fn search(engine: &Engine, template: &SearchRequest, query: &Query) -> Result<SearchResponse> {
    let request = SearchRequest { query: Some(query.text.clone()), ..template.clone() };
    Ok(engine.search(&request)?)
}

/// Runs `spec` for every query, first alone, then from `threads` clients at once. Each of the
/// two throughput passes cycles through the query list until `min_time` has passed (at least
/// once), so that a short list still gives a stable rate.
pub fn measure(
    engine: &Engine,
    queries: &[Query],
    spec: &RowSpec,
    threads: usize,
    min_time: Duration,
) -> Result<Measured> {
    for query in queries.iter().take(WARMUP) {
        search(engine, &spec.request, query)?;
    }
    let mut runs = BTreeMap::new();
    let mut samples = Vec::with_capacity(queries.len());
    let mut responses = Vec::with_capacity(queries.len());
    let start = Instant::now();
    // The first pass gives the runs and stage times; every pass gives latency samples.
    loop {
        let first = responses.is_empty();
        for query in queries {
            let t = Instant::now();
            let response = search(engine, &spec.request, query)?;
            samples.push(t.elapsed());
            if first {
                runs.insert(query.id.clone(), response.hits.iter().map(|h| (h.id.clone(), h.score)).collect());
                responses.push(response);
            }
        }
        if start.elapsed() >= min_time {
            break;
        }
    }
    let qps_one = samples.len() as f64 / start.elapsed().as_secs_f64();
    let qps_many =
        if threads > 1 { Some((threads, concurrent_qps(engine, queries, spec, threads, min_time)?)) } else { None };
    Ok(Measured { runs, latency: Latency::of(&mut samples), qps_one, qps_many, stages: stage_times(&responses) })
}

/// Queries per second when `threads` clients share the query list (cycled through until
/// `min_time` has passed).
fn concurrent_qps(
    engine: &Engine,
    queries: &[Query],
    spec: &RowSpec,
    threads: usize,
    min_time: Duration,
) -> Result<f64> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= queries.len() && start.elapsed() >= min_time {
                            return Ok(());
                        }
                        search(engine, &spec.request, &queries[i % queries.len()])?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(done.into_inner() as f64 / start.elapsed().max(Duration::from_nanos(1)).as_secs_f64())
}

fn stage_times(responses: &[SearchResponse]) -> Vec<StageTime> {
    let Some(first) = responses.first() else { return Vec::new() };
    (0..first.stages.len())
        .map(|i| {
            let reached: Vec<_> = responses.iter().filter_map(|r| r.stages.get(i)).collect();
            let n = reached.len().max(1) as f64;
            let mean = |f: &dyn Fn(&barista_engine::search::request::StageReport) -> f64| {
                reached.iter().map(|s| f(s)).sum::<f64>() / n
            };
            StageTime {
                rung: first.stages[i].rung.to_string(),
                method: first.stages[i].method.clone(),
                encode_ms: mean(&|s| s.encode_ms),
                search_ms: mean(&|s| s.search_ms),
                candidates: mean(&|s| s.candidates as f64),
                kept: mean(&|s| s.kept as f64),
            }
        })
        .collect()
}
