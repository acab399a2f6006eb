//! A fuzzer that builds on the stable toolchain (cargo-fuzz needs
//! nightly, which cannot be had here): a seeded mutator over a corpus of
//! real WebDAV bodies, plus generated documents whose expected reading is
//! known. Three targets:
//!
//! - the bounded reader ([`crate::xml`]): never panics; what it accepts
//!   stays within the limits, and written back out (escaped) reads the
//!   same; a generated document reads exactly as generated, or fails
//!   for the one reason it was built to fail;
//! - the PROPFIND body reader ([`crate::propfind::wanted`]) and the
//!   answer it leads to: the answer always parses, whatever namespaces
//!   and names were asked for;
//! - `dav-server`'s PROPFIND, PROPPATCH, LOCK and REPORT readers, behind
//!   the same check [`crate::serve`] makes (on its in-memory file system):
//!   whatever passes the check, they handle without crashing.
//!
//! `cargo test -p dav --lib fuzz` runs a short round (printing its seed
//! and count); `CLOUDKEEP_FUZZ_ITERATIONS` sets the count and
//! `CLOUDKEEP_FUZZ_SEED` replays a seed. A failure prints the seed, the
//! iteration and the input.

use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::xml::{self, Element, Limits, Node, XmlError};

/// splitmix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What clients send (rclone, litmus, Windows, Finder, cadaver, davfs2).
const CORPUS: &[&str] = &[
    r#"<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><d:displayname/><d:getlastmodified/><d:getcontentlength/><d:resourcetype/><d:getcontenttype/><oc:checksums/><oc:permissions/></d:prop></d:propfind>"#,
    r#"<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#,
    r#"<?xml version="1.0" encoding="utf-8"?><propfind xmlns="DAV:"><propname/></propfind>"#,
    r#"<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:"><D:prop xmlns:R="http://example.com/neon/litmus/"><R:foo/><R:bar/><R:baz/></D:prop></D:propfind>"#,
    r#"<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:"><D:prop><D:name/><D:parentname/><D:href/><D:ishidden/><D:isreadonly/><D:getcontenttype/><D:contentclass/><D:getcontentlanguage/><D:creationdate/><D:lastaccessed/><D:getlastmodified/><D:getcontentlength/><D:iscollection/><D:isstructureddocument/><D:defaultdocument/><D:displayname/><D:isroot/><D:resourcetype/></D:prop></D:propfind>"#,
    r#"<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:"><D:prop xmlns:Z="urn:schemas-microsoft-com:"><Z:Win32FileAttributes/><Z:Win32CreationTime/><D:quota-available-bytes/><D:quota-used-bytes/></D:prop></D:propfind>"#,
    r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:getlastmodified/><D:getcontentlength/><D:resourcetype/><D:getetag/><D:lockdiscovery/><D:supportedlock/></D:prop></D:propfind>"#,
    r#"<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop><Z:Win32CreationTime>Mon, 07 Dec 2026 10:00:00 GMT</Z:Win32CreationTime><Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>"#,
    r#"<?xml version="1.0" encoding="utf-8" ?><propertyupdate xmlns="DAV:"><set><prop><prop0 xmlns="http://example.com/neon/litmus/">value0</prop0></prop></set><remove><prop><prop1 xmlns="http://example.com/neon/litmus/"/></prop></remove></propertyupdate>"#,
    r#"<?xml version="1.0" encoding="utf-8" ?><propertyupdate xmlns="DAV:"><set><prop><high-unicode xmlns="http://example.com/neon/litmus/">&#x10000;</high-unicode><valnspace xmlns="http://example.com/neon/litmus/"><foo xmlns="bar"/></valnspace></prop></set></propertyupdate>"#,
    r#"<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>litmus test suite</D:owner></D:lockinfo>"#,
    r#"<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>http://www.apple.com/webdav_fs/</D:href></D:owner></D:lockinfo>"#,
    r#"<?xml version="1.0" encoding="utf-8" ?><D:sync-collection xmlns:D="DAV:"><D:sync-token/><D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>"#,
    r#"<D:propfind xmlns:D="DAV:" xmlns:Z="urn:x&quot;&lt;&amp;&apos;&gt;"><D:prop><Z:a/><Z:b/><D:getetag/></D:prop></D:propfind>"#,
    r#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x&quot;&lt;&amp;&apos;&gt;"><D:set><D:prop><Z:a k="&quot;&lt;">&amp;&lt;"</Z:a></D:prop></D:set></D:propertyupdate>"#,
    r#"<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"><d:response><d:href>/dav/Fotos/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"#,
];

/// Pieces that steer the mutator toward what breaks XML parsers.
const TOKENS: &[&str] = &[
    "<!DOCTYPE x [<!ENTITY a \"aaaa\">]>",
    "<!ENTITY % p \"%q;%q;\">",
    "&a;",
    "&amp;",
    "&lt;",
    "&quot;",
    "&#0;",
    "&#x110000;",
    "&#xD800;",
    "&#233;",
    "&#x;",
    "&",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?pi x?>",
    "<?xml version=\"1.0\"?>",
    "xmlns:a=\"",
    " xmlns=\"\"",
    "xmlns:xml=\"urn:x\"",
    "xmlns:xmlns=\"urn:x\"",
    "</",
    "/>",
    "<a:b:c>",
    "\"",
    "'",
    "<",
    ">",
    "\u{feff}",
    "\r\n",
    "\t",
    "\u{0}",
    "é",
    "𐀀",
];

/// One random change (or a few) to `input`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = rng.pick(TOKENS).as_bytes();
                let at = rng.below(len + 1);
                input.splice(at..at, token.iter().copied());
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                input.drain(at..end);
            }
            3 if len > 0 => {
                // A piece repeated: deep nesting, many elements, big bodies.
                let at = rng.below(len);
                let end = (at + 1 + rng.below(24)).min(len);
                let piece = input[at..end].to_vec();
                let times = if rng.chance(4) { 2000 } else { 1 + rng.below(8) };
                let repeated: Vec<u8> = piece.iter().copied().cycle().take(piece.len() * times).collect();
                input.splice(end..end, repeated);
            }
            4 if !other.is_empty() => {
                // Crossover: the tail of another input.
                let at = rng.below(len + 1);
                let from = rng.below(other.len());
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            5 if len > 0 => input.truncate(rng.below(len)),
            6 => {
                let at = rng.below(len + 1);
                input.insert(at, *rng.pick(b"<>&;\"'/:=![]?-# \x00\xff\xc3"));
            }
            7 => {
                let depth = 60 + rng.below(10);
                let at = rng.below(len + 1);
                let nested: String = "<x>".repeat(depth);
                input.splice(at..at, nested.bytes());
            }
            _ => {}
        }
    }
}

const NAMESPACES: &[&str] = &[
    "DAV:",
    "http://owncloud.org/ns",
    "urn:schemas-microsoft-com:",
    "urn:x\"<&'>",
    "",
    "urn:é",
    "http://example.com/neon/litmus/",
];
const NAMES: &[&str] = &[
    "propfind",
    "prop",
    "getetag",
    "resourcetype",
    "a",
    "Win32FileAttributes",
    "x-y.z_1",
    "é",
];
const TEXTS: &[&str] = &["", "plain", " a < b & \"c\" 'd' > e ", "é 𐀀", "\t\n", "]]>", "-->"];

/// A generated document: its text, and the tree it must read as, or the
/// error it must fail with.
struct Generated {
    text: String,
    expected: Result<Element, XmlError>,
}

/// Text written the way a careful writer might: escaped, as a character
/// reference, or in CDATA.
fn write_text(rng: &mut Rng, out: &mut String, text: &str) {
    match rng.below(3) {
        0 if !text.contains("]]>") => {
            let _ = write!(out, "<![CDATA[{text}]]>");
        }
        1 => {
            for c in text.chars() {
                let _ = write!(out, "&#{};", c as u32);
            }
        }
        _ => xml::push_escaped(out, text),
    }
}

fn generate(rng: &mut Rng, limits: Limits) -> Generated {
    let mut out = String::new();
    if rng.chance(2) {
        out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    }
    let doctype = rng.chance(10);
    if doctype {
        out.push_str("<!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>");
    }
    let too_deep = rng.chance(8);
    let max_depth = if too_deep {
        limits.max_depth + 1 + rng.below(100)
    } else {
        1 + rng.below(limits.max_depth)
    };
    // The tree is built iteratively: (element, children still to write).
    let mut elements = 0usize;
    let mut open: Vec<(Element, String, usize)> = Vec::new();
    let mut root = None;
    let mut counter = 0usize;
    // Too deep: a straight chain from the root past the limit, once.
    let mut bottom_reached = false;
    loop {
        let depth = open.len();
        bottom_reached |= depth >= max_depth;
        let open_child = if too_deep && !bottom_reached {
            true
        } else {
            depth < max_depth
                && elements < limits.max_elements.min(2000)
                && open.last().is_none_or(|(_, _, left)| *left > 0)
                && (open.is_empty() || rng.chance(2))
        };
        if open_child {
            if let Some(parent) = open.last_mut() {
                parent.2 = parent.2.saturating_sub(1);
            }
            let namespace = rng.pick(NAMESPACES).to_string();
            let local = rng.pick(NAMES).to_string();
            counter += 1;
            let prefix = format!("p{counter}");
            let mut tag = if namespace.is_empty() {
                format!("<{local} xmlns=\"\"")
            } else if rng.chance(2) {
                format!("<{local} xmlns=\"{}\"", xml::escape(&namespace))
            } else {
                format!("<{prefix}:{local} xmlns:{prefix}=\"{}\"", xml::escape(&namespace))
            };
            let mut attributes = Vec::new();
            for i in 0..rng.below(3) {
                let value = rng.pick(TEXTS).replace(['\t', '\n'], " ");
                let _ = write!(tag, " k{i}=\"{}\"", xml::escape(&value));
                attributes.push((
                    xml::Name {
                        namespace: String::new(),
                        local: format!("k{i}"),
                    },
                    value,
                ));
            }
            let close = if namespace.is_empty() || !tag.starts_with(&format!("<{prefix}:")) {
                format!("</{local}>")
            } else {
                format!("</{prefix}:{local}>")
            };
            out.push_str(&tag);
            out.push('>');
            elements += 1;
            let element = Element {
                name: xml::Name { namespace, local },
                attributes,
                children: Vec::new(),
            };
            open.push((element, close, rng.below(4)));
            continue;
        }
        let Some((mut element, close, _)) = open.pop() else {
            break;
        };
        if rng.chance(3) {
            let text = rng.pick(TEXTS).to_string();
            write_text(rng, &mut out, &text);
            if !text.is_empty() {
                element.children.push(Node::Text(text));
            }
        }
        if rng.chance(6) {
            out.push_str("<!-- a comment -->");
        }
        out.push_str(&close);
        match open.last_mut() {
            Some((parent, _, _)) => {
                // Texts written next to each other read as one.
                parent.children.push(Node::Element(element));
            }
            None => {
                root = Some(element);
                break;
            }
        }
    }
    let expected = if doctype {
        Err(XmlError::Doctype)
    } else if too_deep {
        Err(XmlError::TooDeep {
            limit: limits.max_depth,
        })
    } else {
        root.ok_or(XmlError::Empty)
    };
    Generated { text: out, expected }
}

/// `element` written back as XML: every name gets a prefix declared on
/// the spot, every value escaped (whitespace in attribute values as
/// character references, which reading would otherwise turn to spaces).
fn write_back(element: &Element, out: &mut String, counter: &mut usize) {
    let mut declare = |out: &mut String, name: &xml::Name| -> String {
        if name.namespace.is_empty() {
            return String::new();
        }
        if name.namespace == xml::XML_NS {
            return "xml:".into();
        }
        *counter += 1;
        let _ = write!(out, " xmlns:w{counter}=\"{}\"", xml::escape(&name.namespace));
        format!("w{counter}:")
    };
    let mut head = String::new();
    let prefix = declare(&mut head, &element.name);
    let mut attributes = String::new();
    for (name, value) in &element.attributes {
        let prefix = declare(&mut head, name);
        let escaped = xml::escape(value)
            .replace('\t', "&#9;")
            .replace('\n', "&#10;")
            .replace('\r', "&#13;");
        let _ = write!(attributes, " {prefix}{}=\"{escaped}\"", name.local);
    }
    let default = if prefix.is_empty() { " xmlns=\"\"" } else { "" };
    let _ = write!(out, "<{prefix}{}{default}{head}{attributes}>", element.name.local);
    for child in &element.children {
        match child {
            Node::Text(text) => xml::push_escaped(out, text),
            Node::Element(child) => write_back(child, out, counter),
        }
    }
    let _ = write!(out, "</{prefix}{}>", element.name.local);
}

/// The deepest nesting and the number of elements of a tree.
fn shape(root: &Element) -> (usize, usize) {
    let (mut deepest, mut count) = (0, 0);
    let mut stack = vec![(root, 1)];
    while let Some((e, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        count += 1;
        stack.extend(e.elements().map(|c| (c, depth + 1)));
    }
    (deepest, count)
}

/// Target 1: the reader.
fn check_reader(input: &[u8], limits: Limits) {
    let Ok(root) = xml::parse(input, limits) else {
        return;
    };
    let (depth, count) = shape(&root);
    assert!(depth <= limits.max_depth && count <= limits.max_elements);
    let mut again = String::new();
    write_back(&root, &mut again, &mut 0);
    let reread = xml::parse(again.as_bytes(), Limits::LISTING).unwrap_or_else(|e| panic!("{e}: {again}"));
    assert_eq!(reread, root, "written back as {again}");
}

/// Target 2: the PROPFIND body reader and the answer written from it.
fn check_propfind(input: &[u8]) {
    let Ok(Some(document)) = crate::body_document(input) else {
        return;
    };
    let Some(wanted) = crate::propfind::wanted(&document) else {
        return;
    };
    let node = drive::Node {
        id: drive::NodeId::new("n"),
        drive_id: drive::DriveId::new(1),
        parent_id: drive::NodeId::top(),
        name: "a \"b\" <c> & d.txt".into(),
        is_dir: false,
        size: 5,
        blob_id: String::new(),
        etag: "e\"<&".into(),
        created_at: 1_700_000_000_000,
        modified_at: 1_700_000_000_000,
        checksums: "SHA1:<&\"".into(),
        has_props: false,
    };
    let dead = [drive::DeadProp {
        namespace: "urn:x\"<&'>".into(),
        name: "a".into(),
        xml:
            r#"<?xml version="1.0" encoding="UTF-8"?><Z:a xmlns:Z="urn:x&quot;&lt;&amp;&apos;&gt;">v &lt; &amp;</Z:a>"#
                .into(),
    }];
    let answer = crate::propfind::answer_text("/a%20%22b%22&c'd.txt", &node, &wanted, &dead);
    xml::parse(answer.as_bytes(), Limits::LISTING).unwrap_or_else(|e| panic!("{e}: {answer}"));
}

/// Target 3: `dav-server`'s body readers, behind the check `serve` makes.
fn check_dav_server(runtime: &tokio::runtime::Runtime, handler: &dav_server::DavHandler, method: &str, input: &[u8]) {
    if crate::body_document(input).is_err() {
        return;
    }
    let request = http::Request::builder()
        .method(http::Method::from_bytes(method.as_bytes()).expect("a method"))
        .uri("/")
        .header("Depth", "0")
        .header("Timeout", "Second-60")
        .body(Full::new(Bytes::copy_from_slice(input)))
        .expect("a request");
    runtime.block_on(async {
        let response = handler.handle(request).await;
        let _ = response.into_body().collect().await;
    });
}

#[test]
fn fuzz_the_xml_readers() {
    let seed = std::env::var("CLOUDKEEP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let iterations: u64 = std::env::var("CLOUDKEEP_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    eprintln!("fuzz: seed {seed}, {iterations} iterations (CLOUDKEEP_FUZZ_SEED={seed} replays it)");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let handler = dav_server::DavHandler::builder()
        .filesystem(dav_server::memfs::MemFs::new())
        .locksystem(dav_server::memls::MemLs::new())
        .build_handler();
    let tiny = Limits {
        max_bytes: 4096,
        max_depth: 8,
        max_elements: 64,
    };
    let started = std::time::Instant::now();
    let mut rng = Rng(seed);
    let mut corpus: Vec<Vec<u8>> = CORPUS.iter().map(|b| b.as_bytes().to_vec()).collect();
    let mut accepted = 0u64;
    for iteration in 0..iterations {
        // Generated documents: their reading is known in advance.
        let limits = if rng.chance(2) { Limits::REQUEST } else { tiny };
        let generated = generate(&mut rng, limits);
        let got = xml::parse(generated.text.as_bytes(), limits);
        let fits = generated.text.len() <= limits.max_bytes;
        if fits
            && generated.expected
                != Err(XmlError::TooManyElements {
                    limit: limits.max_elements,
                })
        {
            assert_eq!(
                got, generated.expected,
                "seed {seed}, iteration {iteration}: {}",
                generated.text
            );
        }

        // Mutated inputs: any answer but a panic.
        let mut input = rng.pick(&corpus).clone();
        let other = if rng.chance(3) {
            generated.text.into_bytes()
        } else {
            rng.pick(&corpus).clone()
        };
        mutate(&mut rng, &mut input, &other);
        let shown = String::from_utf8_lossy(&input[..input.len().min(4000)]).into_owned();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_reader(&input, Limits::REQUEST);
            check_reader(&input, tiny);
            check_propfind(&input);
            let method = ["PROPFIND", "PROPPATCH", "LOCK", "REPORT"][iteration as usize % 4];
            check_dav_server(&runtime, &handler, method, &input);
        }));
        if outcome.is_err() {
            panic!("seed {seed}, iteration {iteration}: input {shown:?}");
        }
        if xml::check(&input, Limits::REQUEST).is_ok() {
            accepted += 1;
            // Well-formed inputs are worth mutating further.
            if corpus.len() < 500 && rng.chance(4) {
                corpus.push(input);
            }
        }
    }
    eprintln!(
        "fuzz: seed {seed}, {iterations} iterations, {accepted} mutated inputs accepted, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
