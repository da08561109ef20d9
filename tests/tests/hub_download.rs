//! A model named by its Hugging Face id is downloaded from a Hub: here a loopback server that
//! serves the shared model folder the way the Hub does (`GET /api/models/{id}/revision/{rev}`
//! for the commit and the file list, `GET /{id}/resolve/{commit}/{file}` with ranges, the
//! `x-repo-commit`, `etag` and `content-range` headers), reached through `HF_ENDPOINT`. The
//! model then loads from the cache offline, and encodes exactly like the folder it came from.
//!
//! One test per binary: it sets process-wide environment variables.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use barista_engine::{Encoder, EncoderOptions, TextKind};
use barista_tests::model_dir;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const REPO: &str = "barista-test/minilm-l6-2d";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The files of a model folder (relative paths), recursively.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// Serves `root` as the Hub serves repository `REPO` at commit `COMMIT`; records request paths.
fn serve_hub(root: PathBuf) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut range = None;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = Some(value.trim().to_string());
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock().unwrap().push(path.clone());
            let info = format!("/api/models/{REPO}/revision/");
            let resolve = format!("/{REPO}/resolve/");
            let (status, headers, body): (u16, Vec<String>, Vec<u8>) = if path.starts_with(&info) {
                let siblings: Vec<serde_json::Value> =
                    files(&root).into_iter().map(|f| serde_json::json!({ "rfilename": f })).collect();
                let body = serde_json::json!({"id": REPO, "sha": COMMIT, "siblings": siblings}).to_string();
                (200, vec!["Content-Type: application/json".into()], body.into_bytes())
            } else if let Some(rest) = path.strip_prefix(&resolve) {
                let (revision, file) = rest.split_once('/').unwrap_or(("", ""));
                match std::fs::read(root.join(file)) {
                    Ok(bytes) if revision == COMMIT || revision == "main" => {
                        let etag = format!("\"{:016x}\"", xxh(&bytes));
                        let total = bytes.len();
                        let start: usize = range
                            .as_deref()
                            .and_then(|r| r.split('-').next())
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        let end = match range.as_deref().and_then(|r| r.split('-').nth(1)) {
                            Some(e) if !e.is_empty() => e.parse::<usize>().unwrap().min(total - 1),
                            _ => total - 1,
                        };
                        let headers = vec![
                            format!("x-repo-commit: {COMMIT}"),
                            format!("etag: {etag}"),
                            format!("content-range: bytes {start}-{end}/{total}"),
                        ];
                        (206, headers, bytes[start..=end].to_vec())
                    }
                    _ => (404, vec![], b"Entry not found".to_vec()),
                }
            } else {
                (404, vec![], b"not found".to_vec())
            };
            let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            for h in headers {
                head.push_str(&h);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (base, seen)
}

fn xxh(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn a_model_is_downloaded_by_id_through_hf_endpoint_then_loads_offline() {
    let (endpoint, seen) = serve_hub(model_dir());
    let cache = tempfile::tempdir().unwrap();
    // SAFETY: this test binary has this one test; nothing else reads the environment meanwhile.
    unsafe {
        std::env::set_var("HF_ENDPOINT", &endpoint);
        std::env::set_var("HF_HUB_CACHE", cache.path());
        std::env::remove_var("HF_HUB_OFFLINE");
        std::env::remove_var("HF_TOKEN");
    }
    let from_hub = Encoder::load(REPO, &EncoderOptions::default()).unwrap();
    let requests = seen.lock().unwrap().clone();
    assert!(requests.iter().any(|p| p == &format!("/api/models/{REPO}/revision/main")), "{requests:?}");
    for file in ["config.json", "tokenizer.json", "model.safetensors", "2d_matryoshka.json"] {
        let path = format!("/{REPO}/resolve/{COMMIT}/{file}");
        assert!(requests.contains(&path), "{file} was not fetched pinned to the commit: {requests:?}");
    }
    let snapshot = cache.path().join("models--barista-test--minilm-l6-2d/snapshots").join(COMMIT);
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        std::fs::read(model_dir().join("model.safetensors")).unwrap(),
        "the weights arrived whole"
    );
    // The same model as the folder: same profile, identical vectors.
    let from_folder = Encoder::load(model_dir().to_str().unwrap(), &EncoderOptions::default()).unwrap();
    assert_eq!(from_hub.profile(), from_folder.profile());
    assert_eq!(from_hub.fingerprint(), from_folder.fingerprint());
    let text = ["Matryoshka embeddings nest small vectors in large ones."];
    let rungs = from_folder.profile().rungs.clone();
    let (a, b) = (
        from_hub.encode(&text, TextKind::Passage, &rungs).unwrap(),
        from_folder.encode(&text, TextKind::Passage, &rungs).unwrap(),
    );
    for r in 0..rungs.len() {
        assert_eq!(a.vector(0, r), b.vector(0, r));
    }
    // Offline, with the Hub gone: the cache answers, no request is made.
    let before = seen.lock().unwrap().len();
    unsafe { std::env::set_var("HF_HUB_OFFLINE", "1") };
    Encoder::load(REPO, &EncoderOptions::default()).unwrap();
    Encoder::load(&format!("{REPO}@{COMMIT}"), &EncoderOptions::default()).unwrap();
    assert_eq!(seen.lock().unwrap().len(), before, "offline means no request");
    // A model the Hub does not have: a clear error.
    unsafe { std::env::remove_var("HF_HUB_OFFLINE") };
    let err = Encoder::load("barista-test/no-such-model", &EncoderOptions::default()).unwrap_err().to_string();
    assert!(err.contains("no-such-model") && err.contains("could not reach the Hub"), "{err}");
}
