//! Crash safety: a real writer process, streaming logged writes while background flushes,
//! merges and compactions run, is killed (SIGKILL) at random moments, many times; every reopen
//! must find exactly the state after some request — at least the last one the writer
//! acknowledged — with every file intact and no id live twice.
#![allow(clippy::unwrap_used)]

mod common;

use barista_index::{Index, IndexConfig, MergePolicy, Op, OpenOptions, WriterOptions};
use common::{config, doc, vectors};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "BARISTA_CRASH_WRITER_DIR";
const DOCS_PER_REQUEST: usize = 6;

fn cfg() -> IndexConfig {
    config(&[(1, 8), (2, 16), (4, 48)], &[2], 1)
}

/// The operations of request `r` (1, 2, …): `(id, Some(version))` upserts, `(id, None)` deletes.
/// Every request also upserts `progress` at version `r`, which tells how far the log got.
fn request(r: u64) -> Vec<(String, Option<u64>)> {
    let mut ops: Vec<(String, Option<u64>)> = (0..DOCS_PER_REQUEST).map(|i| (format!("r{r}-{i}"), Some(r))).collect();
    if r.is_multiple_of(3) && r > 2 {
        // Update two documents of the previous request and delete two of the one before.
        ops.extend((0..2).map(|i| (format!("r{}-{i}", r - 1), Some(r))));
        ops.extend((3..5).map(|i| (format!("r{}-{i}", r - 2), None)));
    }
    ops.push(("progress".into(), Some(r)));
    ops
}

/// The live documents (id → version) after requests `1..=r`.
fn model(r: u64) -> BTreeMap<String, u64> {
    let mut live = BTreeMap::new();
    for q in 1..=r {
        for (id, version) in request(q) {
            match version {
                Some(v) => live.insert(id, v),
                None => live.remove(&id),
            };
        }
    }
    live
}

/// The writer process: continues the schedule after the last request the index holds, forever,
/// with small mutable segments so that background flushes and merges run all the time, and a
/// full compaction now and then.
fn child(dir: &Path) {
    let c = cfg();
    let index = Index::open(dir).unwrap();
    let options = WriterOptions {
        flush_docs: 40,
        merge: MergePolicy { factor: 3, floor_docs: 40, ..MergePolicy::default() },
        ..WriterOptions::default()
    };
    let writer = index.writer_with(options).unwrap();
    let done = progress(&index.snapshot());
    println!("ready");
    for r in done + 1.. {
        let ops = request(r)
            .into_iter()
            .map(|(id, version)| match version {
                Some(v) => Op::Upsert(doc(&c, &id, v)),
                None => Op::delete(id).unwrap(),
            })
            .collect();
        writer.write(ops).unwrap();
        println!("ack {r}");
        if r.is_multiple_of(45) {
            writer.compact().unwrap();
        }
    }
}

/// The last request the snapshot holds.
fn progress(s: &barista_index::Snapshot) -> u64 {
    s.lookup("progress")
        .unwrap()
        .map_or(0, |a| s.doc(a).unwrap().text.unwrap().rsplit('v').next().unwrap().parse().unwrap())
}

/// Reopens (verifying every file) and checks the state is exactly that after some request at or
/// after the last acknowledged one; returns that request.
fn check(dir: &Path, acknowledged: u64) -> u64 {
    let index = Index::open_with(dir, OpenOptions { verify: true, ..Default::default() })
        .unwrap_or_else(|e| panic!("reopen failed: {e}"));
    let damaged = index.snapshot().damaged_graphs();
    assert!(damaged.is_empty(), "a crash left damaged graphs: {damaged:?}");
    let s = index.snapshot();
    let reached = progress(&s);
    assert!(reached >= acknowledged, "request {acknowledged} was acknowledged but the index holds {reached}");
    assert!(reached <= acknowledged + 1, "request {reached} is ahead of what was being written");
    let want = model(reached);
    let mut got = BTreeMap::new();
    let c = cfg();
    for address in s.live_addresses() {
        let d = s.doc(address).unwrap();
        let version: u64 = d.text.unwrap().rsplit('v').next().unwrap().parse().unwrap();
        let expected = vectors(&c, d.id, version);
        assert_eq!(s.block(address.segment, 0).unwrap().row_f32(address.doc as usize), expected[0], "{}", d.id);
        assert!(got.insert(d.id.to_string(), version).is_none(), "{} is live twice", d.id);
    }
    assert_eq!(got, want, "after request {reached}");
    reached
}

#[test]
fn killed_writers_leave_a_committed_state() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    Index::create(dir.path(), cfg()).unwrap();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = seed | 1;
    let mut next = move |max: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % max
    };
    eprintln!("crash test seed {seed}");
    let mut acknowledged = 0;
    let mut kills_mid_write = 0;
    for round in 0..40 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "killed_writers_leave_a_committed_state", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the writer to be ready, then let it run for a random while.
        let started = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.ends_with("ready") => break,
                Ok(_) => {}
                Err(e) => panic!("round {round}: the writer did not start: {e}"),
            }
            assert!(started.elapsed() < Duration::from_secs(60));
        }
        std::thread::sleep(Duration::from_millis(5 + next(400)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        for line in rx.try_iter() {
            if let Some(r) = line.strip_prefix("ack ") {
                acknowledged = acknowledged.max(r.parse().unwrap());
            }
        }
        let reached = check(dir.path(), acknowledged);
        if reached > acknowledged {
            // Killed after the log sync but before the acknowledgement: still consistent.
            kills_mid_write += 1;
        }
        acknowledged = reached;
    }
    eprintln!("40 kills, {acknowledged} requests written, {kills_mid_write} kills between sync and acknowledgement");
    assert!(
        acknowledged >= 80,
        "the writer made too little progress ({acknowledged} requests) for the test to mean much"
    );
    // Leftovers of killed commits are cleaned up by the next writer; once it has flushed what
    // it replayed, one (empty) log file is left.
    let index = Index::open(dir.path()).unwrap();
    let writer = index.writer().unwrap();
    writer.flush().unwrap();
    drop(writer);
    let manifest = index.snapshot().manifest().clone();
    let referenced: std::collections::HashSet<String> = manifest.files().map(|f| f.name.clone()).collect();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let ours = referenced.contains(&name) || name == "MANIFEST" || name == "LOCK" || name.starts_with("wal-");
        assert!(ours, "leftover {name}");
    }
    let logs = barista_index::wal::list(dir.path()).unwrap();
    assert_eq!(logs.len(), 1, "spent log files are removed: {logs:?}");
    assert_eq!(std::fs::metadata(&logs[0].1).unwrap().len(), barista_index::wal::HEADER);
}
