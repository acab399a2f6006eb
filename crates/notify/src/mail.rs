//! Email: rendering the queued notices (`identity::Notice`) in the
//! recipient's language (`locales/mail.<lang>.toml`; numbers, sizes, dates
//! and browsers by `identity::locale`), text and HTML, the transports (the outbox folder by default, SMTP when
//! configured), and the background worker that drains the queue.

use std::collections::{BTreeMap, HashMap};
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

/// One message of a mail catalogue: a text, or one text per CLDR plural
/// category (`{ one = "…", other = "…" }`) chosen by the notice's count.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Entry {
    Text(String),
    Plural(BTreeMap<String, String>),
}

type MailCatalog = HashMap<String, Entry>;

/// The catalogue of `lang` (a supported code; English otherwise).
fn catalog(lang: &str) -> &'static MailCatalog {
    static ALL: OnceLock<Vec<(&'static str, MailCatalog)>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let parse = |text: &str| toml::from_str::<MailCatalog>(text).expect("a mail catalog parses");
        vec![
            ("en", parse(include_str!("../locales/mail.en.toml"))),
            ("es", parse(include_str!("../locales/mail.es.toml"))),
            ("fr", parse(include_str!("../locales/mail.fr.toml"))),
            ("de", parse(include_str!("../locales/mail.de.toml"))),
            ("it", parse(include_str!("../locales/mail.it.toml"))),
        ]
    });
    all.iter()
        .find(|(code, _)| *code == lang)
        .map_or(&all[0].1, |(_, catalog)| catalog)
}

/// The message in the recipient's language, `{name}`s filled in; a plural
/// message takes the form for `count` (written as the language writes
/// numbers, as `{count}`).
fn text(lang: &str, key: &str, params: &HashMap<&str, String>, count: Option<u64>) -> String {
    let template = match catalog(lang).get(key).or_else(|| catalog("en").get(key)) {
        Some(Entry::Text(text)) => text.as_str(),
        Some(Entry::Plural(forms)) => {
            let category = identity::locale::plural_category(lang, count.unwrap_or(0));
            forms
                .get(category)
                .or_else(|| forms.get("other"))
                .map_or(key, String::as_str)
        }
        None => key,
    };
    let mut out = template.to_owned();
    if let Some(n) = count {
        out = out.replace("{count}", &identity::locale::integer(lang, n));
    }
    for (name, value) in params {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// The parameter a kind's plural messages count.
fn counted(kind: NoticeKind) -> Option<&'static str> {
    match kind {
        NoticeKind::PushPaused => Some("minutes"),
        NoticeKind::BackupCodeUsed => Some("left"),
        _ => None,
    }
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
    let lang = identity::locale::supported(&notice.lang);
    let no_params = HashMap::new();
    let mut params: HashMap<&str, String> = notice.params.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    params.insert("product", settings.product.clone());
    params.insert("address", settings.address.clone());
    let number = |name: &str| notice.params.get(name).and_then(|v| v.parse::<u64>().ok());
    if let Some(when) = notice.params.get("when").and_then(|w| w.parse::<i64>().ok()) {
        params.insert("when", identity::locale::datetime(lang, when));
    }
    if let Some(user_agent) = notice.params.get("user_agent") {
        params.insert("browser", identity::locale::browser(lang, user_agent));
    }
    if let Some(times) = notice.params.get("last_sign_ins_at").filter(|t| !t.is_empty()) {
        let times: Vec<String> = times
            .split(',')
            .filter_map(|t| t.parse::<i64>().ok())
            .map(|t| identity::locale::datetime(lang, t))
            .collect();
        params.insert("last_sign_ins", times.join(", "));
    }
    for name in ["files", "failed", "left", "minutes", "app_passwords"] {
        if let Some(n) = number(name) {
            params.insert(name, identity::locale::integer(lang, n));
        }
    }
    if let Some(bytes) = number("bytes") {
        params.insert("size", identity::locale::size(lang, bytes));
    }
    if let Some(code) = notice.params.get("reason_code") {
        let arg = notice.params.get("reason_arg").cloned().unwrap_or_default();
        let mut values = HashMap::new();
        values.insert("org", arg.clone());
        values.insert("status", arg.clone());
        let size = arg.parse::<u64>().ok().map(|b| identity::locale::size(lang, b));
        values.insert("size", size.unwrap_or_default());
        let reason = text(lang, &format!("reason.{code}"), &values, arg.parse().ok());
        params.insert("reason", format!(" ({reason})"));
    }
    for flag in ["two_factor", "state", "outcome"] {
        if let Some(value) = notice.params.get(flag) {
            let prefix = match flag {
                "state" => "policy",
                "outcome" => "import",
                _ => "two_factor",
            };
            params.insert(flag, text(lang, &format!("{prefix}.{value}"), &no_params, None));
        }
    }
    let kind = notice.kind.as_str();
    let count = counted(notice.kind).and_then(number);
    let subject = text(lang, &format!("{kind}.subject"), &params, count);
    let mut paragraphs = vec![
        text(lang, "greeting", &params, None),
        text(lang, &format!("{kind}.body"), &params, count),
    ];
    if notice.params.contains_key("ip") {
        paragraphs.push(text(lang, "details", &params, None));
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
        paragraphs.push(text(lang, "not_you", &params, None));
    }
    let mut footer = vec![text(lang, "footer", &params, None)];
    if notice.kind.optional() {
        footer.push(text(lang, "footer_optional", &params, None));
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
            for lang in identity::locale::LANGS {
                let r = render(&queued(kind, lang, &[]), &settings());
                assert!(
                    !r.subject.contains(".subject") && !r.text.contains(".body"),
                    "{kind:?} {lang}"
                );
            }
        }
    }

    #[test]
    fn every_language_has_every_message_with_the_same_values() {
        let names = |entry: &Entry| {
            let text = match entry {
                Entry::Text(t) => t.clone(),
                Entry::Plural(forms) => forms.values().cloned().collect::<Vec<_>>().join(" "),
            };
            let mut names: Vec<String> = text
                .split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_owned()))
                .collect();
            names.sort();
            names.dedup();
            names
        };
        let en = catalog("en");
        for lang in identity::locale::LANGS {
            let other = catalog(lang);
            assert_eq!(other.len(), en.len(), "{lang}");
            for (key, entry) in en {
                let theirs = other.get(key).unwrap_or_else(|| panic!("{key} missing in {lang}"));
                assert_eq!(names(theirs), names(entry), "{key} in {lang}");
                match (entry, theirs) {
                    (Entry::Plural(_), Entry::Plural(forms)) => {
                        for n in 0..200 {
                            let category = identity::locale::plural_category(lang, n);
                            assert!(forms.contains_key(category), "{key} in {lang}: no {category}");
                        }
                    }
                    (Entry::Text(_), Entry::Text(_)) => {}
                    _ => panic!("{key} in {lang}: plural in one language only"),
                }
            }
        }
    }

    #[test]
    fn counts_numbers_dates_and_browsers_follow_the_language() {
        let chrome =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
        let backup_code_used = |lang: &str, left: &str| {
            let params = [
                ("ip", "192.0.2.1"),
                ("user_agent", chrome),
                ("when", "1795702057000"),
                ("left", left),
            ];
            render(&queued(NoticeKind::BackupCodeUsed, lang, &params), &settings()).text
        };
        let es = backup_code_used("es", "1");
        assert!(es.contains("Te queda 1 código de respaldo."), "{es}");
        assert!(
            es.contains("Cuándo: 26/11/2026 14:07 UTC. Desde: Chrome en Linux"),
            "{es}"
        );
        let de = backup_code_used("de", "5");
        assert!(de.contains("noch 5 Backup-Codes"), "{de}");
        assert!(de.contains("26.11.2026 14:07 UTC. Von: Chrome unter Linux"), "{de}");
        let paused = render(&queued(NoticeKind::PushPaused, "it", &[("minutes", "1")]), &settings());
        assert!(paused.text.contains("sospese per 1 minuto."), "{}", paused.text);
        let import = [
            ("files", "1234"),
            ("bytes", "300000"),
            ("failed", "0"),
            ("outcome", "failed"),
            ("reason_code", "too_many_files"),
            ("reason_arg", "100000"),
            ("drive", "Fotos"),
        ];
        let fr = render(&queued(NoticeKind::ImportFinished, "fr", &import), &settings());
        assert!(
            fr.text.contains("Fichiers copiés : 1\u{202f}234 (293,0 Kio)"),
            "{}",
            fr.text
        );
        assert!(fr.text.contains("plus de 100\u{202f}000 fichiers"), "{}", fr.text);
        assert!(fr.subject.ends_with("s'est arrêtée sur une erreur"), "{}", fr.subject);
        let alert = [("last_sign_ins_at", "1795702057000,0"), ("two_factor", "off")];
        let it = render(&queued(NoticeKind::SecurityAlert, "it", &alert), &settings());
        assert!(
            it.text
                .contains("Ultimi accessi: 26/11/2026 14:07 UTC, 01/01/1970 00:00 UTC"),
            "{}",
            it.text
        );
        assert!(it.text.contains("Verifica in due passaggi: disattivata"), "{}", it.text);
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
