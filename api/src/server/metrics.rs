//! Prometheus metrics: request counts and latency histograms by route, and search time by stage.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Everything the server measures.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub search_stage_seconds: Family<StageLabels, Histogram, fn() -> Histogram>,
    pub rejected_busy: Counter,
    pub documents: Gauge,
    pub pool_queued: Family<PoolLabels, Gauge>,
    pub pool_active: Family<PoolLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("barista");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let search_stage_seconds =
            Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let rejected_busy = Counter::default();
        let documents = Gauge::default();
        registry.register("http_requests", "HTTP requests by route, method and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route", request_seconds.clone());
        registry.register(
            "search_stage_duration_seconds",
            "Search time by stage (encode, graph, scan, rescore, fetch)",
            search_stage_seconds.clone(),
        );
        registry.register(
            "rejected_overloaded",
            "Requests refused with 503 because the work queue was full",
            rejected_busy.clone(),
        );
        registry.register("documents", "Live documents in the index", documents.clone());
        let pool_queued = Family::<PoolLabels, Gauge>::default();
        let pool_active = Family::<PoolLabels, Gauge>::default();
        registry.register("pool_queued", "Requests waiting for a worker thread, by pool", pool_queued.clone());
        registry.register("pool_active", "Requests a worker thread is running, by pool", pool_active.clone());
        Metrics {
            registry,
            requests,
            request_seconds,
            search_stage_seconds,
            rejected_busy,
            documents,
            pool_queued,
            pool_active,
        }
    }

    /// Records one search's stage timings.
    pub fn observe_search(&self, timings: &barista_engine::search::request::Timings) {
        for (stage, ms) in [
            ("encode", timings.encode_ms),
            ("graph", timings.graph_ms),
            ("scan", timings.scan_ms),
            ("rescore", timings.rescore_ms),
            ("fetch", timings.fetch_ms),
        ] {
            self.search_stage_seconds.get_or_create(&StageLabels { stage: stage.into() }).observe(ms / 1e3);
        }
    }

    /// Records a pool's occupancy now.
    pub fn observe_pool(&self, pool: &super::pool::Pool) {
        let (queued, active) = pool.occupancy();
        let labels = PoolLabels { pool: pool.name().trim_start_matches("barista-").to_string() };
        self.pool_queued.get_or_create(&labels).set(queued as i64);
        self.pool_active.get_or_create(&labels).set(active as i64);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
