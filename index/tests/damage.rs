//! A damaged or truncated file of any kind gives a clear error naming it — never a panic and
//! never results computed from garbage.
#![allow(clippy::unwrap_used)]

mod common;

use barista_index::{Index, OpenOptions};
use common::{bulk, config, create, delete, docs, manual_writer};
use std::path::Path;

/// Builds an index with two segments, one of them with tombstones.
fn build(dir: &Path) {
    let c = config(&[(1, 8), (2, 16)], &[1], 0);
    let index = create(dir, c.clone());
    let w = manual_writer(&index);
    bulk(&w, docs(&c, "a", 0..40, 0));
    bulk(&w, docs(&c, "b", 0..40, 0));
    delete(&w, &["a3"]);
    w.flush().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn file_with_suffix(dir: &Path, suffix: &str) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(suffix) || (suffix == ".del" && n.contains(".del-")))
        .collect();
    names.sort();
    names.pop().unwrap_or_else(|| panic!("no *{suffix} file"))
}

enum Damage {
    Truncate,
    FlipAt(usize),
    FlipLast,
}

fn damage(path: &Path, how: &Damage) {
    let mut bytes = std::fs::read(path).unwrap();
    match how {
        Damage::Truncate => bytes.truncate(bytes.len() - 7),
        Damage::FlipAt(i) => bytes[*i] ^= 0x5a,
        Damage::FlipLast => {
            let last = bytes.len() - 1;
            bytes[last] ^= 0x5a;
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn every_kind_of_damage_is_reported_with_the_file_name() {
    let pristine = tempfile::tempdir().unwrap();
    build(pristine.path());
    Index::open_with(pristine.path(), OpenOptions { verify: true, ..Default::default() }).unwrap();

    // (file suffix, damage, detected when opening without full verification?)
    let cases = [
        ("MANIFEST", Damage::FlipAt(40), true),
        ("MANIFEST", Damage::Truncate, true),
        (".vec", Damage::Truncate, true),
        (".vec", Damage::FlipAt(20), true),
        (".vec", Damage::FlipLast, false),
        (".docs", Damage::Truncate, true),
        (".docs", Damage::FlipAt(12), true),
        (".docs", Damage::FlipLast, false),
        (".ids", Damage::FlipLast, true),
        (".ids", Damage::Truncate, true),
        (".del", Damage::FlipLast, true),
    ];
    for (suffix, how, on_open) in &cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), dir.path());
        let name = if *suffix == "MANIFEST" { "MANIFEST".to_string() } else { file_with_suffix(dir.path(), suffix) };
        damage(&dir.path().join(&name), how);
        let opened = Index::open(dir.path());
        let error = if *on_open {
            opened.expect_err(&format!("damaged {name} must not open")).to_string()
        } else {
            let index = opened.unwrap_or_else(|e| panic!("{name}: the data region is only checked by verify: {e}"));
            index.verify().expect_err(&format!("verify must catch damage in {name}")).to_string()
        };
        assert!(error.contains(&name) && error.contains("damaged"), "{name}: {error}");
        if !on_open {
            let verified = Index::open_with(dir.path(), OpenOptions { verify: true, ..Default::default() });
            assert!(verified.unwrap_err().to_string().contains(&name));
        }
    }
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let name = file_with_suffix(dir.path(), ".ids");
    std::fs::remove_file(dir.path().join(&name)).unwrap();
    let error = Index::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains(&name) && error.contains("missing"), "{error}");
}

#[test]
fn damaged_stored_text_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let name = file_with_suffix(dir.path(), ".docs");
    // Overwrite the last bytes of the data (the last document's metadata) with invalid UTF-8.
    let path = dir.path().join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3..].copy_from_slice(&[0xff, 0xfe, 0xfd]);
    std::fs::write(&path, bytes).unwrap();
    let index = Index::open(dir.path()).unwrap();
    let s = index.snapshot();
    let results: Vec<_> = s.live_addresses().map(|a| s.doc(a)).collect();
    let errors: Vec<String> = results.iter().filter_map(|r| r.as_ref().err()).map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains(&name) && errors[0].contains("UTF-8"));
}

fn queries() -> Vec<Vec<f32>> {
    vec![vec![0.5; 8], vec![1.0, -1.0, 0.5, 0.0, 2.0, -0.5, 0.25, 1.0], vec![-0.3, 0.8, 0.1, -1.2, 0.4, 0.9, -0.7, 0.2]]
}

/// Graph searches give exactly the exhaustive results (a segment whose graph is damaged is
/// scanned).
fn assert_graph_search_is_exact(index: &Index) {
    let s = index.snapshot();
    for q in queries() {
        let walked = s.graph_search(&q, 5, 16).unwrap();
        let exact = s.exact_search(0, &q, 5).unwrap();
        let key = |h: &barista_index::Hit| (h.address, h.score.to_bits());
        assert_eq!(walked.iter().map(key).collect::<Vec<_>>(), exact.iter().map(key).collect::<Vec<_>>());
    }
}

/// A graph is derived from the segment's stored rows: damage to it (any kind, or the file
/// gone) is reported and the segment scanned — the index opens, searches give the exhaustive
/// results — and a writer builds it again under the same name. (Before, any damaged graph
/// made a default open refuse the whole index, even for exhaustive searches.)
#[test]
fn a_damaged_graph_is_reported_its_segment_scanned_and_built_again() {
    let pristine = tempfile::tempdir().unwrap();
    build(pristine.path());
    let cases = [Damage::FlipAt(100), Damage::FlipAt(5000), Damage::FlipLast, Damage::Truncate];
    for (case, how) in cases.iter().map(Some).chain([None]).enumerate() {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), dir.path());
        let name = file_with_suffix(dir.path(), ".graph");
        let path = dir.path().join(&name);
        match how {
            Some(how) => damage(&path, how),
            None => std::fs::remove_file(&path).unwrap(),
        }
        for options in [
            OpenOptions::default(),
            OpenOptions { verify: true, ..Default::default() },
            OpenOptions { verify: true, lazy_graphs: true },
        ] {
            let index = Index::open_with(dir.path(), options).unwrap_or_else(|e| panic!("case {case}: {e}"));
            let damaged = index.snapshot().damaged_graphs();
            assert_eq!(damaged.len(), 1, "case {case}: {damaged:?}");
            assert_eq!(damaged[0].file, name);
            let report = damaged[0].to_string();
            assert!(
                report.contains(&name) && report.contains("scan") && report.contains("builds the graph again"),
                "{report}"
            );
            let infos = index.snapshot().segments();
            assert_eq!(infos.iter().map(|i| i.damaged_graphs.len()).sum::<usize>(), 1);
            assert_graph_search_is_exact(&index);
        }
        // Opened lazily, the first search that needs the graph finds the damage.
        let index = Index::open_with(dir.path(), OpenOptions { lazy_graphs: true, ..Default::default() }).unwrap();
        assert!(index.snapshot().damaged_graphs().is_empty());
        assert_graph_search_is_exact(&index);
        assert_eq!(index.snapshot().damaged_graphs().len(), 1, "case {case}");
        index.verify().unwrap();

        // A writer builds it again from the stored rows, under the same name.
        let w = manual_writer(&index);
        assert_eq!(w.build_graphs(&|_, _, _| {}).unwrap(), 1, "case {case}");
        assert!(w.snapshot().damaged_graphs().is_empty());
        assert_eq!(w.build_graphs(&|_, _, _| {}).unwrap(), 0, "case {case}: nothing left to build");
        drop(w);
        assert!(path.exists());
        let index = Index::open_with(dir.path(), OpenOptions { verify: true, ..Default::default() }).unwrap();
        assert!(index.snapshot().damaged_graphs().is_empty(), "case {case}");
        assert_eq!(index.snapshot().segments().iter().map(|i| i.graphs.len()).sum::<usize>(), 2);
        assert_graph_search_is_exact(&index);
    }
}

/// Damage to the files that hold documents is still refused: a graph is the only file Barista
/// can build again from what the index keeps.
#[test]
fn a_damaged_graph_does_not_hide_damaged_documents() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let graph = file_with_suffix(dir.path(), ".graph");
    damage(&dir.path().join(&graph), &Damage::FlipLast);
    let vectors = file_with_suffix(dir.path(), ".vec");
    damage(&dir.path().join(&vectors), &Damage::FlipLast);
    let error = Index::open_with(dir.path(), OpenOptions { verify: true, ..Default::default() }).unwrap_err();
    assert!(error.to_string().contains(&vectors), "{error}");
    let index = Index::open(dir.path()).unwrap();
    assert!(index.verify().unwrap_err().to_string().contains(&vectors));
}

/// A process that writes the index (a server) builds a damaged graph again on its own: the
/// writer's background builder takes it within seconds of the open that found it.
#[test]
fn a_writing_process_builds_a_damaged_graph_again_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let name = file_with_suffix(dir.path(), ".graph");
    damage(&dir.path().join(&name), &Damage::FlipAt(5000));
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.snapshot().damaged_graphs().len(), 1);
    let w = index.writer().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !w.snapshot().damaged_graphs().is_empty() || w.stats().graph_builds == 0 {
        assert!(std::time::Instant::now() < deadline, "not built again: {:?}", w.stats());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(w.stats().graph_builds, 1);
    assert_graph_search_is_exact(&index);
    drop(w);
    let index = Index::open_with(dir.path(), OpenOptions { verify: true, ..Default::default() }).unwrap();
    assert!(index.snapshot().damaged_graphs().is_empty());
}
