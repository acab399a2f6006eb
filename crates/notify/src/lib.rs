//! Messages leaving the server: SMS gateways (the adapters behind
//! `identity::SmsGateway`) and push notifications to phones running the
//! authenticator app (`identity::PushNotifier`), and the queued notices
//! as email ([`mail`]).
//!
//! This crate only delivers: what a message says and when to send it is
//! decided by the services (`identity`, and `import` for its notice).
#![forbid(unsafe_code)]

pub mod mail;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use identity::{SmsGateway, SmsSendError};
use tokio::io::AsyncWriteExt;

/// The zero-configuration gateway: each message goes to the server log
/// and is appended to `<data>/outbox/sms.log`, so an operator (or a test)
/// can read the code. Nothing leaves the machine.
pub struct LogSmsGateway {
    file: PathBuf,
}

impl LogSmsGateway {
    pub fn new(outbox: impl Into<PathBuf>) -> Self {
        Self {
            file: outbox.into().join("sms.log"),
        }
    }
}

#[async_trait]
impl SmsGateway for LogSmsGateway {
    async fn send(&self, to: &str, message: &str) -> Result<(), SmsSendError> {
        let fail = |e: std::io::Error| SmsSendError(format!("cannot write {}: {e}", self.file.display()));
        if let Some(dir) = self.file.parent() {
            private_dir(dir).await.map_err(fail)?;
        }
        let mut options = tokio::fs::OpenOptions::new();
        options.create(true).append(true);
        // The codes in it sign people in: owner-only.
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&self.file).await.map_err(fail)?;
        file.write_all(format!("to={to} message={message}\n").as_bytes())
            .await
            .map_err(fail)?;
        // tokio finishes file writes in the background: without this the
        // message could be lost when the handle drops.
        file.flush().await.map_err(fail)?;
        tracing::info!(file = %self.file.display(), "SMS written to the outbox (log gateway)");
        Ok(())
    }
}

/// Sends each message as `POST {url}` with the JSON body
/// `{"to": "+41…", "message": "…"}` and `Authorization: Bearer {token}`.
/// Any 2xx answer counts as sent.
pub struct HttpSmsGateway {
    url: String,
    token: String,
    client: reqwest::Client,
}

impl HttpSmsGateway {
    pub fn new(url: String, token: String) -> Result<Self, String> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("the SMS gateway URL must be http(s)://…, not '{url}'"));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { url, token, client })
    }
}

#[async_trait]
impl SmsGateway for HttpSmsGateway {
    async fn send(&self, to: &str, message: &str) -> Result<(), SmsSendError> {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&serde_json::json!({"to": to, "message": message}))
            .send()
            .await
            .map_err(|e| SmsSendError(format!("the SMS gateway is unreachable: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(SmsSendError(format!("the SMS gateway answered {status}")));
        }
        Ok(())
    }
}

/// Push to phones through a UnifiedPush/ntfy-style provider: for each
/// device, `POST` to the configured URL with `{device}` replaced by the
/// device's method id, and a body carrying only the request id
/// (`{"request_id":"…"}`). The app subscribes to its own topic and, woken,
/// fetches the request itself over its signed long poll: nothing about the
/// sign-in goes through the provider.
pub struct WebhookPush {
    template: String,
    token: String,
    client: reqwest::Client,
}

impl WebhookPush {
    /// `template` is `http(s)://…` and may hold `{device}`; `token`, when
    /// not empty, goes as `Authorization: Bearer`.
    pub fn new(template: String, token: String) -> Result<Self, String> {
        if !(template.starts_with("https://") || template.starts_with("http://")) {
            return Err(format!("the push webhook URL must be http(s)://…, not '{template}'"));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            template,
            token,
            client,
        })
    }
}

#[async_trait]
impl identity::PushNotifier for WebhookPush {
    async fn notify(
        &self,
        method_id: &identity::FactorId,
        request_id: &identity::ApprovalRequestId,
    ) -> Result<(), String> {
        let url = self.template.replace("{device}", method_id.as_str());
        let mut request = self
            .client
            .post(&url)
            .json(&serde_json::json!({"request_id": request_id.as_str()}));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("the push provider is unreachable: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("the push provider answered {}", response.status()));
        }
        Ok(())
    }
}

/// Creates `dir` (and what is missing above it) readable by the owner
/// only, whatever the umask: what goes in it signs people in.
pub(crate) async fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn the_log_gateway_appends_to_the_outbox() {
        let dir = std::env::temp_dir().join(format!("ck-outbox-{}", std::process::id()));
        let g = LogSmsGateway::new(&dir);
        g.send("+41791234567", "123456 is your code").await.unwrap();
        g.send("+41791234567", "654321 is your code").await.unwrap();
        let text = std::fs::read_to_string(dir.join("sms.log")).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with("to=+41791234567 message=654321 is your code\n"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A real HTTP receiver on loopback, standing in for a provider.
    #[tokio::test]
    async fn the_http_gateway_posts_json_with_the_token() {
        type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/send",
            axum::routing::post(move |headers: HeaderMap, Json(body): Json<serde_json::Value>| {
                let record = record.clone();
                async move {
                    let auth = headers["authorization"].to_str().unwrap().to_owned();
                    let refuse = body["to"] == "+41790000000";
                    record.lock().unwrap().push((auth, body));
                    if refuse {
                        StatusCode::BAD_GATEWAY
                    } else {
                        StatusCode::ACCEPTED
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/send", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let g = HttpSmsGateway::new(url, "s3cret".into()).unwrap();
        g.send("+41791234567", "123456 is your code").await.unwrap();
        let refused = g.send("+41790000000", "x").await.unwrap_err();
        assert!(refused.0.contains("502"), "{refused}");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0].0, "Bearer s3cret");
        assert_eq!(
            seen[0].1,
            serde_json::json!({"to": "+41791234567", "message": "123456 is your code"})
        );

        let down = HttpSmsGateway::new("http://127.0.0.1:9/send".into(), "t".into()).unwrap();
        assert!(
            down.send("+41791234567", "x")
                .await
                .unwrap_err()
                .0
                .contains("unreachable")
        );
        assert!(HttpSmsGateway::new("ftp://x".into(), "t".into()).is_err());
    }

    #[tokio::test]
    async fn the_push_webhook_posts_only_the_request_id_to_the_device_topic() {
        use identity::PushNotifier;
        type Seen = Arc<Mutex<Vec<(String, Option<String>, serde_json::Value)>>>;
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/push/{topic}",
            axum::routing::post(
                move |axum::extract::Path(topic): axum::extract::Path<String>,
                      headers: HeaderMap,
                      Json(body): Json<serde_json::Value>| {
                    let record = record.clone();
                    async move {
                        let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
                        record.lock().unwrap().push((topic, auth, body));
                        StatusCode::OK
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let push = WebhookPush::new(format!("{base}/push/ck-{{device}}"), String::new()).unwrap();
        push.notify(&identity::FactorId::new("m1"), &identity::ApprovalRequestId::new("r1"))
            .await
            .unwrap();
        let with_token = WebhookPush::new(format!("{base}/push/ck-{{device}}"), "tok".into()).unwrap();
        with_token
            .notify(&identity::FactorId::new("m2"), &identity::ApprovalRequestId::new("r2"))
            .await
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                ("ck-m1".to_owned(), None, serde_json::json!({"request_id": "r1"})),
                (
                    "ck-m2".to_owned(),
                    Some("Bearer tok".to_owned()),
                    serde_json::json!({"request_id": "r2"})
                ),
            ]
        );
        let missing = WebhookPush::new(format!("{base}/nothing/{{device}}"), String::new()).unwrap();
        assert!(
            missing
                .notify(&identity::FactorId::new("m"), &identity::ApprovalRequestId::new("r"))
                .await
                .unwrap_err()
                .contains("404")
        );
        assert!(WebhookPush::new("ntfy.sh/x".into(), String::new()).is_err());
    }
}
