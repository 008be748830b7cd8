//! The proxy's own measurements, in Prometheus' text format: how long proxied requests took to
//! get their response head (the proxy's own latency, free of the client's coordinated omission),
//! how many got each class of status, and how many routes there are. The standalone proxy serves
//! them on `--metrics-ip`/`--metrics-port` (configurable-http-proxy's options) at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;

use crate::table::RouteTable;

/// Upper bounds of the latency histogram's buckets, in microseconds (1-2-5 steps, 10 µs–10 s).
const BUCKETS_US: [u64; 19] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000,
    500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// Counters shared by every serving thread; recording is a few relaxed atomic additions.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    /// Responses to routed requests by status class: 1xx … 5xx.
    responses: [AtomicU64; 5],
    /// Routed requests per latency bucket (not cumulative); the last one is `+Inf`.
    latency: [AtomicU64; BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

impl ProxyMetrics {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one routed request whose response head (`status`, from the backend or the proxy's
    /// own error page) was ready `elapsed` after the request head arrived.
    pub(crate) fn record(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BUCKETS_US.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Every metric in Prometheus' text exposition format.
    pub fn render(&self, table: &RouteTable) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str(
            "# HELP xiji_proxy_responses_total Responses to routed requests, by status class.\n\
             # TYPE xiji_proxy_responses_total counter\n",
        );
        for (i, count) in self.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "xiji_proxy_responses_total{{code=\"{}xx\"}} {}",
                i + 1,
                count.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP xiji_proxy_response_seconds Time from a routed request's head to its \
             response head.\n# TYPE xiji_proxy_response_seconds histogram\n",
        );
        let mut cumulative = 0;
        for (i, count) in self.latency.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            match BUCKETS_US.get(i) {
                Some(&bound) => {
                    let seconds = Duration::from_micros(bound).as_secs_f64();
                    let _ = writeln!(
                        out,
                        "xiji_proxy_response_seconds_bucket{{le=\"{seconds}\"}} {cumulative}"
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "xiji_proxy_response_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
                    );
                }
            }
        }
        let sum = Duration::from_micros(self.latency_sum_us.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "xiji_proxy_response_seconds_sum {}\nxiji_proxy_response_seconds_count {cumulative}",
            sum.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "# HELP xiji_proxy_routes Routes in the table.\n# TYPE xiji_proxy_routes gauge\n\
             xiji_proxy_routes {}",
            table.len()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_the_first_bucket_that_holds_them_and_counts_are_cumulative() {
        let metrics = ProxyMetrics::new();
        metrics.record(StatusCode::OK, Duration::from_micros(10));
        metrics.record(StatusCode::OK, Duration::from_micros(11));
        metrics.record(StatusCode::BAD_GATEWAY, Duration::from_secs(60));
        let text = metrics.render(&RouteTable::new());
        assert!(text.contains("xiji_proxy_responses_total{code=\"2xx\"} 2\n"));
        assert!(text.contains("xiji_proxy_responses_total{code=\"5xx\"} 1\n"));
        assert!(text.contains("xiji_proxy_response_seconds_bucket{le=\"0.00001\"} 1\n"));
        assert!(text.contains("xiji_proxy_response_seconds_bucket{le=\"0.00002\"} 2\n"));
        assert!(text.contains("xiji_proxy_response_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("xiji_proxy_response_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("xiji_proxy_response_seconds_count 3\n"));
        assert!(text.contains("xiji_proxy_routes 0\n"));
    }
}
