//! The library API end to end: create, add, search with every profile, explicit plans and
//! external vectors, update, delete, reopen, calibrate — on the shared model and SciFact.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use barista_engine::search::request::RungVector;
use barista_engine::{CreateOptions, Document, Engine, OpenOptions, Rung, SearchRequest, Shortlist, Stage, TextKind};
use barista_tests::{model_arg, shared};
use std::collections::BTreeMap;

/// The first `n` SciFact documents.
fn scifact(n: usize) -> Vec<Document> {
    let path = shared("datasets/scifact/corpus.jsonl");
    barista_datasets_lines(&path)
        .into_iter()
        .take(n)
        .map(|v| Document {
            id: v["_id"].as_str().unwrap().to_string(),
            text: v["text"].as_str().unwrap().to_string(),
            title: v["title"].as_str().map(str::to_string),
            metadata: Some(serde_json::json!({"source": "scifact"})),
        })
        .collect()
}

fn barista_datasets_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn engine(dir: &std::path::Path, docs: &[Document]) -> Engine {
    let e = Engine::create(dir, &CreateOptions::new(model_arg())).unwrap();
    e.add(docs).unwrap();
    e
}

fn ids(response: &barista_engine::SearchResponse) -> Vec<String> {
    response.hits.iter().map(|h| h.id.clone()).collect()
}

#[test]
fn profiles_search_and_exact_is_the_true_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let docs = scifact(300);
    let e = engine(dir.path(), &docs);
    let query = "vitamin D deficiency and depression";
    // Ground truth from the encoder alone: cosine at the largest rung over all documents.
    let largest = *e.encoder().profile().rungs.last().unwrap();
    let passages: Vec<String> = docs.iter().map(Document::passage).collect();
    let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
    let doc_vectors = e.encoder().encode(&refs, TextKind::Passage, &[largest]).unwrap();
    let q = e.encoder().encode(&[query], TextKind::Query, &[largest]).unwrap();
    let mut truth: Vec<(f32, &str)> = (0..docs.len())
        .map(|i| (doc_vectors.vector(i, 0).iter().zip(q.vector(0, 0)).map(|(a, b)| a * b).sum(), docs[i].id.as_str()))
        .collect();
    truth.sort_by(|a, b| b.0.total_cmp(&a.0));
    let exact = e.search(&SearchRequest::text(query).with_profile("exact").with_k(10)).unwrap();
    let want: Vec<String> = truth[..10].iter().map(|t| t.1.to_string()).collect();
    // f16 storage may swap near-ties; the sets must agree and the top hit too.
    let got = ids(&exact);
    assert_eq!(got[0], want[0]);
    assert!(got.iter().filter(|id| want.contains(id)).count() >= 9, "{got:?} vs {want:?}");
    assert_eq!(exact.stages.len(), 1);
    assert_eq!(exact.stages[0].rung, largest);
    for h in &exact.hits {
        assert_eq!(h.rung, largest);
        assert!(h.text.is_none() && h.title.is_none() && h.metadata.is_none(), "fields only when asked for");
    }
    // The cascades climb the ladder and agree with exact at the top on this small set.
    for profile in ["balanced", "fast"] {
        let r = e.search(&SearchRequest::text(query).with_profile(profile).with_k(10)).unwrap();
        assert_eq!(r.hits.len(), 10);
        assert!(r.stages.len() >= 2, "{profile} climbs");
        assert!(r.stages.windows(2).all(|w| w[1].rung.layer >= w[0].rung.layer && w[1].kept <= w[0].kept));
        assert_eq!(r.hits[0].id, exact.hits[0].id, "{profile}");
        assert!(r.timings.total_ms > 0.0 && r.timings.encode_ms > 0.0);
    }
    // Stored fields on request.
    let mut request = SearchRequest::text(query).with_k(3);
    request.include_text = true;
    request.include_metadata = true;
    let r = e.search(&request).unwrap();
    let first = docs.iter().find(|d| d.id == r.hits[0].id).unwrap();
    assert_eq!(r.hits[0].text.as_deref(), Some(first.text.as_str()));
    assert_eq!(r.hits[0].metadata.as_ref().unwrap()["source"], "scifact");
    assert_eq!(r.hits[0].title, first.title, "the title comes with the text, apart from the metadata");
    assert!(r.hits[0].metadata.as_ref().unwrap().get("title").is_none());
}

#[test]
fn explicit_plans_and_external_vectors() {
    let dir = tempfile::tempdir().unwrap();
    // The graph on a small rung (the default is the largest), for a two-stage graph plan.
    let mut options = CreateOptions::new(model_arg());
    options.graph_rungs = vec![Rung::new(3, 96)];
    let e = Engine::create(dir.path(), &options).unwrap();
    e.add(&scifact(300)).unwrap();
    let query = "how does the immune system respond to infection";
    let stages = vec![
        Stage { rung: Rung::new(3, 96), keep: 100, shortlist: Some(Shortlist::Graph { ef: 200 }) },
        Stage { rung: Rung::new(6, 384), keep: 999, shortlist: None },
    ];
    let request = SearchRequest { stages: Some(stages.clone()), ..SearchRequest::text(query).with_k(5) };
    let r = e.search(&request).unwrap();
    assert_eq!(r.stages.iter().map(|s| s.method.as_str()).collect::<Vec<_>>(), ["graph", "rescore"]);
    assert_eq!(r.stages.iter().map(|s| s.kept).collect::<Vec<_>>(), [100, 5], "the last stage keeps k");
    // The same plan fed with vectors from the encoder gives the same hits.
    let rungs = [Rung::new(3, 96), Rung::new(6, 384)];
    let v = e.encoder().encode(&[query], TextKind::Query, &rungs).unwrap();
    let vectors: Vec<RungVector> = rungs
        .iter()
        .enumerate()
        .map(|(i, r)| RungVector { layer: r.layer, dim: r.dim, vector: v.vector(0, i).to_vec() })
        .collect();
    let by_vectors = SearchRequest { query: None, vectors: Some(vectors.clone()), ..request.clone() };
    let r2 = e.search(&by_vectors).unwrap();
    assert_eq!(ids(&r2), ids(&r));
    assert_eq!(r2.timings.encode_ms, 0.0);
    // A larger vector of the same layer serves a smaller rung (truncated, renormalised).
    let full_layers: Vec<RungVector> = [3usize, 6]
        .iter()
        .map(|&l| {
            let full = e.encoder().encode(&[query], TextKind::Query, &[Rung::new(l, 384)]).unwrap();
            let mut raw = e.encoder().query(query).unwrap();
            raw.advance_to(l).unwrap();
            let _ = full;
            RungVector { layer: l, dim: 384, vector: raw.pooled(l).unwrap().to_vec() }
        })
        .collect();
    let r3 = e.search(&SearchRequest { vectors: Some(full_layers), ..by_vectors.clone() }).unwrap();
    assert_eq!(ids(&r3), ids(&r));
}

#[test]
fn bad_requests_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), &scifact(50));
    let base = SearchRequest::text("query");
    let cases: Vec<(SearchRequest, &str)> = vec![
        (base.clone().with_k(0), "k must be between"),
        (base.clone().with_k(1_000_000), "k must be between"),
        (base.clone().with_profile("turbo"), "unknown profile"),
        (SearchRequest { query: Some("  ".into()), ..base.clone() }, "empty"),
        (SearchRequest { query: None, ..base.clone() }, "needs `query`"),
        (
            SearchRequest {
                vectors: Some(vec![RungVector { layer: 6, dim: 384, vector: vec![0.1; 384] }]),
                ..base.clone()
            },
            "either `query` or `vectors`",
        ),
        (
            SearchRequest {
                query: None,
                vectors: Some(vec![RungVector { layer: 6, dim: 384, vector: vec![0.1; 3] }]),
                ..base.clone()
            },
            "has 3 values",
        ),
        (
            SearchRequest {
                query: None,
                vectors: Some(vec![RungVector { layer: 6, dim: 2, vector: vec![f32::NAN, 1.0] }]),
                ..base.clone()
            },
            "NaN",
        ),
        (
            SearchRequest {
                query: None,
                vectors: Some(vec![RungVector { layer: 6, dim: 384, vector: vec![0.1; 384] }]),
                ..base.clone()
            },
            "needs a query vector at rung (4,128)",
        ),
        (
            SearchRequest {
                stages: Some(vec![
                    Stage { rung: Rung::new(6, 384), keep: 5, shortlist: None },
                    Stage { rung: Rung::new(3, 96), keep: 5, shortlist: None },
                ]),
                ..base.clone()
            },
            "climb",
        ),
        (SearchRequest { adaptive: Some(true), ..base.clone() }, "calibrated"),
    ];
    for (request, message) in cases {
        let err = e.search(&request).unwrap_err().to_string();
        assert!(err.contains(message), "expected {message:?}, got {err}");
    }
}

#[test]
fn updates_deletes_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let docs = scifact(60);
    let e = engine(dir.path(), &docs);
    let target = &docs[7];
    let hit_ids =
        |e: &Engine, q: &str| ids(&e.search(&SearchRequest::text(q).with_profile("exact").with_k(3)).unwrap());
    assert_eq!(hit_ids(&e, &target.passage())[0], target.id, "a document finds itself");
    // Update: new text, same id.
    let updated = Document {
        text: "Bananas are rich in potassium and grow in tropical climates.".into(),
        title: None,
        ..target.clone()
    };
    let report = e.add(std::slice::from_ref(&updated)).unwrap();
    assert_eq!((report.added, report.deleted, report.live), (1, 1, 60));
    assert_eq!(e.get(&target.id).unwrap().unwrap().text, updated.text);
    assert_eq!(hit_ids(&e, "potassium in bananas")[0], target.id);
    // Delete.
    let report = e.delete(&[target.id.as_str(), "no-such-id"]).unwrap();
    assert_eq!((report.deleted, report.live), (1, 59));
    assert!(e.get(&target.id).unwrap().is_none());
    assert!(!hit_ids(&e, "potassium in bananas").contains(&target.id));
    // Reopen: same answers.
    let before = e.search(&SearchRequest::text("cancer treatment").with_k(10)).unwrap();
    drop(e);
    let reopened = Engine::open(dir.path(), &OpenOptions::default()).unwrap();
    let after = reopened.search(&SearchRequest::text("cancer treatment").with_k(10)).unwrap();
    assert_eq!(ids(&before), ids(&after));
    assert_eq!(
        before.hits.iter().map(|h| h.score).collect::<Vec<_>>(),
        after.hits.iter().map(|h| h.score).collect::<Vec<_>>()
    );
    // Invalid documents change nothing.
    let bad = Document { id: String::new(), text: "x".into(), title: None, metadata: None };
    assert!(reopened.add(&[docs[0].clone(), bad]).is_err());
    let not_object = Document { metadata: Some(serde_json::json!([1, 2])), ..docs[1].clone() };
    assert!(reopened.add(&[not_object]).unwrap_err().to_string().contains("JSON object"));
    assert_eq!(reopened.index().snapshot().len(), 59);
}

#[test]
fn opening_with_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    engine(dir.path(), &scifact(5));
    // A copy of the model with f32 weights: same architecture, different files.
    let other = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "2d_matryoshka.json"] {
        std::fs::copy(barista_tests::model_dir().join(f), other.path().join(f)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(barista_tests::model_dir().join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let converted: std::collections::HashMap<String, candle_core::Tensor> =
        tensors.into_iter().map(|(k, v)| (k, v.to_dtype(candle_core::DType::F32).unwrap())).collect();
    candle_core::safetensors::save(&converted, other.path().join("model.safetensors")).unwrap();
    let options = OpenOptions { model: Some(other.path().to_str().unwrap().to_string()), ..Default::default() };
    let err = Engine::open(dir.path(), &options).unwrap_err().to_string();
    assert!(err.contains("not the model the index") && err.contains("fingerprint"), "{err}");
}

#[test]
fn calibration_is_stored_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let docs = scifact(200);
    let e = engine(dir.path(), &docs);
    // Training queries: documents' titles, judged relevant to their document.
    let queries: Vec<(String, String)> =
        docs.iter().take(40).map(|d| (format!("q-{}", d.id), d.title.clone().unwrap())).collect();
    let qrels: BTreeMap<String, BTreeMap<String, i32>> =
        docs.iter().take(40).map(|d| (format!("q-{}", d.id), [(d.id.clone(), 1)].into_iter().collect())).collect();
    let rule = e.calibrate("balanced", &queries, &qrels, 0.95).unwrap();
    assert_eq!(rule.queries, 40);
    assert!(rule.ndcg >= 0.95 * rule.full_ndcg - 1e-9);
    assert_eq!(e.stop_rule("balanced"), Some(rule.clone()));
    // Used by default once calibrated, and survives reopening.
    let r = e.search(&SearchRequest::text(docs[0].title.clone().unwrap())).unwrap();
    assert!(r.stages.len() <= rule.plan.stages.len());
    drop(e);
    let reopened = Engine::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(reopened.stop_rule("balanced"), Some(rule));
    let off = SearchRequest { adaptive: Some(false), ..SearchRequest::text("anything") };
    assert!(!reopened.search(&off).unwrap().stopped_early);
    let empty: BTreeMap<String, BTreeMap<String, i32>> = BTreeMap::new();
    assert!(reopened.calibrate("balanced", &queries, &empty, 0.99).unwrap_err().to_string().contains("judgements"));
    // Queries named like the documents they find (BEIR's ArguAna, Quora): dropping the
    // identical ids, as BEIR does, leaves nothing relevant; keeping them finds every one.
    let named: Vec<(String, String)> = docs.iter().take(20).map(|d| (d.id.clone(), d.title.clone().unwrap())).collect();
    let itself: BTreeMap<String, BTreeMap<String, i32>> =
        docs.iter().take(20).map(|d| (d.id.clone(), [(d.id.clone(), 1)].into_iter().collect())).collect();
    let kept = reopened.calibrate_with("balanced", &named, &itself, 0.95, false).unwrap();
    let dropped = reopened.calibrate_with("balanced", &named, &itself, 0.95, true).unwrap();
    assert!(kept.full_ndcg > 0.9 && dropped.full_ndcg == 0.0, "{} {}", kept.full_ndcg, dropped.full_ndcg);
}

/// A case where stopping is certain: five documents and `k` = 10, so every stage's top 10 is
/// all of them and the overlap between stages is 1. Searches must stop after the first
/// stage that may stop, encoding fewer layers; `adaptive: false` must run every stage.
#[test]
fn adaptive_stopping_stops_where_the_ranking_is_settled() {
    let dir = tempfile::tempdir().unwrap();
    let docs = scifact(5);
    let e = engine(dir.path(), &docs);
    let queries: Vec<(String, String)> =
        docs.iter().map(|d| (format!("q-{}", d.id), d.title.clone().unwrap())).collect();
    let qrels: BTreeMap<String, BTreeMap<String, i32>> =
        docs.iter().map(|d| (format!("q-{}", d.id), [(d.id.clone(), 1)].into_iter().collect())).collect();
    let rule = e.calibrate("balanced", &queries, &qrels, 0.5).unwrap();
    let full = rule.plan.stages.len();
    assert!(full >= 3, "balanced has a middle stage to stop at: {}", rule.plan);
    let first_eligible = rule.thresholds.iter().position(Option::is_some).expect("a threshold was fitted");
    assert_eq!(rule.stopped_share[first_eligible], 1.0, "every training query stops there");
    for (id, text) in &queries {
        let adaptive = e.search(&SearchRequest::text(text).with_k(10)).unwrap();
        assert!(adaptive.stopped_early, "{id}");
        assert_eq!(adaptive.stages.len(), first_eligible + 1, "{id}: stages {:?}", adaptive.stages);
        assert_eq!(adaptive.hits.len(), 5);
        let explicit =
            e.search(&SearchRequest { adaptive: Some(true), ..SearchRequest::text(text).with_k(10) }).unwrap();
        assert_eq!((explicit.stopped_early, explicit.stages.len()), (true, first_eligible + 1));
        let off = e.search(&SearchRequest { adaptive: Some(false), ..SearchRequest::text(text).with_k(10) }).unwrap();
        assert!(!off.stopped_early);
        assert_eq!(off.stages.len(), full, "{id}: adaptive off runs every stage");
        // The stopped search encoded fewer layers: its last stage is a smaller rung.
        assert!(adaptive.stages.last().unwrap().rung.layer < off.stages.last().unwrap().rung.layer);
    }
}

/// Metadata filters compare JSON numbers as numbers: `{"year": 2020.0}` is found by the filter
/// `{"year": 2020}` (and the other way round), in the mutable segment and after a flush.
#[test]
fn filters_compare_numbers_as_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::create(dir.path(), &CreateOptions::new(model_arg())).unwrap();
    let doc = |id: &str, year: serde_json::Value| Document {
        id: id.into(),
        text: format!("A study published in {year}."),
        title: None,
        metadata: Some(serde_json::json!({ "year": year })),
    };
    e.add(&[
        doc("float", serde_json::json!(2020.0)),
        doc("int", serde_json::json!(2021)),
        doc("other", serde_json::json!(1999)),
    ])
    .unwrap();
    let found = |year: serde_json::Value| -> Vec<String> {
        let mut filter = serde_json::Map::new();
        filter.insert("year".into(), year);
        let request = SearchRequest { filter: Some(filter), ..SearchRequest::text("a study").with_k(10) };
        let mut ids = ids(&e.search(&request).unwrap());
        ids.sort();
        ids
    };
    for flushed in [false, true] {
        assert_eq!(found(serde_json::json!(2020)), ["float"], "flushed: {flushed}");
        assert_eq!(found(serde_json::json!(2021.0)), ["int"], "flushed: {flushed}");
        assert_eq!(found(serde_json::json!([2.02e3, 2021])), ["float", "int"], "flushed: {flushed}");
        assert!(found(serde_json::json!("2020")).is_empty(), "a string is not a number");
        e.flush().unwrap();
    }
}

/// The title is stored on its own: a document with both a title and a `"title"` in its
/// metadata keeps both apart, and one with only a title gets no metadata it never had — in the
/// mutable segment, after a flush and after reopening.
#[test]
fn title_and_metadata_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::create(dir.path(), &CreateOptions::new(model_arg())).unwrap();
    let both = Document {
        id: "both".into(),
        text: "Body text.".into(),
        title: Some("Real Title".into()),
        metadata: Some(serde_json::json!({"title": "Meta Title"})),
    };
    let title_only =
        Document { id: "title-only".into(), text: "Other text.".into(), title: Some("Only".into()), metadata: None };
    e.add(&[both.clone(), title_only.clone()]).unwrap();
    let check = |e: &Engine| {
        assert_eq!(e.get("both").unwrap().unwrap(), both);
        assert_eq!(e.get("title-only").unwrap().unwrap(), title_only);
        let request =
            SearchRequest { include_text: true, include_metadata: true, ..SearchRequest::text("body text").with_k(2) };
        let hits = e.search(&request).unwrap().hits;
        let hit = hits.iter().find(|h| h.id == "both").unwrap();
        assert_eq!(hit.title.as_deref(), Some("Real Title"));
        assert_eq!(hit.metadata, Some(serde_json::json!({"title": "Meta Title"})));
        assert!(hits.iter().find(|h| h.id == "title-only").unwrap().metadata.is_none());
    };
    check(&e);
    e.flush().unwrap();
    check(&e);
    drop(e);
    check(&Engine::open(dir.path(), &OpenOptions::default()).unwrap());
}

/// The case with the real model: 400 copies of one report among 200 distinct ones, in
/// one segment with a graph. Every distinct report is found through the graph at ef 100 by its
/// own text (its passage vector at the graph rung), and the copied report's text finds all 400
/// copies.
#[test]
fn copies_of_one_report_hide_no_other_through_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let reports = scifact(201);
    let (copied, distinct) = reports.split_last().unwrap();
    // Copies interleaved with the distinct reports, as documents arrive, then copies alone.
    let mut next = distinct.iter();
    let docs: Vec<Document> = (0..600)
        .map(|i| match if i % 3 == 2 { None } else { next.next() } {
            Some(doc) => doc.clone(),
            None => Document { id: format!("copy-{i}"), ..copied.clone() },
        })
        .collect();
    let copies = docs.iter().filter(|x| x.id.starts_with("copy-")).count();
    let mut options = CreateOptions::new(model_arg());
    options.graph_min_docs = 0;
    // The rung the old neighbour selection was shown to fail on (the default is the largest).
    options.graph_rungs = vec![Rung::new(3, 96)];
    let e = Engine::create(dir.path(), &options).unwrap();
    e.stage(&docs).unwrap();
    e.commit_with(&|_, _, _| {}).unwrap();
    let snapshot = e.index().snapshot();
    assert_eq!(snapshot.segments()[0].graphs.len(), 1, "the segment has its graph");
    let config = snapshot.config();
    let graph_rung = config.graph.rungs[0];
    let rung = config.rungs[graph_rung].rung;
    // The 200 distinct reports' and the copied report's own passage vectors at the graph rung.
    let passages: Vec<String> = reports.iter().map(Document::passage).collect();
    let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
    let vectors = e.encoder().encode(&refs, TextKind::Passage, &[rung]).unwrap();
    for (i, doc) in distinct.iter().enumerate() {
        let hits = snapshot.graph_search_on(graph_rung, vectors.vector(i, 0), 10, 100).unwrap();
        let first = snapshot.doc(hits[0].address).unwrap().id.to_string();
        assert_eq!(first, doc.id, "{} is not found through the graph by its own text", doc.id);
    }
    let hits = snapshot.graph_search_on(graph_rung, vectors.vector(distinct.len(), 0), copies, copies).unwrap();
    let found = hits.iter().filter(|h| snapshot.doc(h.address).unwrap().id.starts_with("copy-")).count();
    assert_eq!(found, copies, "every copy comes back");
}

/// Documents whose vectors were embedded elsewhere (as a distributed pipeline's encoder
/// workers would) index exactly as documents the engine encodes itself: same hits, same
/// scores. Missing rungs and wrong row counts are refused and write nothing; staging keeps the
/// last copy of a repeated id with its own vectors.
#[test]
fn documents_embedded_elsewhere_index_as_if_encoded_here() {
    let docs = scifact(60);
    let here = tempfile::tempdir().unwrap();
    let encoded_here = engine(here.path(), &docs);
    let rungs = encoded_here.encoder().profile().rungs.clone();
    let embed = |docs: &[Document]| -> Vec<barista_engine::RungRows> {
        let passages: Vec<String> = docs.iter().map(Document::passage).collect();
        let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
        let e = encoded_here.encoder().encode(&refs, TextKind::Passage, &rungs).unwrap();
        (0..rungs.len())
            .map(|r| barista_engine::RungRows {
                rung: rungs[r],
                values: (0..docs.len()).flat_map(|i| e.vector(i, r).to_vec()).collect(),
            })
            .collect()
    };
    let vectors = embed(&docs);
    let elsewhere = tempfile::tempdir().unwrap();
    let e = Engine::create(elsewhere.path(), &CreateOptions::new(model_arg())).unwrap();

    // Refused, and nothing written.
    let error = e.add_embedded(&docs, &vectors[1..]).unwrap_err().to_string();
    assert!(error.contains(&format!("no vectors for the stored rung {}", rungs[0])), "{error}");
    let mut short = vectors.clone();
    let keep = short[2].values.len() - rungs[2].dim;
    short[2].values.truncate(keep);
    let error = e.add_embedded(&docs, &short).unwrap_err().to_string();
    assert!(error.contains("not 60 documents"), "{error}");
    let mut bad = vectors.clone();
    bad[5].values[7] = f32::NAN;
    let error = e.add_embedded(&docs, &bad).unwrap_err().to_string();
    assert!(error.contains("NaN") && error.matches(&format!("{:?}", docs[0].id)).count() == 1, "{error}");
    // The shared model compares by cosine: vectors must be unit length, as the encoder gives.
    let mut long = vectors.clone();
    long[3].values[..rungs[3].dim].iter_mut().for_each(|x| *x *= 3.0);
    let error = e.add_embedded(&docs, &long).unwrap_err().to_string();
    assert!(error.contains("has length 3.0000") && error.contains("L2-normalised"), "{error}");
    assert_eq!(e.index().snapshot().len(), 0);

    let report = e.add_embedded(&docs, &vectors).unwrap();
    assert_eq!(report.added, 60);
    for query in ["vitamin D deficiency and depression", "stem cells in the bone marrow", "malaria vaccine"] {
        for profile in ["exact", "balanced"] {
            let request = SearchRequest::text(query).with_profile(profile).with_k(10);
            let (a, b) = (encoded_here.search(&request).unwrap(), e.search(&request).unwrap());
            let hits = |r: &barista_engine::SearchResponse| -> Vec<(String, u32)> {
                r.hits.iter().map(|h| (h.id.clone(), h.score.to_bits())).collect()
            };
            assert_eq!(hits(&a), hits(&b), "{profile}: {query}");
        }
    }

    // Staged for a bulk commit: a repeated id keeps its last copy, with that copy's vectors.
    let staged = tempfile::tempdir().unwrap();
    let s = Engine::create(staged.path(), &CreateOptions::new(model_arg())).unwrap();
    let mut repeated = docs[..3].to_vec();
    repeated.push(Document { id: docs[0].id.clone(), ..docs[3].clone() });
    assert_eq!(s.stage_embedded(&repeated, &embed(&repeated)).unwrap(), 3);
    s.commit_with(&|_, _, _| {}).unwrap();
    let got = s.get(&docs[0].id).unwrap().unwrap();
    assert_eq!(got.text, docs[3].text);
    let request = SearchRequest::text(docs[3].text.clone()).with_profile("exact").with_k(1);
    assert_eq!(ids(&s.search(&request).unwrap()), [docs[0].id.clone()]);
}

#[test]
fn a_reader_beside_a_writer_sees_its_commits_after_reload() {
    let dir = tempfile::tempdir().unwrap();
    let docs = scifact(40);
    let writer = engine(dir.path(), &docs[..30]);
    let reader = Engine::open(dir.path(), &OpenOptions::default()).unwrap();
    let all: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(reader.contains(&all).unwrap(), (0..40).map(|i| i < 30).collect::<Vec<_>>());
    assert!(!reader.reload().unwrap(), "nothing changed yet");

    writer.add(&docs[30..]).unwrap();
    writer.delete(&[docs[0].id.as_str()]).unwrap();
    // Not seen until the reader reloads; then exactly what the writer acknowledged.
    assert_eq!(reader.index().snapshot().len(), 30);
    assert!(reader.reload().unwrap());
    assert_eq!(reader.index().snapshot().len(), 39);
    assert_eq!(reader.contains(&all).unwrap(), (0..40).map(|i| i > 0).collect::<Vec<_>>());
    let q = SearchRequest::text(docs[35].passage()).with_profile("exact").with_k(5);
    assert_eq!(ids(&reader.search(&q).unwrap()), ids(&writer.search(&q).unwrap()));
    // A flush (new segment, new manifest) is picked up the same way.
    writer.flush().unwrap();
    assert!(reader.reload().unwrap());
    assert_eq!(ids(&reader.search(&q).unwrap()), ids(&writer.search(&q).unwrap()));
    assert!(!reader.reload().unwrap());
    // The writer has nothing to reload: it publishes its own changes.
    assert!(!writer.reload().unwrap());
}
