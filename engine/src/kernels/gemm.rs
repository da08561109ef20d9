//! Dense products `C = A·B` with a fused epilogue, the encoder's hot loop.
//!
//! `B` is read in *panels* of `NR = 2 × LANES` columns: either a weight matrix packed once at
//! load time ([`PackedMatrix`], f32 or f16 elements, each panel contiguous so that a product
//! streams the weights exactly once) or a zero-padded row-major f32 scratch (attention).
//! A micro-kernel keeps an `MR × NR` block of `C` in registers and walks `k` once, so every
//! element of `C` is accumulated in the same order whatever the batch: a text gives
//! bit-identical results alone or inside a batch.

use super::math::gelu;
use barista_index::aligned::AlignedVec;
use barista_index::simd::Elem;
use barista_index::simd::Simd;
use std::marker::PhantomData;
use std::ops::Range;

/// Storage precision of packed weights. Arithmetic is always f32; narrower storage is widened
/// exactly in registers, so storing weights in the precision they were published in loses nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightPrecision {
    /// 32-bit floats.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

/// Packed panels in one of the storage precisions.
#[derive(Debug)]
enum PanelData {
    F32(AlignedVec<f32>),
    F16(AlignedVec<half::f16>),
    Bf16(AlignedVec<half::bf16>),
}

/// A `K × N` right-hand operand packed into contiguous panels of `nr` columns (zero-padded).
#[derive(Debug)]
pub(crate) struct PackedMatrix {
    data: PanelData,
    k: usize,
    n: usize,
    nr: usize,
}

fn pack<E: Elem>(w: &[f32], n: usize, k: usize, nr: usize) -> AlignedVec<E> {
    let panels = n.div_ceil(nr);
    let mut data = AlignedVec::<E>::zeroed(panels * k * nr);
    for (j, row) in w.chunks_exact(k).enumerate() {
        let (panel, col) = (j / nr, j % nr);
        for (kk, &v) in row.iter().enumerate() {
            data[(panel * k + kk) * nr + col] = E::from_f32(v);
        }
    }
    data
}

impl PackedMatrix {
    /// Packs `B` given as its transpose `W` (`N × K`, row-major: PyTorch's `Linear.weight`), so
    /// that `x·B = x·Wᵀ`, storing it in `precision` (rounding if `w` holds finer values).
    pub(crate) fn pack_transposed(w: &[f32], n: usize, k: usize, nr: usize, precision: WeightPrecision) -> Self {
        assert_eq!(w.len(), n * k, "weight shape mismatch");
        let data = match precision {
            WeightPrecision::F32 => PanelData::F32(pack(w, n, k, nr)),
            WeightPrecision::F16 => PanelData::F16(pack(w, n, k, nr)),
            WeightPrecision::Bf16 => PanelData::Bf16(pack(w, n, k, nr)),
        };
        Self { data, k, n, nr }
    }

    /// Number of panels.
    pub(crate) fn panels(&self) -> usize {
        self.n.div_ceil(self.nr)
    }

    /// Bytes of packed data.
    pub(crate) fn bytes(&self) -> usize {
        match &self.data {
            PanelData::F32(d) => d.len() * 4,
            PanelData::F16(d) => d.len() * 2,
            PanelData::Bf16(d) => d.len() * 2,
        }
    }

    fn view<E>(&self, data: &[E]) -> BView<E> {
        BView { ptr: data.as_ptr(), panel_stride: self.k * self.nr, row_stride: self.nr, k: self.k, n: self.n }
    }
}

/// A view of `B` for the kernels: panel `j` starts at `ptr + j * panel_stride`, its row `k` at
/// `+ k * row_stride`; every panel is readable for `NR` columns (padding is zero).
#[derive(Clone, Copy)]
pub(crate) struct BView<E> {
    ptr: *const E,
    panel_stride: usize,
    row_stride: usize,
    k: usize,
    n: usize,
}

impl<E> BView<E> {
    /// A zero-padded row-major scratch: `k` rows of `ld` values, `n <= ld` of them used, `ld` a
    /// multiple of `nr`.
    pub(crate) fn row_major(data: &[E], k: usize, n: usize, ld: usize, nr: usize) -> Self {
        assert!(n <= ld && ld.is_multiple_of(nr) && data.len() >= k * ld, "bad row-major view");
        Self { ptr: data.as_ptr(), panel_stride: nr, row_stride: ld, k, n }
    }
}

/// What happens to an accumulated block before it is stored.
#[derive(Clone, Copy)]
pub(crate) enum Epilogue<'a> {
    /// Store as is.
    Store,
    /// Multiply by a constant.
    Scale(f32),
    /// Add a bias (padded to a multiple of `NR`).
    Bias(&'a [f32]),
    /// Add a bias, then apply GELU.
    BiasGelu(&'a [f32]),
    /// Add a bias and a residual matrix (`residual[row * ld + col]`).
    BiasResidual {
        /// The bias, padded to a multiple of `NR`.
        bias: &'a [f32],
        /// The residual rows, same shape as the output.
        residual: &'a [f32],
        /// Row stride of `residual`.
        ld: usize,
    },
}

/// A left operand: `rows` rows of `k` values at `ptr + row * ld`.
#[derive(Clone, Copy)]
pub(crate) struct AView<'a> {
    ptr: *const f32,
    ld: usize,
    rows: usize,
    k: usize,
    _data: PhantomData<&'a [f32]>,
}

impl<'a> AView<'a> {
    /// `rows` rows of `k` values, row stride `ld`, starting at `data[0]`.
    pub(crate) fn new(data: &'a [f32], rows: usize, k: usize, ld: usize) -> Self {
        assert!(k <= ld || rows <= 1, "bad A view: rows of {k} values with stride {ld}");
        assert!(
            rows == 0 || data.len() >= (rows - 1) * ld + k,
            "bad A view: {rows}×{k} (stride {ld}) over {} values",
            data.len()
        );
        Self { ptr: data.as_ptr(), ld, rows, k, _data: PhantomData }
    }
}

/// The output: `rows × n` values at `ptr + row * ld`. Several threads may hold views of one
/// buffer as long as they write disjoint column panels (see [`CView::from_raw`]).
#[derive(Clone, Copy)]
pub(crate) struct CView<'a> {
    ptr: *mut f32,
    ld: usize,
    rows: usize,
    n: usize,
    _data: PhantomData<&'a mut [f32]>,
}

impl<'a> CView<'a> {
    /// `rows × n` outputs, row stride `ld`, starting at `data[0]`.
    pub(crate) fn new(data: &'a mut [f32], rows: usize, n: usize, ld: usize) -> Self {
        // SAFETY: derived from a unique borrow that lives as long as the view.
        unsafe { Self::from_raw(data.as_mut_ptr(), data.len(), rows, n, ld) }
    }

    /// A view over `len` values at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr + len` must stay valid for `'a`, and no two views may write the same element
    /// while both are in use, nor may anything read an element while a view writes it.
    pub(crate) unsafe fn from_raw(ptr: *mut f32, len: usize, rows: usize, n: usize, ld: usize) -> Self {
        assert!(n <= ld || rows <= 1, "bad C view: rows of {n} values with stride {ld}");
        assert!(rows == 0 || len >= (rows - 1) * ld + n, "bad C view: {rows}×{n} (stride {ld}) over {len} values");
        Self { ptr, ld, rows, n, _data: PhantomData }
    }

    /// The `rows × n` sub-view starting at (`row`, `col`).
    pub(crate) fn sub(self, row: usize, rows: usize, col: usize, n: usize) -> CView<'a> {
        assert!(row + rows <= self.rows && col + n <= self.n, "sub-view out of bounds");
        // SAFETY: inside the parent view, which upholds the contract.
        CView { ptr: unsafe { self.ptr.add(row * self.ld + col) }, ld: self.ld, rows, n, _data: PhantomData }
    }
}

// SAFETY: plain pointers into buffers the views borrow; writers split work by disjoint panels.
unsafe impl Send for CView<'_> {}
// SAFETY: as above.
unsafe impl Sync for CView<'_> {}
// SAFETY: read-only.
unsafe impl Send for AView<'_> {}
// SAFETY: read-only.
unsafe impl Sync for AView<'_> {}
// SAFETY: read-only.
unsafe impl<E> Send for BView<E> {}
// SAFETY: read-only.
unsafe impl<E> Sync for BView<E> {}

/// Bytes of `A` kept hot in L2 per row chunk.
const A_CHUNK_BYTES: usize = 384 * 1024;

/// `C = A·B` then the epilogue, over the panels `panels` of `B` (all rows of `A`).
///
/// # Safety
/// The views must describe live buffers of the stated shapes; `S` must be supported by the CPU.
#[inline(always)]
pub(crate) unsafe fn gemm<S: Simd, E: Elem>(
    a: AView,
    b: BView<E>,
    c: CView,
    epilogue: Epilogue<'_>,
    panels: Range<usize>,
) {
    let nr = 2 * S::LANES;
    let m = a.rows;
    assert!(a.k == b.k && c.rows == m && c.n == b.n, "product shapes do not match");
    assert!(panels.end <= b.n.div_ceil(nr), "panel range out of bounds");
    let padded = b.n.div_ceil(nr) * nr;
    match epilogue {
        Epilogue::Bias(bias) | Epilogue::BiasGelu(bias) => assert!(bias.len() >= padded, "bias too short"),
        Epilogue::BiasResidual { bias, residual, ld } => {
            assert!(bias.len() >= padded, "bias too short");
            assert!(ld >= b.n && (m == 0 || residual.len() >= (m - 1) * ld + b.n), "residual too short");
        }
        Epilogue::Store | Epilogue::Scale(_) => {}
    }
    if m == 0 {
        return;
    }
    let chunk = ((A_CHUNK_BYTES / (4 * b.k.max(1))) / S::MR * S::MR).max(S::MR);
    let mut m0 = 0;
    while m0 < m {
        let rows = chunk.min(m - m0);
        for j in panels.clone() {
            let col0 = j * nr;
            let cols = nr.min(b.n - col0);
            let blocks = rows.div_ceil(S::MR);
            let mut r0 = 0;
            for block in 0..blocks {
                let r = (rows - r0).div_ceil(blocks - block);
                let row = m0 + r0;
                // SAFETY: in bounds by the view contracts.
                unsafe {
                    let tile = Tile {
                        a: a.ptr.add(row * a.ld),
                        lda: a.ld,
                        b: b.ptr.add(j * b.panel_stride),
                        ldb: b.row_stride,
                        k: b.k,
                        c: c.ptr.add(row * c.ld + col0),
                        ldc: c.ld,
                        row,
                        col0,
                        cols,
                    };
                    micro_rows::<S, E>(r, &tile, epilogue);
                }
                r0 += r;
            }
        }
        m0 += rows;
    }
}

/// `C = A·B` + epilogue over the panels `panels` of a packed weight matrix.
///
/// # Safety
/// As [`gemm`].
#[inline(always)]
pub(crate) unsafe fn gemm_packed<S: Simd>(
    a: AView,
    b: &PackedMatrix,
    c: CView,
    epilogue: Epilogue<'_>,
    panels: Range<usize>,
) {
    debug_assert_eq!(b.nr, 2 * S::LANES);
    unsafe {
        match &b.data {
            PanelData::F32(d) => gemm::<S, f32>(a, b.view(d), c, epilogue, panels),
            PanelData::F16(d) => gemm::<S, half::f16>(a, b.view(d), c, epilogue, panels),
            PanelData::Bf16(d) => gemm::<S, half::bf16>(a, b.view(d), c, epilogue, panels),
        }
    }
}

/// One `r × NR` block of the product.
struct Tile<E> {
    a: *const f32,
    lda: usize,
    b: *const E,
    ldb: usize,
    k: usize,
    c: *mut f32,
    ldc: usize,
    /// Index of the tile's first row in the whole output (for the residual).
    row: usize,
    /// Index of the tile's first column in the whole output.
    col0: usize,
    /// Valid columns (< NR only in the last panel).
    cols: usize,
}

macro_rules! micro_dispatch {
    ($r:expr, $tile:expr, $epi:expr, $($n:literal)*) => {
        match $r {
            $($n => micro::<S, E, $n>($tile, $epi),)*
            _ => unreachable!("micro-kernel rows out of range"),
        }
    };
}

#[inline(always)]
unsafe fn micro_rows<S: Simd, E: Elem>(r: usize, tile: &Tile<E>, epilogue: Epilogue<'_>) {
    debug_assert!(r >= 1 && r <= S::MR);
    unsafe {
        if S::MR > 6 {
            micro_dispatch!(r, tile, epilogue, 1 2 3 4 5 6 7 8 9 10 11 12)
        } else {
            micro_dispatch!(r, tile, epilogue, 1 2 3 4 5 6)
        }
    }
}

#[inline(always)]
unsafe fn micro<S: Simd, E: Elem, const R: usize>(t: &Tile<E>, epilogue: Epilogue<'_>) {
    unsafe {
        let mut acc0 = [S::zero(); R];
        let mut acc1 = [S::zero(); R];
        let mut a = t.a;
        let mut b = t.b;
        for _ in 0..t.k {
            let b0 = E::load::<S>(b);
            let b1 = E::load::<S>(b.add(S::LANES));
            for i in 0..R {
                let ai = S::splat(*a.add(i * t.lda));
                acc0[i] = S::fma(ai, b0, acc0[i]);
                acc1[i] = S::fma(ai, b1, acc1[i]);
            }
            a = a.add(1);
            b = b.add(t.ldb);
        }
        let lanes = S::LANES;
        let full = t.cols == 2 * lanes;
        for i in 0..R {
            let (mut v0, mut v1) = (acc0[i], acc1[i]);
            match epilogue {
                Epilogue::Store => {}
                Epilogue::Scale(s) => {
                    v0 = S::mul(v0, S::splat(s));
                    v1 = S::mul(v1, S::splat(s));
                }
                Epilogue::Bias(bias) => {
                    let bp = bias.as_ptr().add(t.col0);
                    v0 = S::add(v0, S::load(bp));
                    v1 = S::add(v1, S::load(bp.add(lanes)));
                }
                Epilogue::BiasGelu(bias) => {
                    let bp = bias.as_ptr().add(t.col0);
                    v0 = gelu::<S>(S::add(v0, S::load(bp)));
                    v1 = gelu::<S>(S::add(v1, S::load(bp.add(lanes))));
                }
                Epilogue::BiasResidual { bias, residual, ld } => {
                    let bp = bias.as_ptr().add(t.col0);
                    v0 = S::add(v0, S::load(bp));
                    v1 = S::add(v1, S::load(bp.add(lanes)));
                    let rp = residual.as_ptr().add((t.row + i) * ld + t.col0);
                    if full {
                        v0 = S::add(v0, S::load(rp));
                        v1 = S::add(v1, S::load(rp.add(lanes)));
                    } else {
                        let mut tmp = [0.0f32; 32];
                        std::ptr::copy_nonoverlapping(rp, tmp.as_mut_ptr(), t.cols);
                        v0 = S::add(v0, S::load(tmp.as_ptr()));
                        v1 = S::add(v1, S::load(tmp.as_ptr().add(lanes)));
                    }
                }
            }
            let cp = t.c.add(i * t.ldc);
            if full {
                S::store(cp, v0);
                S::store(cp.add(lanes), v1);
            } else {
                let mut tmp = [0.0f32; 32];
                S::store(tmp.as_mut_ptr(), v0);
                S::store(tmp.as_mut_ptr().add(lanes), v1);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), cp, t.cols);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Isa, IsaTask, run};

    /// Deterministic pseudo-random values in [-1, 1), exactly representable in f16 and bf16.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                ((state >> 8) % 256) as f32 / 128.0 - 1.0
            })
            .collect()
    }

    struct Product<'a> {
        a: &'a [f32],
        m: usize,
        k: usize,
        b: &'a PackedMatrix,
        c: &'a mut [f32],
        epilogue: Epilogue<'a>,
    }

    impl IsaTask for Product<'_> {
        type Output = ();
        unsafe fn run<S: Simd>(self) {
            let n = self.b.n;
            let a = AView::new(self.a, self.m, self.k, self.k);
            let c = CView::new(self.c, self.m, n, n);
            // SAFETY: shapes match.
            unsafe { gemm_packed::<S>(a, self.b, c, self.epilogue, 0..self.b.panels()) }
        }
    }

    #[test]
    fn packed_products_match_a_naive_loop_on_every_isa_and_precision() {
        for isa in Isa::supported() {
            let nr = isa.panel_width();
            for &(m, n, k) in &[(1, 1, 1), (12, 64, 384), (13, 40, 7), (29, 97, 33), (5, 32, 1536)] {
                let a = values(m * k, 1);
                let w = values(n * k, 2);
                let bias = values(n, 3);
                let residual = values(m * n, 4);
                let mut padded_bias = vec![0.0; n.next_multiple_of(nr)];
                padded_bias[..n].copy_from_slice(&bias);
                for precision in [WeightPrecision::F32, WeightPrecision::F16, WeightPrecision::Bf16] {
                    let b = PackedMatrix::pack_transposed(&w, n, k, nr, precision);
                    let mut c = vec![f32::NAN; m * n];
                    let epilogue = Epilogue::BiasResidual { bias: &padded_bias, residual: &residual, ld: n };
                    run(isa, Product { a: &a, m, k, b: &b, c: &mut c, epilogue });
                    for i in 0..m {
                        for j in 0..n {
                            let dot: f64 = (0..k).map(|kk| f64::from(a[i * k + kk]) * f64::from(w[j * k + kk])).sum();
                            let want = dot + f64::from(bias[j]) + f64::from(residual[i * n + j]);
                            let got = f64::from(c[i * n + j]);
                            assert!(
                                (got - want).abs() <= 1e-4 * (k as f64).sqrt(),
                                "{isa} {precision:?} {m}x{n}x{k} at ({i},{j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rows_do_not_depend_on_their_block() {
        // The same row computed alone and inside blocks of every size gives identical bits.
        for isa in Isa::supported() {
            let nr = isa.panel_width();
            let (n, k) = (64, 384);
            let w = values(n * k, 5);
            let b = PackedMatrix::pack_transposed(&w, n, k, nr, WeightPrecision::F16);
            let bias = vec![0.0; n];
            let a = values(40 * k, 6);
            let mut all = vec![0.0; 40 * n];
            run(isa, Product { a: &a, m: 40, k, b: &b, c: &mut all, epilogue: Epilogue::Bias(&bias) });
            for row in [0, 13, 39] {
                let mut one = vec![0.0; n];
                run(
                    isa,
                    Product {
                        a: &a[row * k..(row + 1) * k],
                        m: 1,
                        k,
                        b: &b,
                        c: &mut one,
                        epilogue: Epilogue::Bias(&bias),
                    },
                );
                assert_eq!(one, all[row * n..(row + 1) * n], "{isa}: row {row}");
            }
        }
    }

    #[test]
    fn gelu_epilogue_applies_gelu() {
        let isa = Isa::best();
        let nr = isa.panel_width();
        let (m, n, k) = (3, 5, 4);
        let a = values(m * k, 7);
        let w = values(n * k, 8);
        let b = PackedMatrix::pack_transposed(&w, n, k, nr, WeightPrecision::F32);
        let bias = vec![0.25; n.next_multiple_of(nr)];
        let mut c = vec![0.0; m * n];
        run(isa, Product { a: &a, m, k, b: &b, c: &mut c, epilogue: Epilogue::BiasGelu(&bias) });
        for i in 0..m {
            for j in 0..n {
                let x: f64 = (0..k).map(|kk| f64::from(a[i * k + kk]) * f64::from(w[j * k + kk])).sum::<f64>() + 0.25;
                // GELU via a high-accuracy erf series (|x| is small here).
                let z = x / std::f64::consts::SQRT_2;
                let mut term = z;
                let mut erf = z;
                for t in 1..60 {
                    term *= -z * z / t as f64;
                    erf += term / (2 * t + 1) as f64;
                }
                let want = 0.5 * x * (1.0 + erf * 2.0 / std::f64::consts::PI.sqrt());
                assert!((f64::from(c[i * n + j]) - want).abs() < 1e-5);
            }
        }
    }
}
