//! Live writes (log + mutable segment), bulk segments, flushes, merges, compaction, reopening,
//! the writer lock and bad input.
#![allow(clippy::unwrap_used)]

mod common;

use barista_index::manifest::SegmentRecord;
use barista_index::{Error, Index, IndexConfig, MergePolicy, NewDocument, Op, WriterOptions};
use common::{bulk, config, create, delete, doc, docs, live_ids, manual_writer, open_verified, upsert, vectors};
use std::path::Path;

fn cfg() -> IndexConfig {
    config(&[(1, 8), (2, 16), (3, 32)], &[1], 0)
}

/// A new index of [`cfg`] in a temporary directory (kept alive by the first value).
fn fresh() -> (tempfile::TempDir, Index, IndexConfig) {
    let dir = tempfile::tempdir().unwrap();
    let index = create(dir.path(), cfg());
    (dir, index, cfg())
}

/// Checks that every id in `0..70` of prefix `d` holds what `add_update_delete…` left.
fn check_content(index: &Index, c: &IndexConfig) {
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
        let want = vectors(c, &id, version);
        // f32 rung: exact; f16 rung: rounded.
        assert_eq!(s.block(address.segment, 0).unwrap().row_f32(address.doc as usize), want[0]);
        let f16_row = s.block(address.segment, 1).unwrap().row_f32(address.doc as usize);
        assert!(f16_row.iter().zip(&want[1]).all(|(a, b)| (a - b).abs() < 1e-3));
    }
    assert!(s.lookup("short-lived").unwrap().is_none());
}

#[test]
fn add_update_delete_flush_compact_and_reopen() {
    let (dir, index, c) = fresh();
    let w = manual_writer(&index);
    let info = bulk(&w, docs(&c, "d", 0..50, 0));
    assert_eq!((info.added, info.live, info.segments, info.generation), (50, 50, 1, 1));

    // Live writes: update 10, delete 5, add 20 new, add and delete one; each visible at once.
    upsert(&w, docs(&c, "d", 0..10, 1));
    assert_eq!(index.snapshot().len(), 50, "replacements do not change the count");
    assert_eq!(delete(&w, &["d40", "d41", "d42", "d43", "d44", "never-existed"]), 5);
    upsert(&w, docs(&c, "d", 50..70, 0));
    upsert(&w, vec![doc(&c, "short-lived", 0)]);
    assert_eq!(delete(&w, &["short-lived"]), 1);
    check_content(&index, &c);
    assert_eq!(index.snapshot().manifest().generation, 1, "live writes are in the log, not in a commit");

    // A reader opened now replays the log: it sees the same.
    check_content(&Index::open(dir.path()).unwrap(), &c);

    // Flush: the mutable segment becomes a segment, the log is covered.
    w.flush().unwrap();
    let s = index.snapshot();
    assert_eq!(s.manifest().segments.len(), 2);
    assert!(s.segments().iter().all(|seg| !seg.in_memory));
    assert_eq!(s.manifest().log_applied, 38);
    check_content(&index, &c);
    let q = vectors(&c, "query", 9);
    let before = (s.graph_search(&q[0], 10, 64).unwrap(), s.exact_search(2, &q[2], 10).unwrap());
    drop(w);
    let reopened = Index::open(dir.path()).unwrap();
    check_content(&reopened, &c);
    let s = reopened.snapshot();
    assert_eq!((s.graph_search(&q[0], 10, 64).unwrap(), s.exact_search(2, &q[2], 10).unwrap()), before);

    // Compaction merges everything and drops the deleted documents.
    let w = manual_writer(&reopened);
    let info = w.compact().unwrap();
    assert_eq!((info.segments, info.live), (1, 65));
    check_content(&reopened, &c);
    assert_eq!(reopened.snapshot().manifest().segments[0].deleted, 0);
    drop(w);
    check_content(&Index::open(dir.path()).unwrap(), &c);
    // Only the files the manifest names remain (plus MANIFEST, LOCK and the writer's log file).
    let manifest = reopened.snapshot().manifest().clone();
    let mut on_disk: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("wal-"))
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> =
        manifest.files().map(|f| f.name.clone()).chain(["LOCK".into(), "MANIFEST".into()]).collect();
    expected.sort();
    assert_eq!(on_disk, expected);
}

/// Past the merge policy's `max_docs`, compaction merges into segments of at most that size
/// (its memory stays bounded however large the index) and still drops every deletion.
#[test]
fn compaction_keeps_segments_under_the_size_cap() {
    let (_dir, index, c) = fresh();
    let options = WriterOptions {
        background: false,
        merge: MergePolicy { max_docs: 50, ..MergePolicy::default() },
        ..WriterOptions::default()
    };
    let w = index.writer_with(options).unwrap();
    for part in 0..4 {
        bulk(&w, docs(&c, "d", part * 20..(part + 1) * 20, 0));
    }
    assert_eq!(delete(&w, &["d5", "d6", "d7"]), 3);
    let info = w.compact().unwrap();
    let s = index.snapshot();
    let mut sizes: Vec<u32> = s.manifest().segments.iter().map(|seg| seg.docs).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![37, 40], "four segments of 20 under a cap of 50");
    assert_eq!((info.segments, info.live), (2, 77));
    assert!(s.manifest().segments.iter().all(|seg| seg.deleted == 0));
    let want: Vec<String> = (0..80).filter(|i| !(5..8).contains(i)).map(|i| format!("d{i}")).collect();
    let mut want = want;
    want.sort();
    assert_eq!(live_ids(&index), want);
    assert_eq!(w.compact().unwrap().segments, 2, "a second compaction has nothing left to do");
}

#[test]
fn acknowledged_writes_survive_without_a_flush() {
    let (dir, index, c) = fresh();
    {
        let w = manual_writer(&index);
        upsert(&w, docs(&c, "a", 0..30, 0));
        delete(&w, &["a3"]);
        upsert(&w, vec![doc(&c, "a4", 2)]);
        // Dropped without a flush, as a crash would.
    }
    let reopened = Index::open(dir.path()).unwrap();
    let s = reopened.snapshot();
    assert_eq!(s.len(), 29);
    assert_eq!(reopened.log_summary().replayed, 32);
    assert_eq!(s.doc(s.lookup("a4").unwrap().unwrap()).unwrap().text, Some("text of a4 v2"));
    // The writer replays too, then flushes what it replayed.
    let w = manual_writer(&reopened);
    assert_eq!(w.stats().flushes_waiting, 1);
    w.flush().unwrap();
    assert_eq!(live_ids(&reopened).len(), 29);
    assert_eq!(reopened.snapshot().manifest().log_applied, 32);
    drop(w);
    let logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with("wal-"))
        .collect();
    assert_eq!(logs.len(), 1, "covered log files are removed: {logs:?}");
}

#[test]
fn a_torn_log_tail_is_cut_and_reported_and_other_damage_refused() {
    let (dir, index, c) = fresh();
    let log = {
        let w = manual_writer(&index);
        upsert(&w, docs(&c, "a", 0..3, 0));
        upsert(&w, docs(&c, "b", 0..3, 0));
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("wal-"))
            .unwrap()
    };
    // A crash in the middle of the second record.
    let whole = std::fs::read(&log).unwrap();
    std::fs::write(&log, &whole[..whole.len() - 10]).unwrap();
    let reader = Index::open(dir.path()).unwrap();
    assert_eq!(live_ids(&reader), vec!["a0", "a1", "a2"]);
    assert!(reader.log_summary().cut.unwrap().contains("left out"), "a reader only leaves it out");
    assert_eq!(std::fs::metadata(&log).unwrap().len(), whole.len() as u64 - 10, "a reader changes nothing");
    let w = manual_writer(&reader);
    let cut = w.stats().recovery.cut.unwrap();
    assert!(cut.contains("cut ") && cut.contains("incomplete"), "{cut}");
    assert!(std::fs::metadata(&log).unwrap().len() < whole.len() as u64 - 10);
    upsert(&w, vec![doc(&c, "c0", 0)]);
    drop(w);
    assert_eq!(live_ids(&Index::open(dir.path()).unwrap()), vec!["a0", "a1", "a2", "c0"]);

    // A damaged record in an older log file (newer ones follow) is refused, never skipped.
    let pristine = std::fs::read(&log).unwrap();
    let mut bytes = pristine.clone();
    let middle = 32 + 40;
    bytes[middle] ^= 0x55;
    std::fs::write(&log, bytes).unwrap();
    let err = Index::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("is damaged") && err.contains("newer log files follow"), "{err}");
    std::fs::write(&log, &pristine).unwrap();
    Index::open(dir.path()).unwrap();
}

/// The newest log file: damage followed by whole records, or a record whose checksum holds but
/// whose content the index cannot take, is not a crash's torn tail: opening refuses and names
/// the file and the byte to cut at, instead of silently dropping acknowledged writes.
#[test]
fn damage_in_the_middle_of_the_newest_log_is_refused_not_cut() {
    let (dir, index, c) = fresh();
    {
        let w = manual_writer(&index);
        upsert(&w, docs(&c, "a", 0..3, 0));
        upsert(&w, docs(&c, "b", 0..3, 0));
    }
    let logs = barista_index::wal::list(dir.path()).unwrap();
    let (number, newest) = logs.last().unwrap().clone();
    let pristine = std::fs::read(&newest).unwrap();
    // A flipped byte in the first record; the second is whole.
    let mut bytes = pristine.clone();
    bytes[32 + 40] ^= 0x55;
    std::fs::write(&newest, &bytes).unwrap();
    for open in [Index::open(dir.path()).map(|_| ()), Index::open(dir.path()).and_then(|i| i.writer().map(|_| ()))] {
        let err = open.unwrap_err().to_string();
        assert!(err.contains("not the torn end of a crash") && err.contains("truncate -s 32"), "{err}");
    }
    assert_eq!(std::fs::read(&newest).unwrap(), bytes, "nothing was cut");
    // A record of another index's shape (its checksum holds) at the end.
    let mut other = c.clone();
    other.rungs.pop();
    let foreign = NewDocument::new(&other, "x".into(), None, None, vectors(&other, "x", 0)).unwrap();
    let mut record = Vec::new();
    barista_index::wal::encode_record(&mut record, 7, &[Op::Upsert(foreign)]);
    std::fs::write(&newest, [pristine.as_slice(), &record].concat()).unwrap();
    let err = Index::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("does not decode") && err.contains(&barista_index::wal::file_name(number)), "{err}");
    // Cut where the message says: the index opens with the acknowledged writes.
    std::fs::write(&newest, &pristine).unwrap();
    assert_eq!(live_ids(&Index::open(dir.path()).unwrap()).len(), 6);
    // A writer refuses a document made for another index.
    let w = manual_writer(&index);
    let foreign = NewDocument::new(&other, "x".into(), None, None, vectors(&other, "x", 0)).unwrap();
    let err = w.write(vec![Op::Upsert(foreign)]).unwrap_err().to_string();
    assert!(err.contains("has 2 vectors; the index stores 3 rungs"), "{err}");
    assert_eq!(index.snapshot().len(), 6, "nothing of it was written");
}

#[test]
fn concurrent_writes_share_log_syncs() {
    let (_dir, index, c) = fresh();
    let w = manual_writer(&index);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (w, c) = (&w, &c);
            scope.spawn(move || {
                for i in 0..40 {
                    upsert(w, vec![doc(c, &format!("t{t}-{i}"), 0)]);
                }
            });
        }
    });
    let stats = w.stats();
    assert_eq!(stats.requests, 320);
    assert_eq!(index.snapshot().len(), 320);
    assert!(
        stats.group_commits < stats.requests,
        "{} syncs for {} requests: concurrent requests must share them",
        stats.group_commits,
        stats.requests
    );
}

#[test]
fn flushes_and_merges_keep_segments_few_and_results_unchanged() {
    let (dir, index, c) = fresh();
    let options = WriterOptions {
        flush_docs: 20,
        background: false,
        merge: MergePolicy { factor: 4, floor_docs: 20, ..MergePolicy::default() },
        ..WriterOptions::default()
    };
    let w = index.writer_with(options).unwrap();
    let mut model = std::collections::BTreeMap::new();
    for i in 0..600 {
        let id = format!("d{}", i % 400);
        upsert(&w, vec![doc(&c, &id, i / 400)]);
        model.insert(id, i / 400);
        if i % 7 == 0 {
            let victim = format!("d{}", (i * 13) % 400);
            if model.remove(&victim).is_some() {
                assert_eq!(delete(&w, &[&victim]), 1);
            }
        }
        if i % 20 == 19 {
            w.flush().unwrap();
            w.merge(&|_, _, _| {}).unwrap();
            let segments = index.snapshot().manifest().segments.len();
            assert!(segments <= 3 * 3 + 1, "{segments} segments after {i} writes");
        }
    }
    let s = index.snapshot();
    let mut got = std::collections::BTreeMap::new();
    for a in s.live_addresses() {
        let d = s.doc(a).unwrap();
        let version: u64 = d.text.unwrap().rsplit('v').next().unwrap().parse().unwrap();
        assert!(got.insert(d.id.to_string(), version).is_none(), "{} is live twice", d.id);
    }
    assert_eq!(got, model);
    assert!(w.stats().merges > 0);
    // The same documents written in bulk give the same exact results.
    let q = vectors(&c, "query", 3);
    let live = s.exact_search(2, &q[2], 10).unwrap();
    let names = |s: &barista_index::Snapshot, hits: &[barista_index::Hit]| {
        hits.iter().map(|h| (s.doc(h.address).unwrap().id.to_string(), h.score)).collect::<Vec<_>>()
    };
    let other = tempfile::tempdir().unwrap();
    let bulk_index = create(other.path(), c.clone());
    let bw = manual_writer(&bulk_index);
    bulk(&bw, model.iter().map(|(id, v)| doc(&c, id, *v)).collect());
    let b = bulk_index.snapshot();
    assert_eq!(names(&s, &live), names(&b, &b.exact_search(2, &q[2], 10).unwrap()));
    drop(w);
    assert_eq!(live_ids(&Index::open(dir.path()).unwrap()), model.keys().cloned().collect::<Vec<_>>());
}

#[test]
fn a_snapshot_never_changes_under_writes_flushes_and_merges() {
    let (_dir, index, c) = fresh();
    let w = manual_writer(&index);
    bulk(&w, docs(&c, "a", 0..100, 0));
    upsert(&w, docs(&c, "b", 0..50, 0));
    let held = index.snapshot();
    let q = vectors(&c, "q", 1);
    let before = held.exact_search(2, &q[2], 20).unwrap();
    let ids_before: Vec<String> = before.iter().map(|h| held.doc(h.address).unwrap().id.to_string()).collect();
    for h in &before[..5] {
        let id = held.doc(h.address).unwrap().id.to_string();
        delete(&w, &[&id]);
    }
    upsert(&w, docs(&c, "c", 0..50, 0));
    w.compact().unwrap();
    assert_eq!(held.exact_search(2, &q[2], 20).unwrap(), before);
    let ids_after: Vec<String> = before.iter().map(|h| held.doc(h.address).unwrap().id.to_string()).collect();
    assert_eq!(ids_before, ids_after, "every hit of the held snapshot is still fetchable");
    assert_eq!(held.len(), 150);
    assert_eq!(index.snapshot().len(), 195);
}

#[test]
fn deletes_during_a_merge_are_carried_into_the_merged_segment() {
    // Background merges race a thread that deletes; the final state must be exact.
    let (dir, index, c) = fresh();
    let options = WriterOptions {
        flush_docs: 25,
        merge: MergePolicy { factor: 3, floor_docs: 25, ..MergePolicy::default() },
        ..WriterOptions::default()
    };
    let w = index.writer_with(options).unwrap();
    for round in 0..8 {
        bulk(&w, docs(&c, &format!("r{round}-"), 0..60, 0));
    }
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..60 {
                for round in 0..8 {
                    if (i + round) % 3 == 0 {
                        assert_eq!(delete(&w, &[&format!("r{round}-{i}")]), 1);
                    }
                }
            }
        });
        scope.spawn(|| {
            for _ in 0..5 {
                w.compact().unwrap();
            }
        });
    });
    w.compact().unwrap();
    let expected: usize = (0..60).map(|i| (0..8).filter(|r| (i + r) % 3 != 0).count()).sum();
    assert_eq!(index.snapshot().len(), expected as u64);
    assert_eq!(index.snapshot().manifest().segments.len(), 1);
    drop(w);
    let reopened = Index::open(dir.path()).unwrap();
    assert_eq!(reopened.snapshot().len(), expected as u64);
    for i in 0..60 {
        for round in 0..8 {
            let present = reopened.snapshot().lookup(&format!("r{round}-{i}")).unwrap().is_some();
            assert_eq!(present, (i + round) % 3 != 0, "r{round}-{i}");
        }
    }
}

#[test]
fn deleting_everything_in_a_segment_drops_it() {
    let (_dir, index, c) = fresh();
    let w = manual_writer(&index);
    bulk(&w, vec![doc(&c, "a", 0)]);
    bulk(&w, vec![doc(&c, "b", 0)]);
    assert_eq!(delete(&w, &["a"]), 1);
    let info = w.flush().unwrap();
    assert_eq!((info.segments, info.live), (1, 1));
    assert_eq!(live_ids(&index), vec!["b"]);
}

#[test]
fn deleted_documents_are_filtered_from_the_graph() {
    let (_dir, index, c) = fresh();
    let w = manual_writer(&index);
    bulk(&w, docs(&c, "d", 0..300, 0));
    let q = vectors(&c, "d7", 0);
    let s = index.snapshot();
    let top = s.graph_search(&q[0], 5, 64).unwrap();
    assert_eq!(s.doc(top[0].address).unwrap().id, "d7", "a document is its own nearest neighbour");
    let gone: Vec<String> = top.iter().map(|h| s.doc(h.address).unwrap().id.to_string()).collect();
    delete(&w, &gone.iter().map(String::as_str).collect::<Vec<_>>());
    let s = index.snapshot();
    let after = s.graph_search(&q[0], 5, 64).unwrap();
    assert_eq!(after.len(), 5);
    for hit in &after {
        assert!(!s.is_deleted(hit.address));
        assert!(!gone.contains(&s.doc(hit.address).unwrap().id.to_string()));
    }
    let exact = s.exact_search(0, &q[0], 5).unwrap();
    assert!(exact.iter().all(|h| !s.is_deleted(h.address)));
}

#[test]
fn bad_input_is_rejected_where_documents_are_made() {
    let c = cfg();
    let make = |id: &str, v: Vec<Vec<f32>>| NewDocument::new(&c, id.into(), None, None, v);
    let mut wrong_len = vectors(&c, "x", 0);
    wrong_len[1].pop();
    let mut nan = vectors(&c, "y", 0);
    nan[2][3] = f32::NAN;
    let mut missing = vectors(&c, "z", 0);
    missing.pop();
    let mut big_f16 = vectors(&c, "x", 0);
    big_f16[1][0] = 70_000.0; // rung 1 is stored in f16 (max 65504)
    let mut huge_norm = vectors(&c, "y", 0);
    huge_norm[0] = vec![1e30; 8]; // the graph rung: its squared norm overflows
    for (id, v, message) in [
        ("x", wrong_len, "has 15 values"),
        ("y", nan, "NaN"),
        ("z", missing, "has 2 vectors"),
        ("", vectors(&c, "e", 0), "must not be empty"),
        ("x", big_f16, "cannot represent"),
        ("y", huge_norm, "too large for the graph"),
    ] {
        let err = make(id, v).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)) && err.to_string().contains(message), "{err}");
    }
    assert!(Op::delete("").is_err());
    let (_dir, index, _) = fresh();
    let s = index.snapshot();
    assert!(s.graph_search(&[0.0; 3], 5, 10).is_err(), "wrong query length");
    assert!(s.exact_search(7, &[0.0; 8], 5).is_err(), "unknown rung");
    assert!(s.exact_search(0, &[f32::NAN; 8], 5).is_err(), "NaN query");
}

#[test]
fn one_writer_at_a_time_and_readers_see_writes() {
    let (dir, index, c) = fresh();
    let w = manual_writer(&index);
    let other = Index::open(dir.path()).unwrap();
    assert!(matches!(other.writer(), Err(Error::Locked { .. })));
    upsert(&w, vec![doc(&c, "a", 0)]);
    assert!(other.snapshot().is_empty());
    assert!(other.reload().unwrap(), "a reader picks up logged writes");
    assert_eq!(live_ids(&other), vec!["a"]);
    assert!(!other.reload().unwrap());
    bulk(&w, vec![doc(&c, "b", 0)]);
    assert!(other.reload().unwrap(), "and commits");
    assert_eq!(live_ids(&other), vec!["a", "b"]);
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
fn a_failed_bulk_commit_changes_nothing_and_can_be_retried() {
    let (dir, index, c) = fresh();
    let w = manual_writer(&index);
    bulk(&w, vec![doc(&c, "a", 0)]);
    // Something occupies a name the commit needs: the commit fails after writing some files.
    std::fs::write(dir.path().join("seg-000003.ids"), "in the way").unwrap();
    assert!(w.add_segment(&[doc(&c, "b", 0), doc(&c, "a", 1)], &|_, _, _| {}).is_err());
    assert_eq!(live_ids(&index), vec!["a"], "nothing changed");
    assert_eq!(Index::open(dir.path()).unwrap().snapshot().manifest().generation, 1);
    assert!(!dir.path().join("seg-000003.vec").exists(), "the partial segment was removed");
    let info = w.add_segment(&[doc(&c, "b", 0), doc(&c, "a", 1)], &|_, _, _| {}).unwrap();
    assert_eq!((info.added, info.deleted, info.generation), (2, 1, 2));
    assert_eq!(live_ids(&index), vec!["a", "b"]);
}

#[test]
fn leftovers_of_a_crash_are_removed_when_a_writer_opens() {
    let (dir, index, c) = fresh();
    bulk(&manual_writer(&index), vec![doc(&c, "a", 0)]);
    for leftover in ["seg-000009.vec", "seg-000009.1-8.graph", "seg-000001.del-7", "MANIFEST.tmp"] {
        std::fs::write(dir.path().join(leftover), "partial").unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not ours").unwrap();
    let w = manual_writer(&Index::open(dir.path()).unwrap());
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(names.iter().all(|n| !n.starts_with("seg-000009") && n != "MANIFEST.tmp" && n != "seg-000001.del-7"));
    assert!(names.contains(&"notes.txt".to_string()), "files that are not Barista's stay");
    drop(w);
}

#[test]
fn huge_k_and_ef_are_clamped() {
    let (_dir, index, c) = fresh();
    let w = manual_writer(&index);
    bulk(&w, docs(&c, "d", 0..30, 0));
    upsert(&w, docs(&c, "m", 0..5, 0));
    let s = index.snapshot();
    let q = vectors(&c, "q", 1);
    assert_eq!(s.graph_search(&q[0], usize::MAX / 2, usize::MAX / 2).unwrap().len(), 35);
    assert_eq!(s.exact_search(0, &q[0], usize::MAX / 2).unwrap().len(), 35);
}

#[test]
fn reloads_racing_writes_never_go_back_in_time() {
    let (dir, index, c) = fresh();
    let w = manual_writer(&index);
    let reader = Index::open(dir.path()).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Every write also rewrites `counter` at the write's number: a reader must never see it
    // go down.
    let counter = |s: &barista_index::Snapshot| -> u64 {
        s.lookup("counter")
            .unwrap()
            .map_or(0, |a| s.doc(a).unwrap().text.unwrap().rsplit('v').next().unwrap().parse().unwrap())
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                reader.reload().unwrap();
                let now = counter(&reader.snapshot());
                assert!(now >= seen, "the counter went from {seen} back to {now}");
                seen = now;
            }
            assert!(seen > 0, "the reader saw writes");
        });
        for i in 0..40 {
            upsert(&w, vec![doc(&c, &format!("d{i}"), 0), doc(&c, "counter", i as u64 + 1)]);
            if i % 3 == 0 && i > 0 {
                delete(&w, &[&format!("d{}", i - 1)]);
            }
            if i % 10 == 9 {
                w.flush().unwrap();
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let expected = (0..40).filter(|i| !(*i % 3 == 2 && *i < 39)).count() as u64 + 1;
    assert_eq!(index.snapshot().len(), expected);
    reader.reload().unwrap();
    assert_eq!(reader.snapshot().len(), expected);
    assert_eq!(counter(&reader.snapshot()), 40);
}

#[test]
fn a_lazy_snapshot_outlived_by_compaction_says_so() {
    let (dir, index, c) = fresh();
    let w = manual_writer(&index);
    for round in 0..2 {
        bulk(&w, docs(&c, &format!("r{round}-"), 0..10, 0));
    }
    drop(w);
    let lazy =
        Index::open_with(dir.path(), barista_index::OpenOptions { lazy_graphs: true, ..Default::default() }).unwrap();
    let stale = lazy.snapshot();
    manual_writer(&index).compact().unwrap();
    let q = vectors(&c, "q", 1);
    let err = stale.graph_search(&q[0], 5, 20).unwrap_err().to_string();
    assert!(err.contains("replaced by a later commit"), "{err}");
    assert!(lazy.reload().unwrap());
    assert_eq!(lazy.snapshot().graph_search(&q[0], 5, 20).unwrap().len(), 5);
    // Exact search on the stale snapshot still works: its vector files stay mapped.
    assert_eq!(stale.exact_search(0, &q[0], 5).unwrap().len(), 5);
}

#[test]
fn quantised_rungs_survive_flushes_graphs_and_compaction() {
    let c = common::config_with(&[(1, 8), (2, 16), (3, 32)], &[], &[0, 1], 1);
    let dir = tempfile::tempdir().unwrap();
    let index = create(dir.path(), c.clone());
    let w = manual_writer(&index);
    bulk(&w, docs(&c, "r0-", 0..100, 0));
    upsert(&w, docs(&c, "r1-", 0..100, 0));
    // In the mutable segment, i8 rungs are kept in f32: exact.
    let s = index.snapshot();
    let a = s.lookup("r1-5").unwrap().unwrap();
    assert_eq!(s.block(a.segment, 1).unwrap().row_f32(a.doc as usize), vectors(&c, "r1-5", 0)[1]);
    delete(&w, &["r0-3"]);
    w.compact().unwrap();
    let s = index.snapshot();
    assert_eq!((s.len(), s.segment_count()), (199, 1));
    for id in ["r0-7", "r1-99"] {
        let a = s.lookup(id).unwrap().unwrap();
        let want = vectors(&c, id, 0);
        // Within a quantisation step (the range here is about ±0.5, so a step is ~0.004).
        let got = s.block(a.segment, 1).unwrap().row_f32(a.doc as usize);
        assert!(got.iter().zip(&want[1]).all(|(g, w)| (g - w).abs() < 0.01), "{got:?} vs {:?}", want[1]);
        // Its own graph-rung vector finds it first.
        let hits = s.graph_search(&want[1], 1, 32).unwrap();
        assert_eq!(s.doc(hits[0].address).unwrap().id, id);
    }
    drop(w);
    open_verified(dir.path());
}

#[test]
fn small_segments_get_no_graph_and_are_scanned() {
    let mut c = cfg();
    c.graph.min_docs = 50;
    let dir = tempfile::tempdir().unwrap();
    let index = create(dir.path(), c.clone());
    let w = manual_writer(&index);
    bulk(&w, docs(&c, "small", 0..20, 0));
    bulk(&w, docs(&c, "big", 0..80, 0));
    let segments = index.snapshot().segments();
    assert_eq!(
        segments.iter().map(|s| (s.documents, !s.graphs.is_empty())).collect::<Vec<_>>(),
        vec![(20, false), (80, true)]
    );
    let q = vectors(&c, "small3", 0);
    let s = index.snapshot();
    let hits = s.graph_search(&q[0], 3, 40).unwrap();
    assert_eq!(s.doc(hits[0].address).unwrap().id, "small3");
    drop(w);
    open_verified(dir.path());
}

/// A segment committed without its graph (an index upgraded from format 2, whose hnsw_rs graphs
/// this build does not read) is searched by scanning until the writer's background builds the
/// graph; then the same searches walk it.
#[test]
fn a_segment_without_its_graph_gets_one_in_the_background() {
    let c = cfg();
    let dir = tempfile::tempdir().unwrap();
    {
        let index = create(dir.path(), c.clone());
        let w = manual_writer(&index);
        bulk(&w, docs(&c, "d", 0..300, 0));
    }
    let mut manifest = barista_index::manifest::Manifest::read(dir.path()).unwrap();
    assert_eq!(manifest.segments[0].graphs.len(), 1);
    manifest.segments[0].graphs.clear();
    manifest.generation += 1;
    manifest.commit(dir.path()).unwrap();
    let index = Index::open(dir.path()).unwrap();
    assert!(index.snapshot().segments()[0].graphs.is_empty());
    let q = vectors(&c, "d42", 0);
    let scanned = index.snapshot().graph_search(&q[0], 5, 40).unwrap();
    assert_eq!(index.snapshot().doc(scanned[0].address).unwrap().id, "d42");
    let _w = index.writer().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while index.snapshot().segments()[0].graphs.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the background did not build the graph");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let s = index.snapshot();
    assert_eq!(s.segments()[0].graphs, vec![c.rungs[c.graph.rungs[0]].rung]);
    let walked = s.graph_search(&q[0], 5, 40).unwrap();
    assert_eq!(s.doc(walked[0].address).unwrap().id, "d42");
    drop(_w);
    open_verified(dir.path());
}

/// Graphs move to other rungs without encoding anything again: the old rung's graph leaves
/// the manifest and the directory, the new one is built from the stored vectors and walked,
/// and both survive a reopen. A rung the index does not store is refused and changes nothing.
#[test]
fn graph_rungs_change_on_an_existing_index() {
    let c = cfg();
    assert_eq!(c.graph.rungs, vec![0]);
    let dir = tempfile::tempdir().unwrap();
    let index = create(dir.path(), c.clone());
    let w = manual_writer(&index);
    bulk(&w, docs(&c, "d", 0..300, 0));
    let graph_files = || graph_files(dir.path());
    assert_eq!(graph_files().len(), 1);
    let generation = index.snapshot().manifest().generation;
    let refused = w.set_graph_rungs(&[0, 7]).unwrap_err();
    assert!(matches!(refused, Error::InvalidInput(_)), "{refused}");
    assert_eq!(index.snapshot().manifest().generation, generation, "a refused change commits nothing");

    w.set_graph_rungs(&[2, 1]).unwrap();
    let s = index.snapshot();
    assert_eq!(s.config().graph.rungs, vec![1, 2]);
    assert!(s.segments()[0].graphs.is_empty(), "the old graph is dropped, the new ones not built yet");
    assert!(graph_files().is_empty(), "the dropped graph's file is removed");
    let q = vectors(&c, "d42", 0);
    let scanned = s.graph_search_on(2, &q[2], 5, 40).unwrap();
    assert_eq!(s.doc(scanned[0].address).unwrap().id, "d42");

    assert_eq!(w.build_graphs(&|_, _, _| {}).unwrap(), 1);
    let s = index.snapshot();
    assert_eq!(s.segments()[0].graphs, vec![c.rungs[1].rung, c.rungs[2].rung]);
    assert_eq!(graph_files().len(), 2);
    for rung in [1, 2] {
        let walked = s.graph_search_on(rung, &q[rung], 5, 40).unwrap();
        assert_eq!(s.doc(walked[0].address).unwrap().id, "d42", "rung {rung}");
    }
    assert_eq!(w.build_graphs(&|_, _, _| {}).unwrap(), 0, "nothing left to build");
    drop(w);
    drop(s);
    drop(index);
    let index = open_verified(dir.path());
    let s = index.snapshot();
    assert_eq!(s.segments()[0].graphs, vec![c.rungs[1].rung, c.rungs[2].rung]);
    let walked = s.graph_search_on(1, &q[1], 5, 40).unwrap();
    assert_eq!(s.doc(walked[0].address).unwrap().id, "d42");
}

/// Graph files in `dir`, sorted.
fn graph_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".graph"))
        .collect();
    names.sort();
    names
}

/// An index of 300 documents in `dir` whose one graph is written as a build before graph
/// files carried rows wrote it (no rows, the old name); returns the segment as first committed
/// and the links its graph holds (with rows).
fn index_with_a_bare_graph(dir: &Path, c: &IndexConfig) -> (SegmentRecord, barista_index::graph::layout::GraphData) {
    {
        let index = create(dir, c.clone());
        bulk(&manual_writer(&index), docs(c, "d", 0..300, 0));
    }
    let rung = c.rungs[c.graph.rungs[0]].rung;
    let mut manifest = barista_index::manifest::Manifest::read(dir).unwrap();
    let segment = manifest.segments[0].clone();
    assert_eq!(graph_files(dir), vec![format!("seg-{:06}.{}-{}.i8.graph", segment.id, rung.layer, rung.dim)]);
    let built = barista_index::graph::SegmentGraph::open(dir, &segment.graphs[0].file, segment.docs, rung).unwrap();
    let links = built.data();
    assert!(links.rows.is_some());
    let old_name = barista_index::graph::file_name(&barista_index::segment::basename(segment.id), rung, false);
    let old = barista_index::graph::layout::GraphData { rows: None, ..links.clone() };
    manifest.segments[0].graphs[0].file = old.write(dir, &old_name).unwrap();
    manifest.generation += 1;
    manifest.commit(dir).unwrap();
    std::fs::remove_file(dir.join(&segment.graphs[0].file.name)).unwrap();
    (segment, links)
}

/// A graph written before graph files carried the i8 copy of their rows (on an f32 rung: the
/// walk scores the stored rows) is searched as it is, and the writer adds the copy without
/// building the graph again: same links, new file (`….i8.graph`), the old one removed, the
/// same documents found, and the index verifies on reopen.
#[test]
fn a_graph_without_its_rows_gets_them_and_keeps_its_links() {
    let c = cfg();
    let dir = tempfile::tempdir().unwrap();
    let (segment, links) = index_with_a_bare_graph(dir.path(), &c);
    let rung = c.rungs[c.graph.rungs[0]].rung;
    let index = Index::open(dir.path()).unwrap();
    let lazy =
        Index::open_with(dir.path(), barista_index::OpenOptions { lazy_graphs: true, ..Default::default() }).unwrap();
    let stale = lazy.snapshot();
    let q = vectors(&c, "d42", 0);
    let s = index.snapshot();
    let walked = s.graph_search(&q[0], 5, 40).unwrap();
    assert_eq!(s.doc(walked[0].address).unwrap().id, "d42", "the old graph walks the stored rows");
    drop(s);
    let w = manual_writer(&index);
    assert_eq!(w.build_graphs(&|_, _, _| {}).unwrap(), 1, "the rows are added");
    assert_eq!(w.build_graphs(&|_, _, _| {}).unwrap(), 0, "nothing left to do");
    assert_eq!(graph_files(dir.path()), vec![format!("seg-{:06}.{}-{}.i8.graph", segment.id, rung.layer, rung.dim)]);
    // A lazy snapshot taken before the upgrade loads the rewritten file of the same segment.
    let late = stale.graph_search(&q[0], 5, 40).unwrap();
    assert_eq!(stale.doc(late[0].address).unwrap().id, "d42");
    drop((stale, lazy));
    let s = index.snapshot();
    let again = s.graph_search(&q[0], 5, 40).unwrap();
    assert_eq!(s.doc(again[0].address).unwrap().id, "d42");
    let record = &s.manifest().segments[0].graphs[0].file;
    let upgraded = barista_index::graph::SegmentGraph::open(dir.path(), record, segment.docs, rung).unwrap();
    assert!(upgraded.data() == links, "the same links, with the rows a fresh build writes");
    drop((w, s, index));
    open_verified(dir.path());
}

/// A graph file without rows that does not open (here damaged) is not upgraded but built again
/// from the stored rows, the reason named in the progress step.
#[test]
fn a_damaged_graph_without_rows_is_built_again() {
    let c = cfg();
    let dir = tempfile::tempdir().unwrap();
    let (segment, _) = index_with_a_bare_graph(dir.path(), &c);
    let manifest = barista_index::manifest::Manifest::read(dir.path()).unwrap();
    let bare = dir.path().join(&manifest.segments[0].graphs[0].file.name);
    let mut bytes = std::fs::read(&bare).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&bare, bytes).unwrap();
    let index =
        Index::open_with(dir.path(), barista_index::OpenOptions { lazy_graphs: true, ..Default::default() }).unwrap();
    let w = manual_writer(&index);
    let steps = std::sync::Mutex::new(Vec::<String>::new());
    let built = w.build_graphs(&|step, _, _| steps.lock().unwrap().push(step.to_string())).unwrap();
    assert_eq!(built, 1);
    let steps = steps.into_inner().unwrap();
    assert!(steps.iter().any(|s| s.contains("built again") && s.contains("did not open")), "{steps:?}");
    let rung = c.rungs[c.graph.rungs[0]].rung;
    assert_eq!(graph_files(dir.path()), vec![format!("seg-{:06}.{}-{}.i8.graph", segment.id, rung.layer, rung.dim)]);
    let q = vectors(&c, "d42", 0);
    let s = index.snapshot();
    let hits = s.graph_search(&q[0], 5, 40).unwrap();
    assert_eq!(s.doc(hits[0].address).unwrap().id, "d42");
    drop((w, s, index));
    open_verified(dir.path());
}

/// One mapping of a file under a test's directory, from /proc/self/smaps.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Mapping {
    file: String,
    /// Offset in the file and length of the mapped range, in bytes.
    offset: u64,
    len: u64,
    flags: Vec<String>,
}

/// This process's mappings of files under `dir`.
#[cfg(target_os = "linux")]
fn mappings(dir: &Path) -> Vec<Mapping> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let dir = std::fs::canonicalize(dir).unwrap();
    let mut found = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(mut m) = current.take() {
                m.flags = flags.split_whitespace().map(str::to_string).collect();
                found.push(m);
            }
            continue;
        }
        // A mapping's header: "start-end perms offset dev inode   path" (field lines end in ':').
        let mut fields = line.split_whitespace();
        let Some(range) = fields.next().filter(|a| a.contains('-') && !a.ends_with(':')) else { continue };
        let (start, end) = range.split_once('-').unwrap();
        let len = u64::from_str_radix(end, 16).unwrap() - u64::from_str_radix(start, 16).unwrap();
        let offset = u64::from_str_radix(fields.nth(1).unwrap(), 16).unwrap();
        // The path is the rest of the line from its first '/' (it may hold spaces).
        let path = line.find('/').map(|at| std::path::PathBuf::from(line[at..].trim_end_matches(" (deleted)")));
        current = path.filter(|p| p.starts_with(&dir)).map(|p| Mapping {
            file: p.file_name().unwrap().to_string_lossy().into(),
            offset,
            len,
            flags: Vec::new(),
        });
    }
    found
}

#[cfg(target_os = "linux")]
#[test]
fn graph_files_and_walked_blocks_are_advised_random_the_rest_is_not() {
    if std::env::var("BARISTA_MMAP_ADVICE").is_ok_and(|v| v.eq_ignore_ascii_case("normal")) {
        eprintln!("skipped: BARISTA_MMAP_ADVICE=normal turns the advice off");
        return;
    }
    // Rung (2,16) has the graph: its block and the graph file are read at random (madvise
    // MADV_RANDOM shows as `rr` in VmFlags); the other blocks and files keep read-around.
    let dir = tempfile::tempdir().unwrap();
    let config = config(&[(1, 8), (2, 16), (3, 32)], &[], 1);
    {
        let index = create(dir.path(), config.clone());
        bulk(&manual_writer(&index), docs(&config, "d", 0..3000, 0));
    }
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.snapshot().segment_count(), 1);
    let maps = mappings(dir.path());
    let random = |m: &Mapping| m.flags.iter().any(|f| f == "rr");
    let of = |suffix: &str| maps.iter().filter(|m| m.file.ends_with(suffix)).collect::<Vec<_>>();
    let graph = of(".graph");
    assert!(graph.len() == 1 && random(graph[0]), "{maps:?}");
    // index/FORMAT.md: a 4,096-byte header, then each block at the next multiple of 4,096.
    // Block 0: 3,000 × 8 f32 = 96,000 bytes at 4,096; block 1 (the graph rung): 3,000 × 16 f32
    // = 192,000 bytes at 102,400, advised in whole pages (47 of them).
    let vec = of(".vec");
    let advised: Vec<(u64, u64)> = vec.iter().filter(|m| random(m)).map(|m| (m.offset, m.len)).collect();
    assert_eq!(advised, vec![(102_400, 47 * 4096)], "{maps:?}");
    assert!(vec.iter().any(|m| !random(m)), "{maps:?}");
    let (docs, ids) = (of(".docs"), of(".ids"));
    assert!(!docs.is_empty() && !ids.is_empty() && docs.iter().chain(&ids).all(|m| !random(m)), "{maps:?}");
}
