//! Barista's index: where documents' rung vectors live on disk, how the coarse shortlist is found
//! and how candidates are rescored, and how writes become durable (write-ahead log), searchable
//! (mutable segment) and compact (background flushes and merges).
//!
//! It also holds the SIMD foundations ([`simd`], [`aligned`]) that the encoder and the scans
//! share, since every other crate depends on this one.

pub mod aligned;
pub(crate) mod append;
pub mod config;
pub mod document;
pub mod error;
pub mod files;
pub mod filter;
pub mod graph;
pub mod ids;
pub mod index;
pub mod manifest;
pub mod merge;
pub mod mutable;
pub mod recovery;
pub mod rung;
pub mod scan;
pub mod segment;
pub mod simd;
pub(crate) mod state;
pub mod store;
pub mod tombstones;
pub mod vectors;
pub mod wal;
pub mod writer;

pub use config::{DEFAULT_GRAPH_MIN_DOCS, ElementType, GraphParams, IndexConfig, StoredRung};
pub use document::{MAX_ID_BYTES, NewDocument, check_id};
pub use error::{Error, Result};
pub use filter::{Filter, Mask};
pub use index::{DocAddress, Hit, Index, OpenOptions, SegmentInfo, Snapshot};
pub use merge::MergePolicy;
pub use recovery::LogSummary;
pub use rung::Rung;
pub use segment::DamagedGraph;
pub use wal::Op;
pub use writer::{CommitInfo, IndexWriter, WriteInfo, WriterOptions, WriterStats};
