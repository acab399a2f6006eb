//! Prometheus metrics at `/metrics`: requests by route, method and status,
//! latency by route, and sign-in outcomes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Registry {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    sign_ins: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub struct Metrics(Mutex<Registry>);

impl Metrics {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `outcome`: `signed_in`, `second_factor_required`,
    /// `invalid_credentials` or `too_many_attempts`.
    pub fn sign_in(&self, outcome: &'static str) {
        *self.registry().sign_ins.entry(outcome).or_default() += 1;
    }

    fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut r = self.registry();
        *r.requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        let h = r.latency.entry(route.to_owned()).or_default();
        for (bucket, count) in BUCKETS.iter().zip(h.counts.iter_mut()) {
            if seconds <= *bucket {
                *count += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn render(&self) -> String {
        let r = self.registry();
        let mut out = String::new();
        out.push_str("# HELP cloudkeep_http_requests_total HTTP requests by route, method and status.\n");
        out.push_str("# TYPE cloudkeep_http_requests_total counter\n");
        for ((method, route, status), n) in &r.requests {
            let _ = writeln!(
                out,
                "cloudkeep_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP cloudkeep_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE cloudkeep_http_request_duration_seconds histogram\n");
        for (route, h) in &r.latency {
            let route = escape(route);
            for (bucket, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "cloudkeep_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bucket}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "cloudkeep_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "cloudkeep_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "cloudkeep_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP cloudkeep_sign_ins_total Password sign-in attempts by outcome.\n");
        out.push_str("# TYPE cloudkeep_sign_ins_total counter\n");
        for (outcome, n) in &r.sign_ins {
            let _ = writeln!(out, "cloudkeep_sign_ins_total{{outcome=\"{outcome}\"}} {n}");
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics().request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.request("GET", "/healthz", 200, 0.002);
        m.request("GET", "/healthz", 200, 0.3);
        m.sign_in("invalid_credentials");
        let text = m.render();
        assert!(text.contains("cloudkeep_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2"));
        assert!(text.contains("cloudkeep_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.005\"} 1"));
        assert!(text.contains("cloudkeep_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.5\"} 2"));
        assert!(text.contains("cloudkeep_sign_ins_total{outcome=\"invalid_credentials\"} 1"));
    }
}
