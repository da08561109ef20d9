//! Integer scoring of i8 rows.
//!
//! An i8 block stores `value[i][j] ≈ scales[j] · data[i][j]`, so `query · value[i]` equals
//! `(query ⊙ scales) · data[i]`. The scaled query is quantised once per query to i16 with one
//! factor ([`QuantQuery`]); a row's score is then an exact integer sum of i16 × i8 products
//! (`madd` instructions: 32 products per AVX-512 instruction against 16 for f32 FMAs after a
//! two-step widening), times the factor. Integer sums do not depend on their order, so a row
//! scores bit for bit the same through every path (single rows, batches, gathers) and every
//! instruction set. The query's quantisation error is at most half a step of its largest
//! scaled value / 32767 for rows of up to 516 dimensions (coarser steps above, so that no sum
//! can leave i32: / 5,461 at 3,072), far below the rows' own i8 rounding (/ 127).

/// The largest magnitude a stored i8 value can have (a damaged file may hold -128).
const ROW_MAX: i64 = 128;

/// The query's quantisation range for rows of `dim` values: as fine as i16 allows while no
/// row's sum can leave i32.
fn query_limit(dim: usize) -> i16 {
    let bound = i64::from(i32::MAX) / (ROW_MAX * dim.max(1) as i64);
    bound.clamp(1, i64::from(i16::MAX)) as i16
}

/// A query prepared for one i8 block: `query ⊙ scales` as i16 values and the factor that turns
/// their integer products back into scores.
#[derive(Clone, Debug)]
pub struct QuantQuery {
    values: Vec<i16>,
    factor: f32,
}

impl QuantQuery {
    /// Quantises `query ⊙ scales`. A non-finite query gives NaN scores (as the f32 path would);
    /// a zero query scores 0.
    pub fn new(query: &[f32], scales: &[f32]) -> QuantQuery {
        let n = query.len().min(scales.len());
        let scaled = query.iter().zip(scales).map(|(q, s)| q * s);
        let mut max = 0f32;
        let mut finite = true;
        for v in scaled.clone() {
            finite &= v.is_finite();
            max = max.max(v.abs());
        }
        if !finite {
            return QuantQuery { values: vec![0; n], factor: f32::NAN };
        }
        if max == 0.0 {
            return QuantQuery { values: vec![0; n], factor: 0.0 };
        }
        let limit = f32::from(query_limit(n));
        // `v / max` stays within [-1, 1] however small `max` is (`limit / max` could overflow).
        let values = scaled.map(|v| (v / max * limit).round().clamp(-limit, limit) as i16).collect();
        QuantQuery { values, factor: max / limit }
    }

    /// The quantised values.
    pub fn values(&self) -> &[i16] {
        &self.values
    }

    /// The score of an integer sum.
    #[inline(always)]
    pub fn score(&self, sum: i32) -> f32 {
        sum as f32 * self.factor
    }
}

/// Integer kernels: the dot product of one row, of consecutive rows, of gathered rows.
#[derive(Clone, Copy, Debug)]
pub(super) struct IntKernels {
    /// `q · row` as an exact integer.
    pub dot: fn(&[i16], &[i8]) -> i32,
    /// Consecutive rows of `dim` values: `out[i] = factor · (q · rows[i])`.
    pub rows: fn(&[i16], &[i8], usize, f32, &mut [f32]),
    /// The rows `docs` (unsafe: each must index a whole row).
    pub gather: GatherFn,
}

/// Scores the rows `docs` of an i8 block: `out[i] = factor · (q · data[docs[i]])`.
type GatherFn = unsafe fn(&[i16], &[i8], usize, &[u32], f32, &mut [f32]);

impl IntKernels {
    /// Kernels for an AVX-512 (F and BW) CPU.
    #[cfg(target_arch = "x86_64")]
    pub fn avx512() -> IntKernels {
        IntKernels { dot: x86::dot512, rows: x86::rows512, gather: x86::gather512 }
    }

    /// Kernels for an AVX2 CPU.
    #[cfg(target_arch = "x86_64")]
    pub fn avx2() -> IntKernels {
        IntKernels { dot: x86::dot256, rows: x86::rows256, gather: x86::gather256 }
    }

    /// Kernels for any CPU.
    pub fn portable() -> IntKernels {
        IntKernels { dot: portable::dot, rows: portable::rows, gather: portable::gather }
    }
}

/// Exact `q · row` on the tail `from..n` (wrapping arithmetic: sums cannot overflow by
/// construction, and damaged input must not panic).
#[inline(always)]
fn tail(q: &[i16], row: &[i8], from: usize, n: usize) -> i32 {
    let mut sum = 0i32;
    for j in from..n {
        sum = sum.wrapping_add(i32::from(q[j]).wrapping_mul(i32::from(row[j])));
    }
    sum
}

mod portable {
    use super::tail;

    pub(super) fn dot(q: &[i16], row: &[i8]) -> i32 {
        tail(q, row, 0, q.len().min(row.len()))
    }

    pub(super) fn rows(q: &[i16], rows: &[i8], dim: usize, factor: f32, out: &mut [f32]) {
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(dim.max(1))) {
            *o = dot(q, row) as f32 * factor;
        }
    }

    /// # Safety
    /// None beyond the signature's (indexing is checked); `unsafe` to match the other sets.
    pub(super) unsafe fn gather(q: &[i16], data: &[i8], dim: usize, docs: &[u32], factor: f32, out: &mut [f32]) {
        for (o, &doc) in out.iter_mut().zip(docs) {
            let start = doc as usize * dim;
            *o = dot(q, &data[start..start + dim]) as f32 * factor;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::tail;
    use crate::scan::prefetch;
    use std::arch::x86_64::*;

    /// How many gathered rows ahead to prefetch.
    const AHEAD: usize = 6;
    /// How many rows ahead a scan prefetches.
    const STREAM_AHEAD: usize = 128;

    /// Sums of 32 products at a time into 16 i32 lanes, over whole registers.
    #[inline(always)]
    unsafe fn madd512(q: *const i16, row: *const i8, full: usize) -> __m512i {
        // SAFETY: the callers keep `i + 32 <= full` inside both slices.
        unsafe {
            let mut acc = _mm512_setzero_si512();
            let mut i = 0;
            while i < full {
                let d = _mm512_cvtepi8_epi16(_mm256_loadu_si256(row.add(i).cast()));
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(d, _mm512_loadu_si512(q.add(i).cast())));
                i += 32;
            }
            acc
        }
    }

    /// Sums of 16 products at a time into 8 i32 lanes.
    #[inline(always)]
    unsafe fn madd256(q: *const i16, row: *const i8, full: usize) -> __m256i {
        // SAFETY: the callers keep `i + 16 <= full` inside both slices.
        unsafe {
            let mut acc = _mm256_setzero_si256();
            let mut i = 0;
            while i < full {
                let d = _mm256_cvtepi8_epi16(_mm_loadu_si128(row.add(i).cast()));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(d, _mm256_loadu_si256(q.add(i).cast())));
                i += 16;
            }
            acc
        }
    }

    /// The four horizontal sums of four 8-lane accumulators.
    #[inline(always)]
    unsafe fn reduce4_256(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
        // SAFETY: register-only operations of the enabled features.
        unsafe {
            let h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
            _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
        }
    }

    #[inline(always)]
    unsafe fn fold512(a: __m512i) -> __m256i {
        // SAFETY: register-only.
        unsafe { _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64::<1>(a)) }
    }

    #[inline(always)]
    unsafe fn same256(a: __m256i) -> __m256i {
        a
    }

    #[inline(always)]
    unsafe fn hsum256(a: __m256i) -> i32 {
        // SAFETY: register-only.
        unsafe {
            let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
            let s = _mm_hadd_epi32(s, s);
            let s = _mm_hadd_epi32(s, s);
            _mm_cvtsi128_si32(s)
        }
    }

    macro_rules! int_kernels {
        ($dot:ident, $rows:ident, $gather:ident, $features:literal, $lanes:literal, $madd:ident, $fold:ident) => {
            #[target_feature(enable = $features)]
            unsafe fn dot_tf(q: &[i16], row: &[i8]) -> i32 {
                let n = q.len().min(row.len());
                let full = n / $lanes * $lanes;
                // SAFETY: loads stay below `full`.
                let acc = unsafe { $madd(q.as_ptr(), row.as_ptr(), full) };
                // SAFETY: register-only.
                unsafe { hsum256($fold(acc)) }.wrapping_add(tail(q, row, full, n))
            }

            #[target_feature(enable = $features)]
            unsafe fn rows_tf(q: &[i16], rows: &[i8], dim: usize, factor: f32, out: &mut [f32]) {
                let n = out.len().min(rows.len() / dim.max(1));
                let dim_q = dim.min(q.len());
                let full = dim_q / $lanes * $lanes;
                let mut r = 0;
                // SAFETY: every load stays inside row `r + 3 < n` and below `full <= q.len()`.
                unsafe {
                    let f = _mm_set1_ps(factor);
                    while r + 4 <= n {
                        let base = rows.as_ptr().add(r * dim);
                        prefetch(base.wrapping_add(STREAM_AHEAD * dim).cast(), 4 * dim);
                        let a0 = $fold($madd(q.as_ptr(), base, full));
                        let a1 = $fold($madd(q.as_ptr(), base.add(dim), full));
                        let a2 = $fold($madd(q.as_ptr(), base.add(2 * dim), full));
                        let a3 = $fold($madd(q.as_ptr(), base.add(3 * dim), full));
                        let mut sums = reduce4_256(a0, a1, a2, a3);
                        if full < dim_q {
                            let extra = [
                                tail(q, &rows[r * dim..(r + 1) * dim], full, dim_q),
                                tail(q, &rows[(r + 1) * dim..(r + 2) * dim], full, dim_q),
                                tail(q, &rows[(r + 2) * dim..(r + 3) * dim], full, dim_q),
                                tail(q, &rows[(r + 3) * dim..(r + 4) * dim], full, dim_q),
                            ];
                            sums = _mm_add_epi32(sums, _mm_loadu_si128(extra.as_ptr().cast()));
                        }
                        _mm_storeu_ps(out.as_mut_ptr().add(r), _mm_mul_ps(_mm_cvtepi32_ps(sums), f));
                        r += 4;
                    }
                    for (o, row) in out[r..n].iter_mut().zip(rows[r * dim..].chunks_exact(dim)) {
                        *o = dot_tf(q, row) as f32 * factor;
                    }
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn gather_tf(q: &[i16], data: &[i8], dim: usize, docs: &[u32], factor: f32, out: &mut [f32]) {
                for (i, (o, &doc)) in out.iter_mut().zip(docs).enumerate() {
                    if let Some(&next) = docs.get(i + AHEAD) {
                        prefetch(data.as_ptr().wrapping_add(next as usize * dim).cast(), dim);
                    }
                    // SAFETY: by the caller's contract the row is inside `data`.
                    let row = unsafe { data.get_unchecked(doc as usize * dim..(doc as usize + 1) * dim) };
                    // SAFETY: the features are enabled here.
                    *o = unsafe { dot_tf(q, row) } as f32 * factor;
                }
            }

            // Only reachable through `IntKernels`, chosen after checking the CPU.
            pub(in crate::scan) fn $dot(q: &[i16], row: &[i8]) -> i32 {
                // SAFETY: see above.
                unsafe { dot_tf(q, row) }
            }

            pub(in crate::scan) fn $rows(q: &[i16], rows: &[i8], dim: usize, factor: f32, out: &mut [f32]) {
                // SAFETY: see above.
                unsafe { rows_tf(q, rows, dim, factor, out) }
            }

            /// # Safety
            /// Every doc must index a whole row.
            pub(in crate::scan) unsafe fn $gather(
                q: &[i16],
                data: &[i8],
                dim: usize,
                docs: &[u32],
                factor: f32,
                out: &mut [f32],
            ) {
                // SAFETY: see above, and the caller's contract.
                unsafe { gather_tf(q, data, dim, docs, factor, out) }
            }
        };
    }

    mod k512 {
        use super::*;
        int_kernels!(dot512, rows512, gather512, "avx512f,avx512bw,avx2", 32, madd512, fold512);
    }
    mod k256 {
        use super::*;
        int_kernels!(dot256, rows256, gather256, "avx2", 16, madd256, same256);
    }
    pub(super) use k256::{dot256, gather256, rows256};
    pub(super) use k512::{dot512, gather512, rows512};
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_sets() -> Vec<(&'static str, IntKernels)> {
        let mut sets = vec![("portable", IntKernels::portable())];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                sets.push(("avx2", IntKernels::avx2()));
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                sets.push(("avx512", IntKernels::avx512()));
            }
        }
        sets
    }

    fn pseudo(n: usize, seed: u32) -> Vec<i8> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 24) as u8 as i8
            })
            .collect()
    }

    #[test]
    fn every_set_sums_exactly_on_every_path() {
        for dim in [1usize, 5, 16, 31, 32, 40, 96, 97, 384] {
            let rows = pseudo(dim * 11, dim as u32);
            let q: Vec<i16> = pseudo(dim, 7).iter().map(|&v| i16::from(v) * 251).collect();
            let want: Vec<i32> = rows
                .chunks_exact(dim)
                .map(|r| r.iter().zip(&q).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum())
                .collect();
            for (name, k) in kernel_sets() {
                let got: Vec<i32> = rows.chunks_exact(dim).map(|r| (k.dot)(&q, r)).collect();
                assert_eq!(got, want, "{name} dot, dim {dim}");
                let mut out = vec![0f32; 11];
                (k.rows)(&q, &rows, dim, 0.5, &mut out);
                let expect: Vec<f32> = want.iter().map(|&s| s as f32 * 0.5).collect();
                assert_eq!(out, expect, "{name} rows, dim {dim}");
                let docs = [10u32, 0, 3, 3];
                let mut out = [0f32; 4];
                // SAFETY: every doc is one of the 11 rows.
                unsafe { (k.gather)(&q, &rows, dim, &docs, 0.5, &mut out) };
                for (o, &d) in out.iter().zip(&docs) {
                    assert_eq!(*o, want[d as usize] as f32 * 0.5, "{name} gather, dim {dim}");
                }
            }
        }
    }

    #[test]
    fn extreme_values_cannot_overflow() {
        let dim = 4096;
        let rows = vec![-128i8; dim];
        let q = QuantQuery::new(&vec![-1.0f32; dim], &vec![1.0f32; dim]);
        let limit = i64::from(query_limit(dim));
        for (_, k) in kernel_sets() {
            assert_eq!(i64::from((k.dot)(q.values(), &rows)), 128 * limit * dim as i64);
        }
    }

    #[test]
    fn quantised_queries_keep_their_values() {
        let query = [0.5f32, -0.25, 0.125, 0.0, 1e-6];
        let scales = [0.01f32, 0.02, 0.04, 1.0, 1.0];
        let q = QuantQuery::new(&query, &scales);
        for ((v, qv), s) in q.values().iter().zip(query).zip(scales) {
            assert!((f32::from(*v) * q.factor - qv * s).abs() <= q.factor * 0.5 + 1e-12);
        }
        assert_eq!(QuantQuery::new(&[0.0, 0.0], &[1.0, 1.0]).score(5), 0.0);
        // Tiny values keep their ratios (no overflow of 1 / max).
        let tiny = QuantQuery::new(&[1e-36, 1e-38, 0.0], &[1.0, 1.0, 1.0]);
        assert_eq!(tiny.values(), &[32767, 328, 0]);
        assert!(QuantQuery::new(&[f32::NAN, 1.0], &[1.0, 1.0]).score(5).is_nan());
    }
}
