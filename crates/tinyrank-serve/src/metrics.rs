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

// Every name and label set here is fixed and distinct, so building and registering a metric
// cannot fail.
const VALID: &str = "valid metric";

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect(VALID)
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect(VALID)
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let seconds = prometheus::exponential_buckets(0.005, 2.0, 14).expect("valid buckets");
        let requests = IntCounterVec::new(
            Opts::new(
                "tinyrank_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )
        .expect(VALID);
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tinyrank_request_duration_seconds",
                "Time from request to response, by route",
            )
            .buckets(seconds.clone()),
            &["route"],
        )
        .expect(VALID);
        let queue_pairs = gauge(
            "tinyrank_queue_pairs",
            "Pairs of the requests waiting for or in scoring",
        );
        let queue_requests = gauge(
            "tinyrank_queue_requests",
            "Requests waiting for or in scoring",
        );
        let batch_pairs = histogram(
            "tinyrank_batch_pairs",
            "Pairs per scored batch",
            doubling(12),
        );
        let batch_tokens = histogram(
            "tinyrank_batch_tokens",
            "Tokens per scored batch",
            doubling(18),
        );
        let batch_seconds = histogram(
            "tinyrank_batch_duration_seconds",
            "Time to score one batch",
            seconds,
        );
        let pairs_scored =
            IntCounter::new("tinyrank_pairs_scored_total", "Pairs scored").expect(VALID);
        let model_loaded = gauge(
            "tinyrank_model_loaded",
            "1 once the model is loaded and the scoring thread runs",
        );
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
