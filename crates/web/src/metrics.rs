//! Prometheus metrics at `/metrics`: requests by route, method and status,
//! latency by route, and sign-in outcomes.
//!
//! They describe who uses the server and how, so they are not public. On
//! the main address `/metrics` exists only when a token is configured
//! (`metrics_token`), and answers only a request that carries it as
//! `Authorization: Bearer …`; without a token it is a `404`, like any
//! unknown path. A listener of its own (`metrics_listen`, an internal
//! address) serves it without a token, or with the token when one is set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

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

/// Where `/metrics` is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    /// The address members use: only with a configured token.
    Main,
    /// `metrics_listen`: the token only when one is configured.
    OwnAddress,
}

/// Whether the request may read the metrics: `Ok`, or the refusal.
fn check(token: Option<&str>, listener: Listener, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = token else {
        return match listener {
            Listener::OwnAddress => Ok(()),
            // As if there were no such route: nothing to find here.
            Listener::Main => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")),
        };
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Digests first: equal lengths, so the comparison takes the same time
    // whatever was sent, and says nothing about the token's length.
    let equal: bool = Sha256::digest(sent.trim().as_bytes())
        .ct_eq(&Sha256::digest(token.as_bytes()))
        .into();
    if equal {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "send the metrics token as Authorization: Bearer <token>",
        ))
    }
}

fn answer(state: &AppState, listener: Listener, headers: &HeaderMap) -> Response {
    match check(state.config().metrics_token.as_deref(), listener, headers) {
        Ok(()) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            state.metrics().render(),
        )
            .into_response(),
        Err(refusal) => {
            let unauthorized = refusal.status == StatusCode::UNAUTHORIZED;
            let mut response = refusal.into_response();
            if unauthorized {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

/// `/metrics` on the main address.
pub fn serve_on_main_listener(state: &AppState, headers: &HeaderMap) -> Response {
    answer(state, Listener::Main, headers)
}

/// `/metrics` on `metrics_listen`.
pub async fn serve_on_own_listener(State(state): State<AppState>, headers: HeaderMap) -> Response {
    answer(&state, Listener::OwnAddress, &headers)
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

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    #[test]
    fn the_main_listener_serves_metrics_only_with_the_configured_token() {
        let token = "0123456789abcdef0123";
        let none = HeaderMap::new();
        for (configured, headers, expected) in [
            (None, &none, Some(StatusCode::NOT_FOUND)),
            (None, &bearer(token), Some(StatusCode::NOT_FOUND)),
            (Some(token), &none, Some(StatusCode::UNAUTHORIZED)),
            (
                Some(token),
                &bearer("0123456789abcdef0124"),
                Some(StatusCode::UNAUTHORIZED),
            ),
            (
                Some(token),
                &bearer("0123456789abcdef012"),
                Some(StatusCode::UNAUTHORIZED),
            ),
            (Some(token), &bearer(""), Some(StatusCode::UNAUTHORIZED)),
            (Some(token), &bearer(token), None),
        ] {
            let got = check(configured, Listener::Main, headers).err().map(|e| e.status);
            assert_eq!(got, expected, "{configured:?} {headers:?}");
        }
    }

    #[test]
    fn the_own_listener_asks_for_the_token_only_when_one_is_set() {
        let token = "0123456789abcdef0123";
        assert!(check(None, Listener::OwnAddress, &HeaderMap::new()).is_ok());
        assert!(check(Some(token), Listener::OwnAddress, &bearer(token)).is_ok());
        let refused = check(Some(token), Listener::OwnAddress, &HeaderMap::new()).unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    }

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
