//! Shared helpers for Barista's end-to-end tests: paths to the shared model and data sets.
//!
//! The shared material lives beside the repository (`../shared`); tests read it in place and
//! fail loudly when it is missing rather than skipping.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repository").to_path_buf()
}

/// A path inside `../shared`, checked to exist.
pub fn shared(relative: &str) -> PathBuf {
    let path = repo_root().join("../shared").join(relative);
    assert!(
        path.exists(),
        "shared test material {} is missing: the tests need ../shared beside the repository",
        path.display()
    );
    path
}

/// The shared 2D Matryoshka test model.
pub fn model_dir() -> PathBuf {
    shared("models/minilm-l6-2d")
}

/// The shared model folder as a `--model` argument.
pub fn model_arg() -> String {
    model_dir().to_str().expect("UTF-8 path").to_string()
}

/// Cosine similarity in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vectors of different lengths");
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Largest absolute difference between two vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vectors of different lengths");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
