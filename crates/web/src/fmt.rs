//! Small display helpers for the console: dates and browsers.

/// `2026-11-26 14:03 UTC` for a time in milliseconds.
pub fn datetime(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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
