//! The SQLite and PostgreSQL migrations are twins: the same tables,
//! columns, constraints and statements, differing only where the engines
//! spell a type or a function differently. This test compares each pair
//! after normalizing those spellings, so a column, index or statement
//! added to one engine and not the other fails here instead of in
//! production.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The same thing spelled by each engine: (PostgreSQL, SQLite). Both
/// sides are rewritten to the SQLite word.
const SAME_TYPE: &[(&str, &str)] = &[("bigint", "integer"), ("bytea", "blob")];

#[test]
fn sqlite_and_postgres_migrations_match_after_normalizing_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let sqlite = migrations(&root.join("sqlite"));
    let postgres = migrations(&root.join("postgres"));
    let names = |files: &[PathBuf]| -> BTreeSet<String> { files.iter().map(|f| file_name(f)).collect() };
    assert_eq!(
        names(&sqlite),
        names(&postgres),
        "every migration exists for both engines, under the same name"
    );
    let mut drifted = Vec::new();
    for (lite, pg) in sqlite.iter().zip(&postgres) {
        let read = |path: &Path| std::fs::read_to_string(path).expect("migration");
        if let Some(difference) = difference(&read(lite), &read(pg)) {
            drifted.push(format!("{}: {difference}", file_name(lite)));
        }
    }
    assert!(
        drifted.is_empty(),
        "the twin migrations drifted:\n{}",
        drifted.join("\n")
    );
}

#[test]
fn a_column_on_one_side_only_is_a_difference() {
    let sqlite = "CREATE TABLE t (id TEXT PRIMARY KEY, at INTEGER NOT NULL);";
    let postgres = "CREATE TABLE t (id TEXT PRIMARY KEY, at BIGINT NOT NULL);";
    assert_eq!(difference(sqlite, postgres), None);
    let gained = "CREATE TABLE t (id TEXT PRIMARY KEY, at BIGINT NOT NULL, size BIGINT NOT NULL);";
    assert!(difference(sqlite, gained).is_some());
    let altered = "ALTER TABLE t ADD COLUMN size INTEGER NOT NULL DEFAULT 0;";
    assert!(difference(sqlite, &format!("{postgres}\n{altered}")).is_some());
    assert!(difference(&format!("{sqlite}\n{altered}"), postgres).is_some());
}

#[test]
fn byte_lengths_are_the_same_function() {
    let sqlite = "SELECT SUM(length(CAST(p.name AS BLOB)) + length(CAST(p.xml AS BLOB))) FROM p;";
    let postgres = "SELECT SUM(octet_length(p.name) + octet_length(p.xml)) FROM p;";
    assert_eq!(difference(sqlite, postgres), None);
    assert!(difference(sqlite, "SELECT SUM(octet_length(p.name)) FROM p;").is_some());
}

/// The `.sql` files of one engine's folder, sorted by name.
fn migrations(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("migrations folder")
        .map(|entry| entry.expect("migration").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().expect("file name").to_string_lossy().into_owned()
}

/// Where the normalized statements of two twins first differ, or `None`
/// when they are the same.
fn difference(sqlite: &str, postgres: &str) -> Option<String> {
    let (lite, pg) = (normalized(sqlite), normalized(postgres));
    let at = lite
        .iter()
        .zip(&pg)
        .position(|(a, b)| a != b)
        .unwrap_or(lite.len().min(pg.len()));
    if at == lite.len() && at == pg.len() {
        return None;
    }
    let around = |tokens: &[String]| tokens[at.saturating_sub(8)..(at + 8).min(tokens.len())].join(" ");
    Some(format!(
        "SQLite has `{}` where PostgreSQL has `{}`",
        around(&lite),
        around(&pg)
    ))
}

/// The tokens of `sql` without comments, lowercased, with each engine's
/// spelling of a type or a byte length rewritten to one.
fn normalized(sql: &str) -> Vec<String> {
    let tokens: Vec<String> = tokens(sql)
        .into_iter()
        .map(|t| {
            let t = t.to_lowercase();
            SAME_TYPE
                .iter()
                .find(|(pg, _)| *pg == t)
                .map_or(t, |(_, lite)| (*lite).to_owned())
        })
        .collect();
    byte_lengths(&tokens)
}

/// Rewrites SQLite's `length(CAST(x AS BLOB))` to PostgreSQL's
/// `octet_length(x)`.
fn byte_lengths(tokens: &[String]) -> Vec<String> {
    const OPENING: [&str; 4] = ["length", "(", "cast", "("];
    const CLOSING: [&str; 4] = ["as", "blob", ")", ")"];
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let opens = tokens[i..].iter().take(4).map(String::as_str).eq(OPENING);
        let closes_at = (i + 4..tokens.len()).find(|&j| tokens[j..].iter().take(4).map(String::as_str).eq(CLOSING));
        match (opens, closes_at) {
            (true, Some(end)) => {
                out.extend(["octet_length".to_owned(), "(".to_owned()]);
                out.extend(tokens[i + 4..end].iter().cloned());
                out.push(")".to_owned());
                i = end + 4;
            }
            _ => {
                out.push(tokens[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// Words, numbers, quoted strings and single punctuation marks; `--`
/// comments are dropped, as they explain and need not match.
fn tokens(sql: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for line in sql.lines() {
        let code = line.split_once("--").map_or(line, |(code, _)| code);
        let mut chars = code.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_whitespace() {
                continue;
            }
            let mut token = String::from(c);
            if c.is_alphanumeric() || c == '_' {
                while let Some(&next) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_' || **n == '.') {
                    token.push(next);
                    chars.next();
                }
            } else if c == '\'' {
                for next in chars.by_ref() {
                    token.push(next);
                    if next == '\'' {
                        break;
                    }
                }
            }
            tokens.push(token);
        }
    }
    tokens
}
