//! Barista's index: where documents' rung vectors live on disk, how the coarse shortlist is found
//! and how candidates are rescored.
//!
//! It also holds the SIMD foundations ([`simd`], [`aligned`]) that the encoder and the scans
//! share, since every other crate depends on this one.

pub mod aligned;
pub mod config;
pub mod error;
pub mod files;
pub mod graph;
pub mod ids;
pub mod manifest;
pub mod rung;
pub mod scan;
pub mod simd;
pub mod store;
pub mod tombstones;
pub mod vectors;

pub use config::{ElementType, GraphParams, IndexConfig, StoredRung};
pub use error::{Error, Result};
pub use rung::Rung;
