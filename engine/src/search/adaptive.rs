//! Adaptive stopping: end a query's cascade as soon as its ranking is settled.
//!
//! After each middle stage the top `k` are compared with the previous stage's top `k`; if their
//! overlap reaches the stage's threshold, the cascade stops there and the deeper layers are never
//! encoded. The thresholds are fitted per index and profile by [`fit`] on training queries with
//! relevance judgements: the cheapest thresholds whose nDCG@10 stays at or above a target share
//! of the full cascade's.

use super::plan::StagePlan;
use crate::metrics::{Run, mean_over_judged, ndcg_at};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Fitted stopping thresholds for one plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopRule {
    /// The plan they were fitted for (rungs and keeps must match at search time).
    pub plan: StagePlan,
    /// Per stage: stop after it when the top-k overlap with the previous stage is at least this
    /// (`None`: never stop there; the first and last stages are never eligible).
    pub thresholds: Vec<Option<f32>>,
    /// The `k` the overlaps were measured at.
    pub k: usize,
    /// Target share of the full cascade's nDCG@10.
    pub target: f64,
    /// nDCG@10 of the full cascade on the training queries.
    pub full_ndcg: f64,
    /// nDCG@10 with the thresholds on the training queries.
    pub ndcg: f64,
    /// Share of training queries stopped after each stage.
    pub stopped_share: Vec<f64>,
    /// Mean encoder layers per query with the thresholds (the full cascade's last layer without).
    pub mean_layers: f64,
    /// Training queries used.
    pub queries: usize,
}

impl StopRule {
    /// Whether to stop after stage `stage` given the overlap with the previous stage.
    pub fn should_stop(&self, stage: usize, overlap: f32) -> bool {
        self.thresholds.get(stage).copied().flatten().is_some_and(|t| overlap >= t)
    }

    /// Whether the rule applies to `plan`: same rungs, same keeps before the last stage (whose
    /// keep is the request's `k`); the shortlist method may differ.
    pub fn fits(&self, plan: &StagePlan) -> bool {
        let n = self.plan.stages.len();
        n == plan.stages.len()
            && self
                .plan
                .stages
                .iter()
                .zip(&plan.stages)
                .enumerate()
                .all(|(i, (a, b))| a.rung == b.rung && (i + 1 == n || a.keep == b.keep))
    }
}

/// Share of `a`'s first `k` ids found among `b`'s first `k`.
pub fn overlap<T: PartialEq>(a: &[T], b: &[T], k: usize) -> f32 {
    let a = &a[..a.len().min(k)];
    let b = &b[..b.len().min(k)];
    if a.is_empty() {
        return 1.0;
    }
    a.iter().filter(|x| b.contains(x)).count() as f32 / a.len().max(1) as f32
}

/// One training query's trace: for every stage, its ranked ids (at least `k`).
pub struct Trace {
    /// The query's id.
    pub query: String,
    /// Ranked document ids after each stage.
    pub stages: Vec<Vec<String>>,
    /// Relevance judgements of the query.
    pub qrels: BTreeMap<String, i32>,
}

/// Thresholds tried for each eligible stage.
const GRID: [Option<f32>; 7] = [Some(0.5), Some(0.6), Some(0.7), Some(0.8), Some(0.9), Some(1.0), None];

/// Fits thresholds for `plan` on traces: the assignment with the fewest mean encoder layers
/// whose mean nDCG@10 is at least `target ×` the full cascade's.
pub fn fit(plan: &StagePlan, traces: &[Trace], k: usize, target: f64) -> StopRule {
    let n = plan.stages.len();
    let layers: Vec<f64> = plan.stages.iter().map(|s| s.rung.layer as f64).collect();
    let eligible: Vec<usize> = (1..n.saturating_sub(1)).collect();
    let run_of =
        |ids: &[String]| -> Run { ids.iter().take(k).enumerate().map(|(i, d)| (d.clone(), -(i as f32))).collect() };
    let ndcg = |ids: &[String], qrels: &BTreeMap<String, i32>| -> f64 { ndcg_at(&run_of(ids), qrels, 10) };
    // Means are `barista bench`'s: every judged query counts (see `metrics::mean_over_judged`).
    let judged: BTreeMap<String, BTreeMap<String, i32>> =
        traces.iter().map(|t| (t.query.clone(), t.qrels.clone())).collect();
    let mean_at = |stop: &dyn Fn(usize) -> usize| -> f64 {
        let runs: BTreeMap<String, Run> =
            traces.iter().enumerate().map(|(q, t)| (t.query.clone(), run_of(&t.stages[stop(q)]))).collect();
        mean_over_judged(&runs, &judged, |r, j| ndcg_at(r, j, 10))
    };
    let full_ndcg = mean_at(&|_| n - 1);
    // Precompute per query: overlap at each stage, nDCG at each stage.
    let overlaps: Vec<Vec<f32>> = traces
        .iter()
        .map(|t| (0..n).map(|i| if i == 0 { 0.0 } else { overlap(&t.stages[i], &t.stages[i - 1], k) }).collect())
        .collect();
    let scores: Vec<Vec<f64>> = traces.iter().map(|t| t.stages.iter().map(|s| ndcg(s, &t.qrels)).collect()).collect();
    // A trace without results (a blank query) scores 0 in every mean but costs nothing and
    // stops nowhere: costs and stop shares are over the queries that were searched.
    let searched: Vec<bool> = traces.iter().map(|t| t.stages.iter().any(|s| !s.is_empty())).collect();
    let n_searched = searched.iter().filter(|&&s| s).count().max(1) as f64;
    let mut best: Option<(f64, f64, Vec<Option<f32>>)> = None;
    let combos = GRID.len().pow(eligible.len() as u32);
    for code in 0..combos {
        let mut thresholds = vec![None; n];
        let mut c = code;
        for &stage in &eligible {
            thresholds[stage] = GRID[c % GRID.len()];
            c /= GRID.len();
        }
        let (mut quality, mut cost) = (0.0, 0.0);
        for ((o, s), &was) in overlaps.iter().zip(&scores).zip(&searched) {
            if !was {
                continue;
            }
            let stop = eligible.iter().copied().find(|&i| thresholds[i].is_some_and(|t| o[i] >= t)).unwrap_or(n - 1);
            quality += s[stop];
            cost += layers[stop];
        }
        let (quality, cost) = (quality / traces.len().max(1) as f64, cost / n_searched);
        if quality + 1e-12 >= target * full_ndcg
            && best.as_ref().is_none_or(|b| cost < b.0 - 1e-12 || (cost <= b.0 + 1e-12 && quality > b.1))
        {
            best = Some((cost, quality, thresholds));
        }
    }
    let (mean_layers, _, thresholds) = best.unwrap_or((layers[n - 1], full_ndcg, vec![None; n]));
    let stop_of =
        |o: &[f32]| eligible.iter().copied().find(|&i| thresholds[i].is_some_and(|t| o[i] >= t)).unwrap_or(n - 1);
    let mut stopped = vec![0.0; n];
    for (o, &was) in overlaps.iter().zip(&searched) {
        if was {
            stopped[stop_of(o)] += 1.0 / n_searched;
        }
    }
    let quality = mean_at(&|q| stop_of(&overlaps[q]));
    StopRule {
        plan: plan.clone(),
        thresholds,
        k,
        target,
        full_ndcg,
        ndcg: quality,
        stopped_share: stopped,
        mean_layers,
        queries: traces.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::plan::Stage;
    use barista_index::Rung;

    fn plan() -> StagePlan {
        StagePlan {
            stages: vec![
                Stage { rung: Rung::new(2, 64), keep: 100, shortlist: None },
                Stage { rung: Rung::new(4, 128), keep: 20, shortlist: None },
                Stage { rung: Rung::new(6, 384), keep: 10, shortlist: None },
            ],
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlap_counts_shared_ids() {
        assert_eq!(overlap(&[1, 2, 3], &[3, 2, 9], 3), 2.0 / 3.0);
        assert_eq!(overlap(&[1, 2, 3], &[3, 2, 1], 2), 0.5);
        assert_eq!(overlap(&[1, 2, 3], &[4, 5, 1], 2), 0.0);
        assert_eq!(overlap::<u8>(&[], &[], 10), 1.0);
    }

    #[test]
    fn stops_where_it_is_safe_and_not_where_it_hurts() {
        let qrels: BTreeMap<String, i32> = [("a".to_string(), 1)].into_iter().collect();
        // Query 1: stage 1 already agrees with stage 0 and is right: stopping is free.
        // Query 2: stage 1 agrees with stage 0 but only stage 2 finds "a": stopping costs.
        let traces = vec![
            Trace {
                query: "1".into(),
                stages: vec![ids(&["a", "b"]), ids(&["a", "b"]), ids(&["a", "b"])],
                qrels: qrels.clone(),
            },
            Trace {
                query: "2".into(),
                stages: vec![ids(&["x", "y"]), ids(&["x", "y"]), ids(&["a", "y"])],
                qrels: qrels.clone(),
            },
        ];
        let strict = fit(&plan(), &traces, 2, 1.0);
        assert_eq!(strict.thresholds, vec![None, None, None], "any stop loses quality");
        assert_eq!(strict.mean_layers, 6.0);
        let loose = fit(&plan(), &traces, 2, 0.5);
        assert_eq!(loose.thresholds[1], Some(0.5));
        assert_eq!(loose.mean_layers, 4.0);
        assert_eq!(loose.stopped_share, vec![0.0, 1.0, 0.0]);
        assert!(loose.should_stop(1, 1.0) && !loose.should_stop(2, 1.0));
        assert!(loose.fits(&plan()));
    }

    #[test]
    fn blank_queries_score_zero_but_cost_nothing_and_stop_nowhere() {
        let qrels: BTreeMap<String, i32> = [("a".to_string(), 1)].into_iter().collect();
        let searched = Trace {
            query: "1".into(),
            stages: vec![ids(&["a", "b"]), ids(&["a", "b"]), ids(&["a", "b"])],
            qrels: qrels.clone(),
        };
        let blank = Trace { query: "2".into(), stages: vec![Vec::new(); 3], qrels };
        let rule = fit(&plan(), &[searched, blank], 2, 1.0);
        // The searched query stops after stage 1 for free; the blank one is no stop at all.
        assert_eq!(rule.stopped_share, vec![0.0, 1.0, 0.0]);
        assert_eq!(rule.mean_layers, 4.0);
        assert!((rule.ndcg - 0.5).abs() < 1e-12, "the blank query scores 0: {}", rule.ndcg);
    }
}
