//! Reading the `Cookie` header and writing `Set-Cookie`.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

/// The value of the first cookie called `name`.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// How long a cookie lives.
#[derive(Debug, Clone, Copy)]
pub enum Lifetime {
    /// Until the browser is closed.
    BrowserSession,
    Seconds(i64),
    /// Deletes the cookie.
    Expired,
}

/// A `Set-Cookie` value: always `Path=/`, `SameSite=Lax`; `HttpOnly` unless
/// said otherwise; `Secure` when served over TLS.
pub fn set(name: &str, value: &str, lifetime: Lifetime, secure: bool) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    match lifetime {
        Lifetime::BrowserSession => {}
        Lifetime::Seconds(s) => cookie.push_str(&format!("; Max-Age={s}")),
        Lifetime::Expired => cookie.push_str("; Max-Age=0"),
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cookies_among_several_headers() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; ck_session=xyz".parse().unwrap());
        h.append(COOKIE, "b=2".parse().unwrap());
        assert_eq!(get(&h, "ck_session"), Some("xyz"));
        assert_eq!(get(&h, "b"), Some("2"));
        assert_eq!(get(&h, "c"), None);
    }

    #[test]
    fn writes_flags() {
        assert_eq!(
            set("n", "v", Lifetime::BrowserSession, false),
            "n=v; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            set("n", "v", Lifetime::Seconds(60), true),
            "n=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
    }
}
