//! Live writes on a real server over loopback: a full disk, searches racing rewrites, servers
//! killed in the middle of a write stream, merges under searches. Real files, the real binary,
//! the shared model.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

mod common;

use barista_index::{Index, OpenOptions};
use common::http::{Server, build_index, call, post};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn get(server: &Server, path: &str) -> (u16, Value) {
    let (s, v, _) = call(ureq::get(&server.url(path)), None);
    (s, v)
}

fn stats(server: &Server) -> Value {
    let (status, body) = get(server, "/stats");
    assert_eq!(status, 200, "{body}");
    body
}

/// Live documents of an index on disk (id → text), opened with every file verified; panics
/// if an id is live twice.
fn live_documents(index: &Path) -> BTreeMap<String, String> {
    let opened = Index::open_with(index, OpenOptions { verify: true, ..Default::default() })
        .unwrap_or_else(|e| panic!("the index does not open: {e}"));
    let damaged = opened.snapshot().damaged_graphs();
    assert!(damaged.is_empty(), "damaged graphs: {damaged:?}");
    let s = opened.snapshot();
    let mut live = BTreeMap::new();
    for address in s.live_addresses() {
        let d = s.doc(address).unwrap();
        let previous = live.insert(d.id.to_string(), d.text.unwrap_or_default().to_string());
        assert!(previous.is_none(), "{} is live twice", d.id);
    }
    live
}

/// A small tmpfs mounted for the test's lifetime (needs the right to mount: root here and in CI).
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, bytes: usize) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs", path.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs { path: path.to_path_buf() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").args(["-l", self.path.to_str().unwrap()]).status();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Fills the file system holding `dir` up to `leave` bytes of free space.
fn fill(dir: &Path, leave: u64) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    drop(file);
    // Give back `leave` bytes (in pages).
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len.saturating_sub(leave)).unwrap();
    file.sync_all().unwrap();
    path
}

/// A server whose files may grow to `bytes` at most (RLIMIT_FSIZE, with SIGXFSZ ignored so a
/// write past it fails with EFBIG): the I/O failure injected below the writer where a tmpfs
/// cannot be mounted.
fn start_with_file_size_limit(index: &Path, bytes: u64) -> Server {
    use std::os::unix::process::CommandExt;
    let mut command = common::barista_command();
    // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Server::start_command(command, index, &["--flush-age", "3600"])
}

#[test]
fn a_write_that_fails_on_a_full_disk_never_becomes_visible() {
    let dir = tempfile::tempdir().unwrap();
    let built = build_index(dir.path(), 30);
    let mount = dir.path().join("small-disk");
    // BARISTA_TEST_NO_TMPFS=1 takes the other path where mounting works too.
    let tmpfs = if std::env::var_os("BARISTA_TEST_NO_TMPFS").is_some() { None } else { Tmpfs::mount(&mount, 8 << 20) };
    let index = match &tmpfs {
        Some(t) => t.path.join("idx"),
        None => {
            eprintln!("cannot mount a tmpfs here: failing writes with a file size limit instead");
            dir.path().join("limited")
        }
    };
    copy_dir(&built, &index);
    let big = "Calcium channels regulate the release of neurotransmitters. ".repeat(700);
    let (server, filler) = match &tmpfs {
        Some(t) => {
            let server = Server::start(&index, &["--flush-age", "3600"]);
            let (status, _) =
                post(&server, "/documents", &json!({"documents": [{"id": "before", "text": "Written first."}]}));
            assert_eq!(status, 200);
            // Leave 8 KB: the next record (a 40 KB text) is cut short by the full disk.
            (server, Some(fill(&t.path, 8 << 10)))
        }
        None => {
            // The log may grow to 16 KB: small writes pass, the 40 KB record is cut short.
            let server = start_with_file_size_limit(&index, 16 << 10);
            let (status, _) =
                post(&server, "/documents", &json!({"documents": [{"id": "before", "text": "Written first."}]}));
            assert_eq!(status, 200);
            (server, None)
        }
    };
    let (status, body) = post(&server, "/documents", &json!({"documents": [{"id": "failed", "text": big}]}));
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage");
    assert!(body["error"]["message"].as_str().unwrap().contains("nothing was written"), "{body}");
    assert_eq!(get(&server, "/documents/failed").0, 404);
    // Space is freed (or, under the size limit, small writes still fit); unrelated writes
    // follow; the failed document never appears.
    if let Some(filler) = filler {
        std::fs::remove_file(filler).unwrap();
    }
    assert_eq!(call(ureq::delete(&server.url("/documents/before")), None).0, 200);
    assert_eq!(post(&server, "/documents", &json!({"documents": [{"id": "after", "text": "Written last."}]})).0, 200);
    assert_eq!(get(&server, "/documents/failed").0, 404);
    let (_, hits) = post(&server, "/search", &json!({"query": "calcium channels neurotransmitters", "k": 50}));
    assert!(hits["hits"].as_array().unwrap().iter().all(|h| h["id"] != "failed"));
    // Not after a restart either; the acknowledged writes are there.
    assert!(server.stop().success());
    let live = live_documents(&index);
    assert!(!live.contains_key("failed") && !live.contains_key("before") && live.contains_key("after"));
    let server = Server::start(&index, &[]);
    assert_eq!(get(&server, "/documents/failed").0, 404);
    assert_eq!(get(&server, "/documents/after").0, 200);
    assert_eq!(get(&server, "/ready").1["documents"], 31);
    drop(server);
}

#[test]
fn searches_never_fail_while_one_id_is_rewritten() {
    let seconds: u64 = std::env::var("BARISTA_TEST_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 40);
    // Tiny flushes and merges of two segments: the writer flushes and merges all the time.
    let server = Server::start(&index, &["--flush-docs", "5", "--merge-factor", "2", "--flush-age", "0.5"]);
    let first = json!({"documents": [{"id": "hot", "text": "Hot topic, first version."}]});
    assert_eq!(post(&server, "/documents", &first).0, 200);
    let stop = AtomicBool::new(false);
    let (searches, rewrites, errors) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (server, stop, searches, errors) = (&server, &stop, &searches, &errors);
            scope.spawn(move || {
                let queries = ["protein folding", "hot topic version", "cells and energy", "vaccine response"];
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({"query": queries[i % 4], "k": 10, "include_text": true});
                    let (status, found) = post(server, "/search", &body);
                    let hits = found["hits"].as_array().cloned().unwrap_or_default();
                    let ids: std::collections::HashSet<&str> = hits.iter().filter_map(|h| h["id"].as_str()).collect();
                    let fetchable =
                        status == 200 && ids.len() == hits.len() && hits.iter().all(|h| h["text"].is_string());
                    if !fetchable {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("search failed: {status} {found}");
                    }
                    let (status, _) = get(server, "/documents/hot");
                    if status != 200 {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("GET /documents/hot: {status}");
                    }
                    searches.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        let mut version = 0;
        while Instant::now() < deadline {
            let text = format!("Hot topic version {version}: a document rewritten again and again.");
            let (status, body) = post(&server, "/documents", &json!({"documents": [{"id": "hot", "text": text}]}));
            if status != 200 {
                errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("rewrite failed: {status} {body}");
            }
            rewrites.fetch_add(1, Ordering::Relaxed);
            version += 1;
        }
        stop.store(true, Ordering::Relaxed);
    });
    let s = stats(&server);
    let (searches, rewrites, errors) = (searches.into_inner(), rewrites.into_inner(), errors.into_inner());
    eprintln!("{seconds} s: {searches} searches, {rewrites} rewrites, {errors} errors; {s}");
    assert_eq!(errors, 0);
    assert!(searches > 100 && rewrites > 50, "{searches} searches, {rewrites} rewrites");
    assert!(s["writer"]["flushes"].as_u64().unwrap() > 0 && s["writer"]["merges"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["documents"], 41);
    drop(server);
    assert_eq!(live_documents(&index).len(), 41);
}

/// What a client of the kill test did in one round: its next write number, the writes
/// acknowledged (id, write number), and the write in flight when the server died, if any.
type ClientOutcome = (u64, Vec<(String, u64)>, Option<(String, u64)>);

#[test]
fn killed_servers_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 20);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("seed {seed}");
    let mut rng = seed;
    let mut next = move |max: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % max
    };
    // Per client: the next write number, and per id the last acknowledged write number.
    let mut written = [0u64; 4];
    let mut acknowledged: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); 4];
    let (mut total, mut in_flight_landed) = (0, 0);
    for round in 0..20 {
        let mut server = Server::start(&index, &["--flush-docs", "12", "--merge-factor", "3", "--flush-age", "0.3"]);
        let url = server.url("/documents");
        let stop = AtomicBool::new(false);
        let outcomes: Vec<ClientOutcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|c| {
                    let (url, stop, start) = (&url, &stop, written[c]);
                    scope.spawn(move || {
                        let mut acked = Vec::new();
                        let mut n = start;
                        while !stop.load(Ordering::Relaxed) {
                            let id = format!("c{c}-{}", n % 15);
                            let text = format!("client {c} write {n}: notes on cell biology");
                            let body = json!({"documents": [{"id": id, "text": text}]}).to_string();
                            let response = ureq::post(url).set("Content-Type", "application/json").send_string(&body);
                            match response {
                                Ok(r) if r.status() == 200 => acked.push((id, n)),
                                Ok(r) => panic!("round {round}: client {c}: status {}", r.status()),
                                // Flushes behind (slow disk): refused, so not written; try again.
                                Err(ureq::Error::Status(503, _)) => {
                                    std::thread::sleep(Duration::from_millis(20));
                                    continue;
                                }
                                Err(ureq::Error::Status(code, r)) => {
                                    panic!("round {round}: client {c}: {code} {}", r.into_string().unwrap_or_default())
                                }
                                // The server was killed: this write may or may not have landed.
                                Err(_) => return (n + 1, acked, Some((id, n))),
                            }
                            n += 1;
                        }
                        (n, acked, None)
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(200 + next(1200)));
            let pid = server.child.id();
            server.kill();
            eprintln!("round {round}: killed server {pid}");
            stop.store(true, Ordering::Relaxed);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let live = live_documents(&index);
        let version =
            |text: &str| -> u64 { text.split_whitespace().nth(3).unwrap().trim_end_matches(':').parse().unwrap() };
        for (c, (next_n, acked, in_flight)) in outcomes.into_iter().enumerate() {
            total += acked.len();
            acknowledged[c].extend(acked);
            // A write in flight when the server died may have landed: then it is durable too.
            if let Some((id, n)) = in_flight
                && live.get(&id).is_some_and(|text| version(text) == n)
            {
                acknowledged[c].insert(id, n);
                in_flight_landed += 1;
            }
            for (id, &n) in &acknowledged[c] {
                let text =
                    live.get(id).unwrap_or_else(|| panic!("round {round}: acknowledged {id} (write {n}) is lost"));
                assert_eq!(version(text), n, "round {round}: {id} holds {text:?}, acknowledged write {n}");
            }
            written[c] = next_n;
        }
        let expected: usize = 20 + acknowledged.iter().map(BTreeMap::len).sum::<usize>();
        assert_eq!(live.len(), expected, "round {round}: live documents");
    }
    eprintln!("20 kills, {total} acknowledged writes, {in_flight_landed} unacknowledged writes landed");
    assert!(total >= 100, "only {total} writes were acknowledged: too few for the test to mean much");
}

#[test]
fn a_merge_under_concurrent_searches_changes_no_result() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 60);
    // No background merges: segments pile up until the forced one.
    let server = Server::start(&index, &["--flush-docs", "10", "--merge-factor", "1000"]);
    let text = std::fs::read_to_string(common::shared("datasets/scifact/corpus.jsonl")).unwrap();
    for (batch, lines) in text.lines().skip(60).take(60).collect::<Vec<_>>().chunks(10).enumerate() {
        let documents: Vec<Value> = lines
            .iter()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                json!({"id": v["_id"], "text": v["text"], "metadata": {"batch": batch}})
            })
            .collect();
        assert_eq!(post(&server, "/documents", &json!({ "documents": documents })).0, 200);
    }
    // Deletes too, so that the merge drops documents.
    for id in
        text.lines().take(5).map(|l| serde_json::from_str::<Value>(l).unwrap()["_id"].as_str().unwrap().to_string())
    {
        assert_eq!(call(ureq::delete(&server.url(&format!("/documents/{id}"))), None).0, 200);
    }
    let settled = Instant::now();
    while stats(&server)["segments"].as_array().unwrap().iter().any(|s| s["in_memory"] == true) {
        assert!(settled.elapsed() < Duration::from_secs(60), "the flushes did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stats(&server)["segments"].as_array().unwrap().len() >= 6);
    let queries = ["protein folding", "immune response to vaccines", "cancer cells", "brain development", "obesity"];
    let results = |profile: &str| -> Vec<Value> {
        queries
            .iter()
            .map(|q| {
                let (status, body) = post(&server, "/search", &json!({"query": q, "k": 10, "profile": profile}));
                assert_eq!(status, 200);
                body["hits"].clone()
            })
            .collect()
    };
    let (exact, balanced) = (results("exact"), results("balanced"));
    let stop = AtomicBool::new(false);
    let seen_balanced = std::sync::Mutex::new(Vec::new());
    let checked = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (server, stop, exact, balanced, seen, checked) =
                (&server, &stop, &exact, &balanced, &seen_balanced, &checked);
            scope.spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) || i < t + 8 {
                    let q = i % queries.len();
                    let profile = if i % 2 == 0 { "exact" } else { "balanced" };
                    let (status, body) =
                        post(server, "/search", &json!({"query": queries[q], "k": 10, "profile": profile}));
                    assert_eq!(status, 200, "{body}");
                    if profile == "exact" {
                        assert_eq!(body["hits"], exact[q], "exact results changed during the merge");
                    } else if body["hits"] != balanced[q] {
                        seen.lock().unwrap().push((q, body["hits"].clone()));
                    }
                    checked.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(100));
        let (status, after, _) = call(ureq::post(&server.url("/admin/compact")), Some("{}"));
        assert_eq!(status, 200, "{after}");
        assert_eq!(after["segments"].as_array().unwrap().len(), 1, "{after}");
        assert_eq!(after["deleted"], 0);
        stop.store(true, Ordering::Relaxed);
    });
    // Balanced results that differ from before the merge are those of the merged segment
    // (its coarse i8 rungs are quantised with new scales), never a mixture.
    let after_merge = results("balanced");
    for (q, hits) in seen_balanced.into_inner().unwrap() {
        assert_eq!(hits, after_merge[q], "query {q}: a result that is neither before nor after the merge");
    }
    assert_eq!(results("exact"), exact);
    assert!(checked.into_inner() >= 32);
    assert_eq!(get(&server, "/ready").1["documents"], 115);
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// A 15.5 MB document: only its first tokens are embedded, so it is cut before tokenizing; it
/// is stored whole, costs a fraction of a second and little memory, and a small write beside
/// it does not wait for it.
#[test]
fn a_huge_document_is_cheap_and_keeps_no_one_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 10);
    let server = Server::start(&index, &[]);
    assert_eq!(post(&server, "/documents", &json!({"documents": [{"id": "warm", "text": "Warm up."}]})).0, 200);
    let before = peak_rss(server.child.id());
    let text = "Calcium channels regulate the release of neurotransmitters at the synapse. ".repeat(205_000);
    assert!(text.len() > 15_000_000 && text.len() < 16_000_000);
    let body = json!({"documents": [{"id": "huge", "text": text}]});
    let (big, small) = std::thread::scope(|scope| {
        let big = scope.spawn(|| {
            let t = Instant::now();
            let (status, report) = post(&server, "/documents", &body);
            (status, report, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        let small = post(&server, "/documents", &json!({"documents": [{"id": "small", "text": "A small note."}]}));
        (big.join().unwrap(), (small.0, t.elapsed()))
    });
    let growth = peak_rss(server.child.id()).saturating_sub(before);
    eprintln!("15.5 MB document: {:?}; small write beside it: {:?}; peak RSS +{} MB", big.2, small.1, growth >> 20);
    assert_eq!((big.0, small.0), (200, 200), "{}", big.1);
    assert!(big.2 < Duration::from_secs(5), "the huge document took {:?}", big.2);
    assert!(small.1 < Duration::from_secs(3), "the small write waited {:?}", small.1);
    assert!(growth < 400 << 20, "peak RSS grew by {} MB", growth >> 20);
    let (status, got) = get(&server, "/documents/huge");
    assert_eq!((status, got["text"].as_str().map(str::len)), (200, Some(text.len())), "stored whole");
    let (_, found) = post(&server, "/search", &json!({"query": "calcium channels and neurotransmitters", "k": 1}));
    assert_eq!(found["hits"][0]["id"], "huge");
}
