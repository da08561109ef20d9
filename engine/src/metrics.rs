//! Retrieval metrics with trec_eval's conventions: graded gains as given (nDCG uses the grade
//! itself as gain, like trec_eval's `ndcg_cut`), ties in score broken by document id in
//! *descending* order (trec_eval sorts `(score, docno)` descending), grades ≤ 0 are not
//! relevant, and every query with judgements counts in a mean: one judged only with grade 0
//! (nothing relevant) scores 0, and so does one without results (averaging as `trec_eval -c`
//! does; pytrec_eval averages over the queries of the run, which in `barista bench` holds every
//! judged query, so the two agree). `barista bench` and `barista calibrate` both average with
//! [`mean_over_judged`]; the tests compare these metrics with pytrec_eval on real run files.

use std::collections::BTreeMap;

/// A ranked list for one query: (document id, score), any order.
pub type Run = Vec<(String, f32)>;

/// Sorts a run the way trec_eval does.
pub fn trec_order(run: &mut Run) {
    run.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
}

/// nDCG@k of one ranked run against graded judgements, with trec_eval's linear gains
/// (gain = grade).
pub fn ndcg_at(run: &Run, qrels: &BTreeMap<String, i32>, k: usize) -> f64 {
    ndcg_with(run, qrels, k, f64::from)
}

/// nDCG@k with exponential gains (gain = 2^grade − 1), the Burges et al. variant some
/// toolkits report; equal to [`ndcg_at`] for binary judgements.
pub fn ndcg_exp_at(run: &Run, qrels: &BTreeMap<String, i32>, k: usize) -> f64 {
    ndcg_with(run, qrels, k, |g| 2f64.powi(g) - 1.0)
}

fn ndcg_with(run: &Run, qrels: &BTreeMap<String, i32>, k: usize, gain: impl Fn(i32) -> f64) -> f64 {
    let mut ranked = run.clone();
    trec_order(&mut ranked);
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, (doc, _))| gain(qrels.get(doc).copied().unwrap_or(0).max(0)) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<i32> = qrels.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &g)| gain(g) / (i as f64 + 2.0).log2()).sum();
    if idcg == 0.0 { 0.0 } else { dcg / idcg }
}

/// Reciprocal rank of the first relevant document within the top `k` (0 if none).
pub fn mrr_at(run: &Run, qrels: &BTreeMap<String, i32>, k: usize) -> f64 {
    let mut ranked = run.clone();
    trec_order(&mut ranked);
    ranked
        .iter()
        .take(k)
        .position(|(doc, _)| qrels.get(doc).is_some_and(|&g| g > 0))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

/// Share of the relevant documents found in the top `k`.
pub fn recall_at(run: &Run, qrels: &BTreeMap<String, i32>, k: usize) -> f64 {
    let relevant = qrels.values().filter(|&&g| g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let mut ranked = run.clone();
    trec_order(&mut ranked);
    let found = ranked.iter().take(k).filter(|(doc, _)| qrels.get(doc).is_some_and(|&g| g > 0)).count();
    found as f64 / relevant as f64
}

/// Mean of a metric over every query with judgements (whatever their grades: a query judged
/// only with grade 0 has nothing relevant and scores 0 on every metric here); queries missing
/// from `runs` count as 0 (`trec_eval -c`).
pub fn mean_over_judged(
    runs: &BTreeMap<String, Run>,
    qrels: &BTreeMap<String, BTreeMap<String, i32>>,
    metric: impl Fn(&Run, &BTreeMap<String, i32>) -> f64,
) -> f64 {
    if qrels.is_empty() {
        return 0.0;
    }
    let empty = Run::new();
    qrels.iter().map(|(q, j)| metric(runs.get(q).unwrap_or(&empty), j)).sum::<f64>() / qrels.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgements(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn run(pairs: &[(&str, f32)]) -> Run {
        pairs.iter().map(|(d, s)| (d.to_string(), *s)).collect()
    }

    #[test]
    fn ndcg_by_hand() {
        // Ranking: a (rel 2), b (0), c (1). DCG = 2/log2(2) + 0 + 1/log2(4) = 2.5.
        // Ideal: 2, 1 → 2 + 1/log2(3) = 2.6309298.
        let q = judgements(&[("a", 2), ("c", 1), ("z", 0)]);
        let r = run(&[("a", 0.9), ("b", 0.8), ("c", 0.7)]);
        let want = 2.5 / (2.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&r, &q, 10) - want).abs() < 1e-12);
        // Cut at 1: DCG 2, IDCG 2.
        assert!((ndcg_at(&r, &q, 1) - 1.0).abs() < 1e-12);
        assert_eq!(ndcg_at(&Run::new(), &q, 10), 0.0);
        assert_eq!(ndcg_at(&r, &judgements(&[("a", 0)]), 10), 0.0);
        // Exponential gains: a (3), c (1) → DCG = 3 + 1/2 = 3.5; ideal 3 + 1/log2(3).
        let want = 3.5 / (3.0 + 1.0 / 3f64.log2());
        assert!((ndcg_exp_at(&r, &q, 10) - want).abs() < 1e-12);
    }

    #[test]
    fn ties_break_by_descending_document_id_like_trec_eval() {
        // Equal scores: trec_eval ranks "b" before "a".
        let q = judgements(&[("a", 1)]);
        let r = run(&[("a", 0.5), ("b", 0.5)]);
        assert!((mrr_at(&r, &q, 10) - 0.5).abs() < 1e-12);
        assert!((ndcg_at(&r, &q, 10) - 1.0 / 3f64.log2()).abs() < 1e-12);
    }

    #[test]
    fn recall_mrr_and_averaging() {
        let q = judgements(&[("a", 1), ("b", 3), ("c", 1)]);
        let r = run(&[("x", 3.0), ("b", 2.0), ("y", 1.0), ("a", 0.5)]);
        assert!((recall_at(&r, &q, 2) - 1.0 / 3.0).abs() < 1e-12);
        assert!((recall_at(&r, &q, 100) - 2.0 / 3.0).abs() < 1e-12);
        assert!((mrr_at(&r, &q, 10) - 0.5).abs() < 1e-12);
        assert_eq!(mrr_at(&r, &q, 1), 0.0);
        let mut qrels = BTreeMap::new();
        qrels.insert("q1".to_string(), q.clone());
        qrels.insert("q2".to_string(), judgements(&[("a", 1)]));
        qrels.insert("q3".to_string(), judgements(&[("a", 0)]));
        let mut runs = BTreeMap::new();
        runs.insert("q1".to_string(), r);
        // q2 has no run: counts 0; q3 has no relevant document: counts 0 too.
        let mean = mean_over_judged(&runs, &qrels, |r, q| mrr_at(r, q, 10));
        assert!((mean - 0.5 / 3.0).abs() < 1e-12);
    }

    /// The case: `q2` is judged only with grade 0. trec_eval and pytrec_eval count it
    /// (nDCG@10 and MRR@10 0), so the means are 0.5, not 1.0.
    #[test]
    fn a_query_judged_only_with_grade_0_counts() {
        let qrels: BTreeMap<String, BTreeMap<String, i32>> =
            [("q1".to_string(), judgements(&[("d1", 1)])), ("q2".to_string(), judgements(&[("d2", 0)]))]
                .into_iter()
                .collect();
        let runs: BTreeMap<String, Run> = [
            ("q1".to_string(), run(&[("d1", 0.9), ("d2", 0.1)])),
            ("q2".to_string(), run(&[("d2", 0.9), ("d1", 0.1)])),
        ]
        .into_iter()
        .collect();
        assert!((mean_over_judged(&runs, &qrels, |r, q| ndcg_at(r, q, 10)) - 0.5).abs() < 1e-12);
        assert!((mean_over_judged(&runs, &qrels, |r, q| mrr_at(r, q, 10)) - 0.5).abs() < 1e-12);
        assert!((mean_over_judged(&runs, &qrels, |r, q| recall_at(r, q, 100)) - 0.5).abs() < 1e-12);
    }
}
