//! Exact scoring: inner products of a query rung vector with rows of a rung block, for
//! rescoring candidates and for brute-force top-k (ground truth, small indexes).
//!
//! Stored vectors are compared by inner product: for cosine profiles they were normalised when
//! encoded, so the inner product *is* the cosine.

use crate::simd::{Elem, Isa, Simd};
use crate::vectors::{BlockData, RungBlock};
use half::f16;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[inline(always)]
unsafe fn dot<S: Simd, E: Elem>(q: &[f32], row: &[E]) -> f32 {
    let n = q.len().min(row.len());
    let lanes = S::LANES;
    let full = n / (4 * lanes) * (4 * lanes);
    // SAFETY: every load stays below `n`.
    unsafe {
        let (mut a0, mut a1, mut a2, mut a3) = (S::zero(), S::zero(), S::zero(), S::zero());
        let (qp, rp) = (q.as_ptr(), row.as_ptr());
        let mut i = 0;
        while i < full {
            a0 = S::fma(S::load(qp.add(i)), E::load::<S>(rp.add(i)), a0);
            a1 = S::fma(S::load(qp.add(i + lanes)), E::load::<S>(rp.add(i + lanes)), a1);
            a2 = S::fma(S::load(qp.add(i + 2 * lanes)), E::load::<S>(rp.add(i + 2 * lanes)), a2);
            a3 = S::fma(S::load(qp.add(i + 3 * lanes)), E::load::<S>(rp.add(i + 3 * lanes)), a3);
            i += 4 * lanes;
        }
        while i + lanes <= n {
            a0 = S::fma(S::load(qp.add(i)), E::load::<S>(rp.add(i)), a0);
            i += lanes;
        }
        let mut sum = S::reduce_sum(S::add(S::add(a0, a1), S::add(a2, a3)));
        for j in i..n {
            sum += q[j] * row[j].to_f32();
        }
        sum
    }
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
}

/// Exact scoring kernels for one instruction set, chosen once.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    isa: Isa,
    dot_f32: fn(&[f32], &[f32]) -> f32,
    dot_f16: fn(&[f32], &[f16]) -> f32,
    l2: fn(&[f32], &[f32]) -> f32,
}

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
            Isa::Avx512 => Kernels { isa, dot_f32: avx512::dot_f32, dot_f16: avx512::dot_f16, l2: avx512::l2 },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Kernels { isa, dot_f32: avx2::dot_f32, dot_f16: avx2::dot_f16, l2: avx2::l2 },
            _ => Kernels { isa: Isa::Scalar, dot_f32: portable::dot_f32, dot_f16: portable::dot_f16, l2: portable::l2 },
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

    /// Inner product of `query` with row `row` of `block`.
    pub fn score(&self, block: &RungBlock<'_>, query: &[f32], row: u32) -> f32 {
        let (start, end) = (row as usize * block.dim, (row as usize + 1) * block.dim);
        match block.data {
            BlockData::F32(d) => (self.dot_f32)(query, &d[start..end]),
            BlockData::F16(d) => (self.dot_f16)(query, &d[start..end]),
        }
    }

    /// Inner products of `query` with the given rows, into `out`.
    pub fn score_rows(&self, block: &RungBlock<'_>, query: &[f32], rows: &[u32], out: &mut [f32]) {
        for (o, &row) in out.iter_mut().zip(rows) {
            *o = self.score(block, query, row);
        }
    }

    /// The `k` best rows of a whole block by inner product with `query`, best first, skipping
    /// rows for which `skip` is true.
    pub fn top_k(&self, block: &RungBlock<'_>, query: &[f32], k: usize, skip: impl Fn(u32) -> bool) -> Vec<Scored> {
        let mut heap = TopK::new(k);
        for row in 0..block.count as u32 {
            if !skip(row) {
                heap.push(Scored { score: self.score(block, query, row), doc: row });
            }
        }
        heap.into_sorted()
    }
}

/// A document number with its score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    /// Score (higher is better).
    pub score: f32,
    /// Document number.
    pub doc: u32,
}

/// Best-first order: higher score, then lower document number (a total order, NaN last).
pub fn best_first(a: &Scored, b: &Scored) -> Ordering {
    b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc))
}

/// Heap entry ordered so that the *worst* kept element is on top.
struct Worst(Scored);
impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        best_first(&self.0, &other.0) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        best_first(&self.0, &other.0)
    }
}

/// Keeps the `k` best of a stream of scored documents.
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    /// Keeps at most `k`.
    pub fn new(k: usize) -> TopK {
        TopK { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    /// Offers one.
    pub fn push(&mut self, s: Scored) {
        if self.heap.len() < self.k {
            self.heap.push(Worst(s));
        } else if let Some(worst) = self.heap.peek()
            && best_first(&s, &worst.0) == Ordering::Less
        {
            self.heap.pop();
            self.heap.push(Worst(s));
        }
    }

    /// The kept ones, best first.
    pub fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|w| w.0).collect();
        v.sort_by(best_first);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
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
    }
}
