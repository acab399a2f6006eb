//! PROPFIND for named properties and for all of them, answered straight
//! from the tree.
//!
//! `dav-server` builds every entry of a listing through an XML tree and
//! asks the file system about each one; on a folder of 10,000 files that
//! took about six times Apache's time for named properties, and its
//! `allprop` about three times. Listings of named properties (what sync
//! clients, rclone, Finder and file managers send) and `allprop` or an
//! empty body (cadaver, davfs2, scripts, NAS sync tools) are answered here
//! instead: the folder is read a page at a time, with the dead properties
//! of the page's entries in one query, and each entry is written as text,
//! streamed. Everything else (`propname`, `allprop` with `include`, lock
//! and quota properties named, Windows' Win32 properties) still goes to
//! `dav-server`.

use bytes::Bytes;
use drive::{DriveTree, FileError, ListColumns, ListEntry};
use futures_util::StreamExt;

use crate::fs::OC_NS;
use crate::xml::{Element, Name, push_escaped};

const DAV_NS: &str = "DAV:";
/// Entries read per query while answering (about 1 MiB of text each).
const PAGE: u32 = 2500;

/// A property asked for: its namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    namespace: String,
    name: String,
}

/// The live properties answered here.
const LIVE: [&str; 7] = [
    "resourcetype",
    "getcontentlength",
    "getlastmodified",
    "getetag",
    "getcontenttype",
    "creationdate",
    "displayname",
];

/// The most properties one PROPFIND may name. Clients name a dozen or
/// two; every name is answered for every entry of the listing.
pub const MAX_NAMED: usize = 128;

/// How many text bytes of a listing are made before they are handed to the
/// connection: a client that reads slowly holds at most this much of its
/// answer (and one page of entries) in the server's memory.
const CHUNK_BYTES: usize = 128 * 1024;

/// How many properties a PROPFIND body names (0 for `allprop` or
/// `propname`).
pub fn asked_for(root: &Element) -> usize {
    root.elements()
        .filter(|e| e.is(DAV_NS, "prop"))
        .map(|prop| prop.elements().count())
        .sum()
}

/// The properties of a `<propfind><prop>…</prop></propfind>` body, when
/// this module can answer all of them; `None` sends the request on to
/// `dav-server`.
pub fn wanted(root: &Element) -> Option<Vec<Wanted>> {
    if !root.is(DAV_NS, "propfind") {
        return None;
    }
    let elements: Vec<&Element> = root.elements().collect();
    let [prop] = elements.as_slice() else {
        return None;
    };
    if !prop.is(DAV_NS, "prop") {
        return None;
    }
    let mut wanted = Vec::new();
    for e in prop.elements() {
        let Name { namespace, local } = e.name.clone();
        let handled = match namespace.as_str() {
            DAV_NS => LIVE.contains(&local.as_str()) || local == "getcontentlanguage",
            // Answered by dav-server with live values.
            "urn:schemas-microsoft-com:" | "http://apache.org/dav/props/" => false,
            _ => true,
        };
        if !handled {
            return None;
        }
        wanted.push(Wanted { namespace, name: local });
    }
    (!wanted.is_empty()).then_some(wanted)
}

/// What a listing answers: the properties named, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    Named(Vec<Wanted>),
    /// `<allprop/>` or an empty body: the live properties `dav-server`
    /// gives for `allprop`, with the locks, and every dead property.
    All,
}

/// What a PROPFIND body (`None`: empty) asks for, when this module can
/// answer it; `None` sends the request on to `dav-server`.
pub fn asked(document: Option<&Element>) -> Option<Asked> {
    let Some(root) = document else {
        return Some(Asked::All);
    };
    let elements: Vec<&Element> = root.elements().collect();
    if root.is(DAV_NS, "propfind") && matches!(elements.as_slice(), [only] if only.is(DAV_NS, "allprop")) {
        return Some(Asked::All);
    }
    wanted(root).map(Asked::Named)
}

/// The live properties of an `allprop` answer (with the lock ones,
/// written apart), and ownCloud's checksums when a file has them.
fn all_wanted() -> Vec<Wanted> {
    let dav = |name: &str| Wanted {
        namespace: DAV_NS.into(),
        name: name.into(),
    };
    vec![
        dav("creationdate"),
        dav("getcontentlength"),
        dav("getcontenttype"),
        dav("getetag"),
        dav("getlastmodified"),
        dav("resourcetype"),
        Wanted {
            namespace: OC_NS.into(),
            name: "checksums".into(),
        },
    ]
}

const SUPPORTED_LOCK: &str = "<D:supportedlock><D:lockentry><D:lockscope><D:exclusive/></D:lockscope>\
<D:locktype><D:write/></D:locktype></D:lockentry><D:lockentry><D:lockscope><D:shared/></D:lockscope>\
<D:locktype><D:write/></D:locktype></D:lockentry></D:supportedlock>";

/// What an `allprop` answer writes besides the properties: the drive's
/// locks (none when none was live), to tell each entry's, and the URL
/// prefix of the drive's top for their roots.
struct AllProps {
    locks: Vec<drive::Lock>,
    prefix: String,
}

impl AllProps {
    /// `<D:lockdiscovery>` with the locks on `path` (decoded, from the
    /// drive's top) and the deep ones above it, as `dav-server` writes
    /// them; then `<D:supportedlock>`.
    fn push_locks(&self, out: &mut String, path: &str) {
        use std::fmt::Write;
        let mut applying = self
            .locks
            .iter()
            .filter(|l| l.path == path || (l.deep && drive::within(path, &l.path)))
            .peekable();
        if applying.peek().is_none() {
            out.push_str("<D:lockdiscovery/>");
        } else {
            out.push_str("<D:lockdiscovery>");
            for lock in applying {
                out.push_str("<D:activelock><D:lockscope>");
                out.push_str(if lock.shared { "<D:shared/>" } else { "<D:exclusive/>" });
                out.push_str("</D:lockscope><D:locktype><D:write/></D:locktype><D:depth>");
                out.push_str(if lock.deep { "Infinity" } else { "0" });
                out.push_str("</D:depth><D:timeout>");
                match lock.timeout_secs {
                    0 => out.push_str("Infinite"),
                    secs => {
                        let _ = write!(out, "Second-{secs}");
                    }
                }
                out.push_str("</D:timeout><D:locktoken><D:href>");
                push_escaped(out, &lock.token);
                out.push_str("</D:href></D:locktoken><D:lockroot><D:href>");
                let root = format!("{}{}", self.prefix, drive::url_path(&lock.path));
                push_escaped(out, if root.is_empty() { "/" } else { &root });
                out.push_str("</D:href></D:lockroot>");
                // The owner as the client sent it, if it still reads.
                if !lock.owner_xml.is_empty()
                    && crate::xml::check(lock.owner_xml.as_bytes(), crate::xml::Limits::LISTING).is_ok()
                {
                    out.push_str(without_declaration(&lock.owner_xml));
                }
                out.push_str("</D:activelock>");
            }
            out.push_str("</D:lockdiscovery>");
        }
        out.push_str(SUPPORTED_LOCK);
    }
}

fn without_declaration(xml: &str) -> &str {
    let xml = xml.trim_start();
    if xml.starts_with("<?xml") {
        xml.split_once("?>").map_or(xml, |(_, rest)| rest.trim_start())
    } else {
        xml
    }
}

/// Where a streamed listing is: the pages still to come, what is left of
/// the current one, and whether it is the last.
struct Listing {
    pages: tokio::sync::mpsc::Receiver<Result<(Vec<ListEntry>, PageProps), FileError>>,
    page: std::vec::IntoIter<ListEntry>,
    /// The dead properties of the current page's entries, by node id.
    props: PageProps,
    last: bool,
}

type PageProps = std::collections::HashMap<drive::NodeId, Vec<drive::DeadProp>>;

/// Namespace prefixes for the properties asked for (`D:` is DAV:).
fn prefixes(wanted: &[Wanted]) -> Vec<(String, String)> {
    let mut known: Vec<(String, String)> = vec![(DAV_NS.into(), "D".into())];
    for w in wanted.iter().filter(|w| !w.namespace.is_empty()) {
        if !known.iter().any(|(ns, _)| *ns == w.namespace) {
            let prefix = if w.namespace == OC_NS {
                "oc".to_owned()
            } else {
                format!("n{}", known.len())
            };
            known.push((w.namespace.clone(), prefix));
        }
    }
    known
}

/// ` xmlns:D="DAV:" xmlns:n1="…"`: a namespace asked for may hold any
/// character, `"` included.
fn declarations(prefixes: &[(String, String)]) -> String {
    prefixes
        .iter()
        .map(|(ns, p)| format!(" xmlns:{p}=\"{}\"", crate::xml::escape(ns)))
        .collect()
}

/// Which value a property takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ResourceType,
    ContentLength,
    LastModified,
    ETag,
    ContentType,
    CreationDate,
    Checksums,
    /// Dead, if the node has it.
    Other,
}

/// A property asked for, with its tags written once for the whole answer.
#[derive(Debug, Clone)]
struct Tag {
    wanted: Wanted,
    kind: Kind,
    open: String,
    close: String,
    empty: String,
}

fn tags(wanted: &[Wanted], prefixes: &[(String, String)]) -> Vec<Tag> {
    wanted
        .iter()
        .map(|w| {
            let (open, close, empty) = if w.namespace.is_empty() {
                (
                    format!("<{} xmlns=\"\">", w.name),
                    format!("</{}>", w.name),
                    format!("<{} xmlns=\"\"/>", w.name),
                )
            } else {
                let prefix = prefixes
                    .iter()
                    .find(|(ns, _)| *ns == w.namespace)
                    .map_or("D", |(_, p)| p.as_str());
                (
                    format!("<{prefix}:{}>", w.name),
                    format!("</{prefix}:{}>", w.name),
                    format!("<{prefix}:{}/>", w.name),
                )
            };
            let kind = match (w.namespace.as_str(), w.name.as_str()) {
                (DAV_NS, "resourcetype") => Kind::ResourceType,
                (DAV_NS, "getcontentlength") => Kind::ContentLength,
                (DAV_NS, "getlastmodified") => Kind::LastModified,
                (DAV_NS, "getetag") => Kind::ETag,
                (DAV_NS, "getcontenttype") => Kind::ContentType,
                (DAV_NS, "creationdate") => Kind::CreationDate,
                (OC_NS, "checksums") => Kind::Checksums,
                _ => Kind::Other,
            };
            Tag {
                wanted: w.clone(),
                kind,
                open,
                close,
                empty,
            }
        })
        .collect()
}

/// `millis` as an HTTP date (seconds). Files of a folder often share
/// their second (uploaded together): the last one written is kept per
/// thread and reused.
fn push_http_date(out: &mut String, millis: identity::Millis) {
    use std::fmt::Write;
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = u64::try_from(millis).unwrap_or(0) / 1000;
    LAST.with_borrow_mut(|(last, text)| {
        if *last != secs {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            text.clear();
            let _ = write!(text, "{}", httpdate::HttpDate::from(time));
            *last = secs;
        }
        out.push_str(text);
    });
}

/// The live value of a property, written into `out`; `false` when the
/// node has none.
fn push_value(out: &mut String, kind: Kind, node: &ListEntry) -> bool {
    use std::fmt::Write;
    match kind {
        Kind::ResourceType => {
            if node.is_dir {
                out.push_str("<D:collection/>");
            }
        }
        Kind::ContentLength if !node.is_dir => {
            let _ = write!(out, "{}", node.size);
        }
        Kind::LastModified => push_http_date(out, node.modified_at),
        Kind::ETag => {
            out.push('"');
            push_escaped(out, &node.etag);
            out.push('"');
        }
        Kind::ContentType if node.is_dir => out.push_str("httpd/unix-directory"),
        Kind::ContentType => out.push_str(
            mime_guess::from_path(&node.name)
                .first_raw()
                .unwrap_or("application/octet-stream"),
        ),
        Kind::CreationDate => out.push_str(&identity::utc_rfc3339(node.created_at)),
        Kind::Checksums if !node.checksums.is_empty() => {
            out.push_str("<oc:checksum>");
            push_escaped(out, &node.checksums);
            out.push_str("</oc:checksum>");
        }
        _ => return false,
    }
    true
}

/// One `<D:response>` into `out`: found properties, then those missing
/// (404). `dead` are the node's dead properties, when it has any. With
/// `all` (`allprop`, for the entry at `path`), the properties it lacks
/// are left out, and its locks and every dead property are written.
fn push_response(
    out: &mut String,
    href: &str,
    node: &ListEntry,
    tags: &[Tag],
    dead: &[drive::DeadProp],
    all: Option<(&AllProps, &str)>,
) {
    out.push_str("<D:response><D:href>");
    // A URL path leaves `&` and `'` as they are; XML may not.
    push_escaped(out, href);
    out.push_str("</D:href><D:propstat><D:prop>");
    let mut missing = Vec::new();
    for tag in tags {
        let mark = out.len();
        out.push_str(&tag.open);
        if push_value(out, tag.kind, node) {
            out.push_str(&tag.close);
            continue;
        }
        out.truncate(mark);
        if all.is_some() {
            continue;
        }
        let w = &tag.wanted;
        match dead.iter().find(|p| p.namespace == w.namespace && p.name == w.name) {
            // A dead property is its element as the client sent it.
            Some(p) => out.push_str(without_declaration(&p.xml)),
            None => missing.push(tag),
        }
    }
    if let Some((extra, path)) = all {
        extra.push_locks(out, path);
        for p in dead.iter().filter(|p| crate::fs::stored_prop_reads(p)) {
            out.push_str(without_declaration(&p.xml));
        }
    }
    out.push_str("</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>");
    if !missing.is_empty() {
        out.push_str("<D:propstat><D:prop>");
        for tag in missing {
            out.push_str(&tag.empty);
        }
        out.push_str("</D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>");
    }
    out.push_str("</D:response>\n");
}

/// A whole answer for one node with `dead` properties, as [`answer`]
/// writes it (the fuzz checks that it always parses).
#[cfg(test)]
pub(crate) fn answer_text(href: &str, node: &drive::Node, wanted: &[Wanted], dead: &[drive::DeadProp]) -> String {
    let prefixes = prefixes(wanted);
    let tags = tags(wanted, &prefixes);
    let mut out = format!("<D:multistatus{}>", declarations(&prefixes));
    push_response(&mut out, href, &ListEntry::from(node), &tags, dead, None);
    out.push_str("</D:multistatus>");
    out
}

/// The multistatus answer for `path` (decoded, from the drive's top) at
/// depth 0 or 1, as a stream of text pieces; `Err(NotFound)` when nothing
/// is there. `locked`: whether any lock on the drive was live when the
/// request began (an `allprop` answer then reads them, once).
pub async fn answer(
    tree: DriveTree,
    prefix: String,
    path: String,
    located: Option<drive::Located>,
    depth_one: bool,
    asked: Asked,
    locked: bool,
) -> Result<futures_util::stream::BoxStream<'static, Result<Bytes, std::io::Error>>, FileError> {
    let node = match located {
        Some(located) => located.node.ok_or(FileError::NotFound)?,
        None => tree.stat(&path).await?,
    };
    let (wanted, all) = match asked {
        Asked::Named(wanted) => (wanted, None),
        Asked::All => {
            let locks = if locked { tree.locks().await? } else { Vec::new() };
            let all = AllProps {
                locks,
                prefix: prefix.clone(),
            };
            (all_wanted(), Some(std::sync::Arc::new(all)))
        }
    };
    let prefixes = prefixes(&wanted);
    let tags = tags(&wanted, &prefixes);
    let declarations = declarations(&prefixes);
    let base = format!("{prefix}{}", drive::url_path(&path));
    let self_href = if node.is_dir { format!("{base}/") } else { base.clone() };
    let mut head = format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus{declarations}>\n");
    let entry = ListEntry::from(&node);
    let dead = tree.entry_props(&entry).await?;
    let extra = all.as_deref().map(|a| (a, path.as_str()));
    push_response(&mut head, &self_href, &entry, &tags, &dead, extra);
    let first = futures_util::stream::once(async move { Ok(Bytes::from(head)) });
    if !(depth_one && node.is_dir) {
        let tail = futures_util::stream::once(async { Ok(Bytes::from_static(b"</D:multistatus>\n")) });
        return Ok(first.chain(tail).boxed());
    }
    // The folder's entries, a page at a time, as the client reads them,
    // with the dead properties of the page's entries in one query. The
    // next page is read while this one is written out; a client that
    // goes away stops the reading.
    let (found, pages) = tokio::sync::mpsc::channel(1);
    let (reader, folder) = (tree.clone(), node.clone());
    let columns = ListColumns {
        created_at: tags.iter().any(|t| t.kind == Kind::CreationDate),
        checksums: tags.iter().any(|t| t.kind == Kind::Checksums),
    };
    tokio::spawn(async move {
        let mut after = String::new();
        loop {
            let page = match reader.entries_after(&folder, &after, PAGE, columns).await {
                Ok(page) => match reader.page_props(&page).await {
                    Ok(props) => Ok((page, props)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            // A short page is the last: no query to learn that.
            let next = match &page {
                Ok((page, _)) if page.len() == PAGE as usize => page.last().map(|n| n.name.clone()),
                _ => None,
            };
            if found.send(page).await.is_err() {
                return;
            }
            match next {
                Some(name) => after = name,
                None => return,
            }
        }
    });
    // Each piece handed out holds at most about `CHUNK_BYTES` of text, so a
    // page of many entries with many properties is never one large buffer.
    let state = Listing {
        pages,
        page: Vec::new().into_iter(),
        props: Default::default(),
        last: false,
    };
    let pages = futures_util::stream::unfold(Some(state), move |state| {
        let (tags, base, path, all) = (tags.clone(), base.clone(), path.clone(), all.clone());
        async move {
            let mut state = state?;
            if state.page.len() == 0 && !state.last {
                let (page, props) = match state.pages.recv().await {
                    Some(Ok(page)) => page,
                    Some(Err(e)) => return Some((Err(std::io::Error::other(e.to_string())), None)),
                    None => return Some((Err(std::io::Error::other("the listing stopped")), None)),
                };
                state.last = page.len() < PAGE as usize;
                state.page = page.into_iter();
                state.props = props;
            }
            let mut text = String::with_capacity(CHUNK_BYTES + 4096);
            let mut href = String::new();
            let mut child_path = String::new();
            while text.len() < CHUNK_BYTES {
                let Some(child) = state.page.next() else {
                    break;
                };
                href.clear();
                href.push_str(&base);
                href.push('/');
                drive::push_url_path(&mut href, &child.name);
                if child.is_dir {
                    href.push('/');
                }
                let dead = match &child.props_of {
                    Some(id) => state.props.remove(id).unwrap_or_default(),
                    None => Vec::new(),
                };
                let extra = match &all {
                    Some(all) => {
                        child_path.clear();
                        if !all.locks.is_empty() {
                            child_path.push_str(&path);
                            child_path.push('/');
                            child_path.push_str(&child.name);
                        }
                        Some((all.as_ref(), child_path.as_str()))
                    }
                    None => None,
                };
                push_response(&mut text, &href, &child, &tags, &dead, extra);
            }
            let done = state.last && state.page.len() == 0;
            if done {
                text.push_str("</D:multistatus>\n");
            }
            Some((Ok(Bytes::from(text)), (!done).then_some(state)))
        }
    });
    Ok(first.chain(pages).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(body: &[u8]) -> Option<Vec<Wanted>> {
        super::wanted(&crate::xml::parse(body, crate::xml::Limits::REQUEST).ok()?)
    }

    #[test]
    fn named_properties_are_answered_here_others_are_not() {
        let rclone = br#"<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><d:displayname/><d:getlastmodified/><d:getcontentlength/><d:resourcetype/><d:getcontenttype/><oc:checksums/><oc:permissions/></d:prop></d:propfind>"#;
        assert_eq!(wanted(rclone).unwrap().len(), 7);
        assert!(wanted(br#"<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#).is_none());
        assert!(wanted(br#"<D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>"#).is_none());
        assert!(wanted(br#"<D:propfind xmlns:D="DAV:"><D:prop><D:quota-used-bytes/></D:prop></D:propfind>"#).is_none());
        assert!(wanted(b"not xml").is_none());
        assert!(wanted(b"").is_none());
    }

    #[test]
    fn dates() {
        assert_eq!(identity::utc_rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(identity::utc_rfc3339(0), "1970-01-01T00:00:00Z");
        let mut out = String::new();
        let mut node = drive::Node {
            id: drive::NodeId::new("n"),
            drive_id: drive::DriveId::new(1),
            parent_id: drive::NodeId::top(),
            name: "a.txt".into(),
            is_dir: false,
            size: 5,
            blob_id: String::new(),
            etag: "e1".into(),
            created_at: 1_700_000_000_000,
            modified_at: 1_700_000_000_000,
            checksums: String::new(),
            has_props: false,
        };
        let entry = ListEntry::from(&node);
        assert!(push_value(&mut out, Kind::LastModified, &entry));
        assert!(push_value(&mut out, Kind::ETag, &entry));
        assert!(!push_value(&mut out, Kind::Checksums, &entry));
        assert_eq!(out, "Tue, 14 Nov 2023 22:13:20 GMT\"e1\"");
        // The date kept from the last entry is used only for its own second.
        out.clear();
        for millis in [1_700_000_000_999, 1_700_000_001_000, 1_700_000_000_000] {
            push_http_date(&mut out, millis);
            out.push('|');
        }
        assert_eq!(
            out,
            "Tue, 14 Nov 2023 22:13:20 GMT|Tue, 14 Nov 2023 22:13:21 GMT|Tue, 14 Nov 2023 22:13:20 GMT|"
        );
        // The top folder (no id) has a fixed ETag.
        node.id = drive::NodeId::top();
        out.clear();
        assert!(push_value(&mut out, Kind::ETag, &ListEntry::from(&node)));
        assert_eq!(out, "\"top\"");
    }

    #[test]
    fn text_is_escaped() {
        let mut out = String::new();
        push_escaped(&mut out, "plain-name.txt");
        push_escaped(&mut out, " a<b>&c é\"");
        assert_eq!(out, "plain-name.txt a&lt;b&gt;&amp;c é&quot;");
    }
}
