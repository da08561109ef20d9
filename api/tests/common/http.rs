//! A real `barista serve` on loopback and a real HTTP client, for the server tests.

use super::{barista_command, scifact_jsonl};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Builds an index of the first `n` SciFact documents (with a `lang` field) with the CLI.
pub fn build_index(dir: &Path, n: usize) -> PathBuf {
    let input = scifact_jsonl(dir, n, |i, v, doc| {
        doc.insert("title".into(), v["title"].clone());
        doc.insert("metadata".into(), json!({"lang": if i % 2 == 0 { "en" } else { "fr" }}));
    });
    let index = dir.join("idx");
    super::index(&input, "jsonl", &index);
    index
}

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(index: &Path, extra: &[&str]) -> Server {
        Server::start_command(barista_command(), index, extra)
    }

    /// Starts `barista serve` from a prepared `barista` command (environment, limits).
    pub fn start_command(mut command: Command, index: &Path, extra: &[&str]) -> Server {
        let mut child = command
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops with SIGTERM (graceful) and waits.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Server {
    /// Kills the server at once (SIGKILL), as a crash would, and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (status, JSON body or null, Retry-After)
pub fn call(request: ureq::Request, body: Option<&str>) -> (u16, Value, Option<String>) {
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
    let mut text = String::new();
    std::io::Read::read_to_string(&mut response.into_reader(), &mut text).unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), retry)
}

pub fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (s, v, _) = call(ureq::post(&server.url(path)), Some(&body.to_string()));
    (s, v)
}

pub fn search_ids(server: &Server, query: &str) -> Vec<String> {
    let (status, body) = post(server, "/search", &json!({"query": query, "k": 10}));
    assert_eq!(status, 200, "{body}");
    body["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_string()).collect()
}
