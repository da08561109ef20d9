//! Crash safety: a real writer process is killed (SIGKILL) at random moments, many times; every
//! reopen must find exactly the state of a committed generation — at least the last one the
//! writer acknowledged — with every file intact.
#![allow(clippy::unwrap_used)]

mod common;

use barista_index::{Index, IndexConfig, OpenOptions};
use common::{config, doc};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "BARISTA_CRASH_WRITER_DIR";
const DOCS_PER_GENERATION: usize = 150;

fn cfg() -> IndexConfig {
    config(&[(1, 8), (2, 16), (4, 48)], &[2], 1)
}

/// What generation `g` does, given the live documents (id → version) before it.
fn apply(g: u64, live: &mut BTreeMap<String, u64>) -> Step {
    if g.is_multiple_of(4) {
        return Step::Compact;
    }
    let mut adds = Vec::new();
    let mut deletes = Vec::new();
    for i in 0..DOCS_PER_GENERATION {
        adds.push((format!("g{g}-{i}"), g));
    }
    if g.is_multiple_of(3) {
        // Update a few documents of the previous generation and delete some others.
        for i in 0..10 {
            adds.push((format!("g{}-{i}", g - 1), g));
        }
        for i in (10..40).step_by(3) {
            deletes.push(format!("g{}-{i}", g - 1));
        }
    }
    for (id, version) in &adds {
        live.insert(id.clone(), *version);
    }
    for id in &deletes {
        live.remove(id);
    }
    Step::Write { adds, deletes }
}

enum Step {
    Compact,
    Write { adds: Vec<(String, u64)>, deletes: Vec<String> },
}

fn model(generation: u64) -> BTreeMap<String, u64> {
    let mut live = BTreeMap::new();
    for g in 1..=generation {
        apply(g, &mut live);
    }
    live
}

/// The writer process: continues the schedule from the committed generation, forever.
fn child(dir: &Path) {
    let c = cfg();
    let index = Index::open(dir).unwrap();
    let mut writer = index.writer().unwrap();
    println!("ready");
    loop {
        let g = index.snapshot().manifest().generation + 1;
        let mut scratch = model(g - 1);
        match apply(g, &mut scratch) {
            Step::Compact => {
                writer.compact().unwrap();
                if index.snapshot().manifest().generation < g {
                    // Nothing to merge: make the generation advance anyway.
                    writer.set_setting("tick", &g.to_string());
                    writer.commit().unwrap();
                }
            }
            Step::Write { adds, deletes } => {
                for (id, version) in adds {
                    writer.add(doc(&c, &id, version)).unwrap();
                }
                for id in deletes {
                    writer.delete(&id).unwrap();
                }
                writer.commit().unwrap();
            }
        }
        let committed = index.snapshot().manifest().generation;
        assert_eq!(committed, g);
        println!("committed {committed}");
    }
}

fn check(dir: &Path, acknowledged: u64) -> u64 {
    let index = Index::open_with(dir, OpenOptions { verify: true, ..Default::default() })
        .unwrap_or_else(|e| panic!("reopen failed: {e}"));
    let s = index.snapshot();
    let generation = s.manifest().generation;
    assert!(generation >= acknowledged, "generation {generation} lost the acknowledged {acknowledged}");
    assert!(generation <= acknowledged + 1, "generation {generation} is ahead of what was being written");
    let want = model(generation);
    let mut got = BTreeMap::new();
    let c = cfg();
    for address in s.live_addresses() {
        let d = s.doc(address).unwrap();
        let version: u64 = d.text.unwrap().rsplit('v').next().unwrap().parse().unwrap();
        let expected = doc(&c, d.id, version);
        assert_eq!(s.block(address.segment, 0).unwrap().row_f32(address.doc as usize), expected.vectors[0], "{}", d.id);
        assert!(got.insert(d.id.to_string(), version).is_none(), "{} is live twice", d.id);
    }
    assert_eq!(got, want, "generation {generation}");
    generation
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
    let mut kills_mid_commit = 0;
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
            if let Some(g) = line.strip_prefix("committed ") {
                acknowledged = acknowledged.max(g.parse().unwrap());
            }
        }
        let generation = check(dir.path(), acknowledged);
        if generation > acknowledged {
            // Killed after the manifest rename but before the acknowledgement: still consistent.
            kills_mid_commit += 1;
        }
        acknowledged = generation;
    }
    eprintln!(
        "40 kills, {acknowledged} generations committed, {kills_mid_commit} kills between commit and acknowledgement"
    );
    assert!(
        acknowledged >= 10,
        "the writer made too little progress ({acknowledged} generations) for the test to mean much"
    );
    // Leftovers of killed commits are cleaned up by the next writer.
    let index = Index::open(dir.path()).unwrap();
    drop(index.writer().unwrap());
    let manifest = index.snapshot().manifest().clone();
    let referenced: std::collections::HashSet<String> = manifest.files().map(|f| f.name.clone()).collect();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(referenced.contains(&name) || name == "MANIFEST" || name == "LOCK", "leftover {name}");
    }
}
