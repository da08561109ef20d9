//! Coarse-to-fine search over an index: stage plans, the cascade, adaptive stopping, and the
//! request/response types.

pub mod adaptive;
pub(crate) mod cascade;
pub mod graph_rung;
pub mod plan;
pub mod request;
