//! Adds, updates, deletes, compaction, reopening, the writer lock and bad input.
#![allow(clippy::unwrap_used)]

mod common;

use barista_index::{Error, Index, IndexConfig, IndexWriter, NewDocument};
use common::{config, create, doc};

fn cfg() -> IndexConfig {
    config(&[(1, 8), (2, 16), (3, 32)], &[1], 0)
}

/// A new index of [`cfg`] in a temporary directory (kept alive by the first value).
fn fresh() -> (tempfile::TempDir, Index, IndexConfig) {
    let dir = tempfile::tempdir().unwrap();
    let index = create(dir.path(), cfg());
    (dir, index, cfg())
}

/// Adds documents `{prefix}{i}` for every `i` in `range`, at `version`.
fn add_many(w: &mut IndexWriter, c: &IndexConfig, prefix: &str, range: std::ops::Range<usize>, version: u64) {
    for i in range {
        w.add(doc(c, &format!("{prefix}{i}"), version)).unwrap();
    }
}

fn ids(index: &Index) -> Vec<String> {
    let s = index.snapshot();
    let mut ids: Vec<String> = s.live_addresses().map(|a| s.doc(a).unwrap().id.to_string()).collect();
    ids.sort();
    ids
}

#[test]
fn add_update_delete_compact_and_reopen() {
    let (dir, index, c) = fresh();
    let mut w = index.writer().unwrap();
    add_many(&mut w, &c, "d", 0..50, 0);
    assert!(index.snapshot().is_empty(), "nothing is visible before the commit");
    let info = w.commit().unwrap();
    assert_eq!((info.added, info.live, info.segments, info.generation), (50, 50, 1, 1));

    // Update 10, delete 5 (one of them just added), add 20 new.
    add_many(&mut w, &c, "d", 0..10, 1);
    for i in 40..45 {
        assert!(w.delete(&format!("d{i}")).unwrap());
    }
    assert!(!w.delete("never-existed").unwrap());
    add_many(&mut w, &c, "d", 50..70, 0);
    w.add(doc(&c, "short-lived", 0)).unwrap();
    assert!(w.delete("short-lived").unwrap());
    let info = w.commit().unwrap();
    assert_eq!((info.added, info.deleted, info.live), (30, 15, 65));
    assert_eq!(info.segments, 2);

    let check = |index: &Index| {
        let s = index.snapshot();
        assert_eq!(s.len(), 65);
        for i in 0..70 {
            let id = format!("d{i}");
            let found = s.lookup(&id).unwrap();
            if (40..45).contains(&i) {
                assert!(found.is_none(), "{id} was deleted");
                continue;
            }
            let address = found.unwrap_or_else(|| panic!("{id} is missing"));
            let stored = s.doc(address).unwrap();
            let version = if i < 10 { 1 } else { 0 };
            assert_eq!(stored.text, Some(format!("text of {id} v{version}").as_str()));
            let want = doc(&c, &id, version);
            // f32 rung: exact; f16 rung: rounded.
            assert_eq!(s.block(address.segment, 0).unwrap().row_f32(address.doc as usize), want.vectors[0]);
            let f16_row = s.block(address.segment, 1).unwrap().row_f32(address.doc as usize);
            assert!(f16_row.iter().zip(&want.vectors[1]).all(|(a, b)| (a - b).abs() < 1e-3));
        }
        assert!(s.lookup("short-lived").unwrap().is_none());
    };
    check(&index);
    drop(w);
    // Reopen: identical content and identical search results.
    let before = {
        let s = index.snapshot();
        let q = doc(&c, "query", 9).vectors;
        (s.graph_search(&q[0], 10, 64).unwrap(), s.exact_search(2, &q[2], 10).unwrap())
    };
    let reopened = Index::open(dir.path()).unwrap();
    check(&reopened);
    let after = {
        let s = reopened.snapshot();
        let q = doc(&c, "query", 9).vectors;
        (s.graph_search(&q[0], 10, 64).unwrap(), s.exact_search(2, &q[2], 10).unwrap())
    };
    assert_eq!(before, after);

    // Compaction merges everything and drops the deleted documents.
    let mut w = reopened.writer().unwrap();
    let info = w.compact().unwrap();
    assert_eq!((info.segments, info.live), (1, 65));
    check(&reopened);
    assert_eq!(reopened.snapshot().manifest().segments[0].deleted, 0);
    drop(w);
    check(&Index::open(dir.path()).unwrap());
    // Only the files the manifest names remain (plus MANIFEST and LOCK).
    let manifest = reopened.snapshot().manifest().clone();
    let mut on_disk: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    on_disk.sort();
    let mut expected: Vec<String> =
        manifest.files().map(|f| f.name.clone()).chain(["LOCK".into(), "MANIFEST".into()]).collect();
    expected.sort();
    assert_eq!(on_disk, expected);
}

#[test]
fn deleting_everything_in_a_segment_drops_it() {
    let (_dir, index, c) = fresh();
    let mut w = index.writer().unwrap();
    w.add(doc(&c, "a", 0)).unwrap();
    w.commit().unwrap();
    w.add(doc(&c, "b", 0)).unwrap();
    w.commit().unwrap();
    assert!(w.delete("a").unwrap());
    let info = w.commit().unwrap();
    assert_eq!((info.segments, info.live), (1, 1));
    assert_eq!(ids(&index), vec!["b"]);
}

#[test]
fn deleted_documents_are_filtered_from_the_graph() {
    let (_dir, index, c) = fresh();
    let mut w = index.writer().unwrap();
    add_many(&mut w, &c, "d", 0..300, 0);
    w.commit().unwrap();
    let q = doc(&c, "d7", 0).vectors;
    let s = index.snapshot();
    let top = s.graph_search(&q[0], 5, 64).unwrap();
    assert_eq!(s.doc(top[0].address).unwrap().id, "d7", "a document is its own nearest neighbour");
    for hit in &top {
        w.delete(s.doc(hit.address).unwrap().id).unwrap();
    }
    w.commit().unwrap();
    let s = index.snapshot();
    let after = s.graph_search(&q[0], 5, 64).unwrap();
    assert_eq!(after.len(), 5);
    for hit in &after {
        assert!(!s.is_deleted(hit.address));
        assert!(!top.iter().any(|t| s.doc(t.address).is_ok() && t.address == hit.address && s.is_deleted(t.address)));
    }
    let exact = s.exact_search(0, &q[0], 5).unwrap();
    assert!(exact.iter().all(|h| !s.is_deleted(h.address)));
}

#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    let (_dir, index, c) = fresh();
    let mut w = index.writer().unwrap();
    w.add(doc(&c, "ok", 0)).unwrap();
    w.commit().unwrap();
    let mut wrong_len = doc(&c, "x", 0);
    wrong_len.vectors[1].pop();
    let mut nan = doc(&c, "y", 0);
    nan.vectors[2][3] = f32::NAN;
    let mut missing = doc(&c, "z", 0);
    missing.vectors.pop();
    let empty_id = NewDocument { id: String::new(), ..doc(&c, "e", 0) };
    for bad in [wrong_len, nan, missing, empty_id] {
        let err = w.add(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    }
    assert_eq!(w.pending(), 0);
    assert!(!w.has_changes());
    let s = index.snapshot();
    assert!(s.graph_search(&[0.0; 3], 5, 10).is_err(), "wrong query length");
    assert!(s.exact_search(7, &[0.0; 8], 5).is_err(), "unknown rung");
    assert!(s.exact_search(0, &[f32::NAN; 8], 5).is_err(), "NaN query");
    assert_eq!(ids(&index), vec!["ok"]);
}

#[test]
fn one_writer_at_a_time_and_readers_see_commits() {
    let (dir, index, c) = fresh();
    let mut w = index.writer().unwrap();
    let other = Index::open(dir.path()).unwrap();
    assert!(matches!(other.writer(), Err(Error::Locked { .. })));
    w.add(doc(&c, "a", 0)).unwrap();
    w.commit().unwrap();
    assert!(other.snapshot().is_empty());
    assert!(other.reload().unwrap());
    assert_eq!(ids(&other), vec!["a"]);
    assert!(!other.reload().unwrap());
    drop(w);
    assert!(other.writer().is_ok(), "the lock is released with the writer");
}

#[test]
fn creating_where_something_exists_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), cfg());
    assert!(Index::create(dir.path(), cfg()).unwrap_err().to_string().contains("already exists"));
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("notes.txt"), "mine").unwrap();
    assert!(Index::create(other.path(), cfg()).unwrap_err().to_string().contains("not empty"));
    let empty = tempfile::tempdir().unwrap();
    assert!(Index::open(empty.path()).unwrap_err().to_string().contains("no index here"));
    let mut bad = cfg();
    bad.rungs.swap(0, 2);
    assert!(Index::create(&empty.path().join("x"), bad).is_err());
}

#[test]
fn a_failed_commit_changes_nothing_and_can_be_retried() {
    let (dir, index, c) = fresh();
    let mut w = index.writer().unwrap();
    w.add(doc(&c, "a", 0)).unwrap();
    w.commit().unwrap();
    w.add(doc(&c, "b", 0)).unwrap();
    w.delete("a").unwrap();
    // Something occupies a name the commit needs: the commit fails after writing some files.
    std::fs::write(dir.path().join("seg-000002.ids"), "in the way").unwrap();
    assert!(w.commit().is_err());
    assert_eq!(ids(&index), vec!["a"], "nothing changed");
    assert_eq!(Index::open(dir.path()).unwrap().snapshot().manifest().generation, 1);
    assert!(!dir.path().join("seg-000002.vec").exists(), "the partial segment was removed");
    assert_eq!(w.pending(), 1, "the buffered changes are kept");
    let info = w.commit().unwrap();
    assert_eq!((info.added, info.deleted, info.generation), (1, 1, 2));
    assert_eq!(ids(&index), vec!["b"]);
}

#[test]
fn values_the_storage_cannot_hold_are_rejected() {
    let (_dir, index, c) = fresh();
    let mut w = index.writer().unwrap();
    let mut big_f16 = doc(&c, "x", 0);
    big_f16.vectors[1][0] = 70_000.0; // rung 1 is stored in f16 (max 65504)
    assert!(w.add(big_f16).unwrap_err().to_string().contains("cannot represent"));
    let mut huge_norm = doc(&c, "y", 0);
    huge_norm.vectors[0] = vec![1e30; 8]; // the graph rung: its squared norm overflows
    assert!(w.add(huge_norm).unwrap_err().to_string().contains("too large for the graph"));
    assert_eq!(w.pending(), 0);
}

#[test]
fn huge_k_and_ef_are_clamped() {
    let (_dir, index, c) = fresh();
    let mut w = index.writer().unwrap();
    add_many(&mut w, &c, "d", 0..30, 0);
    w.commit().unwrap();
    let s = index.snapshot();
    let q = doc(&c, "q", 1).vectors;
    assert_eq!(s.graph_search(&q[0], usize::MAX / 2, usize::MAX / 2).unwrap().len(), 30);
    assert_eq!(s.exact_search(0, &q[0], usize::MAX / 2).unwrap().len(), 30);
}

#[test]
fn reloads_racing_commits_never_go_back_in_time() {
    let (_dir, index, c) = fresh();
    let mut w = index.writer().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                index.reload().unwrap();
            }
        });
        for i in 0..40 {
            w.add(doc(&c, &format!("d{i}"), 0)).unwrap();
            if i % 3 == 0 && i > 0 {
                w.delete(&format!("d{}", i - 1)).unwrap();
            }
            let info = w.commit().unwrap();
            assert!(index.snapshot().manifest().generation >= info.generation);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let s = index.snapshot();
    assert_eq!(s.manifest().generation, 40);
    let expected = (0..40).filter(|i| !(*i % 3 == 2 && *i < 39)).count() as u64;
    assert_eq!(s.len(), expected);
}

#[test]
fn a_lazy_snapshot_outlived_by_compaction_says_so() {
    let (dir, index, c) = fresh();
    let mut w = index.writer().unwrap();
    for round in 0..2 {
        for i in 0..10 {
            w.add(doc(&c, &format!("r{round}-{i}"), 0)).unwrap();
        }
        w.commit().unwrap();
    }
    drop(w);
    let lazy =
        Index::open_with(dir.path(), barista_index::OpenOptions { lazy_graphs: true, ..Default::default() }).unwrap();
    let stale = lazy.snapshot();
    index.writer().unwrap().compact().unwrap();
    let q = doc(&c, "q", 1).vectors;
    let err = stale.graph_search(&q[0], 5, 20).unwrap_err().to_string();
    assert!(err.contains("replaced by a later commit"), "{err}");
    assert!(lazy.reload().unwrap());
    assert_eq!(lazy.snapshot().graph_search(&q[0], 5, 20).unwrap().len(), 5);
    // Exact search on the stale snapshot still works: its vector files stay mapped.
    assert_eq!(stale.exact_search(0, &q[0], 5).unwrap().len(), 5);
}

#[test]
fn quantised_rungs_survive_commits_graphs_and_compaction() {
    let c = common::config_with(&[(1, 8), (2, 16), (3, 32)], &[], &[0, 1], 1);
    let dir = tempfile::tempdir().unwrap();
    let index = create(dir.path(), c.clone());
    let mut w = index.writer().unwrap();
    for round in 0..2 {
        for i in 0..100 {
            w.add(doc(&c, &format!("r{round}-{i}"), 0)).unwrap();
        }
        w.commit().unwrap();
    }
    w.delete("r0-3").unwrap();
    w.compact().unwrap();
    let s = index.snapshot();
    assert_eq!((s.len(), s.segment_count()), (199, 1));
    for id in ["r0-7", "r1-99"] {
        let a = s.lookup(id).unwrap().unwrap();
        let want = doc(&c, id, 0).vectors;
        // Within a quantisation step (the range here is about ±0.5, so a step is ~0.004).
        let got = s.block(a.segment, 1).unwrap().row_f32(a.doc as usize);
        assert!(got.iter().zip(&want[1]).all(|(g, w)| (g - w).abs() < 0.01), "{got:?} vs {:?}", want[1]);
        // Its own graph-rung vector finds it first.
        let hits = s.graph_search(&want[1], 1, 32).unwrap();
        assert_eq!(s.doc(hits[0].address).unwrap().id, id);
    }
    drop(w);
    Index::open_with(dir.path(), barista_index::OpenOptions { verify: true, ..Default::default() }).unwrap();
}
