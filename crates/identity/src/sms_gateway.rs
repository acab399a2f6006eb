//! Where SMS messages go: a small trait whose adapters (log, HTTP) live in
//! the `notify` crate.

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
#[error("the SMS could not be sent: {0}")]
pub struct SmsSendError(pub String);

#[async_trait]
pub trait SmsGateway: Send + Sync {
    /// Sends `message` to `to` (E.164).
    async fn send(&self, to: &str, message: &str) -> Result<(), SmsSendError>;
}

/// For an `Identity` built without SMS: every send fails clearly.
pub(crate) struct NoSmsGateway;

#[async_trait]
impl SmsGateway for NoSmsGateway {
    async fn send(&self, _to: &str, _message: &str) -> Result<(), SmsSendError> {
        Err(SmsSendError("no SMS gateway is configured".into()))
    }
}
