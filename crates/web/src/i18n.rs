//! Translations. Each language is a catalogue (`locales/<lang>.toml`)
//! compiled into the binary: `"key" = "text"` with `{name}` for arguments,
//! or, for a text about a number of things, one text per CLDR plural
//! category as an inline table (`"org.methods" = { one = "{count} method",
//! other = "{count} methods" }`), the category chosen by
//! [`identity::locale::plural_category`]. The language comes from the
//! `ck_lang` cookie set by the switcher, else from `Accept-Language`, else
//! English. Tests check that every catalogue has exactly the same keys,
//! every plural text the categories its language needs, and that every key
//! the templates and code use exists.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use identity::locale;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Es,
    Fr,
    De,
    It,
}

impl Lang {
    pub const ALL: [Lang; 5] = [Lang::En, Lang::Es, Lang::Fr, Lang::De, Lang::It];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
            Lang::Fr => "fr",
            Lang::De => "de",
            Lang::It => "it",
        }
    }

    /// The language's own name, as the switcher shows it.
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Es => "Español",
            Lang::Fr => "Français",
            Lang::De => "Deutsch",
            Lang::It => "Italiano",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        Lang::ALL.into_iter().find(|l| l.code() == primary)
    }

    /// The best supported language in an `Accept-Language` header.
    pub fn negotiate(accept_language: &str) -> Option<Lang> {
        let mut choices: Vec<(f32, usize, Lang)> = accept_language
            .split(',')
            .enumerate()
            .filter_map(|(position, item)| {
                let mut parts = item.split(';');
                let lang = Lang::from_code(parts.next()?)?;
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
                (q > 0.0).then_some((q, position, lang))
            })
            .collect();
        choices.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        choices.first().map(|c| c.2)
    }

    pub fn catalog(self) -> &'static Catalog {
        static CATALOGS: OnceLock<[Catalog; 5]> = OnceLock::new();
        let all = CATALOGS.get_or_init(|| {
            [
                Catalog::parse(Lang::En, include_str!("../locales/en.toml")),
                Catalog::parse(Lang::Es, include_str!("../locales/es.toml")),
                Catalog::parse(Lang::Fr, include_str!("../locales/fr.toml")),
                Catalog::parse(Lang::De, include_str!("../locales/de.toml")),
                Catalog::parse(Lang::It, include_str!("../locales/it.toml")),
            ]
        });
        &all[self as usize]
    }
}

/// One message: a text, or one text per plural category.
#[derive(Debug)]
pub enum Message {
    Text(String),
    Plural(BTreeMap<String, String>),
}

#[derive(Debug)]
pub struct Catalog {
    pub lang: Lang,
    messages: HashMap<String, Message>,
}

impl Catalog {
    fn parse(lang: Lang, source: &str) -> Catalog {
        let table: toml::Table = source.parse().expect("catalogue is valid TOML");
        let messages = table
            .into_iter()
            .map(|(key, value)| {
                let message = match value {
                    toml::Value::String(text) => Message::Text(text),
                    toml::Value::Table(forms) => Message::Plural(
                        forms
                            .into_iter()
                            .map(|(category, text)| {
                                let text = text.as_str().expect("plural forms are strings").to_owned();
                                (category, text)
                            })
                            .collect(),
                    ),
                    other => panic!("{key}: a catalogue value is a string or a table, not {other}"),
                };
                (key, message)
            })
            .collect();
        Catalog { lang, messages }
    }

    /// The text for `key`; the key itself if missing (the tests make sure
    /// that never ships). A plural message gives its `other` form.
    pub fn t<'a>(&'a self, key: &'a str) -> &'a str {
        match self.messages.get(key) {
            Some(Message::Text(text)) => text,
            Some(Message::Plural(forms)) => forms.get("other").map_or(key, String::as_str),
            None => key,
        }
    }

    /// The text for `key` with `{name}` placeholders filled in.
    pub fn tf(&self, key: &str, args: &[(&str, &str)]) -> String {
        fill(self.t(key), args)
    }

    /// The form of the plural message `key` for `count` things, with
    /// `{count}` written as the language writes numbers and the other
    /// `{name}`s from `args`. A category the language needs but the
    /// message lacks falls back to `other` (the tests make sure none is
    /// missing).
    pub fn plural(&self, key: &str, count: u64, args: &[(&str, &str)]) -> String {
        let category = locale::plural_category(self.lang.code(), count);
        let text = match self.messages.get(key) {
            Some(Message::Plural(forms)) => forms
                .get(category)
                .or_else(|| forms.get("other"))
                .map_or(key, String::as_str),
            Some(Message::Text(text)) => text,
            None => key,
        };
        let number = self.number(count);
        let mut all = vec![("count", number.as_str())];
        all.extend_from_slice(args);
        fill(text, &all)
    }

    /// Whether `key` is a plural message (one text per category).
    pub fn is_plural(&self, key: &str) -> bool {
        matches!(self.messages.get(key), Some(Message::Plural(_)))
    }

    /// A whole number as this language writes it (`1,234`, `1.234`).
    pub fn number(&self, n: u64) -> String {
        locale::integer(self.lang.code(), n)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.messages.keys().map(String::as_str)
    }

    /// The plural messages and the categories each one has.
    pub fn plurals(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.messages.iter().filter_map(|(key, m)| match m {
            Message::Plural(forms) => Some((key.as_str(), forms.keys().map(String::as_str).collect())),
            Message::Text(_) => None,
        })
    }
}

fn fill(text: &str, args: &[(&str, &str)]) -> String {
    args.iter().fold(text.to_owned(), |text, (name, value)| {
        text.replace(&format!("{{{name}}}"), value)
    })
}

/// An account's security event in words: `event.<kind>`, with the stored
/// detail as `{detail}`, or, for a plural message, as the number it is
/// about (seconds, minutes, codes left).
pub fn event_text(t: &Catalog, kind: &str, detail: &str) -> String {
    let key = format!("event.{kind}");
    match (t.is_plural(&key), detail.parse::<u64>()) {
        (true, Ok(n)) => t.plural(&key, n, &[]),
        (true, Err(_)) => t.tf(&key, &[("count", detail)]),
        (false, _) => t.tf(&key, &[("detail", detail)]),
    }
}

/// An organization audit entry's detail in words. The store keeps codes
/// (roles, access levels, the grace period) inside the detail, in the
/// shapes `identity` and `drive` write them; they are turned into the
/// reader's language here. Anything else (addresses, names) stays as is.
pub fn org_detail(t: &Catalog, kind: &str, detail: &str) -> String {
    let code = |prefix: &str, code: &str| {
        let key = format!("{prefix}.{code}");
        if t.keys().any(|k| k == key) {
            t.t(&key).to_owned()
        } else {
            code.to_owned()
        }
    };
    let grant = |g: &str| {
        if g == "default" {
            t.t("org.detail_default").to_owned()
        } else {
            code("access", g)
        }
    };
    match kind {
        "invitation_accepted" => code("role", detail),
        "member_invited" => match detail.strip_suffix(')').and_then(|d| d.rsplit_once(" (")) {
            Some((email, role)) => format!("{email} ({})", code("role", role)),
            None => detail.to_owned(),
        },
        "role_changed" => match detail
            .rsplit_once(": ")
            .and_then(|(who, r)| Some((who, r.split_once(" → ")?)))
        {
            Some((who, (from, to))) => format!("{who}: {} → {}", code("role", from), code("role", to)),
            None => detail.to_owned(),
        },
        "two_factor_required" | "two_factor_not_required" => {
            match detail
                .strip_prefix("grace ")
                .and_then(|d| d.strip_suffix(" days")?.parse::<u64>().ok())
            {
                Some(days) => t.plural("org.detail_grace", days, &[]),
                None => detail.to_owned(),
            }
        }
        "drive_access_changed" => match detail.rsplit_once(": ") {
            Some((drive, g)) => format!("{drive}: {}", grant(g)),
            None => detail.to_owned(),
        },
        "drive_member_access_changed" => match detail.rsplit_once(" → ") {
            Some((before, g)) => format!("{before} → {}", grant(g)),
            None => detail.to_owned(),
        },
        _ => detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn negotiates_by_quality_then_order() {
        assert_eq!(Lang::negotiate("es-ES,es;q=0.9,en;q=0.8"), Some(Lang::Es));
        assert_eq!(Lang::negotiate("pt-BR, en;q=0.5, es;q=0.7"), Some(Lang::Es));
        assert_eq!(Lang::negotiate("fr-CH, fr;q=0.9, de;q=0.8"), Some(Lang::Fr));
        assert_eq!(Lang::negotiate("de-DE,de;q=0.9"), Some(Lang::De));
        assert_eq!(Lang::negotiate("it-IT,it;q=0.9,en;q=0.5"), Some(Lang::It));
        assert_eq!(Lang::negotiate("pt, ja"), None);
        assert_eq!(Lang::negotiate("es;q=0, en"), Some(Lang::En));
        assert_eq!(Lang::negotiate("garbage;;;q=x"), None);
    }

    #[test]
    fn every_language_has_every_key() {
        let en: BTreeSet<_> = Lang::En.catalog().keys().collect();
        for lang in Lang::ALL {
            let other: BTreeSet<_> = lang.catalog().keys().collect();
            let code = lang.code();
            assert_eq!(
                en.difference(&other).collect::<Vec<_>>(),
                Vec::<&&str>::new(),
                "missing in {code}"
            );
            assert_eq!(
                other.difference(&en).collect::<Vec<_>>(),
                Vec::<&&str>::new(),
                "in {code} but not in en"
            );
            let plural_en: BTreeSet<_> = Lang::En.catalog().plurals().map(|(k, _)| k).collect();
            let plural: BTreeSet<_> = lang.catalog().plurals().map(|(k, _)| k).collect();
            assert_eq!(plural, plural_en, "the same messages are plural in {code} and en");
        }
    }

    /// The categories a language uses for whole numbers, from CLDR's rules.
    fn categories_needed(lang: Lang) -> BTreeSet<&'static str> {
        (0..=1_000u64)
            .chain([1_000_000, 2_000_000, 1_000_001])
            .map(|n| locale::plural_category(lang.code(), n))
            .collect()
    }

    #[test]
    fn plural_messages_have_every_category_their_language_needs() {
        assert_eq!(categories_needed(Lang::En), BTreeSet::from(["one", "other"]));
        assert!(categories_needed(Lang::Fr).contains("one"));
        let cldr = BTreeSet::from(["zero", "one", "two", "few", "many", "other"]);
        for lang in Lang::ALL {
            let needed = categories_needed(lang);
            let mut all_forms: Option<BTreeSet<&str>> = None;
            let mut count = 0;
            for (key, forms) in lang.catalog().plurals() {
                count += 1;
                let forms: BTreeSet<_> = forms.into_iter().collect();
                let code = lang.code();
                assert!(
                    forms.is_superset(&needed),
                    "{key} in {code}: {forms:?} lacks some of {needed:?}"
                );
                assert!(
                    forms.is_subset(&cldr),
                    "{key} in {code}: {forms:?} are not all CLDR categories"
                );
                // Categories a newer CLDR adds (Spanish, French and Italian
                // "many", for round millions) are given everywhere or nowhere.
                let first = all_forms.get_or_insert_with(|| forms.clone());
                assert_eq!(
                    *first, forms,
                    "{key} in {code}: not the forms of the language's other plurals"
                );
            }
            assert!(count >= 10, "{count} plural messages in {}", lang.code());
        }
    }

    #[test]
    fn plural_forms_per_language() {
        let forms = |lang: Lang, key: &str| {
            [0, 1, 2, 5, 21, 1_000_000]
                .map(|n| lang.catalog().plural(key, n, &[]))
                .to_vec()
        };
        assert_eq!(
            forms(Lang::En, "org.methods"),
            [
                "0 methods",
                "1 method",
                "2 methods",
                "5 methods",
                "21 methods",
                "1,000,000 methods"
            ]
        );
        assert_eq!(
            forms(Lang::Es, "org.methods"),
            [
                "0 métodos",
                "1 método",
                "2 métodos",
                "5 métodos",
                "21 métodos",
                "1.000.000 métodos"
            ]
        );
        assert_eq!(
            forms(Lang::Fr, "org.methods"),
            [
                "0 méthode",
                "1 méthode",
                "2 méthodes",
                "5 méthodes",
                "21 méthodes",
                "1\u{202f}000\u{202f}000 méthodes"
            ]
        );
        assert_eq!(
            forms(Lang::De, "org.methods"),
            [
                "0 Methoden",
                "1 Methode",
                "2 Methoden",
                "5 Methoden",
                "21 Methoden",
                "1.000.000 Methoden"
            ]
        );
        assert_eq!(
            forms(Lang::It, "org.methods"),
            [
                "0 metodi",
                "1 metodo",
                "2 metodi",
                "5 metodi",
                "21 metodi",
                "1.000.000 metodi"
            ]
        );
        assert_eq!(
            Lang::Es.catalog().plural("signin.locked", 1, &[]),
            "Demasiados intentos. Vuelve a intentarlo dentro de 1 minuto."
        );
        assert_eq!(
            Lang::Es
                .catalog()
                .plural("org.counts_text", 1, &[("with", "1"), ("without", "0")]),
            "1 miembro: 1 con verificación en dos pasos, 0 sin ella."
        );
    }

    #[test]
    fn every_key_used_in_templates_and_code_exists() {
        let en = Lang::En.catalog();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sources = Vec::new();
        for dir in ["templates", "src"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                sources.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
            }
        }
        let plurals: BTreeSet<_> = en.plurals().map(|(k, _)| k).collect();
        let mut used = 0;
        for text in &sources {
            for pattern in [
                "t.t(\"",
                "t.tf(\"",
                "t.plural(\"",
                "t().t(\"",
                "t().tf(\"",
                "t().plural(\"",
            ] {
                for piece in text.split(pattern).skip(1) {
                    let key = piece.split('"').next().unwrap();
                    if key.is_empty() || key.contains('{') {
                        continue;
                    }
                    used += 1;
                    assert!(
                        en.keys().any(|k| k == key),
                        "key '{key}' is used but not in the catalogue"
                    );
                    assert_eq!(
                        plurals.contains(key),
                        pattern.ends_with("plural(\""),
                        "'{key}': plural messages go through plural(), others never"
                    );
                }
            }
        }
        assert!(
            used > 50,
            "the scan found only {used} keys; did the call syntax change?"
        );
    }

    /// Drops every `open … close` span (template tags, comments, scripts).
    fn without(text: &str, open: &str, close: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find(open) {
            out.push_str(&rest[..start]);
            out.push(' ');
            rest = rest[start..]
                .find(close)
                .map_or("", |end| &rest[start + end + close.len()..]);
        }
        out.push_str(rest);
        out
    }

    /// Words in a template that do not come from the catalogue: text
    /// between tags, and the attributes people read (placeholder, title,
    /// aria-label, alt). Names of products and systems, commands and
    /// addresses are the same in every language.
    fn literal_words(template: &str) -> Vec<String> {
        const SAME_IN_EVERY_LANGUAGE: [&str; 8] = [
            "cloudkeep",
            "· cloudkeep",
            "cloudkeep-authenticator link",
            "rclone",
            "Windows",
            "macOS",
            "Linux",
            "YubiKey",
        ];
        let mut text = template.to_owned();
        for (open, close) in [
            ("{#", "#}"),
            ("<script", "</script>"),
            ("<style", "</style>"),
            ("{{", "}}"),
            ("{%", "%}"),
        ] {
            text = without(&text, open, close);
        }
        let readable = |piece: &str| {
            let piece = piece.trim();
            piece.chars().filter(|c| c.is_alphabetic()).count() >= 2
                && !SAME_IN_EVERY_LANGUAGE.contains(&piece)
                && !piece.contains("://")
                && !piece.starts_with("rclone ")
                && !piece.starts_with("sudo ")
        };
        let mut found = Vec::new();
        for tag in text.split('<').skip(1) {
            let (inside, after) = tag.split_once('>').unwrap_or((tag, ""));
            for attribute in ["placeholder=\"", "title=\"", "aria-label=\"", "alt=\""] {
                for value in inside.split(attribute).skip(1) {
                    let value = value.split('"').next().unwrap_or("");
                    if readable(value) {
                        found.push(format!("{attribute}{value}\""));
                    }
                }
            }
            found.extend(
                after
                    .lines()
                    .filter(|line| readable(line))
                    .map(|line| line.trim().to_owned()),
            );
        }
        found
    }

    #[test]
    fn pages_have_no_words_outside_the_catalogue() {
        assert_eq!(
            literal_words("<p>Welcome back</p>"),
            ["Welcome back"],
            "the check can fail"
        );
        assert_eq!(
            literal_words("<input placeholder=\"Your name\">"),
            ["placeholder=\"Your name\""]
        );
        assert!(literal_words("<p>{{ c.t.t(\"home.title\") }}</p> <b>{{ n }} · 3</b>").is_empty());
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut pages = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // The style page is for the people who build the console (debug
            // builds only, never shown to members): its sample texts are
            // English on purpose.
            if path.file_name().is_some_and(|n| n == "style.html") {
                continue;
            }
            if path.extension().is_some_and(|e| e == "html") {
                pages += 1;
                let words = literal_words(&std::fs::read_to_string(&path).unwrap());
                assert!(
                    words.is_empty(),
                    "{}: {words:?} are not from the catalogue",
                    path.display()
                );
            }
        }
        assert!(pages > 10, "only {pages} templates found");
    }

    #[test]
    fn one_term_for_two_step_verification_in_each_language() {
        let term = [
            (Lang::En, "two-step verification", "two-factor"),
            (Lang::Es, "verificación en dos pasos", "validación"),
            (Lang::Fr, "validation en deux étapes", "vérification en deux"),
            (Lang::De, "Bestätigung in zwei Schritten", "Zwei-Faktor"),
            (Lang::It, "verifica in due passaggi", "autenticazione a due"),
        ];
        for (lang, used, never) in term {
            let texts: Vec<String> = lang
                .catalog()
                .messages
                .values()
                .flat_map(|m| match m {
                    Message::Text(t) => vec![t.to_lowercase()],
                    Message::Plural(forms) => forms.values().map(|t| t.to_lowercase()).collect(),
                })
                .collect();
            let uses = texts.iter().filter(|t| t.contains(&used.to_lowercase())).count();
            assert!(uses > 20, "{used} in {}: {uses} texts", lang.code());
            let stray: Vec<_> = texts.iter().filter(|t| t.contains(&never.to_lowercase())).collect();
            assert!(stray.is_empty(), "{never} in {}: {stray:?}", lang.code());
        }
    }

    #[test]
    fn stored_codes_are_words_in_the_readers_language() {
        let es = Lang::Es.catalog();
        let cases = [
            ("invitation_accepted", "user", "Miembro"),
            (
                "member_invited",
                "ana@example.org (admin)",
                "ana@example.org (Administrador)",
            ),
            ("role_changed", "0190: user → admin", "0190: Miembro → Administrador"),
            ("two_factor_required", "grace 0 days", "periodo de gracia: 0 días"),
            ("two_factor_required", "grace 1 days", "periodo de gracia: 1 día"),
            ("drive_access_changed", "Fotos (7): read", "Fotos (7): Solo lectura"),
            (
                "drive_member_access_changed",
                "Fotos (7): eve@example.org → default",
                "Fotos (7): eve@example.org → como los demás miembros",
            ),
            ("member_left", "", ""),
            ("security_alert_sent", "eve (x)", "eve (x)"),
        ];
        for (kind, stored, shown) in cases {
            assert_eq!(org_detail(es, kind, stored), shown, "{kind}: {stored}");
        }
        let de = Lang::De.catalog();
        assert_eq!(
            event_text(de, "sign_in_locked", "1"),
            "Anmeldung nach wiederholten Fehlversuchen für 1 Sekunde gesperrt"
        );
        assert_eq!(
            event_text(de, "second_factor_added", "Handy"),
            "Methode hinzugefügt: Handy"
        );
        assert_eq!(
            event_text(de, "backup_code_used", "garbled"),
            "Backup-Code verwendet (noch garbled)"
        );
    }

    #[test]
    fn arguments_are_filled_in() {
        assert_eq!(
            Lang::En.catalog().plural("signin.locked", 3, &[]),
            "Too many attempts. Try again in 3 minutes."
        );
        assert_eq!(
            Lang::De.catalog().plural("org.done_alerted_all", 1234, &[]),
            "Die Sicherheitswarnung wurde an 1.234 Mitglieder gesendet."
        );
    }
}
