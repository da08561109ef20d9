//! From token states to rung vectors: pooling per text, then truncation and normalisation.

use crate::model::profile::{Pooling, Rung, Similarity};

/// Pools every sequence of a packed batch (`x` is `rows × hidden`) into `out` (`sequences × hidden`).
pub(crate) fn pool(x: &[f32], offsets: &[usize], hidden: usize, pooling: Pooling, out: &mut [f32]) {
    for (s, seq) in offsets.windows(2).enumerate() {
        let dst = &mut out[s * hidden..(s + 1) * hidden];
        match pooling {
            Pooling::Cls => dst.copy_from_slice(&x[seq[0] * hidden..(seq[0] + 1) * hidden]),
            Pooling::Mean => {
                dst.fill(0.0);
                for row in x[seq[0] * hidden..seq[1] * hidden].chunks_exact(hidden) {
                    for (d, v) in dst.iter_mut().zip(row) {
                        *d += v;
                    }
                }
                let inv = 1.0 / (seq[1] - seq[0]) as f32;
                for d in dst.iter_mut() {
                    *d *= inv;
                }
            }
        }
    }
}

/// The rung vector of a pooled layer state: its first `rung.dim` values, L2-normalised for cosine.
pub(crate) fn rung_vector(pooled: &[f32], rung: Rung, similarity: Similarity, out: &mut [f32]) {
    out.copy_from_slice(&pooled[..rung.dim]);
    if similarity == Similarity::Cosine {
        normalize(out);
    }
}

/// Scales `v` to unit L2 norm (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm > 0.0 {
        let inv = (1.0 / norm) as f32;
        for x in v {
            *x *= inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_each_sequence_separately() {
        // Two sequences (2 and 1 tokens), hidden 2.
        let x = [1.0, 2.0, 3.0, 4.0, 10.0, 20.0];
        let offsets = [0, 2, 3];
        let mut out = [0.0; 4];
        pool(&x, &offsets, 2, Pooling::Mean, &mut out);
        assert_eq!(out, [2.0, 3.0, 10.0, 20.0]);
        pool(&x, &offsets, 2, Pooling::Cls, &mut out);
        assert_eq!(out, [1.0, 2.0, 10.0, 20.0]);
    }

    #[test]
    fn truncates_then_normalises() {
        let pooled = [3.0, 4.0, 100.0];
        let mut out = [0.0; 2];
        rung_vector(&pooled, Rung::new(1, 2), Similarity::Cosine, &mut out);
        assert_eq!(out, [0.6, 0.8]);
        rung_vector(&pooled, Rung::new(1, 2), Similarity::Dot, &mut out);
        assert_eq!(out, [3.0, 4.0]);
        let mut zero = [0.0; 3];
        normalize(&mut zero);
        assert_eq!(zero, [0.0; 3]);
    }
}
