//! The REST API on a real server over loopback: the `barista serve` binary, the shared model,
//! real documents, a real HTTP client.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
mod common;

use common::{barista_command, scifact_jsonl};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Builds an index of the first `n` SciFact documents (with a `lang` field) with the CLI.
fn build_index(dir: &Path, n: usize) -> PathBuf {
    let input = scifact_jsonl(dir, n, |i, v, doc| {
        doc.insert("title".into(), v["title"].clone());
        doc.insert("metadata".into(), json!({"lang": if i % 2 == 0 { "en" } else { "fr" }}));
    });
    let index = dir.join("idx");
    common::index(&input, "jsonl", &index);
    index
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(index: &Path, extra: &[&str]) -> Server {
        let mut child = barista_command()
            .args(["serve", "--index", index.to_str().unwrap(), "--addr", "127.0.0.1:0"])
            .args(extra)
            .env_remove("BARISTA_READ_KEY")
            .env_remove("BARISTA_WRITE_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(60)).expect("the server did not start");
        Server { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops with SIGTERM (graceful) and waits.
    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (status, JSON body or null, Retry-After)
fn call(request: ureq::Request, body: Option<&str>) -> (u16, Value, Option<String>) {
    let result = match body {
        Some(b) => request.set("Content-Type", "application/json").send_string(b),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let retry = response.header("Retry-After").map(str::to_string);
    let text = response.into_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), retry)
}

fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (s, v, _) = call(ureq::post(&server.url(path)), Some(&body.to_string()));
    (s, v)
}

fn search_ids(server: &Server, query: &str) -> Vec<String> {
    let (status, body) = post(server, "/search", &json!({"query": query, "k": 10}));
    assert_eq!(status, 200, "{body}");
    body["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_string()).collect()
}

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
        ("DELETE", "/documents/no-such-id", String::new(), 404, "not_found"),
        ("GET", "/nowhere", String::new(), 404, "not_found"),
        ("GET", "/search", String::new(), 405, "method_not_allowed"),
    ];
    for (method, path, body, status, code) in cases {
        let request = ureq::request(method, &server.url(path));
        let (got, value, _) = call(request, if body.is_empty() { None } else { Some(&body) });
        assert_eq!(got, status, "{method} {path} {}: {value}", &body.chars().take(80).collect::<String>());
        assert_eq!(value["error"]["code"], code, "{method} {path}: {value}");
        assert!(value["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
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
        &["--read-key", "reader", "--write-key", "writer", "--search-threads", "1", "--queue", "1"],
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
    // Concurrent clients; with one search thread and a queue of one, some are turned away.
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
    assert!(results.iter().all(|(s, _)| *s == 200 || *s == 503), "{results:?}");
    assert!(results.iter().any(|(s, _)| *s == 200));
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    assert!(!refused.is_empty(), "12 simultaneous searches against 1 thread + 1 queue slot: some must be refused");
    assert!(refused.iter().all(|(_, retry)| retry.as_deref() == Some("1")), "503s carry Retry-After");
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
    assert!(metrics.contains("barista_documents 31"));
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
