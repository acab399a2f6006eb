//! [`identity::IdentityStore`] over SQL: one module per aggregate, each
//! implementing that aggregate's trait ([`identity::AccountStore`],
//! [`identity::SessionStore`], ...) with its statements and the row
//! decoding its rows need. Helpers another aggregate's transaction uses
//! (recording a security event, giving back a throttle reservation) are
//! `pub(super)` in the module that owns their table.

type Tx = crate::writer::WriteTx;

/// The factor columns `factors::step_context_from` reads, from `second_factors f`.
macro_rules! step_factor_columns {
    () => {
        "f.id AS f_id, f.account_id AS f_account_id, f.kind AS f_kind, f.name AS f_name,
     f.secret AS f_secret, f.active AS f_active, f.created_at AS f_created_at, f.expires_at AS f_expires_at,
     f.last_used_at AS f_last_used_at, f.counter AS f_counter"
    };
}

/// The columns `sessions::session_from` and `accounts::account_from` (prefixed `a_`) read,
/// from `sessions s JOIN accounts a`.
macro_rules! session_account_columns {
    () => {
        "s.id, s.account_id, s.created_at, s.last_seen_at, s.remember, s.ip, s.user_agent,
     s.stage, s.password_at, s.factor_failures,
     a.id AS a_id, a.email AS a_email, a.name AS a_name, a.sync_user_id AS a_sync_user_id,
     a.password_hash AS a_password_hash, a.created_at AS a_created_at,
     a.password_changed_at AS a_password_changed_at, a.default_method AS a_default_method, a.lang AS a_lang"
    };
}

mod accounts;
mod app_passwords;
mod events;
mod factors;
mod orgs;
mod outbox;
mod push;
mod sessions;
mod throttle;
mod upkeep;

pub(crate) use orgs::insert_org_event;
