//! The one bounded XML reader: every XML body a client sends over WebDAV
//! and every listing an import reads from another server goes through it
//! before anything else parses it.
//!
//! Bodies come from anyone who can sign in (a read-only member's PROPFIND
//! included) and listings from any server a member names, so the reader
//! refuses what no WebDAV body needs and what has crashed XML parsers
//! before: a DOCTYPE (and with it every entity but the five predefined
//! ones and character references), nesting deeper than [`Limits::max_depth`],
//! more than [`Limits::max_elements`] elements, more than
//! [`Limits::max_bytes`] bytes, and long attribute or namespace lists. It
//! keeps no recursion proportional to its input (the open elements are a
//! `Vec`), so its stack stays small whatever it reads.
//!
//! Names come out with their namespaces resolved (a prefix declared with
//! `&quot;` in its URI resolves to the URI with `"`, as XML says). Two
//! ways to read: [`Reader`] hands out events one at a time (an import
//! listing of tens of thousands of entries is never held as a tree), and
//! [`parse`] builds the [`Element`] tree of a small body.

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event as Raw};

/// How much a document may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    /// Elements open at once, the outermost counting 1.
    pub max_depth: usize,
    pub max_elements: usize,
}

impl Limits {
    /// A WebDAV request body (PROPFIND, PROPPATCH, LOCK, REPORT): what
    /// clients send is a few hundred bytes, a PROPPATCH of many
    /// properties a few KiB.
    pub const REQUEST: Limits = Limits {
        max_bytes: 64 * 1024,
        max_depth: 64,
        max_elements: 10_000,
    };

    /// A PROPFIND answer read by an import: one folder's listing, which
    /// may hold tens of thousands of entries of about ten elements each.
    pub const LISTING: Limits = Limits {
        max_bytes: 64 * 1024 * 1024,
        max_depth: 64,
        max_elements: 2_000_000,
    };
}

/// The namespace the `xml` prefix is bound to, always.
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Attributes (namespace declarations included) one element may carry:
/// WebDAV elements carry a handful; the cap keeps checking them for
/// duplicates cheap.
pub const MAX_ATTRIBUTES: usize = 64;
/// Namespace declarations in scope at once.
pub const MAX_NAMESPACES: usize = 64;

/// Why a document was refused, in words short enough for an answer's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlError {
    TooLarge {
        limit: usize,
    },
    TooDeep {
        limit: usize,
    },
    TooManyElements {
        limit: usize,
    },
    TooManyAttributes {
        limit: usize,
    },
    TooManyNamespaces {
        limit: usize,
    },
    /// A `<!DOCTYPE …>`: entity declarations and external references live there.
    Doctype,
    /// `&name;` where `name` is none of `amp`, `lt`, `gt`, `quot`, `apos`.
    UnknownEntity(String),
    UnknownPrefix(String),
    NotUtf8,
    /// No element at all.
    Empty,
    /// Not well-formed; the parser's own words.
    Malformed(String),
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { limit } => write!(f, "the XML is larger than {limit} bytes"),
            Self::TooDeep { limit } => write!(f, "the XML nests elements deeper than {limit}"),
            Self::TooManyElements { limit } => write!(f, "the XML has more than {limit} elements"),
            Self::TooManyAttributes { limit } => write!(f, "an XML element has more than {limit} attributes"),
            Self::TooManyNamespaces { limit } => write!(f, "the XML declares more than {limit} namespaces at once"),
            Self::Doctype => write!(f, "the XML has a DOCTYPE, which is not accepted"),
            Self::UnknownEntity(name) => write!(f, "the XML refers to an unknown entity &{name};"),
            Self::UnknownPrefix(prefix) => write!(f, "the XML uses the undeclared prefix {prefix:?}"),
            Self::NotUtf8 => write!(f, "the XML is not UTF-8"),
            Self::Empty => write!(f, "the XML has no element"),
            Self::Malformed(why) => write!(f, "the XML is not well-formed: {why}"),
        }
    }
}

impl std::error::Error for XmlError {}

impl From<quick_xml::Error> for XmlError {
    fn from(e: quick_xml::Error) -> Self {
        Self::Malformed(short(&e.to_string()))
    }
}

impl From<quick_xml::events::attributes::AttrError> for XmlError {
    fn from(e: quick_xml::events::attributes::AttrError) -> Self {
        Self::Malformed(short(&e.to_string()))
    }
}

/// At most 200 characters of someone else's words (a parser's message may
/// quote the input).
fn short(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// An element's or attribute's name: its namespace URI ("" for none) and
/// its local part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Name {
    pub namespace: String,
    pub local: String,
}

impl Name {
    pub fn is(&self, namespace: &str, local: &str) -> bool {
        self.namespace == namespace && self.local == local
    }
}

/// What [`Reader::next_event`] hands out. An empty element (`<a/>`) is a
/// `Start` followed by its `End`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Start {
        name: Name,
        attributes: Vec<(Name, String)>,
    },
    /// Character data (CDATA included), with references resolved. Text
    /// between the same two tags may come in several pieces.
    Text(String),
    End,
}

/// A pull reader over one document.
pub struct Reader<'a> {
    inner: quick_xml::Reader<&'a [u8]>,
    limits: Limits,
    /// Open elements: how many namespace declarations each added.
    open: Vec<usize>,
    /// Declarations in scope: (prefix, URI); "" is the default namespace.
    namespaces: Vec<(String, String)>,
    elements: usize,
    /// An empty element was handed out as `Start`; its `End` comes next.
    pending_end: bool,
    root_closed: bool,
    seen_root: bool,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`, refused at once when larger than the limit
    /// or not UTF-8.
    pub fn new(bytes: &'a [u8], limits: Limits) -> Result<Self, XmlError> {
        if bytes.len() > limits.max_bytes {
            return Err(XmlError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| XmlError::NotUtf8)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut inner = quick_xml::Reader::from_reader(text.as_bytes());
        let config = inner.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        Ok(Self {
            inner,
            limits,
            open: Vec::new(),
            namespaces: Vec::new(),
            elements: 0,
            pending_end: false,
            root_closed: false,
            seen_root: false,
        })
    }

    /// The next event; `Ok(None)` once the root element has closed and
    /// nothing but comments and white space follows.
    pub fn next_event(&mut self) -> Result<Option<Event>, XmlError> {
        if self.pending_end {
            self.pending_end = false;
            self.close();
            return Ok(Some(Event::End));
        }
        loop {
            let raw = self.inner.read_event()?;
            match raw {
                Raw::Start(start) => return self.start(&start).map(Some),
                Raw::Empty(start) => {
                    let event = self.start(&start)?;
                    self.pending_end = true;
                    return Ok(Some(event));
                }
                Raw::End(_) => {
                    // quick-xml checked that the name matches.
                    if self.open.is_empty() {
                        return Err(XmlError::Malformed("a closing tag without its opening tag".into()));
                    }
                    self.close();
                    return Ok(Some(Event::End));
                }
                Raw::Text(text) => {
                    let text = text.decode().map_err(|_| XmlError::NotUtf8)?;
                    if let Some(event) = self.text(text.into_owned())? {
                        return Ok(Some(event));
                    }
                }
                Raw::CData(data) => {
                    let text = data.decode().map_err(|_| XmlError::NotUtf8)?;
                    if let Some(event) = self.text(text.into_owned())? {
                        return Ok(Some(event));
                    }
                }
                Raw::GeneralRef(reference) => {
                    let text = match reference.resolve_char_ref()? {
                        Some(c) => c.to_string(),
                        None => {
                            let name = reference.decode().map_err(|_| XmlError::NotUtf8)?;
                            match quick_xml::escape::resolve_predefined_entity(&name) {
                                Some(text) => text.to_owned(),
                                None => return Err(XmlError::UnknownEntity(short(&name))),
                            }
                        }
                    };
                    if let Some(event) = self.text(text)? {
                        return Ok(Some(event));
                    }
                }
                Raw::DocType(_) => return Err(XmlError::Doctype),
                Raw::Comment(_) | Raw::Decl(_) | Raw::PI(_) => {}
                Raw::Eof => {
                    if !self.open.is_empty() {
                        return Err(XmlError::Malformed("the XML ends before its elements close".into()));
                    }
                    if !self.seen_root {
                        return Err(XmlError::Empty);
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// Text inside the root element is handed out; outside it, only white
    /// space is allowed.
    fn text(&self, text: String) -> Result<Option<Event>, XmlError> {
        if !self.open.is_empty() {
            return Ok((!text.is_empty()).then_some(Event::Text(text)));
        }
        if text.chars().all(char::is_whitespace) {
            Ok(None)
        } else {
            Err(XmlError::Malformed("text outside the root element".into()))
        }
    }

    fn close(&mut self) {
        if let Some(declared) = self.open.pop() {
            self.namespaces.truncate(self.namespaces.len() - declared);
        }
        if self.open.is_empty() {
            self.root_closed = true;
        }
    }

    fn start(&mut self, start: &BytesStart) -> Result<Event, XmlError> {
        if self.root_closed {
            return Err(XmlError::Malformed("a second root element".into()));
        }
        if self.open.len() >= self.limits.max_depth {
            return Err(XmlError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        if self.elements >= self.limits.max_elements {
            return Err(XmlError::TooManyElements {
                limit: self.limits.max_elements,
            });
        }
        self.elements += 1;
        self.seen_root = true;
        let mut raw_attributes = Vec::new();
        let mut declared = 0;
        for attribute in start.attributes() {
            if raw_attributes.len() + declared >= MAX_ATTRIBUTES {
                return Err(XmlError::TooManyAttributes { limit: MAX_ATTRIBUTES });
            }
            let attribute = attribute?;
            let key = std::str::from_utf8(attribute.key.as_ref()).map_err(|_| XmlError::NotUtf8)?;
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| match e {
                    quick_xml::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(_, name)) => {
                        XmlError::UnknownEntity(short(&name))
                    }
                    other => other.into(),
                })?;
            let prefix = if key == "xmlns" {
                Some("")
            } else {
                key.strip_prefix("xmlns:")
            };
            match prefix {
                Some(prefix) => {
                    if key != "xmlns" && (!is_name(prefix) || prefix.contains(':')) {
                        return Err(XmlError::Malformed(format!("{:?} is not a prefix", short(prefix))));
                    }
                    // Namespaces in XML 1.0: a prefix cannot be undeclared,
                    // and `xml`, `xmlns` are reserved (litmus checks the first).
                    if key != "xmlns" && value.is_empty() {
                        return Err(XmlError::Malformed(format!(
                            "the prefix {:?} is bound to no namespace",
                            short(prefix)
                        )));
                    }
                    if prefix == "xmlns" || (prefix == "xml") != (value == XML_NS) {
                        return Err(XmlError::Malformed(format!(
                            "the prefix {:?} is reserved",
                            short(prefix)
                        )));
                    }
                    if self.namespaces.len() >= MAX_NAMESPACES {
                        return Err(XmlError::TooManyNamespaces { limit: MAX_NAMESPACES });
                    }
                    self.namespaces.push((prefix.to_owned(), value.into_owned()));
                    declared += 1;
                }
                None => raw_attributes.push((key.to_owned(), value.into_owned())),
            }
        }
        // The element's own declarations are in scope for its name.
        self.open.push(declared);
        let qname = std::str::from_utf8(start.name().as_ref())
            .map_err(|_| XmlError::NotUtf8)?
            .to_owned();
        let name = self.resolve(&qname, true)?;
        let mut attributes = Vec::with_capacity(raw_attributes.len());
        for (key, value) in raw_attributes {
            attributes.push((self.resolve(&key, false)?, value));
        }
        Ok(Event::Start { name, attributes })
    }

    /// `prefix:local` or `local` with its namespace; an unprefixed
    /// attribute has none, an unprefixed element the default one.
    fn resolve(&self, qname: &str, element: bool) -> Result<Name, XmlError> {
        if !is_name(qname) {
            return Err(XmlError::Malformed(format!("{:?} is not a name", short(qname))));
        }
        let (prefix, local) = match qname.split_once(':') {
            Some((prefix, local)) => (prefix, local),
            None if !element => {
                return Ok(Name {
                    namespace: String::new(),
                    local: qname.to_owned(),
                });
            }
            None => ("", qname),
        };
        if prefix == "xml" {
            return Ok(Name {
                namespace: XML_NS.into(),
                local: local.to_owned(),
            });
        }
        match self.namespaces.iter().rev().find(|(p, _)| p == prefix) {
            Some((_, uri)) => Ok(Name {
                namespace: uri.clone(),
                local: local.to_owned(),
            }),
            None if prefix.is_empty() => Ok(Name {
                namespace: String::new(),
                local: local.to_owned(),
            }),
            None => Err(XmlError::UnknownPrefix(short(prefix))),
        }
    }
}

/// Whether `qname` is an XML name with at most one colon inside: names
/// are written back into answers (a property asked for and missing), so
/// one holding `"`, `<` or `&` must never get through.
fn is_name(qname: &str) -> bool {
    let starts_well = |part: &str| {
        part.chars()
            .next()
            .is_some_and(|c| !c.is_ascii_digit() && !matches!(c, '-' | '.'))
    };
    let mut parts = qname.split(':');
    let ok_chars = qname.chars().all(|c| {
        !c.is_whitespace() && !c.is_control() && (!c.is_ascii_punctuation() || matches!(c, ':' | '_' | '-' | '.'))
    });
    ok_chars && qname.matches(':').count() <= 1 && parts.all(starts_well)
}

/// An element of a parsed document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: Name,
    pub attributes: Vec<(Name, String)>,
    pub children: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    pub fn is(&self, namespace: &str, local: &str) -> bool {
        self.name.is(namespace, local)
    }

    /// The child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The element's own text (its children's not included).
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }
}

/// The whole document as a tree, built without recursion.
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Element, XmlError> {
    let mut reader = Reader::new(bytes, limits)?;
    // The open elements, outermost first.
    let mut open: Vec<Element> = Vec::new();
    let mut root = None;
    while let Some(event) = reader.next_event()? {
        match event {
            Event::Start { name, attributes } => open.push(Element {
                name,
                attributes,
                children: Vec::new(),
            }),
            Event::Text(text) => {
                if let Some(parent) = open.last_mut() {
                    match parent.children.last_mut() {
                        Some(Node::Text(previous)) => previous.push_str(&text),
                        _ => parent.children.push(Node::Text(text)),
                    }
                }
            }
            Event::End => {
                let done = open.pop().ok_or(XmlError::Empty)?;
                match open.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(done)),
                    None => root = Some(done),
                }
            }
        }
    }
    root.ok_or(XmlError::Empty)
}

/// Checks a document against the limits without keeping anything of it.
pub fn check(bytes: &[u8], limits: Limits) -> Result<(), XmlError> {
    let mut reader = Reader::new(bytes, limits)?;
    while reader.next_event()?.is_some() {}
    Ok(())
}

/// `text` escaped for an attribute value or character data: all five
/// predefined entities, so the result is safe between either quote.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// [`escape`], appended to `out`.
pub fn push_escaped(out: &mut String, text: &str) {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        out.push_str(text);
        return;
    }
    out.push_str(&escape(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAV: &str = "DAV:";

    #[test]
    fn a_propfind_is_read_with_its_namespaces() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns="urn:default"><d:prop><d:getetag/><x:a xmlns:x="urn:a&quot;b&lt;&amp;"/><plain/></d:prop></d:propfind>"#;
        let root = parse(body, Limits::REQUEST).unwrap();
        assert!(root.is(DAV, "propfind"));
        let prop = root.elements().next().unwrap();
        let names: Vec<&Name> = prop.elements().map(|e| &e.name).collect();
        assert!(names[0].is(DAV, "getetag"));
        assert!(names[1].is("urn:a\"b<&", "a"));
        assert!(names[2].is("urn:default", "plain"));
    }

    #[test]
    fn text_and_attributes_resolve_only_predefined_and_character_references() {
        let root = parse(
            br#"<a k="1 &amp; &#x32;">x &lt; y &#233;<![CDATA[<raw>]]><!-- c --></a>"#,
            Limits::REQUEST,
        )
        .unwrap();
        assert_eq!(root.text(), "x < y é<raw>");
        assert_eq!(root.attributes[0].1, "1 & 2");
        assert_eq!(
            parse(b"<a>&foo;</a>", Limits::REQUEST),
            Err(XmlError::UnknownEntity("foo".into()))
        );
        assert_eq!(
            parse(br#"<a k="&foo;"/>"#, Limits::REQUEST),
            Err(XmlError::UnknownEntity("foo".into()))
        );
    }

    #[test]
    fn doctypes_are_refused() {
        let xxe = br#"<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>"#;
        assert_eq!(parse(xxe, Limits::REQUEST), Err(XmlError::Doctype));
        assert_eq!(parse(b"<!DOCTYPE a><a/>", Limits::REQUEST), Err(XmlError::Doctype));
    }

    #[test]
    fn limits_hold() {
        let limits = Limits {
            max_bytes: 1000,
            max_depth: 3,
            max_elements: 4,
        };
        assert!(parse(b"<a><b><c/></b></a>", limits).is_ok());
        assert_eq!(
            parse(b"<a><b><c><d/></c></b></a>", limits),
            Err(XmlError::TooDeep { limit: 3 })
        );
        assert_eq!(
            parse(b"<a><b/><b/><b/><b/></a>", limits),
            Err(XmlError::TooManyElements { limit: 4 })
        );
        assert_eq!(parse(&[b' '; 1001], limits), Err(XmlError::TooLarge { limit: 1000 }));
        let deep = "<a>".repeat(100_000);
        assert_eq!(
            parse(deep.as_bytes(), Limits::LISTING),
            Err(XmlError::TooDeep { limit: 64 })
        );
        let many: String = (0..100).map(|i| format!(" a{i}=\"\"")).collect();
        assert_eq!(
            parse(format!("<a{many}/>").as_bytes(), Limits::REQUEST),
            Err(XmlError::TooManyAttributes { limit: MAX_ATTRIBUTES })
        );
        let nested: String = (0..40)
            .map(|i| format!("<a xmlns:p{i}=\"u\" xmlns:q{i}=\"u\">"))
            .collect();
        assert_eq!(
            parse(nested.as_bytes(), Limits::REQUEST),
            Err(XmlError::TooManyNamespaces { limit: MAX_NAMESPACES })
        );
    }

    #[test]
    fn malformed_documents_are_errors() {
        for bad in [
            &b""[..],
            b"   ",
            b"not xml",
            b"<a>",
            b"<a></b>",
            b"</a>",
            b"<a/><b/>",
            b"<a/>text",
            b"<p:a/>",
            b"<a x='1' x='2'/>",
            b"<a\"b/>",
            b"<a&b/>",
            b"<a:/>",
            b"<:a/>",
            b"<1a/>",
            b"<a k\"='1'/>",
            b"<a xmlns:='u'/>",
            b"<a xmlns:p:q='u'/>",
            b"<a xmlns:p=''/>",
            b"<a xmlns:xml='urn:x'/>",
            b"<a xmlns:xmlns='urn:x'/>",
            b"<a xmlns:p='http://www.w3.org/XML/1998/namespace'/>",
            b"\xff\xfe<\x00a\x00/\x00>\x00",
        ] {
            assert!(
                parse(bad, Limits::REQUEST).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn escaping_covers_quotes() {
        assert_eq!(escape(r#"a"b<c>&'d"#), "a&quot;b&lt;c&gt;&amp;&apos;d");
        let mut out = String::new();
        push_escaped(&mut out, "plain");
        push_escaped(&mut out, "\"");
        assert_eq!(out, "plain&quot;");
    }
}
