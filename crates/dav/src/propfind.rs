//! PROPFIND for named properties, answered straight from the tree.
//!
//! `dav-server` builds every entry of a listing through an XML tree and
//! asks the file system about each one; on a folder of 10,000 files that
//! took about six times Apache's time. Listings of named properties (what
//! sync clients, rclone, Finder and file managers send) are answered here
//! instead: the folder is read a page at a time and each entry is written
//! as text, streamed. Everything else (`allprop`, `propname`, lock and
//! quota properties, Windows' Win32 properties) still goes to `dav-server`.

use bytes::Bytes;
use drive::{DriveTree, FileError, Node};
use futures_util::StreamExt;
use identity::Millis;
use xmltree::{Element, XMLNode};

use crate::fs::OC_NS;

const DAV_NS: &str = "DAV:";
const PAGE: u32 = 1000;

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

/// The properties of a `<propfind><prop>…</prop></propfind>` body, when
/// this module can answer all of them; `None` sends the request on to
/// `dav-server` (and a body that is not XML gets its error there).
pub fn wanted(body: &[u8]) -> Option<Vec<Wanted>> {
    let root = Element::parse(body).ok()?;
    if root.name != "propfind" || root.namespace.as_deref() != Some(DAV_NS) {
        return None;
    }
    let elements: Vec<&Element> = root
        .children
        .iter()
        .filter_map(|n| match n {
            XMLNode::Element(e) => Some(e),
            _ => None,
        })
        .collect();
    let [prop] = elements.as_slice() else {
        return None;
    };
    if prop.name != "prop" || prop.namespace.as_deref() != Some(DAV_NS) {
        return None;
    }
    let mut wanted = Vec::new();
    for node in &prop.children {
        let XMLNode::Element(e) = node else { continue };
        let namespace = e.namespace.clone().unwrap_or_default();
        let handled = match namespace.as_str() {
            DAV_NS => LIVE.contains(&e.name.as_str()) || e.name == "getcontentlanguage",
            // Answered by dav-server with live values.
            "urn:schemas-microsoft-com:" | "http://apache.org/dav/props/" => false,
            _ => true,
        };
        if !handled {
            return None;
        }
        wanted.push(Wanted {
            namespace,
            name: e.name.clone(),
        });
    }
    (!wanted.is_empty()).then_some(wanted)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn without_declaration(xml: &str) -> &str {
    let xml = xml.trim_start();
    if xml.starts_with("<?xml") {
        xml.split_once("?>").map_or(xml, |(_, rest)| rest.trim_start())
    } else {
        xml
    }
}

fn http_date(ms: Millis) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    httpdate::fmt_http_date(time)
}

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

fn element(prefixes: &[(String, String)], w: &Wanted, value: Option<&str>) -> String {
    if w.namespace.is_empty() {
        return match value {
            Some(v) => format!("<{} xmlns=\"\">{v}</{}>", w.name, w.name),
            None => format!("<{} xmlns=\"\"/>", w.name),
        };
    }
    let prefix = prefixes
        .iter()
        .find(|(ns, _)| *ns == w.namespace)
        .map_or("D", |(_, p)| p.as_str());
    match value {
        Some(v) => format!("<{prefix}:{}>{v}</{prefix}:{}>", w.name, w.name),
        None => format!("<{prefix}:{}/>", w.name),
    }
}

/// One `<D:response>`: found properties, then those missing (404).
async fn response(
    tree: &DriveTree,
    href: &str,
    node: &Node,
    wanted: &[Wanted],
    prefixes: &[(String, String)],
) -> Result<String, FileError> {
    let dead = if node.has_props {
        tree.props(node).await?
    } else {
        Vec::new()
    };
    let mut found = String::new();
    let mut missing = String::new();
    for w in wanted {
        let value: Option<String> = if w.namespace == DAV_NS {
            match w.name.as_str() {
                "resourcetype" => Some(if node.is_dir {
                    "<D:collection/>".into()
                } else {
                    String::new()
                }),
                "getcontentlength" if !node.is_dir => Some(node.size.to_string()),
                "getlastmodified" => Some(http_date(node.modified_at)),
                "getetag" if !node.id.is_empty() => Some(format!("\"{}\"", escape(&node.etag))),
                "getetag" => Some("\"top\"".into()),
                "getcontenttype" => Some(if node.is_dir {
                    "httpd/unix-directory".into()
                } else {
                    mime_guess::from_path(&node.name)
                        .first_raw()
                        .unwrap_or("application/octet-stream")
                        .to_owned()
                }),
                "creationdate" => Some(identity::utc_rfc3339(node.created_at)),
                _ => None,
            }
        } else if w.namespace == OC_NS && w.name == "checksums" && !node.checksums.is_empty() {
            Some(format!("<oc:checksum>{}</oc:checksum>", escape(&node.checksums)))
        } else {
            None
        };
        match value {
            Some(v) => found.push_str(&element(prefixes, w, Some(&v))),
            None => match dead.iter().find(|p| p.namespace == w.namespace && p.name == w.name) {
                // A dead property is its element as the client sent it.
                Some(p) => found.push_str(without_declaration(&p.xml)),
                None => missing.push_str(&element(prefixes, w, None)),
            },
        }
    }
    let mut out = format!("<D:response><D:href>{href}</D:href>");
    if !found.is_empty() {
        out.push_str(&format!(
            "<D:propstat><D:prop>{found}</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
        ));
    }
    if !missing.is_empty() {
        out.push_str(&format!(
            "<D:propstat><D:prop>{missing}</D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>"
        ));
    }
    out.push_str("</D:response>\n");
    Ok(out)
}

/// The multistatus answer for `path` (decoded, from the drive's top) at
/// depth 0 or 1, as a stream of text pieces; `Err(NotFound)` when nothing
/// is there.
pub async fn answer(
    tree: DriveTree,
    prefix: String,
    path: String,
    depth_one: bool,
    wanted: Vec<Wanted>,
) -> Result<futures_util::stream::BoxStream<'static, Result<Bytes, std::io::Error>>, FileError> {
    let node = tree.stat(&path).await?;
    let prefixes = prefixes(&wanted);
    let declarations: String = prefixes
        .iter()
        .map(|(ns, p)| format!(" xmlns:{p}=\"{}\"", escape(ns)))
        .collect();
    let base = format!("{prefix}{}", drive::url_path(&path));
    let self_href = if node.is_dir { format!("{base}/") } else { base.clone() };
    let mut head = format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus{declarations}>\n");
    head.push_str(&response(&tree, &self_href, &node, &wanted, &prefixes).await?);
    let first = futures_util::stream::once(async move { Ok(Bytes::from(head)) });
    if !(depth_one && node.is_dir) {
        let tail = futures_util::stream::once(async { Ok(Bytes::from_static(b"</D:multistatus>\n")) });
        return Ok(first.chain(tail).boxed());
    }
    // The folder's entries, a page at a time, as the client reads them.
    let pages = futures_util::stream::unfold(Some(String::new()), move |after| {
        let (tree, node, wanted, prefixes, base) = (
            tree.clone(),
            node.clone(),
            wanted.clone(),
            prefixes.clone(),
            base.clone(),
        );
        async move {
            let after = after?;
            let page = match tree.children_after(&node, &after, PAGE).await {
                Ok(page) => page,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
            };
            if page.is_empty() {
                return Some((Ok(Bytes::from_static(b"</D:multistatus>\n")), None));
            }
            let next = page.last().map(|n| n.name.clone());
            let mut text = String::with_capacity(page.len() * 400);
            for child in &page {
                let mut href = format!("{base}/{}", drive::url_path(&child.name));
                if child.is_dir {
                    href.push('/');
                }
                match response(&tree, &href, child, &wanted, &prefixes).await {
                    Ok(piece) => text.push_str(&piece),
                    Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
                }
            }
            Some((Ok(Bytes::from(text)), next))
        }
    });
    Ok(first.chain(pages).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(http_date(1_700_000_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
    }
}
