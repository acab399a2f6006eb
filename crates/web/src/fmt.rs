//! Small display helpers for the console: dates and browsers.

/// `2026-11-26 14:03 UTC` for a time in milliseconds.
pub fn datetime(ms: i64) -> String {
    identity::utc_datetime(ms)
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

    #[test]
    fn formats_dates() {
        assert_eq!(datetime(0), "1970-01-01 00:00 UTC");
        assert_eq!(datetime(1_795_702_057_000), "2026-11-26 14:07 UTC");
        assert_eq!(datetime(951_782_400_000), "2000-02-29 00:00 UTC");
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
