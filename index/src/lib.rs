//! Barista's index: where documents' rung vectors live on disk, how the coarse shortlist is found
//! and how candidates are rescored.
//!
//! It also holds the SIMD foundations ([`simd`], [`aligned`]) that the encoder and the scans
//! share, since every other crate depends on this one.

pub mod aligned;
pub mod config;
pub mod error;
pub mod files;
pub mod filter;
pub mod graph;
pub mod ids;
pub mod index;
pub mod manifest;
pub mod rung;
pub mod scan;
pub mod segment;
pub mod simd;
pub mod store;
pub mod tombstones;
pub mod vectors;
pub mod writer;

pub use config::{ElementType, GraphParams, IndexConfig, StoredRung};
pub use error::{Error, Result};
pub use filter::{Filter, Mask};
pub use index::{DocAddress, Hit, Index, OpenOptions, Snapshot};
pub use rung::Rung;
pub use writer::{CommitInfo, IndexWriter, NewDocument};
