//! Which segments to merge: a log-structured merge policy, as tantivy's `LogMergePolicy` and
//! Lucene's `LogByteSizeMergePolicy` (by live documents).
//!
//! Segments are grouped into levels by size: level `⌊log_f(max(live, floor) / floor)⌋` for a
//! merge factor `f`. When one level holds `f` segments, the `f` smallest of them are merged
//! into one segment of (about) the next level, so every level holds fewer than `f` segments and
//! an index of `N` live documents has at most `(f − 1) · (⌊log_f(N / floor)⌋ + 1)` segments
//! left by merges: O(log N). A segment whose deleted share passes `deletes_ratio` is rewritten
//! on its own to drop them. Segments that would grow past `max_docs` are left alone.
//!
//! A full merge (compaction) follows [`MergePolicy::choose_compaction`]: everything into one
//! segment up to `max_docs` live documents, segments of at most that size past it.

/// What the policy looks at: one committed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Segment number.
    pub id: u64,
    /// Documents, deleted ones included.
    pub docs: u32,
    /// Deleted documents.
    pub deleted: u32,
}

impl Candidate {
    fn live(&self) -> u64 {
        u64::from(self.docs - self.deleted)
    }
}

/// See the module docs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MergePolicy {
    /// Segments of one level merged at once, and the size ratio between levels (≥ 2).
    pub factor: usize,
    /// Segments below this many live documents all count as level 0.
    pub floor_docs: u64,
    /// A merge never produces a segment of more live documents than this (default 1,000,000:
    /// a merge holds its segment's vectors in memory while it writes them and builds the
    /// graph, about 5 GB for a million documents of the shared model's ladder).
    pub max_docs: u64,
    /// A segment with more than this share of deleted documents is rewritten.
    pub deletes_ratio: f64,
}

impl Default for MergePolicy {
    fn default() -> Self {
        MergePolicy { factor: 8, floor_docs: 1_000, max_docs: 1_000_000, deletes_ratio: 0.3 }
    }
}

impl MergePolicy {
    fn level(&self, live: u64) -> u32 {
        let factor = self.factor.max(2) as f64;
        let ratio = live.max(self.floor_docs.max(1)) as f64 / self.floor_docs.max(1) as f64;
        (ratio.ln() / factor.ln()).floor() as u32
    }

    /// The segments to merge next (at least one; more than one unless a segment is rewritten
    /// to drop its deletions), or `None` when the index is in shape.
    pub fn choose(&self, segments: &[Candidate]) -> Option<Vec<u64>> {
        let factor = self.factor.max(2);
        let mut by_level: std::collections::BTreeMap<u32, Vec<Candidate>> = std::collections::BTreeMap::new();
        for s in segments.iter().filter(|s| s.live() < self.max_docs) {
            by_level.entry(self.level(s.live())).or_default().push(*s);
        }
        for members in by_level.values_mut() {
            if members.len() < factor {
                continue;
            }
            let chosen = self.smallest_under_cap(members.iter(), factor);
            if chosen.len() >= 2 {
                return Some(chosen);
            }
        }
        most_deleted(
            segments.iter().filter(|s| s.docs > 0 && f64::from(s.deleted) / f64::from(s.docs) > self.deletes_ratio),
        )
    }

    /// The smallest of `segments` (by live documents, then number), at most `count` of them,
    /// whose live documents add up to no more than `max_docs`.
    fn smallest_under_cap<'a>(&self, segments: impl Iterator<Item = &'a Candidate>, count: usize) -> Vec<u64> {
        let mut by_size: Vec<&Candidate> = segments.collect();
        by_size.sort_by_key(|s| (s.live(), s.id));
        let mut chosen = Vec::new();
        let mut total = 0;
        for s in by_size {
            if chosen.len() == count || total + s.live() > self.max_docs {
                break;
            }
            total += s.live();
            chosen.push(s.id);
        }
        chosen
    }

    /// The next merge of a full merge (compaction), or `None` when it is done: the segments
    /// without a live document (merged into nothing), else the smallest segments that fit
    /// together under `max_docs` live documents (at least two), else the segment with the
    /// largest deleted share among those `rewritable` accepts (by segment number: a compaction
    /// does not rewrite what it made itself), rewritten on its own. Repeated until `None`, an
    /// index ends with every segment that could be merged merged and no deletions, its segments
    /// no larger than `max_docs` (unless one was larger before), so compaction holds at most
    /// `max_docs` documents' vectors in memory, however large the index (a single segment of
    /// ten million documents would need about 40 GB) — except to rewrite a segment already
    /// larger than that (written in bulk past the cap) to drop its deletions.
    pub fn choose_compaction(&self, segments: &[Candidate], rewritable: &dyn Fn(u64) -> bool) -> Option<Vec<u64>> {
        let empty: Vec<u64> = segments.iter().filter(|s| s.live() == 0 && s.docs > 0).map(|s| s.id).collect();
        if !empty.is_empty() {
            return Some(empty);
        }
        let chosen = self.smallest_under_cap(segments.iter(), usize::MAX);
        if chosen.len() >= 2 {
            return Some(chosen);
        }
        most_deleted(segments.iter().filter(|s| s.deleted > 0 && rewritable(s.id)))
    }
}

/// The segment with the largest deleted share among `segments` (ties: the lower number), as a
/// rewrite of that segment alone.
fn most_deleted<'a>(segments: impl Iterator<Item = &'a Candidate>) -> Option<Vec<u64>> {
    segments
        .max_by(|a, b| {
            let share = |s: &Candidate| f64::from(s.deleted) / f64::from(s.docs);
            share(a).total_cmp(&share(b)).then(b.id.cmp(&a.id))
        })
        .map(|s| vec![s.id])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, docs: u32, deleted: u32) -> Candidate {
        Candidate { id, docs, deleted }
    }

    #[test]
    fn merges_a_full_level_smallest_first() {
        let p = MergePolicy { factor: 4, floor_docs: 100, ..MergePolicy::default() };
        // Level 0 (< 400 live): 5 segments; level 1: one.
        let segments = [c(1, 1_000, 0), c(2, 300, 0), c(3, 50, 0), c(4, 120, 0), c(5, 90, 0), c(6, 10, 0)];
        assert_eq!(p.choose(&segments), Some(vec![6, 3, 5, 4]));
        assert_eq!(p.choose(&segments[..4]), None, "three per level is fine");
        // Live documents decide the level: a big segment that lost most documents is small.
        assert_eq!(p.choose(&[c(1, 10_000, 9_990), c(2, 10, 0), c(3, 10, 0), c(4, 10, 0)]), Some(vec![1, 2, 3, 4]));
    }

    #[test]
    fn rewrites_segments_with_many_deletions_and_respects_the_size_cap() {
        let p = MergePolicy { factor: 4, floor_docs: 100, deletes_ratio: 0.3, max_docs: 1_000 };
        assert_eq!(p.choose(&[c(1, 1_000, 200), c(2, 1_000, 400)]), Some(vec![2]));
        let big = [c(1, 2_000, 0), c(2, 2_000, 0), c(3, 2_000, 0), c(4, 2_000, 0)];
        assert_eq!(p.choose(&big), None, "past max_docs nothing merges");
        let near = [c(1, 400, 0), c(2, 400, 0), c(3, 400, 0), c(4, 400, 0)];
        assert_eq!(p.choose(&near), Some(vec![1, 2]), "a merge stops at max_docs");
    }

    #[test]
    fn compaction_merges_under_the_size_cap_then_drops_deletions() {
        let p = MergePolicy { max_docs: 50, ..MergePolicy::default() };
        // Everything fits: one merge of all, as a full merge always did.
        assert_eq!(p.choose_compaction(&[c(1, 10, 0), c(2, 20, 5), c(3, 5, 0)], &|_| true), Some(vec![3, 1, 2]));
        // Simulate compaction of four segments of 20 under a cap of 50: two of 40 remain.
        let mut segments = vec![c(1, 20, 0), c(2, 20, 0), c(3, 20, 0), c(4, 20, 3)];
        let mut next = 5;
        while let Some(ids) = p.choose_compaction(&segments, &|_| true) {
            let live: u32 = segments.iter().filter(|s| ids.contains(&s.id)).map(|s| s.docs - s.deleted).sum();
            segments.retain(|s| !ids.contains(&s.id));
            segments.push(c(next, live, 0));
            next += 1;
            assert!(next < 20, "compaction does not end");
        }
        let mut sizes: Vec<u32> = segments.iter().map(|s| s.docs).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![37, 40]);
        assert!(segments.iter().all(|s| s.deleted == 0));
        // A segment already past the cap is only rewritten for its deletions, on its own.
        assert_eq!(p.choose_compaction(&[c(1, 80, 0), c(2, 60, 0)], &|_| true), None);
        assert_eq!(p.choose_compaction(&[c(1, 80, 0), c(2, 60, 6)], &|_| true), Some(vec![2]));
        assert_eq!(p.choose_compaction(&[c(1, 10, 0)], &|_| true), None, "one clean segment: nothing to do");
        assert_eq!(p.choose_compaction(&[c(1, 10, 10)], &|_| true), Some(vec![1]), "an all-deleted segment goes");
        // An empty segment goes on its own, without rewriting a full one beside it.
        assert_eq!(p.choose_compaction(&[c(1, 10, 10), c(2, 45, 0)], &|_| true), Some(vec![1]));
        // Segments the compaction made are not rewritten again for later deletions.
        assert_eq!(p.choose_compaction(&[c(1, 80, 0), c(2, 60, 6)], &|id| id != 2), None);
    }

    #[test]
    fn segment_count_stays_logarithmic() {
        // Simulate flushes of 100 documents, merging whenever the policy asks.
        let p = MergePolicy { factor: 8, floor_docs: 100, ..MergePolicy::default() };
        let mut segments: Vec<Candidate> = Vec::new();
        let mut next = 1;
        let mut worst = 0;
        for _ in 0..5_000 {
            segments.push(c(next, 100, 0));
            next += 1;
            while let Some(ids) = p.choose(&segments) {
                let docs: u32 = segments.iter().filter(|s| ids.contains(&s.id)).map(|s| s.docs).sum();
                segments.retain(|s| !ids.contains(&s.id));
                segments.push(c(next, docs, 0));
                next += 1;
            }
            worst = worst.max(segments.len());
        }
        // 500,000 documents: levels 0..=3 (100 × 8³ = 51,200 ≤ …), at most 7 segments each.
        let levels = ((500_000f64 / 100.0).ln() / 8f64.ln()).floor() as usize + 1;
        assert!(worst <= 7 * levels, "{worst} segments");
        assert_eq!(segments.iter().map(|s| u64::from(s.docs)).sum::<u64>(), 500_000);
    }
}
