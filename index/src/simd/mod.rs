//! SIMD foundations shared by Barista's crates: a small vocabulary of vector operations
//! ([`Simd`]) implemented for AVX-512, AVX2 (+FMA, F16C) and a portable fallback, and the
//! dispatch that runs a generic kernel ([`IsaTask`]) compiled for the instruction set chosen at
//! run time ([`Isa`]).
//!
//! Kernels are written once, generically over [`Simd`], with every helper `#[inline(always)]`;
//! [`run`] calls them through a `#[target_feature]` trampoline so the whole task is compiled
//! with the wide instructions.

mod vector;

use crate::aligned::Zeroable;
use std::fmt;
use std::str::FromStr;

/// An element type `B` can be stored in: f32, or f16 / bf16 widened exactly to f32 on load.
pub trait Elem: Zeroable {
    /// Rounds an f32 to this type (exact for values that came from it).
    fn from_f32(x: f32) -> Self;
    /// Widens to f32 (exact).
    fn to_f32(self) -> f32;
    /// Loads `LANES` elements as f32.
    ///
    /// # Safety
    /// `p` must be valid for `S::LANES` reads, and `S` supported by this CPU.
    unsafe fn load<S: Simd>(p: *const Self) -> S::V;
}

impl Elem for f32 {
    fn from_f32(x: f32) -> Self {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const Self) -> S::V {
        unsafe { S::load(p) }
    }
}

impl Elem for half::f16 {
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const Self) -> S::V {
        unsafe { S::load_f16(p.cast()) }
    }
}

impl Elem for half::bf16 {
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const Self) -> S::V {
        unsafe { S::load_bf16(p.cast()) }
    }
}

impl Elem for i8 {
    fn from_f32(x: f32) -> Self {
        x.round().clamp(-127.0, 127.0) as i8
    }
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(p: *const Self) -> S::V {
        unsafe { S::load_i8(p) }
    }
}

#[cfg(target_arch = "x86_64")]
pub use vector::{Avx2, Avx512};
pub use vector::{Scalar, Simd};

/// An instruction set the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F (with AVX2, FMA and F16C): 16 lanes.
    Avx512,
    /// AVX2 with FMA and F16C: 8 lanes.
    Avx2,
    /// Portable code that runs on any CPU.
    Scalar,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 =
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
            if avx2 && is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// Every instruction set this CPU supports, best first.
    pub fn supported() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Scalar].into_iter().filter(|isa| isa.is_supported()).collect()
    }

    /// Whether this CPU can run kernels compiled for `self`.
    pub fn is_supported(self) -> bool {
        matches!(
            (self, Isa::best()),
            (Isa::Scalar, _) | (Isa::Avx2, Isa::Avx2 | Isa::Avx512) | (Isa::Avx512, Isa::Avx512)
        )
    }

    /// Width of a GEMM panel (two registers of f32 lanes) for this instruction set.
    pub fn panel_width(self) -> usize {
        2 * match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
            Isa::Scalar => <Scalar as Simd>::LANES,
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Scalar => "scalar",
        })
    }
}

impl FromStr for Isa {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "avx512" => Ok(Isa::Avx512),
            "avx2" => Ok(Isa::Avx2),
            "scalar" => Ok(Isa::Scalar),
            other => Err(format!("unknown instruction set '{other}': expected avx512, avx2 or scalar")),
        }
    }
}

/// A unit of kernel work, generic over the SIMD implementation it is compiled for.
pub trait IsaTask {
    /// What the task returns.
    type Output;
    /// Runs the task with `S`.
    ///
    /// # Safety
    /// `S` must be supported by this CPU; [`run`] guarantees it.
    unsafe fn run<S: Simd>(self) -> Self::Output;
}

/// Runs `task` compiled for `isa`.
///
/// # Panics
/// If `isa` is not supported by this CPU.
pub fn run<T: IsaTask>(isa: Isa, task: T) -> T::Output {
    assert!(isa.is_supported(), "instruction set {isa} is not supported by this CPU");
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: support checked above.
        Isa::Avx512 => unsafe { x86::run_avx512(task) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: support checked above.
        Isa::Avx2 => unsafe { x86::run_avx2(task) },
        // SAFETY: the scalar implementation runs anywhere.
        _ => unsafe { task.run::<Scalar>() },
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::IsaTask;
    use super::vector::{Avx2, Avx512};

    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) unsafe fn run_avx512<T: IsaTask>(task: T) -> T::Output {
        // SAFETY: the caller checked the CPU.
        unsafe { task.run::<Avx512>() }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn run_avx2<T: IsaTask>(task: T) -> T::Output {
        // SAFETY: the caller checked the CPU.
        unsafe { task.run::<Avx2>() }
    }
}
