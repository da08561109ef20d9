//! Element-wise and row-wise numerics: `exp`, `erf`, GELU, softmax and layer normalisation.
//!
//! All functions are generic over [`Simd`] and meant to be inlined into a `#[target_feature]`
//! entry point. Approximations are accurate to a few f32 ulps (tested against `f64` references).

use barista_index::simd::Simd;

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that `n * LN2_HI` is exact for |n| < 2^9 (Cody–Waite reduction).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x`, to about 1 ulp for x in [-87, 88]; smaller inputs flush towards 0.
#[inline(always)]
pub(crate) unsafe fn exp<S: Simd>(x: S::V) -> S::V {
    unsafe {
        let x = S::min(S::max(x, S::splat(-87.0)), S::splat(88.0));
        let n = S::round(S::mul(x, S::splat(LOG2_E)));
        let r = S::fma(n, S::splat(-LN2_HI), x);
        let r = S::fma(n, S::splat(-LN2_LO), r);
        // Cephes expf polynomial for e^r - 1 - r on |r| <= ln2/2.
        let mut p = S::splat(1.987_569_1e-4);
        p = S::fma(p, r, S::splat(1.398_199_9e-3));
        p = S::fma(p, r, S::splat(8.333_452e-3));
        p = S::fma(p, r, S::splat(4.166_579_6e-2));
        p = S::fma(p, r, S::splat(0.166_666_65));
        p = S::fma(p, r, S::splat(0.5));
        let r2 = S::mul(r, r);
        let y = S::add(S::fma(p, r2, r), S::splat(1.0));
        S::mul(y, S::pow2i(n))
    }
}

/// Inputs beyond this magnitude have |erf| = 1 in f32.
const ERF_CLAMP: f32 = 3.92;
/// erf(x) = x·P(x²)/Q(x²) on |x| <= 3.92: a rational fit with max error 1.6e-8 in exact
/// arithmetic, about 3.4e-7 once evaluated in f32.
#[allow(clippy::approx_constant)] // the leading term is fitted, not 2/√π exactly
const ERF_P: [f32; 6] = [1.128_379, 0.192_755_34, 0.053_059_35, 0.003_867_953_8, 2.874_710_2e-4, 2.034_806_1e-6];
const ERF_Q: [f32; 6] = [1.0, 0.504_156_65, 0.115_081_03, 0.015_171_557, 0.001_188_024, 3.807_093e-5];

/// The error function, to about 3.4e-7 absolute.
#[inline(always)]
pub(crate) unsafe fn erf<S: Simd>(x: S::V) -> S::V {
    unsafe {
        let a = S::min(S::abs(x), S::splat(ERF_CLAMP));
        let t = S::mul(a, a);
        let mut p = S::splat(ERF_P[5]);
        let mut q = S::splat(ERF_Q[5]);
        for i in (0..5).rev() {
            p = S::fma(p, t, S::splat(ERF_P[i]));
            q = S::fma(q, t, S::splat(ERF_Q[i]));
        }
        let y = S::min(S::div(S::mul(a, p), q), S::splat(1.0));
        S::copysign(y, x)
    }
}

/// GELU with the exact (erf) form used by BERT: `x/2 · (1 + erf(x/√2))`.
#[inline(always)]
pub(crate) unsafe fn gelu<S: Simd>(x: S::V) -> S::V {
    unsafe {
        let e = erf::<S>(S::mul(x, S::splat(std::f32::consts::FRAC_1_SQRT_2)));
        S::mul(S::mul(x, S::splat(0.5)), S::add(e, S::splat(1.0)))
    }
}

/// Applies a vector function to a short tail (< LANES) through a padded stack buffer, so tails
/// get exactly the same arithmetic as full vectors.
#[inline(always)]
unsafe fn map_tail<S: Simd>(tail: &mut [f32], f: impl Fn(S::V) -> S::V) {
    if tail.is_empty() {
        return;
    }
    let mut buffer = [0.0f32; 16];
    buffer[..tail.len()].copy_from_slice(tail);
    unsafe { S::store(buffer.as_mut_ptr(), f(S::load(buffer.as_ptr()))) };
    tail.copy_from_slice(&buffer[..tail.len()]);
}

/// Softmax in place over `row[..valid]`; `row[valid..]` (padding) is set to 0 so that it
/// contributes nothing to a following product.
#[inline(always)]
pub(crate) unsafe fn softmax_row<S: Simd>(row: &mut [f32], valid: usize) {
    debug_assert!(valid >= 1 && valid <= row.len());
    unsafe {
        let lanes = S::LANES;
        let full = valid / lanes * lanes;
        let (body, padding) = row.split_at_mut(valid);
        let mut max_v = S::splat(f32::NEG_INFINITY);
        for j in (0..full).step_by(lanes) {
            max_v = S::max(max_v, S::load(body.as_ptr().add(j)));
        }
        let max = body[full..].iter().fold(S::reduce_max(max_v), |m, &x| m.max(x));
        let max_s = S::splat(max);
        let mut sum_v = S::zero();
        for j in (0..full).step_by(lanes) {
            let e = exp::<S>(S::sub(S::load(body.as_ptr().add(j)), max_s));
            S::store(body.as_mut_ptr().add(j), e);
            sum_v = S::add(sum_v, e);
        }
        let tail = &mut body[full..];
        map_tail::<S>(tail, |v| exp::<S>(S::sub(v, max_s)));
        let sum = S::reduce_sum(sum_v) + tail.iter().sum::<f32>();
        let inv = 1.0 / sum;
        let inv_v = S::splat(inv);
        for j in (0..full).step_by(lanes) {
            let p = body.as_mut_ptr().add(j);
            S::store(p, S::mul(S::load(p), inv_v));
        }
        for x in &mut body[full..] {
            *x *= inv;
        }
        padding.fill(0.0);
    }
}

/// Layer normalisation of one row in place: `(x - mean) / sqrt(var + eps) * gamma + beta`,
/// with the variance computed in a second pass over the centred values.
#[inline(always)]
pub(crate) unsafe fn layer_norm_row<S: Simd>(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    debug_assert!(gamma.len() == row.len() && beta.len() == row.len());
    unsafe {
        let n = row.len();
        let lanes = S::LANES;
        let full = n / lanes * lanes;
        let mut acc = S::zero();
        let mut j = 0;
        while j < full {
            acc = S::add(acc, S::load(row.as_ptr().add(j)));
            j += lanes;
        }
        let sum = S::reduce_sum(acc) + row[full..].iter().sum::<f32>();
        let mean = sum / n as f32;
        let mean_v = S::splat(mean);
        let mut acc = S::zero();
        let mut j = 0;
        while j < full {
            let d = S::sub(S::load(row.as_ptr().add(j)), mean_v);
            acc = S::fma(d, d, acc);
            j += lanes;
        }
        let var = (S::reduce_sum(acc) + row[full..].iter().map(|x| (x - mean) * (x - mean)).sum::<f32>()) / n as f32;
        let inv_std = 1.0 / (var + eps).sqrt();
        let inv_v = S::splat(inv_std);
        let mut j = 0;
        while j < full {
            let p = row.as_mut_ptr().add(j);
            let d = S::mul(S::sub(S::load(p), mean_v), inv_v);
            let y = S::fma(d, S::load(gamma.as_ptr().add(j)), S::load(beta.as_ptr().add(j)));
            S::store(p, y);
            j += lanes;
        }
        for j in full..n {
            row[j] = (row[j] - mean) * inv_std * gamma[j] + beta[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barista_index::simd::Scalar;

    fn erf64(x: f64) -> f64 {
        // Abramowitz & Stegun 7.1.28-free reference: integrate the series / continued fraction
        // through libm-quality f64 erf computed by the complementary error function series.
        // (f64 std has no erf; use a high-order Taylor series for |x| < 3 and the asymptotic
        // continued fraction beyond, both exact to ~1e-15 in their ranges.)
        let ax = x.abs();
        let value = if ax < 3.0 {
            let mut term = ax;
            let mut sum = ax;
            let x2 = ax * ax;
            for n in 1..200 {
                term *= -x2 / n as f64;
                let add = term / (2 * n + 1) as f64;
                sum += add;
                if add.abs() < 1e-17 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc continued fraction (Lentz), converges fast for x >= 3.
            let mut f = ax;
            for k in (1..60).rev() {
                f = ax + (k as f64 / 2.0) / f;
            }
            1.0 - (-ax * ax).exp() / (f * std::f64::consts::PI.sqrt())
        };
        value.copysign(x)
    }

    fn apply(f: unsafe fn([f32; 8]) -> [f32; 8], x: f32) -> f32 {
        // SAFETY: the scalar implementation has no CPU requirements.
        unsafe { f([x; 8])[0] }
    }

    #[test]
    fn erf_is_accurate_everywhere() {
        let mut worst = 0.0f64;
        for i in -60000..=60000 {
            let x = i as f32 * 1e-4;
            let got = apply(erf::<Scalar>, x) as f64;
            worst = worst.max((got - erf64(x as f64)).abs());
        }
        assert!(worst < 5e-7, "max |erf error| {worst}");
        // Saturates to ±1 within one ulp.
        assert!((apply(erf::<Scalar>, 50.0) - 1.0).abs() <= f32::EPSILON);
        assert!((apply(erf::<Scalar>, -50.0) + 1.0).abs() <= f32::EPSILON);
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0.0f64;
        for i in -8000..=8000 {
            let x = i as f32 * 0.01;
            let got = apply(exp::<Scalar>, x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "max relative exp error {worst}");
        assert_eq!(apply(exp::<Scalar>, -1000.0), apply(exp::<Scalar>, -87.0));
    }

    #[test]
    fn softmax_sums_to_one_and_zeroes_padding() {
        let mut row = vec![1.0, 2.0, 3.0, -1.0, 0.5, 7.0, 1.0, 2.0, 3.0, 4.0, 99.0, 99.0, 0.0, 0.0, 0.0, 0.0];
        // SAFETY: scalar implementation.
        unsafe { softmax_row::<Scalar>(&mut row, 10) };
        let sum: f32 = row[..10].iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        assert!(row[10..].iter().all(|&x| x == 0.0));
        let want = (7.0f64 - 4.0).exp() as f32;
        assert!((row[5] / row[9] - want).abs() < 1e-4);
    }

    #[test]
    fn layer_norm_matches_definition() {
        let mut row: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin() * 3.0 + 1.0).collect();
        let gamma: Vec<f32> = (0..19).map(|i| 1.0 + i as f32 * 0.01).collect();
        let beta: Vec<f32> = (0..19).map(|i| i as f32 * -0.02).collect();
        let x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let mean = x.iter().sum::<f64>() / 19.0;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 19.0;
        // SAFETY: scalar implementation.
        unsafe { layer_norm_row::<Scalar>(&mut row, &gamma, &beta, 1e-12) };
        for i in 0..19 {
            let want = (x[i] - mean) / var.sqrt() * gamma[i] as f64 + beta[i] as f64;
            assert!((row[i] as f64 - want).abs() < 1e-5, "{i}: {} vs {want}", row[i]);
        }
    }
}
