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
        (".graph", Damage::FlipAt(100), true),
        (".graph", Damage::FlipAt(5000), true),
        (".graph", Damage::FlipLast, true),
        (".graph", Damage::Truncate, true),
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

#[test]
fn a_damaged_graph_opened_lazily_fails_the_search_not_the_process() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let name = file_with_suffix(dir.path(), ".graph");
    damage(&dir.path().join(&name), &Damage::FlipAt(100));
    let index = Index::open_with(dir.path(), OpenOptions { lazy_graphs: true, ..Default::default() }).unwrap();
    let s = index.snapshot();
    let error = s.graph_search(&[0.5; 8], 5, 16).unwrap_err().to_string();
    assert!(error.contains(&name) && error.contains("damaged"), "{error}");
    assert!(index.load_graphs().is_err());
    // Exact search does not need the graph.
    assert_eq!(s.exact_search(0, &[0.5; 8], 5).unwrap().len(), 5);
}
