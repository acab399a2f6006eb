//! SMS codes, for mobile numbers of allowed countries only (by default
//! Switzerland, France, Belgium and Germany).
//!
//! A code has 6 digits, is valid 10 minutes and allows 5 tries. A new one
//! can be sent after 60 seconds; each number and each account get at most
//! [`DAILY_CAP`] messages in 24 hours. Numbers are stored sealed (AES-GCM);
//! the console shows only their last digits.

use crate::FactorId;
use rand::Rng;

use crate::clock::Millis;
use crate::secrets::ServerKey;

pub const CODE_LIFETIME: Millis = 10 * 60_000;
pub const MAX_TRIES: u32 = 5;
pub const RESEND_AFTER: Millis = 60_000;
pub const DAILY_CAP: usize = 10;
const DAY: Millis = 24 * 3_600_000;
const PURPOSE: &str = "sms-code";

/// The default allowed regions (ISO 3166 alpha-2).
pub const DEFAULT_REGIONS: [&str; 4] = ["CH", "FR", "BE", "DE"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneRejected {
    #[error("enter the number in international form, starting with + and the country code")]
    Invalid,
    #[error("SMS codes can be sent only to numbers of {allowed}")]
    CountryNotAllowed { allowed: String },
}

/// A mobile number of an allowed country, in E.164 form (`+41791234567`).
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl PhoneNumber {
    /// Parses what someone typed; `allowed` are region codes ("CH").
    pub fn parse(typed: &str, allowed: &[String]) -> Result<Self, PhoneRejected> {
        let typed = typed.trim();
        if !typed.starts_with('+') || typed.len() > 32 {
            return Err(PhoneRejected::Invalid);
        }
        let number = phonenumber::parse(None, typed).map_err(|_| PhoneRejected::Invalid)?;
        if !phonenumber::is_valid(&number) {
            return Err(PhoneRejected::Invalid);
        }
        let region = number.country().id().map(|id| id.as_ref().to_owned());
        if !region.is_some_and(|r| allowed.iter().any(|a| a.eq_ignore_ascii_case(&r))) {
            return Err(PhoneRejected::CountryNotAllowed {
                allowed: allowed.join(", "),
            });
        }
        Ok(Self(number.format().mode(phonenumber::Mode::E164).to_string()))
    }

    /// A number read back from storage (already checked when stored).
    pub fn from_stored(e164: String) -> Self {
        Self(e164)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `+41 •••• 4567`: the country code and the last four digits.
    pub fn masked(&self) -> String {
        let digits = &self.0[1..];
        let tail = &digits[digits.len().saturating_sub(4)..];
        let code = phonenumber::parse(None, &self.0)
            .map(|n| n.country().code().to_string())
            .unwrap_or_default();
        format!("+{code} •••• {tail}")
    }

    /// A keyed digest of the number, for counting messages per number
    /// without storing it in the clear.
    pub fn digest(&self, key: &ServerKey) -> String {
        key.digest("sms-number", self.0.as_bytes())
    }
}

/// A fresh 6-digit code.
pub fn generate_code() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// The stored digest of a code as typed, if it is 6 digits.
pub fn code_digest(key: &ServerKey, typed: &str) -> Option<String> {
    let code: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    (code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())).then(|| key.digest(PURPOSE, code.as_bytes()))
}

/// The code waiting for one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsCode {
    pub factor_id: FactorId,
    pub digest: String,
    pub sent_at: Millis,
    pub expires_at: Millis,
    pub attempts: u32,
}

impl SmsCode {
    pub fn usable(&self, now: Millis) -> bool {
        now < self.expires_at && self.attempts < MAX_TRIES
    }
}

/// Why a code cannot be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefused {
    /// Wait this long before asking again.
    TooSoon(Millis),
    /// The daily cap for the number or the account is reached.
    DailyCap(Millis),
}

/// Whether a code may be sent at `now`, given the code already waiting and
/// the times of the messages sent in the last 24 hours to this number and
/// from this account.
pub fn may_send(
    waiting: Option<&SmsCode>,
    to_number: &[Millis],
    for_account: &[Millis],
    now: Millis,
) -> Result<(), SendRefused> {
    if let Some(code) = waiting
        && now - code.sent_at < RESEND_AFTER
    {
        return Err(SendRefused::TooSoon(code.sent_at + RESEND_AFTER - now));
    }
    for sent in [to_number, for_account] {
        let recent: Vec<Millis> = sent.iter().copied().filter(|t| now - t < DAY).collect();
        if recent.len() >= DAILY_CAP {
            let oldest = recent.iter().copied().min().unwrap_or(now);
            return Err(SendRefused::DailyCap(oldest + DAY - now));
        }
    }
    Ok(())
}

/// The message text, in the member's language (the register of the
/// console in each: tú, vous, Sie, tu).
pub fn message(issuer: &str, code: &str, lang: &str) -> String {
    match crate::locale::supported(lang) {
        "es" => format!("{code} es tu código de {issuer}. Caduca en 10 minutos. No lo compartas con nadie."),
        "fr" => format!("{code} est votre code {issuer}. Il expire dans 10 minutes. Ne le communiquez à personne."),
        "de" => format!("{code} ist Ihr {issuer}-Code. Er läuft in 10 Minuten ab. Geben Sie ihn an niemanden weiter."),
        "it" => format!("{code} è il tuo codice {issuer}. Scade tra 10 minuti. Non condividerlo con nessuno."),
        _ => format!("{code} is your {issuer} code. It expires in 10 minutes. Do not share it."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        DEFAULT_REGIONS.iter().map(|r| (*r).to_owned()).collect()
    }

    #[test]
    fn numbers_of_allowed_countries_only() {
        let ch = PhoneNumber::parse("+41 79 123 45 67", &allowed()).unwrap();
        assert_eq!(ch.as_str(), "+41791234567");
        assert_eq!(ch.masked(), "+41 •••• 4567");
        assert!(PhoneNumber::parse("+33 6 12 34 56 78", &allowed()).is_ok());
        assert!(PhoneNumber::parse("+49 151 23456789", &allowed()).is_ok());
        assert!(PhoneNumber::parse("+32 470 12 34 56", &allowed()).is_ok());
        assert_eq!(
            PhoneNumber::parse("+1 202 555 0143", &allowed()),
            Err(PhoneRejected::CountryNotAllowed {
                allowed: "CH, FR, BE, DE".into()
            })
        );
        assert_eq!(
            PhoneNumber::parse("079 123 45 67", &allowed()),
            Err(PhoneRejected::Invalid),
            "needs +41"
        );
        assert_eq!(PhoneNumber::parse("+41 12", &allowed()), Err(PhoneRejected::Invalid));
        assert_eq!(PhoneNumber::parse("+41 abc", &allowed()), Err(PhoneRejected::Invalid));
        let us_only = vec!["US".to_owned()];
        assert!(PhoneNumber::parse("+1 202 555 0143", &us_only).is_ok(), "configurable");
    }

    #[test]
    fn codes_are_six_digits_and_digest_however_spaced() {
        let key = ServerKey::generate();
        let code = generate_code();
        assert_eq!(code.len(), 6);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(code_digest(&key, &code), code_digest(&key, &spaced));
        assert_eq!(code_digest(&key, "12345"), None);
        assert_eq!(code_digest(&key, "12345a"), None);
    }

    #[test]
    fn resend_waits_a_minute_and_days_are_capped() {
        let code = SmsCode {
            factor_id: crate::FactorId::new("f"),
            digest: "d".into(),
            sent_at: 1_000,
            expires_at: 601_000,
            attempts: 0,
        };
        assert_eq!(
            may_send(Some(&code), &[], &[], 31_000),
            Err(SendRefused::TooSoon(30_000))
        );
        assert_eq!(may_send(Some(&code), &[], &[], 61_000), Ok(()));
        let ten: Vec<Millis> = (0..10).map(|i| i * 1000).collect();
        assert_eq!(
            may_send(None, &ten, &[], 50_000),
            Err(SendRefused::DailyCap(DAY - 50_000))
        );
        assert_eq!(
            may_send(None, &[], &ten, 50_000),
            Err(SendRefused::DailyCap(DAY - 50_000))
        );
        assert_eq!(may_send(None, &ten, &ten, DAY + 1), Ok(()), "a day later");
        assert_eq!(may_send(None, &ten[..9], &[], 50_000), Ok(()));
    }

    #[test]
    fn codes_expire_and_run_out_of_tries() {
        let mut code = SmsCode {
            factor_id: crate::FactorId::new("f"),
            digest: "d".into(),
            sent_at: 0,
            expires_at: CODE_LIFETIME,
            attempts: 0,
        };
        assert!(code.usable(CODE_LIFETIME - 1));
        assert!(!code.usable(CODE_LIFETIME));
        code.attempts = MAX_TRIES;
        assert!(!code.usable(1));
    }

    #[test]
    fn messages_in_every_language() {
        assert!(message("cloudkeep", "123456", "es").starts_with("123456 es tu código de cloudkeep"));
        assert!(message("cloudkeep", "123456", "en").starts_with("123456 is your cloudkeep code"));
        assert!(message("cloudkeep", "123456", "fr").starts_with("123456 est votre code cloudkeep"));
        assert!(message("cloudkeep", "123456", "de").starts_with("123456 ist Ihr cloudkeep-Code"));
        assert!(message("cloudkeep", "123456", "it").starts_with("123456 è il tuo codice cloudkeep"));
        assert!(
            message("cloudkeep", "123456", "pt").starts_with("123456 is your"),
            "English otherwise"
        );
        for lang in crate::locale::LANGS {
            assert!(
                message("cloudkeep", "123456", lang).chars().count() <= 160,
                "one SMS in {lang}"
            );
        }
    }
}
