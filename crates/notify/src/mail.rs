//! Email: rendering the queued notices (`identity::Notice`) in Spanish or
//! English, text and HTML, the transports (the outbox folder by default, SMTP when
//! configured), and the background worker that drains the queue.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use identity::{Identity, NOTICE_TOPIC, Notice, NoticeKind};
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// What every message says about where it comes from.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `cloudkeep <noreply@example.org>`
    pub from: String,
    /// The product name in texts (the issuer).
    pub product: String,
    /// The server's public address, for links.
    pub address: String,
}

impl MailSettings {
    /// The domain part of Message-IDs: the sender's.
    fn domain(&self) -> &str {
        self.from
            .rsplit('@')
            .next()
            .map(|d| d.trim_end_matches('>'))
            .filter(|d| !d.is_empty())
            .unwrap_or("localhost")
    }
}

fn catalog(lang: &str) -> &'static HashMap<String, String> {
    static EN: OnceLock<HashMap<String, String>> = OnceLock::new();
    static ES: OnceLock<HashMap<String, String>> = OnceLock::new();
    let parse = |text: &str| toml::from_str::<HashMap<String, String>>(text).expect("a mail catalog parses");
    match lang {
        "es" => ES.get_or_init(|| parse(include_str!("../locales/mail.es.toml"))),
        _ => EN.get_or_init(|| parse(include_str!("../locales/mail.en.toml"))),
    }
}

/// The message in the recipient's language, `{name}`s filled in.
fn text(lang: &str, key: &str, params: &HashMap<&str, String>) -> String {
    let template = catalog(lang)
        .get(key)
        .or_else(|| catalog("en").get(key))
        .map_or(key, String::as_str);
    let mut out = template.to_owned();
    for (name, value) in params {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// Subject, plain text and HTML of a queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders a notice as an email in its language.
pub fn render(notice: &Notice, settings: &MailSettings) -> Rendered {
    let lang = if notice.lang == "es" { "es" } else { "en" };
    let mut params: HashMap<&str, String> = notice.params.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    params.insert("product", settings.product.clone());
    params.insert("address", settings.address.clone());
    if let Some(when) = notice.params.get("when").and_then(|w| w.parse::<i64>().ok()) {
        params.insert("when", identity::utc_datetime(when));
    }
    for flag in ["two_factor", "state", "outcome"] {
        if let Some(value) = notice.params.get(flag) {
            let prefix = match flag {
                "state" => "policy",
                "outcome" => "import",
                _ => "two_factor",
            };
            params.insert(flag, text(lang, &format!("{prefix}.{value}"), &HashMap::new()));
        }
    }
    let kind = notice.kind.as_str();
    let subject = text(lang, &format!("{kind}.subject"), &params);
    let mut paragraphs = vec![
        text(lang, "greeting", &params),
        text(lang, &format!("{kind}.body"), &params),
    ];
    if notice.params.contains_key("ip") {
        paragraphs.push(text(lang, "details", &params));
    }
    let about_the_account = !matches!(
        notice.kind,
        NoticeKind::Invitation
            | NoticeKind::PolicyChanged
            | NoticeKind::SecurityAlert
            | NoticeKind::TwoFactorEnabled
            | NoticeKind::ImportFinished
    );
    if about_the_account {
        paragraphs.push(text(lang, "not_you", &params));
    }
    let mut footer = vec![text(lang, "footer", &params)];
    if notice.kind.optional() {
        footer.push(text(lang, "footer_optional", &params));
    }
    let plain = format!("{}\n\n-- \n{}\n", paragraphs.join("\n\n"), footer.join("\n"));
    let html_paragraphs: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>\n", escape(p).replace('\n', "<br>\n")))
        .collect();
    let html = format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n{html_paragraphs}<hr>\n<p style=\"color:#555;font-size:90%\">{}</p>\n</body></html>\n",
        escape(&subject),
        footer.iter().map(|f| escape(f)).collect::<Vec<_>>().join("<br>\n")
    );
    Rendered {
        subject,
        text: plain,
        html,
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834): no vacation replies.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// Whether `from` is usable as the sender (`Name <a@b>` or `a@b`).
pub fn valid_sender(from: &str) -> bool {
    from.parse::<Mailbox>().is_ok()
}

/// The whole message: multipart text + HTML, `Message-ID` from the queue
/// id (the same on every retry), `Date`, `Auto-Submitted`.
pub fn build(notice: &Notice, settings: &MailSettings) -> Result<Message, String> {
    let rendered = render(notice, settings);
    let from: Mailbox = settings
        .from
        .parse()
        .map_err(|e| format!("the sender address '{}' is not valid: {e}", settings.from))?;
    let to: Mailbox = notice
        .to
        .parse()
        .map_err(|e| format!("the address '{}' is not valid: {e}", notice.to))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(rendered.subject)
        .message_id(Some(format!("<{}@{}>", notice.id, settings.domain())))
        .date_now()
        .header(AutoSubmitted)
        .multipart(MultiPart::alternative_plain_html(rendered.text, rendered.html))
        .map_err(|e| e.to_string())
}

/// Where messages go.
#[async_trait]
pub trait MailTransport: Send + Sync {
    async fn deliver(&self, id: &str, message: &Message) -> Result<(), String>;
}

/// The zero-configuration transport: each message becomes an `.eml` file
/// in `<data>/outbox/` (written whole, then renamed), and a log line.
pub struct OutboxTransport {
    dir: PathBuf,
}

impl OutboxTransport {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

#[async_trait]
impl MailTransport for OutboxTransport {
    async fn deliver(&self, id: &str, message: &Message) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("cannot write to {}: {e}", self.dir.display());
        crate::private_dir(&self.dir).await.map_err(fail)?;
        let file = self.dir.join(format!("{id}.eml"));
        let tmp = self.dir.join(format!(".{id}.eml.tmp"));
        // Emails carry sign-in and invitation links: owner-only, like
        // everything in the data folder.
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut out = options.open(&tmp).await.map_err(fail)?;
        tokio::io::AsyncWriteExt::write_all(&mut out, message.formatted().as_slice())
            .await
            .map_err(fail)?;
        tokio::io::AsyncWriteExt::flush(&mut out).await.map_err(fail)?;
        drop(out);
        tokio::fs::rename(&tmp, &file).await.map_err(fail)?;
        tracing::info!(file = %file.display(), "email written to the outbox");
        Ok(())
    }
}

/// How to reach the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (a relay on the same machine or network).
    None,
    /// STARTTLS on the submission port (587).
    StartTls,
    /// TLS from the first byte (465).
    Tls,
}

pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpTransport {
    pub fn new(host: &str, port: u16, tls: SmtpTls, credentials: Option<(String, String)>) -> Result<Self, String> {
        let builder = match tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| e.to_string())?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| e.to_string())?,
        };
        let mut builder = builder.port(port).timeout(Some(Duration::from_secs(20)));
        if let Some((user, password)) = credentials {
            builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                user, password,
            ));
        }
        Ok(Self { inner: builder.build() })
    }
}

#[async_trait]
impl MailTransport for SmtpTransport {
    async fn deliver(&self, _id: &str, message: &Message) -> Result<(), String> {
        self.inner
            .send(message.clone())
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}

/// Drains the queue for as long as the server runs: sends what is due,
/// records failures (retried with backoff), and waits for new messages
/// (signalled, or every few seconds).
pub async fn deliver_forever(identity: Identity, transport: Arc<dyn MailTransport>, settings: MailSettings) {
    let notify = identity.signals().subscribe(NOTICE_TOPIC);
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        deliver_due(&identity, transport.as_ref(), &settings).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
    }
}

/// Sends every message due now; returns how many went out.
pub async fn deliver_due(identity: &Identity, transport: &dyn MailTransport, settings: &MailSettings) -> usize {
    let mut sent = 0;
    loop {
        let notice = match identity.claim_notice().await {
            Ok(Some(notice)) => notice,
            Ok(None) => return sent,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notice queue");
                return sent;
            }
        };
        let outcome = match build(&notice, settings) {
            Ok(message) => transport.deliver(&notice.id, &message).await,
            Err(e) => Err(e),
        };
        let recorded = match outcome {
            Ok(()) => {
                sent += 1;
                identity.notice_sent(&notice).await
            }
            Err(error) => {
                let next = identity.notice_failed(&notice, &error).await;
                match &next {
                    Ok(Some(at)) => {
                        tracing::warn!(%error, kind = notice.kind.as_str(), retry_at = at, "email not delivered; will retry")
                    }
                    Ok(None) => {
                        tracing::error!(%error, kind = notice.kind.as_str(), "email given up after repeated failures")
                    }
                    Err(_) => {}
                }
                next.map(|_| ())
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "cannot update the notice queue");
            return sent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(kind: NoticeKind, lang: &str, params: &[(&str, &str)]) -> Notice {
        Notice {
            id: "0190abc".into(),
            account_id: Some(identity::AccountId::new("a")),
            to: "ana@example.org".into(),
            lang: lang.into(),
            kind,
            params: params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            created_at: 0,
            next_attempt_at: 0,
            attempts: 0,
        }
    }

    fn settings() -> MailSettings {
        MailSettings {
            from: "cloudkeep <noreply@cloud.example.org>".into(),
            product: "cloudkeep".into(),
            address: "https://cloud.example.org".into(),
        }
    }

    #[test]
    fn messages_are_localized_and_filled_in() {
        let params = [
            ("name", "NAS <QNAP>"),
            ("ip", "192.0.2.1"),
            ("browser", "Firefox on Linux"),
            ("when", "1795702057000"),
        ];
        let en = render(&queued(NoticeKind::AppPasswordCreated, "en", &params), &settings());
        assert_eq!(en.subject, "A new application password");
        assert!(en.text.contains("named \"NAS <QNAP>\""), "{}", en.text);
        assert!(
            en.text
                .contains("When: 2026-11-26 14:07 UTC. From: Firefox on Linux, address 192.0.2.1.")
        );
        assert!(en.text.contains("turn this kind of email off"));
        assert!(en.html.contains("NAS &lt;QNAP&gt;") && !en.html.contains("<QNAP>"));
        let es = render(&queued(NoticeKind::AppPasswordCreated, "es", &params), &settings());
        assert_eq!(es.subject, "Una nueva contraseña de aplicación");
        assert!(es.html.starts_with("<!doctype html>\n<html lang=\"es\">"));
        let off = render(
            &queued(NoticeKind::TwoFactorDisabled, "en", &[("name", "Phone")]),
            &settings(),
        );
        assert!(
            !off.text.contains("turn this kind of email off"),
            "cannot be turned off"
        );
        for kind in NoticeKind::ALL {
            for lang in ["en", "es"] {
                let r = render(&queued(kind, lang, &[]), &settings());
                assert!(
                    !r.subject.contains(".subject") && !r.text.contains(".body"),
                    "{kind:?} {lang}"
                );
            }
        }
    }

    #[test]
    fn messages_carry_the_headers_mail_needs() {
        let message = build(&queued(NoticeKind::NewDevice, "en", &[]), &settings()).unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        for header in [
            "Message-ID: <0190abc@cloud.example.org>",
            "Auto-Submitted: auto-generated",
            "Date: ",
            "To: ana@example.org",
            "Content-Type: multipart/alternative",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Type: text/html; charset=utf-8",
        ] {
            assert!(text.contains(header), "{header} in\n{text}");
        }
        let mut bad = queued(NoticeKind::NewDevice, "en", &[]);
        bad.to = "not an address".into();
        assert!(build(&bad, &settings()).is_err());
    }

    #[tokio::test]
    async fn the_outbox_writes_whole_files() {
        let dir = std::env::temp_dir().join(format!("ck-mail-outbox-{}", std::process::id()));
        let message = build(&queued(NoticeKind::NewDevice, "en", &[]), &settings()).unwrap();
        OutboxTransport::new(&dir).deliver("0190abc", &message).await.unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["0190abc.eml"]);
        let text = std::fs::read_to_string(dir.join("0190abc.eml")).unwrap();
        assert!(text.contains("Sign-in from a new device"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
