//! Barista's index: where documents' rung vectors live on disk, how the coarse shortlist is found
//! and how candidates are rescored.
//!
//! It also holds the SIMD foundations ([`simd`], [`aligned`]) that the encoder and the scans
//! share, since every other crate depends on this one.

pub mod aligned;
pub mod rung;
pub mod simd;

pub use rung::Rung;
