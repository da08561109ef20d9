//! Barista's evaluation and benchmark library: `barista bench` (retrieval quality and speed of
//! every profile on a BEIR or MS MARCO data set) and the pieces the `barista-bench` micro
//! benchmarks share (index building, latency statistics, plots).

pub mod evaluate;
pub mod indexing;
pub mod plot;
pub mod stats;
