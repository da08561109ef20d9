//! The REST API on a real server over loopback: the `barista serve` binary, the shared model,
//! real documents, a real HTTP client.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use serde_json::json;
mod common;

use common::http::{Server, build_index, call, post, search_ids};

#[test]
fn search_upsert_delete_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 40);
    let server = Server::start(&index, &[]);
    let (status, health, _) = call(ureq::get(&server.url("/health")), None);
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (_, ready, _) = call(ureq::get(&server.url("/ready")), None);
    assert_eq!(ready["documents"], 40);
    // Search: hits, stages, timings.
    let (status, body) =
        post(&server, "/search", &json!({"query": "cells", "k": 3, "include_text": true, "include_metadata": true}));
    assert_eq!(status, 200);
    assert_eq!(body["hits"].as_array().unwrap().len(), 3);
    assert!(body["hits"][0]["text"].is_string() && body["hits"][0]["metadata"]["lang"].is_string());
    assert!(body["stages"].as_array().unwrap().len() >= 2 && body["timings"]["total_ms"].as_f64().unwrap() > 0.0);
    // Upsert two documents, then find them.
    let docs = json!({"documents": [
        {"id": "banana", "text": "Bananas are an excellent source of potassium.", "metadata": {"lang": "en"}},
        {"id": "kiwi", "text": "Kiwifruit contains a lot of vitamin C.", "title": "Kiwi"},
    ]});
    let (status, report) = post(&server, "/documents", &docs);
    assert_eq!(status, 200, "{report}");
    assert_eq!((report["added"].as_u64(), report["live"].as_u64()), (Some(2), Some(42)));
    assert_eq!(search_ids(&server, "potassium in bananas")[0], "banana");
    let (status, got, _) = call(ureq::get(&server.url("/documents/kiwi")), None);
    assert_eq!((status, got["title"].as_str()), (200, Some("Kiwi")));
    // Delete one: gone from reads and searches.
    let (status, deleted, _) = call(ureq::delete(&server.url("/documents/banana")), None);
    assert_eq!((status, deleted["live"].as_u64()), (200, Some(41)));
    assert_eq!(call(ureq::get(&server.url("/documents/banana")), None).0, 404);
    assert!(!search_ids(&server, "potassium in bananas").contains(&"banana".to_string()));
    // A graceful stop, then a restart: acknowledged writes are there.
    assert!(server.stop().success());
    let server = Server::start(&index, &[]);
    assert_eq!(call(ureq::get(&server.url("/documents/kiwi")), None).0, 200);
    assert_eq!(call(ureq::get(&server.url("/documents/banana")), None).0, 404);
    assert_eq!(call(ureq::get(&server.url("/ready")), None).1["documents"], 41);
    // Filters.
    let (status, body) = post(
        &server,
        "/search",
        &json!({"query": "cells", "k": 10, "filter": {"lang": "fr"}, "include_metadata": true}),
    );
    assert_eq!(status, 200);
    let hits = body["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h["metadata"]["lang"] == "fr"));
    let (_, body) = post(&server, "/search", &json!({"query": "cells", "filter": {"lang": "de"}}));
    assert_eq!(body["hits"].as_array().unwrap().len(), 0);
}

#[test]
fn every_bad_input_gets_a_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 20);
    let server = Server::start(&index, &["--max-body-bytes", "65536", "--max-batch", "3"]);
    let before = search_ids(&server, "protein folding");
    let big_query = "word ".repeat(10_000);
    let vector = |n: usize| json!([{"layer": 6, "dim": 384, "vector": vec![0.1f32; n]}]);
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("POST", "/search", "{not json".into(), 400, "malformed_json"),
        ("POST", "/search", json!({"query": 5}).to_string(), 422, "invalid_body"),
        ("POST", "/search", json!({"query": "x", "k": "ten"}).to_string(), 422, "invalid_body"),
        ("POST", "/search", json!({"query": "x", "unknown": 1}).to_string(), 422, "invalid_body"),
        ("POST", "/search", json!({"query": ""}).to_string(), 400, "invalid_request"),
        ("POST", "/search", json!({}).to_string(), 400, "invalid_request"),
        ("POST", "/search", json!({"query": big_query}).to_string(), 400, "invalid_request"),
        ("POST", "/search", json!({"query": "x", "k": 0}).to_string(), 400, "invalid_request"),
        ("POST", "/search", json!({"query": "x", "k": 1_000_000}).to_string(), 400, "invalid_request"),
        ("POST", "/search", json!({"query": "x", "profile": "warp"}).to_string(), 400, "invalid_request"),
        ("POST", "/search", r#"{"vectors": [{"layer": 6, "dim": 2, "vector": [NaN, 1.0]}]}"#.into(), 400, "malformed_json"),
        ("POST", "/search", json!({"vectors": vector(3)}).to_string(), 400, "invalid_request"),
        ("POST", "/search", json!({"query": "x", "stages": [{"rung": [6, 384], "keep": 5}, {"rung": [2, 64], "keep": 5}]}).to_string(), 400, "invalid_request"),
        ("POST", "/search", json!({"query": "x", "filter": {"lang": {"gt": 1}}}).to_string(), 400, "invalid_request"),
        ("POST", "/search", format!("{{\"query\": \"{}\"}}", "a".repeat(70_000)), 413, "payload_too_large"),
        ("POST", "/documents", json!({"documents": []}).to_string(), 400, "invalid_request"),
        ("POST", "/documents", json!({"documents": [{"id": "", "text": "x"}]}).to_string(), 400, "invalid_request"),
        ("POST", "/documents", json!({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}).to_string(), 400, "invalid_request"),
        ("POST", "/documents", json!({"documents": [{"id": "a", "text": "x", "metadata": [1]}]}).to_string(), 400, "invalid_request"),
        ("POST", "/documents", json!({"documents": [{"id": "a"}]}).to_string(), 422, "invalid_body"),
        ("POST", "/documents", json!({"documents": [{"id": "a", "text": "1"}, {"id": "b", "text": "2"}, {"id": "c", "text": "3"}, {"id": "d", "text": "4"}]}).to_string(), 413, "batch_too_large"),
        ("GET", "/documents/no-such-id", String::new(), 404, "not_found"),
        ("GET", "/documents/%FF", String::new(), 400, "invalid_path"),
        ("DELETE", "/documents/%FF%FE", String::new(), 400, "invalid_path"),
        ("DELETE", "/documents/no-such-id", String::new(), 404, "not_found"),
        ("GET", "/nowhere", String::new(), 404, "no_such_route"),
        ("GET", "/search", String::new(), 405, "method_not_allowed"),
    ];
    for (method, path, body, status, code) in cases {
        let request = ureq::request(method, &server.url(path));
        let (got, value, _) = call(request, if body.is_empty() { None } else { Some(&body) });
        assert_eq!(got, status, "{method} {path} {}: {value}", &body.chars().take(80).collect::<String>());
        assert_eq!(value["error"]["code"], code, "{method} {path}: {value}");
        assert!(value["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        // Every error is the JSON error shape, axum's own rejections included.
        let response = match ureq::request(method, &server.url(path)).call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        if response.status() >= 400 {
            assert_eq!(response.content_type(), "application/json", "{method} {path}");
        }
    }
    // Wrong content type.
    let response = ureq::post(&server.url("/search")).set("Content-Type", "text/plain").send_string("{}");
    let Err(ureq::Error::Status(415, _)) = response else { panic!("expected 415") };
    // Nothing changed.
    assert_eq!(call(ureq::get(&server.url("/ready")), None).1["documents"], 20);
    assert_eq!(search_ids(&server, "protein folding"), before);
}

#[test]
fn api_keys_concurrency_backpressure_metrics_and_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 30);
    let server = Server::start(
        &index,
        &[
            "--read-key",
            "reader",
            "--write-key",
            "writer",
            "--search-threads",
            "1",
            "--write-threads",
            "1",
            "--queue",
            "1",
        ],
    );
    // Keys.
    let doc = json!({"documents": [{"id": "x", "text": "a test document"}]}).to_string();
    let (s, v, _) = call(ureq::post(&server.url("/search")), Some(&json!({"query": "q"}).to_string()));
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("missing_api_key")));
    let (s, _, _) = call(
        ureq::post(&server.url("/search")).set("Authorization", "Bearer nope"),
        Some(&json!({"query": "q"}).to_string()),
    );
    assert_eq!(s, 403);
    let (s, _, _) = call(ureq::post(&server.url("/documents")).set("Authorization", "Bearer reader"), Some(&doc));
    assert_eq!(s, 403, "the read key cannot write");
    let (s, _, _) = call(ureq::post(&server.url("/documents")).set("X-Api-Key", "writer"), Some(&doc));
    assert_eq!(s, 200);
    assert_eq!(call(ureq::get(&server.url("/health")), None).0, 200, "health needs no key");
    // Concurrent clients: every search is answered, or refused with 503 and Retry-After.
    let barrier = std::sync::Barrier::new(12);
    let results: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let (server, barrier) = (&server, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let body = json!({"query": format!("query number {i} about cells"), "k": 50, "profile": "exact"})
                        .to_string();
                    let (s, _, retry) =
                        call(ureq::post(&server.url("/search")).set("Authorization", "Bearer reader"), Some(&body));
                    (s, retry)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|(s, r)| *s == 200 || (*s == 503 && r.as_deref() == Some("1"))), "{results:?}");
    assert!(results.iter().any(|(s, _)| *s == 200));
    // Backpressure, deterministically: one write thread busy with a long batch, one request in
    // the queue, so the next one is refused.
    let gauge = |name: &str| -> i64 {
        let text = ureq::get(&server.url("/metrics")).set("X-Api-Key", "reader").call().unwrap().into_string().unwrap();
        let line = text.lines().find(|l| l.starts_with(&format!("{name}{{pool=\"write\"}}"))).unwrap_or("x 0");
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let wait_for = |name: &str, value: i64| {
        let start = std::time::Instant::now();
        while gauge(name) != value {
            assert!(start.elapsed() < std::time::Duration::from_secs(60), "{name} never reached {value}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    let corpus = std::fs::read_to_string(common::shared("datasets/scifact/corpus.jsonl")).unwrap();
    let long: Vec<serde_json::Value> = corpus
        .lines()
        .skip(30)
        .take(300)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            json!({"id": v["_id"], "text": v["text"]})
        })
        .collect();
    let small = |id: &str| json!({"documents": [{"id": id, "text": "a short note"}]}).to_string();
    std::thread::scope(|scope| {
        let writer = |body: String| {
            let server = &server;
            scope.spawn(move || call(ureq::post(&server.url("/documents")).set("X-Api-Key", "writer"), Some(&body)).0)
        };
        let busy = writer(json!({ "documents": long }).to_string());
        wait_for("barista_pool_active", 1);
        let queued = writer(small("queued"));
        wait_for("barista_pool_queued", 1);
        let (s, body, retry) =
            call(ureq::post(&server.url("/documents")).set("X-Api-Key", "writer"), Some(&small("refused")));
        assert_eq!((s, retry.as_deref(), body["error"]["code"].as_str()), (503, Some("1"), Some("overloaded")));
        assert_eq!((busy.join().unwrap(), queued.join().unwrap()), (200, 200));
    });
    assert_eq!(call(ureq::get(&server.url("/documents/refused")).set("X-Api-Key", "reader"), None).0, 404);
    // Metrics.
    let metrics =
        ureq::get(&server.url("/metrics")).set("Authorization", "Bearer reader").call().unwrap().into_string().unwrap();
    assert!(
        metrics.contains("barista_http_requests_total{route=\"/search\",method=\"POST\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("barista_http_request_duration_seconds_bucket{"));
    assert!(metrics.contains("barista_search_stage_duration_seconds_count{stage=\"encode\"}"));
    assert!(metrics.contains("barista_rejected_overloaded_total"));
    assert!(metrics.contains("barista_documents 332"));
    assert!(metrics.contains("barista_pool_active{pool=\"search\"}"));
    // OpenAPI: every route, and the request schema matches the real fields.
    let (s, spec, _) = call(ureq::get(&server.url("/openapi.json")), None);
    assert_eq!(s, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/search", "/documents", "/documents/{id}", "/health", "/ready", "/metrics"] {
        assert!(spec["paths"][path].is_object(), "{path} missing from the spec");
    }
    let fields: Vec<&str> = spec["components"]["schemas"]["SearchRequest"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for f in ["query", "vectors", "k", "profile", "stages", "adaptive", "filter", "include_text", "include_metadata"] {
        assert!(fields.contains(&f), "SearchRequest lacks {f}: {fields:?}");
    }
    assert_eq!(spec["components"]["schemas"]["Rung"]["maxItems"], 2, "rungs are [layer, dim]");
    // Every $ref points at a schema the document defines.
    let text = spec.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(spec["components"]["schemas"][name].is_object(), "dangling $ref to {name}");
    }
}

#[test]
fn a_read_key_alone_turns_writes_off() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 10);
    let server = Server::start(&index, &["--read-key", "reader"]);
    let doc = json!({"documents": [{"id": "x", "text": "a test document"}]}).to_string();
    for key in [None, Some("reader"), Some("guess")] {
        let mut request = ureq::post(&server.url("/documents"));
        if let Some(k) = key {
            request = request.set("Authorization", &format!("Bearer {k}"));
        }
        let (status, body, _) = call(request, Some(&doc));
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("writes_disabled")), "{key:?}");
        let (status, _, _) = call(ureq::delete(&server.url("/documents/x")).set("X-Api-Key", "reader"), None);
        assert_eq!(status, 403);
    }
    let (status, _, _) = call(ureq::post(&server.url("/admin/compact")).set("X-Api-Key", "reader"), Some("{}"));
    assert_eq!(status, 403);
    let (status, ready, _) = call(ureq::get(&server.url("/ready")), None);
    assert_eq!((status, ready["documents"].as_u64()), (200, Some(10)), "nothing was written");
    let (status, _, _) = call(ureq::get(&server.url("/stats")), None);
    assert_eq!(status, 401, "reads need the read key");
    let (status, _, _) = call(ureq::get(&server.url("/stats")).set("X-Api-Key", "reader"), None);
    assert_eq!(status, 200);
}
