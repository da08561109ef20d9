//! Choosing the best-scored documents: the k-th largest score, the k best of a list, a
//! streaming top-k.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Maps a score to a `u32` with the same order (NaN lowest).
#[inline]
pub(crate) fn order_key(score: f32) -> u32 {
    let bits = score_key(score).to_bits();
    if bits >> 31 == 1 { !bits } else { bits | 0x8000_0000 }
}

fn from_order_key(key: u32) -> f32 {
    f32::from_bits(if key >> 31 == 1 { key & 0x7fff_ffff } else { !key })
}

/// The `k`-th largest of `scores` (NaN counts as lowest), by radix selection: three histogram
/// passes over ever fewer values. `k` is clamped to `1..=len`; an empty slice gives -inf.
pub fn kth_largest(scores: &[f32], k: usize) -> f32 {
    if scores.is_empty() {
        return f32::NEG_INFINITY;
    }
    let mut k = k.clamp(1, scores.len());
    // The first pass reads the scores directly; later passes only the survivors.
    let mut keys: Vec<u32> = Vec::new();
    let mut prefix = 0u32;
    for (pass, (shift, bits)) in [(21u32, 11u32), (10, 11), (0, 10)].into_iter().enumerate() {
        let mut histogram = [0usize; 2048];
        if pass == 0 {
            for &score in scores {
                histogram[(order_key(score) >> shift) as usize] += 1;
            }
        } else {
            for &key in &keys {
                histogram[((key >> shift) & ((1 << bits) - 1)) as usize] += 1;
            }
        }
        let mut bucket = (1usize << bits) - 1;
        loop {
            if histogram[bucket] >= k || bucket == 0 {
                break;
            }
            k -= histogram[bucket];
            bucket -= 1;
        }
        prefix |= (bucket as u32) << shift;
        let mask = !((1u32 << shift) - 1);
        if pass == 0 {
            keys = scores.iter().map(|&s| order_key(s)).filter(|&key| key & mask == prefix).collect();
        } else {
            keys.retain(|&key| key & mask == prefix);
        }
        if shift == 0 {
            break;
        }
    }
    from_order_key(prefix)
}

/// Keeps the `k` best of `items` (unordered), in linear time.
pub fn select_best(items: &mut Vec<Scored>, k: usize) {
    if items.len() > k {
        if k > 0 {
            items.select_nth_unstable_by(k - 1, best_first);
        }
        items.truncate(k);
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

/// Orders scores with NaN below everything (a NaN score is never "best").
#[inline]
pub fn score_key(score: f32) -> f32 {
    if score.is_nan() { f32::NEG_INFINITY } else { score }
}

/// Best-first order: higher score, then lower document number (a total order, NaN last).
pub fn best_first(a: &Scored, b: &Scored) -> Ordering {
    score_key(b.score).total_cmp(&score_key(a.score)).then(a.doc.cmp(&b.doc))
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
        TopK { k, heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1) }
    }

    /// Whether a document with this score could enter (a cheap pre-check before `push`).
    #[inline]
    pub fn would_keep(&self, score: f32) -> bool {
        self.k > 0
            && (self.heap.len() < self.k || self.heap.peek().is_some_and(|w| score_key(score) >= score_key(w.0.score)))
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
        let mut v = self.into_unsorted();
        v.sort_by(best_first);
        v
    }

    /// The kept ones, in no particular order.
    pub fn into_unsorted(self) -> Vec<Scored> {
        self.heap.into_iter().map(|w| w.0).collect()
    }
}

/// Every `(score, start + i)` of `scores` that reaches a threshold at least `k` scores reach
/// (NaN never does): a superset of the `k` best, found in one pass over `scores` plus a
/// selection over a sample of them. The threshold is aimed four standard deviations of the
/// sample below the k-th best, so the superset is some 10–30% larger for shortlists in the
/// thousands and a few thousand long for short ones over large lists. Falls back to exact radix
/// selection when the sample guessed too high (rare) or the list is short.
pub(crate) fn at_least(scores: &[f32], k: usize, start: u32) -> Vec<Scored> {
    /// Aim for this many sampled scores.
    const SAMPLE: usize = 2048;
    let n = scores.len();
    let k = k.min(n);
    let collect = |threshold: u32| -> Vec<Scored> {
        let mut kept = Vec::with_capacity((k + k / 4 + 16).min(n));
        for (i, &score) in scores.iter().enumerate() {
            if order_key(score) >= threshold && !score.is_nan() {
                kept.push(Scored { score, doc: start + i as u32 });
            }
        }
        kept
    };
    if k == 0 || n < 4 * SAMPLE || k * 4 > n {
        return collect(order_key(kth_largest(scores, k)));
    }
    // Sample every `stride`-th score; the expected rank of the k-th best among them is
    // k·m/n. Aim a few standard deviations lower, so that at least k reach the threshold.
    let stride = n / SAMPLE;
    let mut sample: Vec<u32> = scores.iter().step_by(stride).map(|&s| order_key(s)).collect();
    let m = sample.len();
    let expected = k as f64 * m as f64 / n as f64;
    let rank = (expected + 4.0 * expected.sqrt() + 4.0).ceil() as usize;
    if rank >= m {
        return collect(order_key(kth_largest(scores, k)));
    }
    let (_, &mut guess, _) = sample.select_nth_unstable_by(rank - 1, |a, b| b.cmp(a));
    if guess > order_key(f32::NAN) {
        let kept = collect(guess);
        if kept.len() >= k {
            return kept;
        }
    }
    collect(order_key(kth_largest(scores, k)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::tests::values;

    /// The k best by `best_first`, as a sorted list of docs.
    fn k_best(scores: &[f32], k: usize, start: u32) -> Vec<Scored> {
        let mut all: Vec<Scored> = scores
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_nan())
            .map(|(i, &score)| Scored { score, doc: start + i as u32 })
            .collect();
        all.sort_by(best_first);
        all.truncate(k);
        all
    }

    #[test]
    fn sampled_thresholds_keep_a_superset_of_the_k_best() {
        for (n, k, seed) in [(50_000, 3000, 1), (20_000, 1500, 2), (9000, 64, 3), (100_000, 20_000, 4), (300, 100, 5)] {
            let mut scores = values(n, seed);
            scores[7] = f32::NAN;
            // A sorted stretch (the worst case for a strided sample).
            for (i, s) in scores.iter_mut().enumerate().skip(100).take(2000) {
                *s = i as f32 * 1e-4;
            }
            let kept = at_least(&scores, k, 10);
            assert!(kept.iter().all(|s| !s.score.is_nan()), "n {n} k {k}: NaN kept");
            assert!(kept.len() >= k && kept.len() <= n, "n {n} k {k}: {} kept", kept.len());
            assert!(kept.windows(2).all(|w| w[0].doc < w[1].doc), "kept in document order");
            let mut best = kept.clone();
            select_best(&mut best, k);
            best.sort_by(best_first);
            assert_eq!(best, k_best(&scores, k, 10), "n {n} k {k}");
        }
    }

    #[test]
    fn sampled_thresholds_handle_ties_and_few_finite_scores() {
        // Every score equal: all reach the threshold.
        let flat = vec![0.25f32; 40_000];
        assert_eq!(at_least(&flat, 2000, 0).len(), 40_000);
        // Fewer finite scores than k: all of them, and nothing else.
        let mut sparse = vec![f32::NAN; 40_000];
        for i in (0..40_000).step_by(100) {
            sparse[i] = i as f32;
        }
        let kept = at_least(&sparse, 1000, 0);
        assert_eq!(kept.len(), 400);
    }
}
