//! The SIMD vocabulary, implemented once per instruction set. Every method is
//! `#[inline(always)]` so that, once inlined into a `#[target_feature]` entry point (see
//! [`super::run`]), the intrinsics compile to the wide instructions.

/// One instruction set's f32 vector register and the operations the kernels need.
///
/// # Safety
/// Implementations call CPU intrinsics: callers must only use an implementation on a CPU that
/// supports it, from code compiled with the matching target features (the dispatch layer
/// guarantees both). Pointer arguments must be valid for `LANES` elements.
#[allow(clippy::missing_safety_doc)] // the trait's Safety section covers every method
pub unsafe trait Simd: Copy + 'static {
    /// Number of f32 lanes in one register.
    const LANES: usize;
    /// Rows of the GEMM micro-kernel: its accumulators (2 registers per row) plus the operands
    /// must fit the register file.
    const MR: usize;
    /// The register type.
    type V: Copy;

    /// Every lane set to `x`.
    unsafe fn splat(x: f32) -> Self::V;
    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// Loads `LANES` f32 values (unaligned).
    unsafe fn load(p: *const f32) -> Self::V;
    /// Stores `LANES` f32 values (unaligned).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Loads `LANES` IEEE half-precision values and widens them exactly to f32.
    unsafe fn load_f16(p: *const u16) -> Self::V;
    /// Loads `LANES` bfloat16 values and widens them exactly to f32.
    unsafe fn load_bf16(p: *const u16) -> Self::V;
    /// Loads `LANES` signed bytes as f32.
    unsafe fn load_i8(p: *const i8) -> Self::V;
    /// `a * b + c`, fused where the hardware has FMA.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// `a - b`.
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b`.
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// `a / b`.
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise maximum.
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise minimum.
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// Clears the sign bit.
    unsafe fn abs(a: Self::V) -> Self::V;
    /// `magnitude` with the sign of `sign`.
    unsafe fn copysign(magnitude: Self::V, sign: Self::V) -> Self::V;
    /// Rounds to the nearest integer (ties to even).
    unsafe fn round(a: Self::V) -> Self::V;
    /// `2^n` for integral `n` in [-126, 127].
    unsafe fn pow2i(n: Self::V) -> Self::V;
    /// Sum of the lanes.
    unsafe fn reduce_sum(a: Self::V) -> f32;
    /// The lane sums of four registers at once (cheaper than four `reduce_sum`s).
    unsafe fn reduce_sum4(a: Self::V, b: Self::V, c: Self::V, d: Self::V) -> [f32; 4] {
        // SAFETY: forwarded.
        unsafe { [Self::reduce_sum(a), Self::reduce_sum(b), Self::reduce_sum(c), Self::reduce_sum(d)] }
    }
    /// Largest lane.
    unsafe fn reduce_max(a: Self::V) -> f32;
}

/// Portable fallback: eight lanes in an array, which the compiler vectorises where it can.
#[derive(Clone, Copy)]
pub struct Scalar;

// SAFETY: plain Rust arithmetic on arrays; pointer validity is the caller's contract.
unsafe impl Simd for Scalar {
    const LANES: usize = 8;
    const MR: usize = 4;
    type V = [f32; 8];

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn zero() -> Self::V {
        [0.0; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        unsafe { p.cast::<[f32; 8]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        unsafe { p.cast::<[f32; 8]>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self::V {
        let bits = unsafe { p.cast::<[u16; 8]>().read_unaligned() };
        bits.map(|b| half::f16::from_bits(b).to_f32())
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self::V {
        let bits = unsafe { p.cast::<[u16; 8]>().read_unaligned() };
        bits.map(|b| f32::from_bits(u32::from(b) << 16))
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> Self::V {
        let bytes = unsafe { p.cast::<[i8; 8]>().read_unaligned() };
        bytes.map(f32::from)
    }
    #[inline(always)]
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] - b[i])
    }
    #[inline(always)]
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] / b[i])
    }
    #[inline(always)]
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| if a[i] > b[i] { a[i] } else { b[i] })
    }
    #[inline(always)]
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| if a[i] < b[i] { a[i] } else { b[i] })
    }
    #[inline(always)]
    unsafe fn abs(a: Self::V) -> Self::V {
        a.map(f32::abs)
    }
    #[inline(always)]
    unsafe fn copysign(magnitude: Self::V, sign: Self::V) -> Self::V {
        std::array::from_fn(|i| magnitude[i].copysign(sign[i]))
    }
    #[inline(always)]
    unsafe fn round(a: Self::V) -> Self::V {
        a.map(f32::round_ties_even)
    }
    #[inline(always)]
    unsafe fn pow2i(n: Self::V) -> Self::V {
        n.map(|n| f32::from_bits(((n as i32 + 127) as u32) << 23))
    }
    #[inline(always)]
    unsafe fn reduce_sum(a: Self::V) -> f32 {
        ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
    }
    #[inline(always)]
    unsafe fn reduce_max(a: Self::V) -> f32 {
        a.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// The sums of four 8-lane registers with three horizontal adds.
    #[inline(always)]
    unsafe fn hsum4_256(a: __m256, b: __m256, c: __m256, d: __m256) -> [f32; 4] {
        unsafe {
            let ab = _mm256_hadd_ps(a, b);
            let cd = _mm256_hadd_ps(c, d);
            let abcd = _mm256_hadd_ps(ab, cd);
            let sums = _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps::<1>(abcd));
            let mut out = [0f32; 4];
            _mm_storeu_ps(out.as_mut_ptr(), sums);
            out
        }
    }

    /// AVX2 + FMA + F16C: eight lanes.
    #[derive(Clone, Copy)]
    pub struct Avx2;

    // SAFETY: only instantiated by the dispatch layer after detecting avx2, fma and f16c.
    unsafe impl Simd for Avx2 {
        const LANES: usize = 8;
        const MR: usize = 6;
        type V = __m256;

        #[inline(always)]
        unsafe fn splat(x: f32) -> Self::V {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn zero() -> Self::V {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self::V {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: Self::V) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const u16) -> Self::V {
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
        }
        #[inline(always)]
        unsafe fn load_bf16(p: *const u16) -> Self::V {
            unsafe {
                let wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(wide))
            }
        }
        #[inline(always)]
        unsafe fn load_i8(p: *const i8) -> Self::V {
            unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sub(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn mul(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn div(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm256_div_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn max(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn min(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm256_min_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn abs(a: Self::V) -> Self::V {
            unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
        }
        #[inline(always)]
        unsafe fn copysign(magnitude: Self::V, sign: Self::V) -> Self::V {
            unsafe {
                let mask = _mm256_set1_ps(-0.0);
                _mm256_or_ps(_mm256_andnot_ps(mask, magnitude), _mm256_and_ps(mask, sign))
            }
        }
        #[inline(always)]
        unsafe fn round(a: Self::V) -> Self::V {
            unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
        }
        #[inline(always)]
        unsafe fn pow2i(n: Self::V) -> Self::V {
            unsafe {
                let i = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
                _mm256_castsi256_ps(_mm256_slli_epi32::<23>(i))
            }
        }
        #[inline(always)]
        unsafe fn reduce_sum(a: Self::V) -> f32 {
            unsafe {
                let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_movehdup_ps(s));
                _mm_cvtss_f32(s)
            }
        }
        #[inline(always)]
        unsafe fn reduce_sum4(a: Self::V, b: Self::V, c: Self::V, d: Self::V) -> [f32; 4] {
            unsafe { hsum4_256(a, b, c, d) }
        }
        #[inline(always)]
        unsafe fn reduce_max(a: Self::V) -> f32 {
            unsafe {
                let s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_max_ss(s, _mm_movehdup_ps(s));
                _mm_cvtss_f32(s)
            }
        }
    }

    /// AVX-512 (F): sixteen lanes.
    #[derive(Clone, Copy)]
    pub struct Avx512;

    // SAFETY: only instantiated by the dispatch layer after detecting avx512f (and avx2, fma).
    unsafe impl Simd for Avx512 {
        const LANES: usize = 16;
        const MR: usize = 12;
        type V = __m512;

        #[inline(always)]
        unsafe fn splat(x: f32) -> Self::V {
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn zero() -> Self::V {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self::V {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: Self::V) {
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const u16) -> Self::V {
            unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
        }
        #[inline(always)]
        unsafe fn load_bf16(p: *const u16) -> Self::V {
            unsafe {
                let wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(wide))
            }
        }
        #[inline(always)]
        unsafe fn load_i8(p: *const i8) -> Self::V {
            unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()))) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sub(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn mul(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn div(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm512_div_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn max(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm512_max_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn min(a: Self::V, b: Self::V) -> Self::V {
            unsafe { _mm512_min_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn abs(a: Self::V) -> Self::V {
            unsafe { _mm512_abs_ps(a) }
        }
        #[inline(always)]
        unsafe fn copysign(magnitude: Self::V, sign: Self::V) -> Self::V {
            unsafe {
                let mask = _mm512_set1_epi32(i32::MIN);
                let m = _mm512_andnot_si512(mask, _mm512_castps_si512(magnitude));
                let s = _mm512_and_si512(mask, _mm512_castps_si512(sign));
                _mm512_castsi512_ps(_mm512_or_si512(m, s))
            }
        }
        #[inline(always)]
        unsafe fn round(a: Self::V) -> Self::V {
            unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
        }
        #[inline(always)]
        unsafe fn pow2i(n: Self::V) -> Self::V {
            unsafe {
                let i = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
                _mm512_castsi512_ps(_mm512_slli_epi32::<23>(i))
            }
        }
        #[inline(always)]
        unsafe fn reduce_sum(a: Self::V) -> f32 {
            unsafe { _mm512_reduce_add_ps(a) }
        }
        #[inline(always)]
        unsafe fn reduce_sum4(a: Self::V, b: Self::V, c: Self::V, d: Self::V) -> [f32; 4] {
            unsafe {
                // Fold each 16-lane register to 8 lanes (AVX-512F only: no DQ extract).
                let half = |v: __m512| -> __m256 {
                    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
                    _mm256_add_ps(_mm512_castps512_ps256(v), hi)
                };
                hsum4_256(half(a), half(b), half(c), half(d))
            }
        }
        #[inline(always)]
        unsafe fn reduce_max(a: Self::V) -> f32 {
            unsafe { _mm512_reduce_max_ps(a) }
        }
    }
}
