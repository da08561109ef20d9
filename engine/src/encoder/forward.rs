//! Barista's own BERT forward loop over *packed* batches.
//!
//! A batch is a list of token sequences laid end to end: row `t` of every activation matrix is
//! one token, and sequence `s` owns rows `offsets[s]..offsets[s + 1]`. Linear layers treat all
//! rows alike, attention runs per sequence, so there is no padding at all and a text's result
//! does not depend on its batch. Layers can be run in any number of steps (`from..to`), which is
//! what lets a query stop after a few layers and resume later from its kept hidden state.

use crate::kernels::gemm::{AView, BView, CView, Epilogue, PackedMatrix, gemm, gemm_packed};
use crate::kernels::math::{layer_norm_row, softmax_row};
use crate::kernels::team::{Fork, slice_of};
use crate::kernels::{Isa, IsaTask, run};
use barista_index::aligned::AlignedVec;
use barista_index::simd::Simd;

/// One transformer block's weights, packed for the kernels.
pub(crate) struct LayerWeights {
    /// Query, key and value projections fused: `H × 3H`.
    pub qkv: PackedMatrix,
    pub qkv_bias: AlignedVec<f32>,
    pub attn_out: PackedMatrix,
    pub attn_out_bias: AlignedVec<f32>,
    pub attn_norm: Norm,
    pub ffn_in: PackedMatrix,
    pub ffn_in_bias: AlignedVec<f32>,
    pub ffn_out: PackedMatrix,
    pub ffn_out_bias: AlignedVec<f32>,
    pub ffn_norm: Norm,
}

/// Layer-norm parameters.
pub(crate) struct Norm {
    pub gamma: AlignedVec<f32>,
    pub beta: AlignedVec<f32>,
}

/// Shapes of the network.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub hidden: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub eps: f32,
}

/// Every weight the forward pass needs, for layers `1..=layers.len()`.
pub(crate) struct BertWeights {
    pub dims: Dims,
    /// `vocab × H`.
    pub word: Vec<f32>,
    /// `max_positions × H`.
    pub position: Vec<f32>,
    /// `type_vocab × H`.
    pub token_type: Vec<f32>,
    pub embed_norm: Norm,
    pub layers: Vec<LayerWeights>,
    /// The instruction set the weights were packed for.
    pub isa: Isa,
}

/// Per-thread attention scratch.
#[derive(Default)]
struct AttentionScratch {
    /// Keys transposed, `head_dim × Lp`.
    keys_t: Scratch,
    /// Values, `L × head_dim_p`.
    values: Scratch,
    /// Scores / probabilities, `L × Lp`.
    scores: Scratch,
}

/// A growable aligned buffer.
#[derive(Default)]
pub(crate) struct Scratch(Option<AlignedVec<f32>>);

impl Scratch {
    /// A buffer of at least `len` values (contents unspecified).
    pub(crate) fn get(&mut self, len: usize) -> &mut [f32] {
        if self.0.as_ref().is_none_or(|b| b.len() < len) {
            self.0 = Some(AlignedVec::zeroed(len.next_multiple_of(1024)));
        }
        match &mut self.0 {
            Some(buffer) => &mut buffer[..len],
            None => unreachable!("allocated above"),
        }
    }
}

/// Reusable activation buffers for one forward pass at a time.
#[derive(Default)]
pub(crate) struct Workspace {
    qkv: Scratch,
    context: Scratch,
    hidden: Scratch,
    ffn: Scratch,
    attention: Vec<AttentionScratch>,
}

/// Computes the embedding output (layer 0) of a packed batch into `x` (`rows × H`).
pub(crate) fn embed(w: &BertWeights, ids: &[u32], type_ids: &[u32], offsets: &[usize], x: &mut [f32]) {
    run(w.isa, Embed { w, ids, type_ids, offsets, x })
}

struct Embed<'a> {
    w: &'a BertWeights,
    ids: &'a [u32],
    type_ids: &'a [u32],
    offsets: &'a [usize],
    x: &'a mut [f32],
}

impl IsaTask for Embed<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let h = self.w.dims.hidden;
        for seq in self.offsets.windows(2) {
            for (position, t) in (seq[0]..seq[1]).enumerate() {
                let word = &self.w.word[self.ids[t] as usize * h..][..h];
                let pos = &self.w.position[position * h..][..h];
                let typ = &self.w.token_type[self.type_ids[t] as usize * h..][..h];
                let row = &mut self.x[t * h..][..h];
                for i in 0..h {
                    row[i] = word[i] + typ[i] + pos[i];
                }
                let norm = &self.w.embed_norm;
                // SAFETY: dispatched for a supported ISA.
                unsafe { layer_norm_row::<S>(row, &norm.gamma, &norm.beta, self.w.dims.eps) };
            }
        }
    }
}

/// Runs transformer blocks `layers.start + 1 ..= layers.end` over the packed batch in `x`
/// (`rows × H`), calling `after_layer(l, x)` once block `l` is done. `fork` splits each step
/// across threads; every element is computed by exactly one part, in the same order whatever
/// the split, so results do not depend on it.
pub(crate) fn run_layers(
    w: &BertWeights,
    x: &mut [f32],
    offsets: &[usize],
    layers: std::ops::Range<usize>,
    ws: &mut Workspace,
    fork: &dyn Fork,
    after_layer: &mut dyn FnMut(usize, &[f32]),
) {
    let d = w.dims;
    let (h, i_dim) = (d.hidden, d.intermediate);
    let rows = *offsets.last().unwrap_or(&0);
    if rows == 0 {
        return;
    }
    assert!(x.len() >= rows * h, "hidden state too short");
    let isa = w.isa;
    let parts = fork.parts();
    if ws.attention.len() < parts {
        ws.attention.resize_with(parts, AttentionScratch::default);
    }
    let qkv = Shared::new(ws.qkv.get(rows * 3 * h));
    let context = Shared::new(ws.context.get(rows * h));
    let hidden = Shared::new(ws.hidden.get(rows * h));
    let ffn = Shared::new(ws.ffn.get(rows * i_dim));
    let scratch = SharedScratch(ws.attention.as_mut_ptr());
    let xs = Shared::new(&mut x[..rows * h]);
    let units = (offsets.len() - 1) * d.heads;
    for l in layers {
        let lw = &w.layers[l];
        // SAFETY (every closure below): within one fork, each buffer is either only read by all
        // parts or written by them at disjoint columns (panels, heads) or rows; a buffer written
        // by one fork is read only in a later fork, after the join.
        // 1. Q, K, V for every token.
        fork.fork(&|part| unsafe {
            let a = AView::new(xs.read(), rows, h, h);
            let panels = slice_of(lw.qkv.panels(), part, parts);
            linear(isa, a, &lw.qkv, qkv.out(rows, 3 * h), Epilogue::Bias(&lw.qkv_bias), panels);
        });
        // 2. Attention, per (sequence, head).
        fork.fork(&|part| unsafe {
            let task = Attention {
                qkv: qkv.read(),
                context: context.out(rows, h),
                offsets,
                units: slice_of(units, part, parts),
                dims: d,
                scratch: scratch.part(part),
            };
            run(isa, task);
        });
        // 3. Output projection + residual, then layer norm.
        fork.fork(&|part| unsafe {
            let a = AView::new(context.read(), rows, h, h);
            let epilogue = Epilogue::BiasResidual { bias: &lw.attn_out_bias, residual: xs.read(), ld: h };
            let panels = slice_of(lw.attn_out.panels(), part, parts);
            linear(isa, a, &lw.attn_out, hidden.out(rows, h), epilogue, panels);
        });
        fork.fork(&|part| unsafe {
            let mine = slice_of(rows, part, parts);
            run(isa, LayerNorm { x: hidden.rows_mut(mine, h), width: h, norm: &lw.attn_norm, eps: d.eps });
        });
        // 4. Feed-forward: GELU(x·W1 + b1)·W2 + b2 + x, then layer norm.
        fork.fork(&|part| unsafe {
            let a = AView::new(hidden.read(), rows, h, h);
            let panels = slice_of(lw.ffn_in.panels(), part, parts);
            linear(isa, a, &lw.ffn_in, ffn.out(rows, i_dim), Epilogue::BiasGelu(&lw.ffn_in_bias), panels);
        });
        fork.fork(&|part| unsafe {
            let a = AView::new(ffn.read(), rows, i_dim, i_dim);
            let epilogue = Epilogue::BiasResidual { bias: &lw.ffn_out_bias, residual: hidden.read(), ld: h };
            let panels = slice_of(lw.ffn_out.panels(), part, parts);
            linear(isa, a, &lw.ffn_out, xs.out(rows, h), epilogue, panels);
        });
        fork.fork(&|part| unsafe {
            let mine = slice_of(rows, part, parts);
            run(isa, LayerNorm { x: xs.rows_mut(mine, h), width: h, norm: &lw.ffn_norm, eps: d.eps });
        });
        // SAFETY: all forks joined; nothing else accesses the buffer now.
        after_layer(l + 1, unsafe { xs.read() });
    }
}

/// One buffer shared by the parts of a fork through a raw pointer; see the access rules in
/// [`run_layers`].
#[derive(Clone, Copy)]
struct Shared(*mut f32, usize);
// SAFETY: parts only write disjoint regions, and never read what another part writes in the
// same fork.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}
impl Shared {
    fn new(s: &mut [f32]) -> Self {
        Self(s.as_mut_ptr(), s.len())
    }

    /// The whole buffer, read-only.
    ///
    /// # Safety
    /// Nobody may write the buffer while the slice is in use.
    unsafe fn read<'a>(&self) -> &'a [f32] {
        // SAFETY: by the caller's contract.
        unsafe { std::slice::from_raw_parts(self.0, self.1) }
    }

    /// An output view over the whole buffer (`rows × n`, dense).
    ///
    /// # Safety
    /// Parts holding such views must write disjoint elements and nobody may read them meanwhile.
    unsafe fn out<'a>(&self, rows: usize, n: usize) -> CView<'a> {
        // SAFETY: by the caller's contract.
        unsafe { CView::from_raw(self.0, self.1, rows, n, n) }
    }

    /// Rows `range` of a matrix of `width` columns, mutable.
    ///
    /// # Safety
    /// Ranges handed to different parts must not overlap, and nobody else may access them.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows_mut<'a>(&self, range: std::ops::Range<usize>, width: usize) -> &'a mut [f32] {
        assert!(range.end * width <= self.1, "rows out of bounds");
        // SAFETY: in bounds; exclusivity by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(range.start * width), range.len() * width) }
    }
}

/// Shares the per-part attention scratch with fork parts.
#[derive(Clone, Copy)]
struct SharedScratch(*mut AttentionScratch);
// SAFETY: each part uses only its own element.
unsafe impl Send for SharedScratch {}
// SAFETY: as above.
unsafe impl Sync for SharedScratch {}
impl SharedScratch {
    /// # Safety
    /// `part` must be in bounds and used by one thread at a time.
    #[allow(clippy::mut_from_ref)]
    unsafe fn part<'a>(&self, part: usize) -> &'a mut AttentionScratch {
        // SAFETY: by the caller's contract.
        unsafe { &mut *self.0.add(part) }
    }
}

/// `C = A·B` + epilogue over some panels of packed weights.
fn linear(
    isa: Isa,
    a: AView<'_>,
    b: &PackedMatrix,
    c: CView<'_>,
    epilogue: Epilogue<'_>,
    panels: std::ops::Range<usize>,
) {
    struct Linear<'a> {
        a: AView<'a>,
        b: &'a PackedMatrix,
        c: CView<'a>,
        epilogue: Epilogue<'a>,
        panels: std::ops::Range<usize>,
    }
    impl IsaTask for Linear<'_> {
        type Output = ();
        #[inline(always)]
        unsafe fn run<S: Simd>(self) {
            // SAFETY: the views were checked against their buffers, and `gemm` checks that the
            // shapes, bias and residual agree.
            unsafe { gemm_packed::<S>(self.a, self.b, self.c, self.epilogue, self.panels) }
        }
    }
    run(isa, Linear { a, b, c, epilogue, panels })
}

/// Layer norm of the rows of `x` (`width` columns each).
struct LayerNorm<'a> {
    x: &'a mut [f32],
    width: usize,
    norm: &'a Norm,
    eps: f32,
}

impl IsaTask for LayerNorm<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        for row in self.x.chunks_exact_mut(self.width) {
            // SAFETY: dispatched for a supported ISA.
            unsafe { layer_norm_row::<S>(row, &self.norm.gamma, &self.norm.beta, self.eps) };
        }
    }
}

/// Attention for some (sequence, head) units.
struct Attention<'a> {
    qkv: &'a [f32],
    context: CView<'a>,
    offsets: &'a [usize],
    units: std::ops::Range<usize>,
    dims: Dims,
    scratch: &'a mut AttentionScratch,
}

impl IsaTask for Attention<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let heads = self.dims.heads;
        for unit in self.units {
            let (seq, head) = (unit / heads, unit % heads);
            let rows = self.offsets[seq]..self.offsets[seq + 1];
            // SAFETY: dispatched for a supported ISA.
            unsafe { attention_head::<S>(self.qkv, self.context, rows, head, self.dims, self.scratch) };
        }
    }
}

/// Scaled dot-product attention of one head over one sequence: reads Q, K, V from `qkv`
/// (`rows × 3H`), writes the head's slice of `context` (`rows × H`).
#[inline(always)]
unsafe fn attention_head<S: Simd>(
    qkv: &[f32],
    context: CView<'_>,
    rows: std::ops::Range<usize>,
    head: usize,
    d: Dims,
    scratch: &mut AttentionScratch,
) {
    let nr = 2 * S::LANES;
    let (h, dh) = (d.hidden, d.head_dim);
    let ld = 3 * h;
    let len = rows.len();
    let len_p = len.next_multiple_of(nr);
    let dh_p = dh.next_multiple_of(nr);
    let row0 = rows.start;
    let keys_t = scratch.keys_t.get(dh * len_p);
    let values = scratch.values.get(len * dh_p);
    let scores = scratch.scores.get(len * len_p);
    for t in 0..len {
        let base = (row0 + t) * ld + head * dh;
        let key = &qkv[base + h..][..dh];
        for (c, &v) in key.iter().enumerate() {
            keys_t[c * len_p + t] = v;
        }
        let value = &qkv[base + 2 * h..][..dh];
        values[t * dh_p..t * dh_p + dh].copy_from_slice(value);
        values[t * dh_p + dh..(t + 1) * dh_p].fill(0.0);
    }
    for c in 0..dh {
        keys_t[c * len_p + len..(c + 1) * len_p].fill(0.0);
    }
    let scale = 1.0 / (dh as f32).sqrt();
    // SAFETY: views match the buffers' shapes.
    unsafe {
        let q = AView::new(&qkv[row0 * ld + head * dh..], len, dh, ld);
        let kt = BView::row_major(keys_t, dh, len, len_p, nr);
        let s = CView::new(scores, len, len, len_p);
        gemm::<S, f32>(q, kt, s, Epilogue::Scale(scale), 0..len_p / nr);
        for r in 0..len {
            softmax_row::<S>(&mut scores[r * len_p..(r + 1) * len_p], len);
        }
        let p = AView::new(scores, len, len, len_p);
        let v = BView::row_major(values, len, dh, dh_p, nr);
        let out = context.sub(row0, len, head * dh, dh);
        gemm::<S, f32>(p, v, out, Epilogue::Store, 0..dh_p / nr);
    }
}
