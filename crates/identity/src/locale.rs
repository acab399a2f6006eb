//! What depends on the language besides the words, shared by the console,
//! the emails and the SMS texts: the CLDR plural category a count takes
//! (through `intl_pluralrules`, the Fluent project's crate, so the rules
//! are CLDR's and not ours), and how numbers, sizes, dates and browsers are
//! written in each language.
//!
//! Languages are their two-letter codes; anything else is English.

use std::sync::OnceLock;

use intl_pluralrules::{PluralCategory, PluralRuleType, PluralRules};
use unic_langid::LanguageIdentifier;

/// Every language the product speaks, English first (the fallback).
pub const LANGS: [&str; 5] = ["en", "es", "fr", "de", "it"];

/// `code` if it is a supported language, else English.
pub fn supported(code: &str) -> &'static str {
    LANGS.into_iter().find(|l| *l == code).unwrap_or("en")
}

/// The CLDR plural category (`zero`, `one`, `two`, `few`, `many` or
/// `other`) of the whole number `n` in `lang`.
pub fn plural_category(lang: &str, n: u64) -> &'static str {
    static RULES: OnceLock<Vec<PluralRules>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        LANGS
            .iter()
            .map(|code| {
                let id: LanguageIdentifier = code.parse().expect("a valid language code");
                PluralRules::create(id, PluralRuleType::CARDINAL).expect("CLDR has plural rules for it")
            })
            .collect()
    });
    let index = LANGS.iter().position(|l| *l == supported(lang)).unwrap_or(0);
    match rules[index].select(n) {
        Ok(PluralCategory::ZERO) => "zero",
        Ok(PluralCategory::ONE) => "one",
        Ok(PluralCategory::TWO) => "two",
        Ok(PluralCategory::FEW) => "few",
        Ok(PluralCategory::MANY) => "many",
        Ok(PluralCategory::OTHER) | Err(_) => "other",
    }
}

/// The decimal mark, the grouping separator, and how many digits the
/// integer part needs before it is grouped at all (CLDR's minimum grouping
/// digits: Spanish writes 1234 but 12.345).
fn symbols(lang: &str) -> (char, &'static str, usize) {
    match supported(lang) {
        "es" => (',', ".", 5),
        // A narrow no-break space, as French typography and CLDR have it.
        "fr" => (',', "\u{202f}", 4),
        "de" | "it" => (',', ".", 4),
        _ => ('.', ",", 4),
    }
}

fn group(lang: &str, digits: &str) -> String {
    let (_, separator, min_digits) = symbols(lang);
    if digits.len() < min_digits {
        return digits.to_owned();
    }
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push_str(separator);
        }
        out.push(c);
    }
    out
}

/// A whole number as `lang` writes it: `1,234` (en), `1.234` (de, it),
/// `1 234` (fr, narrow no-break space), `1234` and `12.345` (es).
pub fn integer(lang: &str, n: u64) -> String {
    group(lang, &n.to_string())
}

/// `value` with `decimals` digits after the mark: `293.0` (en), `293,0`.
pub fn decimal(lang: &str, value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let sign = if value < 0.0 && text.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        "-"
    } else {
        ""
    };
    let mut out = format!("{sign}{}", group(lang, whole));
    if !fraction.is_empty() {
        out.push(symbols(lang).0);
        out.push_str(fraction);
    }
    out
}

/// A size in bytes with a binary unit: `1.5 KiB` (en), `1,5 KiB`, and the
/// French units (`1,5 Kio`, `12 o`).
pub fn size(lang: &str, bytes: u64) -> String {
    let units: [&str; 5] = match supported(lang) {
        "fr" => ["o", "Kio", "Mio", "Gio", "Tio"],
        _ => ["B", "KiB", "MiB", "GiB", "TiB"],
    };
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{} {}", integer(lang, bytes), units[0])
    } else {
        format!("{} {}", decimal(lang, value, 1), units[unit])
    }
}

/// A time in milliseconds, UTC, in the order `lang` writes dates:
/// `2026-11-26 14:07 UTC` (en), `26/11/2026 14:07 UTC` (es, fr, it),
/// `26.11.2026 14:07 UTC` (de).
pub fn datetime(lang: &str, ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::clock::civil_from_days(days);
    let time = format!("{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60);
    match supported(lang) {
        "de" => format!("{d:02}.{m:02}.{y:04} {time}"),
        "es" | "fr" | "it" => format!("{d:02}/{m:02}/{y:04} {time}"),
        _ => format!("{y:04}-{m:02}-{d:02} {time}"),
    }
}

/// "Firefox on Linux" in `lang` (or the start of the user agent), for
/// texts about where something came from.
pub fn browser(lang: &str, user_agent: &str) -> String {
    let lang = supported(lang);
    let (on, a_browser, unknown) = match lang {
        "es" => ("en", "Un navegador en", "Un cliente desconocido"),
        "fr" => ("sous", "Un navigateur sous", "Un client inconnu"),
        "de" => ("unter", "Ein Browser unter", "Ein unbekanntes Programm"),
        "it" => ("su", "Un browser su", "Un client sconosciuto"),
        _ => ("on", "A browser on", "An unknown client"),
    };
    match crate::push::browser_and_system(user_agent) {
        (Some(b), Some(s)) => format!("{b} {on} {s}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(s)) => format!("{a_browser} {s}"),
        (None, None) if user_agent.trim().is_empty() => unknown.to_owned(),
        (None, None) => user_agent.chars().take(60).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plural_categories_follow_cldr() {
        let categories =
            |lang: &str, numbers: &[u64]| numbers.iter().map(|n| plural_category(lang, *n)).collect::<Vec<_>>();
        let sample = [0, 1, 2, 5, 21, 1_000_000];
        assert_eq!(
            categories("en", &sample),
            ["other", "one", "other", "other", "other", "other"]
        );
        assert_eq!(categories("de", &sample), categories("en", &sample));
        // French counts 0 as singular. (CLDR 38 and later also give
        // Spanish, French and Italian a "many" for round millions; the
        // catalogues already have it, and the crate's CLDR 37 uses "other".)
        assert_eq!(
            categories("fr", &sample),
            ["one", "one", "other", "other", "other", "other"]
        );
        assert_eq!(
            categories("es", &sample),
            ["other", "one", "other", "other", "other", "other"]
        );
        assert_eq!(categories("it", &sample), categories("es", &sample));
        assert_eq!(plural_category("xx", 1), "one", "unknown languages are English");
    }

    #[test]
    fn numbers_are_written_per_language() {
        assert_eq!(integer("en", 1234), "1,234");
        assert_eq!(integer("de", 1234), "1.234");
        assert_eq!(integer("it", 1_234_567), "1.234.567");
        assert_eq!(integer("fr", 1234), "1\u{202f}234");
        assert_eq!(integer("es", 1234), "1234");
        assert_eq!(integer("es", 12_345), "12.345");
        assert_eq!(integer("en", 999), "999");
        assert_eq!(decimal("en", 293.04, 1), "293.0");
        assert_eq!(decimal("es", 293.04, 1), "293,0");
        assert_eq!(decimal("de", 1234.56, 2), "1.234,56");
        assert_eq!(decimal("en", -0.01, 1), "0.0");
        assert_eq!(decimal("en", -2.5, 1), "-2.5");
        assert_eq!(size("es", 300_000), "293,0 KiB");
        assert_eq!(size("en", 300_000), "293.0 KiB");
        assert_eq!(size("fr", 1536), "1,5 Kio");
        assert_eq!(size("fr", 12), "12 o");
        assert_eq!(size("de", 10 * 1024 * 1024 * 1024), "10,0 GiB");
        assert_eq!(size("en", 0), "0 B");
    }

    #[test]
    fn dates_are_in_each_languages_order() {
        let t = 1_795_702_057_000;
        assert_eq!(datetime("en", t), "2026-11-26 14:07 UTC");
        assert_eq!(datetime("es", t), "26/11/2026 14:07 UTC");
        assert_eq!(datetime("fr", t), "26/11/2026 14:07 UTC");
        assert_eq!(datetime("it", t), "26/11/2026 14:07 UTC");
        assert_eq!(datetime("de", t), "26.11.2026 14:07 UTC");
        assert_eq!(datetime("en", 0), "1970-01-01 00:00 UTC");
    }

    #[test]
    fn browsers_are_named_per_language() {
        let chrome =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
        assert_eq!(browser("en", chrome), "Chrome on Linux");
        assert_eq!(browser("es", chrome), "Chrome en Linux");
        assert_eq!(browser("fr", chrome), "Chrome sous Linux");
        assert_eq!(browser("de", chrome), "Chrome unter Linux");
        assert_eq!(browser("it", chrome), "Chrome su Linux");
        assert_eq!(browser("es", ""), "Un cliente desconocido");
        assert_eq!(browser("de", "SomeTool/1"), "SomeTool/1");
    }
}
