//! Small display helpers for the console: dates, sizes and browsers, each
//! as the reader's language writes them (the rules are in
//! [`identity::locale`], shared with the emails).

use crate::i18n::Catalog;

/// A time in milliseconds in the reader's order: `2026-11-26 14:03 UTC`,
/// `26/11/2026 14:03 UTC`, `26.11.2026 14:03 UTC`.
pub fn datetime(t: &Catalog, ms: i64) -> String {
    identity::locale::datetime(t.lang.code(), ms)
}

/// `1.5 KiB` (en), `1,5 KiB` (es, de, it), `1,5 Kio` (fr).
pub fn bytes(t: &Catalog, n: u64) -> String {
    identity::locale::size(t.lang.code(), n)
}

/// "Firefox on Linux"-style summary of a `User-Agent`, for the sessions list.
pub fn browser(user_agent: &str) -> String {
    match identity::browser_and_system(user_agent) {
        (Some(b), Some(o)) => format!("{b} · {o}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(o)) => o.to_owned(),
        (None, None) if user_agent.is_empty() => "?".to_owned(),
        (None, None) => user_agent.chars().take(40).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::i18n::Lang;

    #[test]
    fn formats_dates_in_each_languages_order() {
        assert_eq!(datetime(Lang::En.catalog(), 0), "1970-01-01 00:00 UTC");
        assert_eq!(datetime(Lang::En.catalog(), 1_795_702_057_000), "2026-11-26 14:07 UTC");
        assert_eq!(datetime(Lang::Es.catalog(), 951_782_400_000), "29/02/2000 00:00 UTC");
        assert_eq!(datetime(Lang::De.catalog(), 951_782_400_000), "29.02.2000 00:00 UTC");
    }

    #[test]
    fn formats_sizes_and_numbers_per_language() {
        assert_eq!(bytes(Lang::En.catalog(), 300_000), "293.0 KiB");
        assert_eq!(bytes(Lang::Es.catalog(), 300_000), "293,0 KiB");
        assert_eq!(bytes(Lang::Fr.catalog(), 300_000), "293,0 Kio");
        assert_eq!(bytes(Lang::De.catalog(), 300_000), "293,0 KiB");
        assert_eq!(bytes(Lang::It.catalog(), 300_000), "293,0 KiB");
        assert_eq!(Lang::En.catalog().number(1234), "1,234");
        assert_eq!(Lang::De.catalog().number(1234), "1.234");
        assert_eq!(Lang::It.catalog().number(1234), "1.234");
        assert_eq!(Lang::Fr.catalog().number(1234), "1\u{202f}234");
        assert_eq!(Lang::Es.catalog().number(12_345), "12.345");
    }

    #[test]
    fn names_browsers() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(browser(firefox), "Firefox · Linux");
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
        assert_eq!(browser(chrome), "Chrome · Windows");
        assert_eq!(browser("curl/8.5.0"), "curl");
        assert_eq!(browser(""), "?");
    }
}
