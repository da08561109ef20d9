//! The encoder's numerical kernels (GEMM, exp/erf/GELU, softmax, layer norm) and the thread team
//! that splits one query's layers. They are written over the SIMD vocabulary of
//! [`barista_index::simd`] and run through its instruction-set dispatch.

pub(crate) mod gemm;
pub(crate) mod math;
pub(crate) mod team;

pub use barista_index::simd::Isa;
pub(crate) use barista_index::simd::{IsaTask, run};
