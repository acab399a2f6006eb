//! Translations. Each language is a flat catalogue (`locales/<lang>.toml`,
//! `key = "text"`, `{name}` for arguments) compiled into the binary. The
//! language comes from the `ck_lang` cookie set by the switcher, else from
//! `Accept-Language`, else English. A test checks that every catalogue has
//! exactly the same keys and that every key the templates use exists.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Es,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Es];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
        }
    }

    /// The language's own name, as the switcher shows it.
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Es => "Español",
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
        static CATALOGS: OnceLock<[Catalog; 2]> = OnceLock::new();
        let all = CATALOGS.get_or_init(|| {
            [
                Catalog::parse(Lang::En, include_str!("../locales/en.toml")),
                Catalog::parse(Lang::Es, include_str!("../locales/es.toml")),
            ]
        });
        &all[self as usize]
    }
}

#[derive(Debug)]
pub struct Catalog {
    pub lang: Lang,
    messages: HashMap<String, String>,
}

impl Catalog {
    fn parse(lang: Lang, source: &str) -> Catalog {
        let table: toml::Table = source.parse().expect("catalogue is valid TOML");
        let messages = table
            .into_iter()
            .map(|(k, v)| (k, v.as_str().expect("catalogue values are strings").to_owned()))
            .collect();
        Catalog { lang, messages }
    }

    /// The text for `key`; the key itself if missing (the tests make sure
    /// that never ships).
    pub fn t<'a>(&'a self, key: &'a str) -> &'a str {
        self.messages.get(key).map_or(key, String::as_str)
    }

    /// The text for `key` with `{name}` placeholders filled in.
    pub fn tf(&self, key: &str, args: &[(&str, &str)]) -> String {
        args.iter().fold(self.t(key).to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), value)
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.messages.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn negotiates_by_quality_then_order() {
        assert_eq!(Lang::negotiate("es-ES,es;q=0.9,en;q=0.8"), Some(Lang::Es));
        assert_eq!(Lang::negotiate("fr-FR, en;q=0.5, es;q=0.7"), Some(Lang::Es));
        assert_eq!(Lang::negotiate("de, fr"), None);
        assert_eq!(Lang::negotiate("es;q=0, en"), Some(Lang::En));
        assert_eq!(Lang::negotiate("garbage;;;q=x"), None);
    }

    #[test]
    fn catalogues_have_the_same_keys() {
        let en: BTreeSet<_> = Lang::En.catalog().keys().collect();
        let es: BTreeSet<_> = Lang::Es.catalog().keys().collect();
        assert_eq!(
            en.difference(&es).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "missing in es"
        );
        assert_eq!(
            es.difference(&en).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "missing in en"
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
        let mut used = 0;
        for text in &sources {
            for pattern in ["t.t(\"", "t.tf(\""] {
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
                }
            }
        }
        assert!(
            used > 50,
            "the scan found only {used} keys; did the call syntax change?"
        );
    }

    #[test]
    fn arguments_are_filled_in() {
        assert_eq!(
            Lang::En.catalog().tf("signin.locked", &[("minutes", "3")]),
            "Too many attempts. Try again in 3 minutes."
        );
    }
}
