//! HNSW recall against exact search on SIFT10K, for cosine and for raw inner product (the MIPS
//! reduction), and exact search against a naive f64 scan.
#![allow(clippy::unwrap_used)]

mod common;

use barista_datasets::vecs::read_fvecs;
use barista_index::{Index, NewDocument};
use common::{config, shared};
use std::collections::HashSet;
use std::time::Instant;

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// Builds an index of the SIFT base vectors (optionally normalised) and reports, for a sweep of
/// `ef`, the recall@10 of the graph against the exact scan. Returns (ef, recall) pairs.
fn sweep(normalise: bool) -> Vec<(usize, f64)> {
    let mut base = read_fvecs(&shared("datasets/siftsmall/siftsmall_base.fvecs")).unwrap();
    let mut queries = read_fvecs(&shared("datasets/siftsmall/siftsmall_query.fvecs")).unwrap();
    let dim = base.dim;
    if normalise {
        base.data.chunks_exact_mut(dim).for_each(normalize);
        queries.data.chunks_exact_mut(dim).for_each(normalize);
    }
    let dir = tempfile::tempdir().unwrap();
    let index = Index::create(dir.path(), config(&[(0, dim)], &[], 0)).unwrap();
    let writer = index.writer().unwrap();
    let c = index.snapshot().config().clone();
    let docs: Vec<NewDocument> = (0..base.len())
        .map(|i| NewDocument::new(&c, i.to_string(), None, None, vec![base.row(i).to_vec()]).unwrap())
        .collect();
    let t = Instant::now();
    writer.add_segment(&docs, &|_, _, _| {}).unwrap();
    eprintln!("built the graph over {} vectors in {:.2} s", base.len(), t.elapsed().as_secs_f64());
    let snapshot = index.snapshot();
    let exact: Vec<HashSet<_>> = (0..queries.len())
        .map(|q| snapshot.exact_search(0, queries.row(q), 10).unwrap().into_iter().map(|h| h.address).collect())
        .collect();
    let mut results = Vec::new();
    for ef in [10, 20, 40, 80, 160] {
        let t = Instant::now();
        let mut found = 0;
        for (q, truth) in exact.iter().enumerate() {
            let hits = snapshot.graph_search(queries.row(q), 10, ef).unwrap();
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "hits are best first");
            found += hits.iter().filter(|h| truth.contains(&h.address)).count();
        }
        let recall = found as f64 / (10 * exact.len()) as f64;
        let micros = t.elapsed().as_secs_f64() * 1e6 / exact.len() as f64;
        eprintln!(
            "{}: ef {ef:>3}: recall@10 {recall:.4}, {micros:.0} µs per query",
            if normalise { "cosine" } else { "inner product" }
        );
        results.push((ef, recall));
    }
    results
}

#[test]
fn cosine_recall_reaches_099() {
    let results = sweep(true);
    assert!(results.iter().any(|&(_, r)| r >= 0.99), "{results:?}");
    assert!(results.windows(2).all(|w| w[1].1 >= w[0].1 - 0.01), "recall grows with ef: {results:?}");
}

#[test]
fn inner_product_recall_reaches_099_on_unnormalised_vectors() {
    let results = sweep(false);
    assert!(results.iter().any(|&(_, r)| r >= 0.99), "{results:?}");
}

#[test]
fn exact_search_finds_the_true_maximum_inner_products() {
    let base = read_fvecs(&shared("datasets/siftsmall/siftsmall_base.fvecs")).unwrap();
    let queries = read_fvecs(&shared("datasets/siftsmall/siftsmall_query.fvecs")).unwrap();
    let dim = base.dim;
    let dir = tempfile::tempdir().unwrap();
    // Two segments, so that the merge across segments is exercised too.
    let index = Index::create(dir.path(), config(&[(0, dim)], &[], 0)).unwrap();
    let writer = index.writer().unwrap();
    let c = index.snapshot().config().clone();
    let mut docs: Vec<NewDocument> = (0..base.len())
        .map(|i| NewDocument::new(&c, i.to_string(), None, None, vec![base.row(i).to_vec()]).unwrap())
        .collect();
    let second = docs.split_off(5000);
    writer.add_segment(&docs, &|_, _, _| {}).unwrap();
    writer.add_segment(&second, &|_, _, _| {}).unwrap();
    let snapshot = index.snapshot();
    assert_eq!(snapshot.segment_count(), 2);
    for q in 0..10 {
        let query = queries.row(q);
        let mut naive: Vec<(f64, usize)> = (0..base.len())
            .map(|i| (base.row(i).iter().zip(query).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum(), i))
            .collect();
        naive.sort_by(|a, b| b.0.total_cmp(&a.0));
        let got: Vec<String> = snapshot
            .exact_search(0, query, 10)
            .unwrap()
            .iter()
            .map(|h| snapshot.doc(h.address).unwrap().id.to_string())
            .collect();
        let want: Vec<String> = naive[..10].iter().map(|(_, i)| i.to_string()).collect();
        assert_eq!(got, want, "query {q}");
    }
}
