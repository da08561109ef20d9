//! Barista's index: where documents' rung vectors live on disk, how the coarse shortlist is found
//! and how candidates are rescored.
//!
//! This crate is a placeholder until the index issue lands; see `ARCHITECTURE.md` for the plan.
