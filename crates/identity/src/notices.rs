//! Notices: what a member must hear about, queued durably (an outbox).
//!
//! A service decides that someone must hear about something (two-step
//! verification turned off, a new application password, an invitation,
//! a drive import that ended, …) and puts a notice in the database
//! queue: its kind, the recipient and language, and a few parameters.
//! The `notify` crate renders and delivers it (as an email today) in the
//! background, retrying with backoff, so a request never waits for a mail
//! server and an outage loses nothing. The queue is not the mail service:
//! it only holds what the server itself has to say.
//!
//! Members may turn off the optional kinds; "two-step verification turned
//! off" and "password changed" always go out. The tables keep their first
//! names, `mail_queue` and `mail_opt_outs`.

use std::collections::BTreeMap;

use crate::account::{Account, AccountId};
use crate::clock::Millis;
use crate::email::EmailAddress;
use crate::service::{ClientInfo, Identity, IdentityError};
use crate::store::StoreError;

/// What a notice is about. Most are identity's security notices; the
/// others name the service that sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    TwoFactorEnabled,
    TwoFactorDisabled,
    MethodAdded,
    MethodRemoved,
    AppPasswordCreated,
    BackupCodeUsed,
    NewDevice,
    PushDenied,
    PushPaused,
    PasswordChanged,
    /// An organization's admin sent the member a summary of their settings.
    SecurityAlert,
    /// An invitation to join an organization.
    Invitation,
    /// An organization started or stopped requiring two-step verification
    /// (to its admins).
    PolicyChanged,
    /// A drive import the member started has ended (sent by `import`).
    ImportFinished,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 14] = [
        Self::TwoFactorEnabled,
        Self::TwoFactorDisabled,
        Self::MethodAdded,
        Self::MethodRemoved,
        Self::AppPasswordCreated,
        Self::BackupCodeUsed,
        Self::NewDevice,
        Self::PushDenied,
        Self::PushPaused,
        Self::PasswordChanged,
        Self::SecurityAlert,
        Self::Invitation,
        Self::PolicyChanged,
        Self::ImportFinished,
    ];

    /// The security notices a member may turn off.
    pub const OPTIONAL: [NoticeKind; 8] = [
        Self::TwoFactorEnabled,
        Self::MethodAdded,
        Self::MethodRemoved,
        Self::AppPasswordCreated,
        Self::BackupCodeUsed,
        Self::NewDevice,
        Self::PushDenied,
        Self::PushPaused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TwoFactorEnabled => "two_factor_enabled",
            Self::TwoFactorDisabled => "two_factor_disabled",
            Self::MethodAdded => "method_added",
            Self::MethodRemoved => "method_removed",
            Self::AppPasswordCreated => "app_password_created",
            Self::BackupCodeUsed => "backup_code_used",
            Self::NewDevice => "new_device",
            Self::PushDenied => "push_denied",
            Self::PushPaused => "push_paused",
            Self::PasswordChanged => "password_changed",
            Self::SecurityAlert => "security_alert",
            Self::Invitation => "invitation",
            Self::PolicyChanged => "policy_changed",
            Self::ImportFinished => "import_finished",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn optional(self) -> bool {
        Self::OPTIONAL.contains(&self)
    }
}

/// A notice in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Also the email's `Message-ID` (left part): stable across retries.
    pub id: String,
    pub account_id: Option<AccountId>,
    pub to: String,
    pub lang: String,
    pub kind: NoticeKind,
    pub params: BTreeMap<String, String>,
    pub created_at: Millis,
    pub next_attempt_at: Millis,
    pub attempts: u32,
}

/// How long a claimed notice is reserved for the process sending it.
pub const SEND_LEASE: Millis = 60_000;
/// After this many failed attempts (about three days) a notice is given up.
pub const MAX_ATTEMPTS: u32 = 80;

/// The wait after `attempts` failures: 5 s, 15 s, 45 s, … at most an hour.
pub fn backoff(attempts: u32) -> Millis {
    let exponent = attempts.saturating_sub(1).min(10);
    (5_000 * 3_i64.pow(exponent)).min(3_600_000)
}

/// The signal raised when a notice is queued: wakes the delivery worker.
pub const NOTICE_TOPIC: &str = "notices";

impl Identity {
    /// Queues a notice to `account`, unless they turned this kind off.
    pub async fn notify_member(
        &self,
        account: &Account,
        kind: NoticeKind,
        params: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        if kind.optional() && self.store().notice_opt_outs(&account.id).await?.contains(&kind) {
            return Ok(());
        }
        self.queue_notice(Some(&account.id), &account.email, &account.lang, kind, params)
            .await
    }

    /// A security notice about something `client` did: the parameters
    /// given, plus where it came from (`ip`, `browser`) and when (`when`,
    /// milliseconds).
    pub(crate) async fn alert(
        &self,
        account: &Account,
        kind: NoticeKind,
        client: &ClientInfo,
        params: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let (ip, browser, when) = (
            client.ip.to_string(),
            crate::push::browser_of(&client.user_agent),
            self.now().to_string(),
        );
        // `browser` in English for a message queued before an upgrade; the
        // email names the browser from `user_agent` in the member's language.
        let mut all: Vec<(&str, &str)> = vec![
            ("ip", &ip),
            ("browser", &browser),
            ("user_agent", &client.user_agent),
            ("when", &when),
        ];
        all.extend_from_slice(params);
        self.notify_member(account, kind, &all).await
    }

    /// [`Self::alert`] when only the account's id is at hand.
    pub(crate) async fn alert_by_id(
        &self,
        account_id: &AccountId,
        kind: NoticeKind,
        client: &ClientInfo,
        params: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        match self.store().account_by_id(account_id).await? {
            Some(account) => self.alert(&account, kind, client, params).await,
            None => Ok(()),
        }
    }

    /// Queues a notice to any address (an invitation).
    pub async fn queue_notice(
        &self,
        account_id: Option<&AccountId>,
        to: &EmailAddress,
        lang: &str,
        kind: NoticeKind,
        params: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let now = self.now();
        let notice = Notice {
            id: uuid::Uuid::now_v7().simple().to_string(),
            account_id: account_id.cloned(),
            to: to.to_string(),
            lang: lang.to_owned(),
            kind,
            params: params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            created_at: now,
            next_attempt_at: now,
            attempts: 0,
        };
        self.store().enqueue_notice(&notice).await?;
        self.publish(NOTICE_TOPIC).await;
        Ok(())
    }

    /// Reserves the next notice due, if any, for [`SEND_LEASE`].
    pub async fn claim_notice(&self) -> Result<Option<Notice>, StoreError> {
        let now = self.now();
        self.store().claim_notice(now, now + SEND_LEASE).await
    }

    pub async fn notice_sent(&self, notice: &Notice) -> Result<(), StoreError> {
        self.store().notice_sent(&notice.id, self.now()).await
    }

    /// Records a failed attempt; tries again after [`backoff`], or gives up
    /// after [`MAX_ATTEMPTS`]. Returns when the next attempt is, if any.
    pub async fn notice_failed(&self, notice: &Notice, error: &str) -> Result<Option<Millis>, StoreError> {
        let attempts = notice.attempts + 1;
        let next = (attempts < MAX_ATTEMPTS).then(|| self.now() + backoff(attempts));
        self.store()
            .notice_failed(&notice.id, attempts, next, &error.chars().take(500).collect::<String>())
            .await?;
        Ok(next)
    }

    /// The optional security notices the member turned off.
    pub async fn notice_opt_outs(&self, account_id: &AccountId) -> Result<Vec<NoticeKind>, StoreError> {
        self.store().notice_opt_outs(account_id).await
    }

    /// Turns an optional security notice on or off for the member.
    pub async fn set_notice_wanted(
        &self,
        account_id: &AccountId,
        kind: NoticeKind,
        wanted: bool,
    ) -> Result<(), IdentityError> {
        if !kind.optional() {
            return Err(IdentityError::MailRequired);
        }
        self.store().set_notice_opt_out(account_id, kind, !wanted).await?;
        Ok(())
    }

    /// The language the member reads email in.
    pub async fn set_language(&self, account_id: &AccountId, lang: &str) -> Result<(), StoreError> {
        self.store().set_account_lang(account_id, lang).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_some_cannot_be_turned_off() {
        for k in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(k.as_str()), Some(k));
        }
        assert!(!NoticeKind::TwoFactorDisabled.optional());
        assert!(!NoticeKind::PasswordChanged.optional());
        assert!(NoticeKind::NewDevice.optional());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), 5_000);
        assert_eq!(backoff(2), 15_000);
        assert_eq!(backoff(3), 45_000);
        assert_eq!(backoff(30), 3_600_000);
    }
}
