//! Latency statistics.

use std::time::Duration;

/// Percentiles of a set of timings, in milliseconds.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Number of samples.
    pub runs: usize,
}

impl Latency {
    /// Summarises `samples` (any order; at least one).
    pub fn of(samples: &mut [Duration]) -> Latency {
        assert!(!samples.is_empty(), "latency of no samples");
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        // Nearest rank: the smallest sample with at least a share q of the samples at or below it.
        let at = |q: f64| ms(samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]);
        Latency {
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            mean_ms: samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64,
            runs: samples.len(),
        }
    }
}

/// Times `runs` calls of `f` after `warmup` untimed calls.
pub fn time_runs(warmup: usize, runs: usize, mut f: impl FnMut()) -> Latency {
    for _ in 0..warmup {
        f();
    }
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    Latency::of(&mut samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        samples.reverse();
        let l = Latency::of(&mut samples);
        assert_eq!((l.p50_ms, l.p95_ms, l.p99_ms, l.runs), (50.0, 95.0, 99.0, 100));
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
        let one = Latency::of(&mut [Duration::from_millis(7)]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
    }
}
