//! Retrieval quality pinned to an independent number: the shared model's card reports BEIR
//! SciFact test nDCG@10 per rung (queries cut at 32 tokens, passages at 256, query and documents
//! at the same rung). An exhaustive search over the whole corpus at each rung, with every rung
//! stored in f32, must reproduce them within 0.002. Slow (it encodes the 5,183 abstracts: about
//! a minute and a half on two cores).

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use barista_datasets::DataSet;
use barista_engine::metrics::{Run, mean_over_judged, ndcg_at};
use barista_engine::{CreateOptions, Document, Engine, SearchRequest, Shortlist, Stage};
use barista_index::ElementType;
use barista_tests::{model_arg, shared};
use std::collections::BTreeMap;

/// The model card's table ("BEIR SciFact test (300 q), queries cut at 32 tokens").
const CARD: [((usize, usize), f64); 6] =
    [((1, 32), 0.204), ((2, 64), 0.371), ((3, 96), 0.428), ((4, 128), 0.509), ((5, 256), 0.565), ((6, 384), 0.651)];

#[test]
fn scifact_ndcg_at_every_rung_is_the_model_cards() {
    let data = DataSet::detect(&shared("datasets/scifact")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut options = CreateOptions::new(model_arg());
    options.element = ElementType::F32;
    options.coarse_element = ElementType::F32;
    let engine = Engine::create(dir.path(), &options).unwrap();
    assert_eq!(engine.encoder().profile().query_max_length, 32, "the card's queries are cut at 32 tokens");
    let docs: Vec<Document> = data
        .documents(&barista_datasets::Reading::strict())
        .unwrap()
        .map(|d| {
            let d = d.unwrap();
            Document { id: d.id, title: Some(d.title).filter(|t| !t.trim().is_empty()), text: d.text, metadata: None }
        })
        .collect();
    for batch in docs.chunks(1024) {
        engine.stage(batch).unwrap();
    }
    engine.commit_with(&|_, _, _| {}).unwrap();
    assert_eq!(engine.index().snapshot().len(), 5_183);
    let (queries, qrels) = data.judged_queries("test", &barista_datasets::Reading::strict()).unwrap();
    assert_eq!(queries.len(), 300);
    for ((layer, dim), card) in CARD {
        let rung = barista_engine::Rung::new(layer, dim);
        let mut runs: BTreeMap<String, Run> = BTreeMap::new();
        for q in &queries {
            let request = SearchRequest {
                stages: Some(vec![Stage { rung, keep: 10, shortlist: Some(Shortlist::Scan) }]),
                ..SearchRequest::text(&q.text).with_k(10)
            };
            let response = engine.search(&request).unwrap();
            runs.insert(q.id.clone(), response.hits.iter().map(|h| (h.id.clone(), h.score)).collect());
        }
        let ndcg = mean_over_judged(&runs, &qrels, |run, judged| ndcg_at(run, judged, 10));
        eprintln!("rung {rung}: nDCG@10 {ndcg:.4} (card {card:.3})");
        assert!((ndcg - card).abs() <= 0.002, "rung {rung}: nDCG@10 {ndcg:.4}, the model card says {card:.3}");
    }
}
