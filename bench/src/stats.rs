//! Latency statistics.

use std::time::Duration;

/// Percentiles of a set of timings, in milliseconds.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Number of samples.
    pub runs: usize,
}

impl Latency {
    /// Summarises `samples` (any order).
    pub fn of(samples: &mut [Duration]) -> Latency {
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| ms(samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]);
        Latency {
            p50_ms: at(0.50),
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
