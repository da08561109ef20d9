//! Helpers shared by the index's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use barista_index::{
    CommitInfo, ElementType, GraphParams, Index, IndexConfig, IndexWriter, NewDocument, Op, Rung, StoredRung,
    WriteInfo, WriterOptions,
};
use std::path::{Path, PathBuf};

/// A path inside `../shared` (beside the repository), checked to exist.
pub fn shared(relative: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared").join(relative);
    assert!(path.exists(), "shared test material {} is missing", path.display());
    path
}

/// A config storing the given rungs (f32 unless listed in `f16`), graph on rung `graph` (built
/// for segments of any size).
pub fn config(rungs: &[(usize, usize)], f16: &[usize], graph: usize) -> IndexConfig {
    config_with(rungs, f16, &[], graph)
}

/// Like [`config`], with the rungs listed in `i8` quantised.
pub fn config_with(rungs: &[(usize, usize)], f16: &[usize], i8: &[usize], graph: usize) -> IndexConfig {
    IndexConfig {
        model: "test-model".into(),
        profile: "{}".into(),
        rungs: rungs
            .iter()
            .enumerate()
            .map(|(i, &(l, d))| StoredRung {
                rung: Rung::new(l, d),
                element: if f16.contains(&i) {
                    ElementType::F16
                } else if i8.contains(&i) {
                    ElementType::I8
                } else {
                    ElementType::F32
                },
            })
            .collect(),
        graph: GraphParams { min_docs: 0, ..GraphParams::on(graph) },
    }
}

/// Deterministic pseudo-random vector for document `id` (same id → same vector).
pub fn vector_for(id: &str, salt: u64, dim: usize) -> Vec<f32> {
    let mut s = xxh(id) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..dim)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn xxh(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The vectors of document `id` at `version` (derived from both), for the rungs of `config`.
pub fn vectors(config: &IndexConfig, id: &str, version: u64) -> Vec<Vec<f32>> {
    config.rungs.iter().enumerate().map(|(r, s)| vector_for(id, version * 31 + r as u64, s.rung.dim)).collect()
}

/// A document whose vectors are derived from its id (and a version), for the rungs of `config`.
pub fn doc(config: &IndexConfig, id: &str, version: u64) -> NewDocument {
    NewDocument::new(
        config,
        id.to_string(),
        Some(format!("text of {id} v{version}")),
        Some(format!("{{\"version\": {version}}}")),
        vectors(config, id, version),
    )
    .unwrap()
}

/// Documents `{prefix}{i}` for every `i` in `range`, at `version`.
pub fn docs(config: &IndexConfig, prefix: &str, range: std::ops::Range<usize>, version: u64) -> Vec<NewDocument> {
    range.map(|i| doc(config, &format!("{prefix}{i}"), version)).collect()
}

/// A writer whose flushes and merges happen only when the test asks.
pub fn manual_writer(index: &Index) -> IndexWriter {
    index.writer_with(WriterOptions { background: false, ..WriterOptions::default() }).unwrap()
}

/// Writes documents as one bulk segment.
pub fn bulk(w: &IndexWriter, docs: Vec<NewDocument>) -> CommitInfo {
    w.add_segment(&docs, &|_, _, _| {}).unwrap()
}

/// Upserts documents through the log (one request).
pub fn upsert(w: &IndexWriter, docs: Vec<NewDocument>) -> WriteInfo {
    w.write(docs.into_iter().map(Op::Upsert).collect()).unwrap()
}

/// Deletes ids through the log (one request); returns how many existed.
pub fn delete(w: &IndexWriter, ids: &[&str]) -> usize {
    w.write(ids.iter().map(|id| Op::delete(*id).unwrap()).collect()).unwrap().existed
}

/// The live ids of the current snapshot, sorted.
pub fn live_ids(index: &Index) -> Vec<String> {
    let s = index.snapshot();
    let mut ids: Vec<String> = s.live_addresses().map(|a| s.doc(a).unwrap().id.to_string()).collect();
    ids.sort();
    ids
}

/// Opens or creates.
pub fn create(dir: &Path, config: IndexConfig) -> Index {
    Index::create(dir, config).unwrap()
}

/// Opens the index with every file verified, and asserts that no graph is damaged (a damaged
/// graph no longer refuses the open: it is reported and its segment scanned).
pub fn open_verified(dir: &Path) -> Index {
    let index = Index::open_with(dir, barista_index::OpenOptions { verify: true, ..Default::default() })
        .unwrap_or_else(|e| panic!("the index does not open with every file verified: {e}"));
    let damaged = index.snapshot().damaged_graphs();
    assert!(damaged.is_empty(), "damaged graphs: {damaged:?}");
    index
}
