//! Helpers shared by the index's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use barista_index::{ElementType, GraphParams, Index, IndexConfig, NewDocument, Rung, StoredRung};
use std::path::{Path, PathBuf};

/// A path inside `../shared` (beside the repository), checked to exist.
pub fn shared(relative: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared").join(relative);
    assert!(path.exists(), "shared test material {} is missing", path.display());
    path
}

/// A config storing the given rungs (f32 unless listed in `f16`), graph on rung `graph`.
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
        graph: GraphParams { rung: graph, ..GraphParams::default() },
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

/// A document whose vectors are derived from its id (and a version), for the rungs of `config`.
pub fn doc(config: &IndexConfig, id: &str, version: u64) -> NewDocument {
    NewDocument {
        id: id.to_string(),
        text: Some(format!("text of {id} v{version}")),
        metadata: Some(format!("{{\"version\": {version}}}")),
        vectors: config
            .rungs
            .iter()
            .enumerate()
            .map(|(r, s)| vector_for(id, version * 31 + r as u64, s.rung.dim))
            .collect(),
    }
}

/// Opens or creates.
pub fn create(dir: &Path, config: IndexConfig) -> Index {
    Index::create(dir, config).unwrap()
}
