//! Exact scoring: inner products of a query rung vector with rows of a rung block, for
//! rescoring candidates and for brute-force top-k (ground truth, small indexes).
//!
//! Stored vectors are compared by inner product: for cosine profiles they were normalised when
//! encoded, so the inner product *is* the cosine.

mod quantised;
mod select;

pub use quantised::QuantQuery;
pub use select::{Scored, TopK, best_first, kth_largest, score_key, select_best};

use crate::simd::{Elem, Isa, Simd};
use crate::vectors::{BlockData, RungBlock};
use half::f16;
use quantised::IntKernels;
use select::at_least;

/// A query ready for one block's rows: as given for f32 and f16 blocks, scaled and quantised
/// for i8 blocks (see [`QuantQuery`]).
#[derive(Clone, Debug)]
pub enum Prepared<'q> {
    /// The query itself.
    Float(&'q [f32]),
    /// The query quantised for an i8 block.
    Quant(QuantQuery),
}

impl Prepared<'_> {
    /// The query's number of dimensions.
    pub fn len(&self) -> usize {
        match self {
            Prepared::Float(q) => q.len(),
            Prepared::Quant(q) => q.values().len(),
        }
    }

    /// Whether the query has no dimensions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Inner product of `q` with one row. The canonical order every path uses (single rows,
/// batches, gathers): one accumulator over whole registers, the four-way horizontal sum, then
/// the tail — so a document's score never depends on how it was reached.
#[inline(always)]
unsafe fn dot<S: Simd, E: Elem>(q: &[f32], row: &[E]) -> f32 {
    let n = q.len().min(row.len());
    let lanes = S::LANES;
    let full = n / lanes * lanes;
    // SAFETY: every load stays below `n`.
    unsafe {
        let mut acc = S::zero();
        let mut i = 0;
        while i < full {
            acc = S::fma(S::load(q.as_ptr().add(i)), E::load::<S>(row.as_ptr().add(i)), acc);
            i += lanes;
        }
        let zero = S::zero();
        let mut sum = S::reduce_sum4(acc, zero, zero, zero)[0];
        for j in full..n {
            sum += q[j] * row[j].to_f32();
        }
        sum
    }
}

/// Inner products of `q` with consecutive rows of `dim` values: `out[i] = q · rows[i]`.
/// Four rows at a time, so that the horizontal sums (the costly part for short rows) are shared.
#[inline(always)]
unsafe fn dot_rows<S: Simd, E: Elem>(q: &[f32], rows: &[E], dim: usize, out: &mut [f32]) {
    let lanes = S::LANES;
    let n = out.len().min(rows.len() / dim.max(1));
    let full = dim / lanes * lanes;
    let mut r = 0;
    // SAFETY: every load stays inside `q` (< full <= dim) and inside row `r + j` (< n).
    unsafe {
        while r + 4 <= n {
            let base = rows.as_ptr().add(r * dim);
            let (mut a0, mut a1, mut a2, mut a3) = (S::zero(), S::zero(), S::zero(), S::zero());
            let mut i = 0;
            while i < full {
                let qv = S::load(q.as_ptr().add(i));
                a0 = S::fma(qv, E::load::<S>(base.add(i)), a0);
                a1 = S::fma(qv, E::load::<S>(base.add(dim + i)), a1);
                a2 = S::fma(qv, E::load::<S>(base.add(2 * dim + i)), a2);
                a3 = S::fma(qv, E::load::<S>(base.add(3 * dim + i)), a3);
                i += lanes;
            }
            let mut sums = S::reduce_sum4(a0, a1, a2, a3);
            for (row, sum) in sums.iter_mut().enumerate() {
                for (j, qj) in q.iter().enumerate().take(dim).skip(full) {
                    *sum += qj * (*base.add(row * dim + j)).to_f32();
                }
            }
            out[r..r + 4].copy_from_slice(&sums);
            r += 4;
        }
        for (o, row) in out[r..n].iter_mut().zip(rows[r * dim..].chunks_exact(dim)) {
            *o = dot::<S, E>(q, row);
        }
    }
}

/// Inner products of `q` with the rows `docs` of a block of `dim`-value rows:
/// `out[i] = q · data[docs[i]]`. Rows are prefetched a few ahead (candidates are scattered).
///
/// # Safety
/// Every `docs[i]` must index a whole row of `data`.
#[inline(always)]
unsafe fn dot_gather<S: Simd, E: Elem>(q: &[f32], data: &[E], dim: usize, docs: &[u32], out: &mut [f32]) {
    const AHEAD: usize = 6;
    for (i, (o, &doc)) in out.iter_mut().zip(docs).enumerate() {
        if let Some(&next) = docs.get(i + AHEAD) {
            prefetch(data.as_ptr().wrapping_add(next as usize * dim).cast(), dim * size_of::<E>());
        }
        // SAFETY: by the caller's contract.
        let row = unsafe { data.get_unchecked(doc as usize * dim..(doc as usize + 1) * dim) };
        // SAFETY: forwarded.
        *o = unsafe { dot::<S, E>(q, row) };
    }
}

/// Hints the CPU to fetch `bytes` from `p` into cache (a no-op off x86-64).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let mut offset = 0;
        while offset < bytes {
            // SAFETY: prefetching is a hint; it never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(offset).cast()) };
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}

#[inline(always)]
unsafe fn l2_squared<S: Simd>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let lanes = S::LANES;
    // SAFETY: every load stays below `n`.
    unsafe {
        let (mut a0, mut a1) = (S::zero(), S::zero());
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let mut i = 0;
        while i + 2 * lanes <= n {
            let d0 = S::sub(S::load(ap.add(i)), S::load(bp.add(i)));
            let d1 = S::sub(S::load(ap.add(i + lanes)), S::load(bp.add(i + lanes)));
            a0 = S::fma(d0, d0, a0);
            a1 = S::fma(d1, d1, a1);
            i += 2 * lanes;
        }
        while i + lanes <= n {
            let d = S::sub(S::load(ap.add(i)), S::load(bp.add(i)));
            a0 = S::fma(d, d, a0);
            i += lanes;
        }
        let mut sum = S::reduce_sum(S::add(a0, a1));
        for j in i..n {
            let d = a[j] - b[j];
            sum += d * d;
        }
        sum
    }
}

macro_rules! kernel_set {
    ($module:ident, $simd:ty, $features:literal) => {
        mod $module {
            use super::*;
            #[target_feature(enable = $features)]
            unsafe fn dot_f32_tf(q: &[f32], r: &[f32]) -> f32 {
                unsafe { dot::<$simd, f32>(q, r) }
            }
            #[target_feature(enable = $features)]
            unsafe fn dot_f16_tf(q: &[f32], r: &[f16]) -> f32 {
                unsafe { dot::<$simd, f16>(q, r) }
            }
            #[target_feature(enable = $features)]
            unsafe fn l2_tf(a: &[f32], b: &[f32]) -> f32 {
                unsafe { l2_squared::<$simd>(a, b) }
            }
            #[target_feature(enable = $features)]
            unsafe fn rows_f32_tf(q: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
                unsafe { dot_rows::<$simd, f32>(q, rows, dim, out) }
            }
            #[target_feature(enable = $features)]
            unsafe fn rows_f16_tf(q: &[f32], rows: &[f16], dim: usize, out: &mut [f32]) {
                unsafe { dot_rows::<$simd, f16>(q, rows, dim, out) }
            }
            #[target_feature(enable = $features)]
            unsafe fn gather_f32_tf(q: &[f32], data: &[f32], dim: usize, docs: &[u32], out: &mut [f32]) {
                unsafe { dot_gather::<$simd, f32>(q, data, dim, docs, out) }
            }
            #[target_feature(enable = $features)]
            unsafe fn gather_f16_tf(q: &[f32], data: &[f16], dim: usize, docs: &[u32], out: &mut [f32]) {
                unsafe { dot_gather::<$simd, f16>(q, data, dim, docs, out) }
            }
            /// # Safety
            /// Every doc must index a whole row.
            pub(super) unsafe fn gather_f32(q: &[f32], data: &[f32], dim: usize, docs: &[u32], out: &mut [f32]) {
                // SAFETY: see above, and the caller's contract.
                unsafe { gather_f32_tf(q, data, dim, docs, out) }
            }
            /// # Safety
            /// Every doc must index a whole row.
            pub(super) unsafe fn gather_f16(q: &[f32], data: &[f16], dim: usize, docs: &[u32], out: &mut [f32]) {
                // SAFETY: see above, and the caller's contract.
                unsafe { gather_f16_tf(q, data, dim, docs, out) }
            }
            pub(super) fn rows_f32(q: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
                // SAFETY: see above.
                unsafe { rows_f32_tf(q, rows, dim, out) }
            }
            pub(super) fn rows_f16(q: &[f32], rows: &[f16], dim: usize, out: &mut [f32]) {
                // SAFETY: see above.
                unsafe { rows_f16_tf(q, rows, dim, out) }
            }
            // These are only reachable through `Kernels::new`, which checks the CPU first.
            pub(super) fn dot_f32(q: &[f32], r: &[f32]) -> f32 {
                // SAFETY: see above.
                unsafe { dot_f32_tf(q, r) }
            }
            pub(super) fn dot_f16(q: &[f32], r: &[f16]) -> f32 {
                // SAFETY: see above.
                unsafe { dot_f16_tf(q, r) }
            }
            pub(super) fn l2(a: &[f32], b: &[f32]) -> f32 {
                // SAFETY: see above.
                unsafe { l2_tf(a, b) }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
kernel_set!(avx512, crate::simd::Avx512, "avx512f,avx2,fma,f16c");
#[cfg(target_arch = "x86_64")]
kernel_set!(avx2, crate::simd::Avx2, "avx2,fma,f16c");

mod portable {
    use super::*;
    use crate::simd::Scalar;
    pub(super) fn dot_f32(q: &[f32], r: &[f32]) -> f32 {
        // SAFETY: the portable implementation runs anywhere.
        unsafe { dot::<Scalar, f32>(q, r) }
    }
    pub(super) fn dot_f16(q: &[f32], r: &[f16]) -> f32 {
        // SAFETY: as above.
        unsafe { dot::<Scalar, f16>(q, r) }
    }
    pub(super) fn l2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { l2_squared::<Scalar>(a, b) }
    }
    pub(super) fn rows_f32(q: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
        // SAFETY: as above.
        unsafe { dot_rows::<Scalar, f32>(q, rows, dim, out) }
    }
    /// # Safety
    /// Every doc must index a whole row.
    pub(super) unsafe fn gather_f32(q: &[f32], data: &[f32], dim: usize, docs: &[u32], out: &mut [f32]) {
        // SAFETY: the caller's contract.
        unsafe { dot_gather::<Scalar, f32>(q, data, dim, docs, out) }
    }
    /// # Safety
    /// Every doc must index a whole row.
    pub(super) unsafe fn gather_f16(q: &[f32], data: &[f16], dim: usize, docs: &[u32], out: &mut [f32]) {
        // SAFETY: the caller's contract.
        unsafe { dot_gather::<Scalar, f16>(q, data, dim, docs, out) }
    }
    pub(super) fn rows_f16(q: &[f32], rows: &[f16], dim: usize, out: &mut [f32]) {
        // SAFETY: as above.
        unsafe { dot_rows::<Scalar, f16>(q, rows, dim, out) }
    }
}

/// Exact scoring kernels for one instruction set, chosen once.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    isa: Isa,
    dot_f32: fn(&[f32], &[f32]) -> f32,
    dot_f16: fn(&[f32], &[f16]) -> f32,
    l2: fn(&[f32], &[f32]) -> f32,
    rows_f32: fn(&[f32], &[f32], usize, &mut [f32]),
    rows_f16: fn(&[f32], &[f16], usize, &mut [f32]),
    gather_f32: GatherFn<f32>,
    gather_f16: GatherFn<f16>,
    int: IntKernels,
}

/// Scores the rows `docs` of a block into `out` (unsafe: the rows must exist).
type GatherFn<E> = unsafe fn(&[f32], &[E], usize, &[u32], &mut [f32]);

impl Default for Kernels {
    fn default() -> Self {
        Kernels::new(Isa::best())
    }
}

impl Kernels {
    /// Kernels for `isa` (falls back to the best supported one if this CPU lacks it).
    pub fn new(isa: Isa) -> Kernels {
        let isa = if isa.is_supported() { isa } else { Isa::best() };
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Kernels {
                isa,
                dot_f32: avx512::dot_f32,
                dot_f16: avx512::dot_f16,
                l2: avx512::l2,
                rows_f32: avx512::rows_f32,
                rows_f16: avx512::rows_f16,
                gather_f32: avx512::gather_f32,
                gather_f16: avx512::gather_f16,
                int: if is_x86_feature_detected!("avx512bw") { IntKernels::avx512() } else { IntKernels::avx2() },
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Kernels {
                isa,
                dot_f32: avx2::dot_f32,
                dot_f16: avx2::dot_f16,
                l2: avx2::l2,
                rows_f32: avx2::rows_f32,
                rows_f16: avx2::rows_f16,
                gather_f32: avx2::gather_f32,
                gather_f16: avx2::gather_f16,
                int: IntKernels::avx2(),
            },
            _ => Kernels {
                isa: Isa::Scalar,
                dot_f32: portable::dot_f32,
                dot_f16: portable::dot_f16,
                l2: portable::l2,
                rows_f32: portable::rows_f32,
                rows_f16: portable::rows_f16,
                gather_f32: portable::gather_f32,
                gather_f16: portable::gather_f16,
                int: IntKernels::portable(),
            },
        }
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Squared Euclidean distance.
    pub fn l2_squared(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.l2)(a, b)
    }

    /// Prepares `query` for scoring rows of `block` (for i8 blocks: scaled and quantised once;
    /// callers that score many rows of one block for one query should prepare once). The
    /// result belongs to this block: another segment's block of the same rung has its own
    /// scales and needs its own preparation.
    pub fn prepare<'q>(&self, block: &RungBlock<'_>, query: &'q [f32]) -> Prepared<'q> {
        match block.data {
            BlockData::I8 { scales, .. } => Prepared::Quant(QuantQuery::new(query, scales)),
            _ => Prepared::Float(query),
        }
    }

    /// Inner product of `query` with row `row` of `block`.
    pub fn score(&self, block: &RungBlock<'_>, query: &[f32], row: u32) -> f32 {
        self.score_prepared(block, &self.prepare(block, query), row)
    }

    /// [`Kernels::score`] with a query prepared for this block by [`Kernels::prepare`].
    pub fn score_prepared(&self, block: &RungBlock<'_>, query: &Prepared<'_>, row: u32) -> f32 {
        let (start, end) = (row as usize * block.dim, (row as usize + 1) * block.dim);
        match (block.data, query) {
            (BlockData::F32(d), Prepared::Float(q)) => (self.dot_f32)(q, &d[start..end]),
            (BlockData::F16(d), Prepared::Float(q)) => (self.dot_f16)(q, &d[start..end]),
            (BlockData::I8 { data, .. }, Prepared::Quant(q)) => q.score((self.int.dot)(q.values(), &data[start..end])),
            _ => f32::NAN,
        }
    }

    /// Inner products of `query` with the given rows, into `out` (rows at or beyond the
    /// block's end score NaN).
    pub fn score_rows(&self, block: &RungBlock<'_>, query: &[f32], rows: &[u32], out: &mut [f32]) {
        self.score_rows_prepared(block, &self.prepare(block, query), rows, out);
    }

    /// [`Kernels::score_rows`] with a query prepared for this block by [`Kernels::prepare`]
    /// (a query prepared for another kind of block scores NaN).
    pub fn score_rows_prepared(&self, block: &RungBlock<'_>, query: &Prepared<'_>, rows: &[u32], out: &mut [f32]) {
        let n = rows.len().min(out.len());
        if rows[..n].iter().any(|&r| r as usize >= block.count) || query.len() < block.dim {
            for (o, &row) in out.iter_mut().zip(rows) {
                *o = if (row as usize) < block.count { self.score_prepared(block, query, row) } else { f32::NAN };
            }
            return;
        }
        let (rows, out) = (&rows[..n], &mut out[..n]);
        // SAFETY: every row is inside the block (checked above).
        unsafe {
            match (block.data, query) {
                (BlockData::F32(d), Prepared::Float(q)) => (self.gather_f32)(q, d, block.dim, rows, out),
                (BlockData::F16(d), Prepared::Float(q)) => (self.gather_f16)(q, d, block.dim, rows, out),
                (BlockData::I8 { data, .. }, Prepared::Quant(q)) => {
                    (self.int.gather)(q.values(), data, block.dim, rows, q.score(1), out)
                }
                _ => out.fill(f32::NAN),
            }
        }
    }

    /// The `k` best rows of a whole block by inner product with `query`, best first, skipping
    /// rows for which `skip` is true.
    pub fn top_k(&self, block: &RungBlock<'_>, query: &[f32], k: usize, skip: impl Fn(u32) -> bool) -> Vec<Scored> {
        self.top_k_range(block, query, k, 0..block.count as u32, skip)
    }

    /// [`Kernels::top_k`] over the rows in `rows` only.
    pub fn top_k_range(
        &self,
        block: &RungBlock<'_>,
        query: &[f32],
        k: usize,
        rows: std::ops::Range<u32>,
        skip: impl Fn(u32) -> bool,
    ) -> Vec<Scored> {
        let mut best = self.best_k_range(block, query, k, rows, skip);
        best.sort_by(best_first);
        best
    }

    /// The `k` best rows in `rows`, in no particular order (what a cascade's next stage needs:
    /// it rescores them all anyway). Rows for which `skip` is true are left out.
    pub fn best_k_range(
        &self,
        block: &RungBlock<'_>,
        query: &[f32],
        k: usize,
        rows: std::ops::Range<u32>,
        skip: impl Fn(u32) -> bool,
    ) -> Vec<Scored> {
        const CHUNK: usize = 256;
        let end = rows.end.min(block.count as u32);
        let start = rows.start.min(end);
        let n = (end - start) as usize;
        if k == 0 || n == 0 || query.len() < block.dim {
            return Vec::new();
        }
        let prepared = self.prepare(block, query);
        let score_into = |first: u32, out: &mut [f32]| {
            let (a, b) = (first as usize * block.dim, (first as usize + out.len()) * block.dim);
            match (block.data, &prepared) {
                (BlockData::F32(d), _) => (self.rows_f32)(query, &d[a..b], block.dim, out),
                (BlockData::F16(d), _) => (self.rows_f16)(query, &d[a..b], block.dim, out),
                (BlockData::I8 { data, .. }, Prepared::Quant(q)) => {
                    (self.int.rows)(q.values(), &data[a..b], block.dim, q.score(1), out)
                }
                (BlockData::I8 { .. }, Prepared::Float(_)) => out.fill(f32::NAN),
            }
        };
        if k > 64 {
            // A large shortlist: score every row straight into one buffer, find a score that at
            // least k reach (from a sample), keep what reaches it, then the k best of those
            // (linear; no per-row bookkeeping).
            let mut scores = vec![0f32; n];
            for (c, out) in scores.chunks_mut(CHUNK).enumerate() {
                score_into(start + (c * CHUNK) as u32, out);
            }
            for (i, score) in scores.iter_mut().enumerate() {
                if skip(start + i as u32) {
                    *score = f32::NAN;
                }
            }
            let mut kept = at_least(&scores, k, start);
            select_best(&mut kept, k);
            kept
        } else {
            let mut heap = TopK::new(k);
            let mut buffer = [0f32; CHUNK];
            let mut first = start;
            while first < end {
                let m = ((end - first) as usize).min(CHUNK);
                score_into(first, &mut buffer[..m]);
                for (i, &score) in buffer[..m].iter().enumerate() {
                    let doc = first + i as u32;
                    if heap.would_keep(score) && !skip(doc) {
                        heap.push(Scored { score, doc });
                    }
                }
                first += m as u32;
            }
            heap.into_unsorted()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-0.5, 0.5).
    pub(in crate::scan) fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn every_isa_scores_like_f64() {
        for isa in Isa::supported() {
            let k = Kernels::new(isa);
            for dim in [1, 7, 16, 33, 64, 97, 384] {
                let q = values(dim, 1);
                let rows = values(dim * 5, 2);
                let rows16: Vec<f16> = rows.iter().map(|&v| f16::from_f32(v)).collect();
                for r in 0..5u32 {
                    let row = &rows[r as usize * dim..(r as usize + 1) * dim];
                    let want: f64 = q.iter().zip(row).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                    let b32 = RungBlock { data: BlockData::F32(&rows), dim, count: 5 };
                    assert!((f64::from(k.score(&b32, &q, r)) - want).abs() < 1e-5, "{isa} dim {dim}");
                    let want16: f64 = q
                        .iter()
                        .zip(&rows16[r as usize * dim..])
                        .map(|(a, b)| f64::from(*a) * f64::from(b.to_f32()))
                        .sum();
                    let b16 = RungBlock { data: BlockData::F16(&rows16), dim, count: 5 };
                    assert!((f64::from(k.score(&b16, &q, r)) - want16).abs() < 1e-5, "{isa} f16 dim {dim}");
                    let l2: f64 = q.iter().zip(row).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum();
                    assert!((f64::from(k.l2_squared(&q, row)) - l2).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn radix_selection_finds_the_kth_largest() {
        let mut values = values(5000, 9);
        values[17] = f32::NAN;
        values[18] = -3.0;
        values[19] = 7.5;
        values[20] = 7.5;
        let mut sorted: Vec<f32> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for k in [1, 2, 3, 10, 999, 4999] {
            assert_eq!(kth_largest(&values, k), sorted[k - 1], "k = {k}");
        }
        assert_eq!(kth_largest(&values, 5000), f32::NEG_INFINITY, "the NaN is last");
        assert_eq!(kth_largest(&[], 3), f32::NEG_INFINITY);
        assert_eq!(kth_largest(&[-0.0, 0.0], 2), 0.0);
    }

    #[test]
    fn gathered_scores_match_single_scores() {
        let k = Kernels::default();
        let rows = values(64 * 100, 5);
        let rows16: Vec<f16> = rows.iter().map(|&v| f16::from_f32(v)).collect();
        let q = values(64, 6);
        let docs = [99u32, 0, 50, 50, 7];
        for block in [
            RungBlock { data: BlockData::F32(&rows), dim: 64, count: 100 },
            RungBlock { data: BlockData::F16(&rows16), dim: 64, count: 100 },
        ] {
            let mut out = [0.0; 5];
            k.score_rows(&block, &q, &docs, &mut out);
            for (o, &d) in out.iter().zip(&docs) {
                assert_eq!(*o, k.score(&block, &q, d));
            }
            let mut out = [0.0; 2];
            k.score_rows(&block, &q, &[3, 100], &mut out);
            assert!(out[1].is_nan(), "out of range");
        }
    }

    #[test]
    fn i8_blocks_score_as_their_dequantised_values() {
        let k = Kernels::default();
        let dim = 40;
        let rows = values(dim * 50, 11);
        let scales = crate::vectors::i8_scales(&rows, dim);
        let data: Vec<i8> = rows
            .chunks_exact(dim)
            .flat_map(|r| r.iter().zip(&scales).map(|(v, s)| crate::vectors::quantize(*v, *s)))
            .collect();
        let dequantised: Vec<f32> =
            data.chunks_exact(dim).flat_map(|r| r.iter().zip(&scales).map(|(&v, s)| f32::from(v) * s)).collect();
        let q = values(dim, 12);
        let i8_block = RungBlock { data: BlockData::I8 { data: &data, scales: &scales }, dim, count: 50 };
        let f32_block = RungBlock { data: BlockData::F32(&dequantised), dim, count: 50 };
        // The query's i16 quantisation moves each product by at most half a step of
        // max|q ⊙ scales| / 32767 times |row value| ≤ 127.
        let step = q.iter().zip(&scales).map(|(a, s)| (a * s).abs()).fold(0f32, f32::max) / 32767.0;
        let bound = dim as f32 * 127.0 * step / 2.0 + 1e-6;
        for row in [0u32, 17, 49] {
            let diff = (k.score(&i8_block, &q, row) - k.score(&f32_block, &q, row)).abs();
            assert!(diff <= bound, "row {row}: {diff} > {bound}");
        }
        let a: Vec<u32> = k.top_k(&i8_block, &q, 5, |_| false).iter().map(|s| s.doc).collect();
        let b: Vec<u32> = k.top_k(&f32_block, &q, 5, |_| false).iter().map(|s| s.doc).collect();
        assert_eq!(a, b);
        // Every path gives a row the same score, bit for bit, on every instruction set.
        let mut out = [0.0; 3];
        k.score_rows(&i8_block, &q, &[3, 4, 5], &mut out);
        assert_eq!(out[1], k.score(&i8_block, &q, 4));
        let prepared = k.prepare(&i8_block, &q);
        let scanned = k.top_k(&i8_block, &q, 50, |_| false);
        for isa in Isa::supported() {
            let other = Kernels::new(isa);
            for s in &scanned {
                assert_eq!(other.score(&i8_block, &q, s.doc), s.score, "{isa}");
                assert_eq!(other.score_prepared(&i8_block, &prepared, s.doc), s.score, "{isa}");
            }
        }
        // A query prepared for another kind of block scores NaN rather than garbage.
        assert!(k.score_prepared(&f32_block, &prepared, 0).is_nan());
    }

    #[test]
    fn top_k_is_exact_and_ordered() {
        let k = Kernels::default();
        let dim = 24;
        let rows = values(dim * 1000, 3);
        let q = values(dim, 4);
        let block = RungBlock { data: BlockData::F32(&rows), dim, count: 1000 };
        let got = k.top_k(&block, &q, 10, |row| row % 7 == 0);
        let mut all: Vec<Scored> =
            (0..1000u32).filter(|r| r % 7 != 0).map(|r| Scored { score: k.score(&block, &q, r), doc: r }).collect();
        all.sort_by(best_first);
        assert_eq!(got, all[..10].to_vec());
        assert!(k.top_k(&block, &q, 0, |_| false).is_empty());
        assert_eq!(k.top_k(&block, &q, 5000, |_| false).len(), 1000);
        // The large-k path (radix selection) agrees with the heap path.
        let big = k.top_k(&block, &q, 300, |row| row % 7 == 0);
        assert_eq!(big, all[..300].to_vec());
    }
}
