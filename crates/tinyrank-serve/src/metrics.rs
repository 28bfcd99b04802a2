//! Prometheus metrics (`GET /metrics`, text format): requests by route and status, latency,
//! queue depth, batch sizes and pairs scored.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub queue_pairs: IntGauge,
    pub queue_requests: IntGauge,
    pub batch_pairs: Histogram,
    pub batch_tokens: Histogram,
    pub batch_seconds: Histogram,
    pub pairs_scored: IntCounter,
    pub model_loaded: IntGauge,
}

/// Powers of two from 1 to 2^`n-1`.
fn doubling(n: usize) -> Vec<f64> {
    (0..n).map(|i| (1u64 << i) as f64).collect()
}

impl Metrics {
    pub fn new() -> Self {
        // Every name and label set below is fixed and distinct, so registration cannot fail.
        let registry = Registry::new();
        let seconds = prometheus::exponential_buckets(0.005, 2.0, 14).expect("valid buckets");
        let requests = IntCounterVec::new(
            Opts::new(
                "tinyrank_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tinyrank_request_duration_seconds",
                "Time from request to response, by route",
            )
            .buckets(seconds.clone()),
            &["route"],
        )
        .expect("valid metric");
        let queue_pairs = IntGauge::new(
            "tinyrank_queue_pairs",
            "Pairs of the requests waiting for or in scoring",
        )
        .expect("valid metric");
        let queue_requests = IntGauge::new(
            "tinyrank_queue_requests",
            "Requests waiting for or in scoring",
        )
        .expect("valid metric");
        let batch_pairs = Histogram::with_opts(
            HistogramOpts::new("tinyrank_batch_pairs", "Pairs per scored batch")
                .buckets(doubling(12)),
        )
        .expect("valid metric");
        let batch_tokens = Histogram::with_opts(
            HistogramOpts::new("tinyrank_batch_tokens", "Tokens per scored batch")
                .buckets(doubling(18)),
        )
        .expect("valid metric");
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new("tinyrank_batch_duration_seconds", "Time to score one batch")
                .buckets(seconds),
        )
        .expect("valid metric");
        let pairs_scored =
            IntCounter::new("tinyrank_pairs_scored_total", "Pairs scored").expect("valid metric");
        let model_loaded = IntGauge::new(
            "tinyrank_model_loaded",
            "1 once the model is loaded and the scoring thread runs",
        )
        .expect("valid metric");
        let metrics = Self {
            registry,
            requests,
            request_seconds,
            queue_pairs,
            queue_requests,
            batch_pairs,
            batch_tokens,
            batch_seconds,
            pairs_scored,
            model_loaded,
        };
        metrics.register();
        metrics
    }

    fn register(&self) {
        let all: [Box<dyn prometheus::core::Collector>; 9] = [
            Box::new(self.requests.clone()),
            Box::new(self.request_seconds.clone()),
            Box::new(self.queue_pairs.clone()),
            Box::new(self.queue_requests.clone()),
            Box::new(self.batch_pairs.clone()),
            Box::new(self.batch_tokens.clone()),
            Box::new(self.batch_seconds.clone()),
            Box::new(self.pairs_scored.clone()),
            Box::new(self.model_loaded.clone()),
        ];
        for collector in all {
            self.registry
                .register(collector)
                .expect("metric names are distinct");
        }
    }

    pub fn request_done(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.request_seconds
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    pub fn entered_queue(&self, pairs: usize) {
        self.queue_pairs.add(pairs as i64);
        self.queue_requests.inc();
    }

    pub fn left_queue(&self, pairs: usize) {
        self.queue_pairs.sub(pairs as i64);
        self.queue_requests.dec();
    }

    pub fn batch_done(&self, pairs: usize, tokens: usize, elapsed: Duration) {
        self.batch_pairs.observe(pairs as f64);
        self.batch_tokens.observe(tokens as f64);
        self.batch_seconds.observe(elapsed.as_secs_f64());
        self.pairs_scored.inc_by(pairs as u64);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail, and every family has a name and help.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
