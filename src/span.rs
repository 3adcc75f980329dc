//! The span record: what a finished exchange becomes, before export.
//!
//! App threads build a [`SpanRecord`] (plain owned data, no OpenTelemetry
//! machinery, no thread-locals) and hand it to the export pipeline; the
//! export worker converts it to OTLP or to a span-dump line. Keeping the
//! record independent of the SDK keeps the hook path cheap and lets the
//! record be built in `atexit` handlers where SDK thread-locals may be gone.

use std::sync::Arc;
use std::time::SystemTime;

/// A span's kind, as in the OpenTelemetry data model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// The spelling of the Lumigo Python distribution's span dump.
    pub fn dump_name(self) -> &'static str {
        match self {
            SpanKind::Internal => "SpanKind.INTERNAL",
            SpanKind::Server => "SpanKind.SERVER",
            SpanKind::Client => "SpanKind.CLIENT",
            SpanKind::Producer => "SpanKind.PRODUCER",
            SpanKind::Consumer => "SpanKind.CONSUMER",
        }
    }
}

/// A span's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanStatus {
    Unset,
    Ok,
    Error(String),
}

/// The text of a string attribute, without a copy where one can be avoided:
/// constants (method names, schemes) are borrowed for the program's life,
/// and text shared by every span of a connection (the peer's address) is
/// reference-counted; short copies (a path, a host name) are held inline, so
/// a span does not allocate for them. Compares, hashes and prints as the
/// `str` it holds.
#[derive(Clone)]
pub enum Text {
    Static(&'static str),
    Owned(String),
    Shared(Arc<str>),
    Inline(InlineText),
}

/// Up to [`InlineText::CAPACITY`] bytes of text stored in place: as large
/// as fits beside the enum's tag without making a [`Text`] bigger than a
/// `String` plus its tag.
#[derive(Clone, Copy)]
pub struct InlineText {
    len: u8,
    bytes: [u8; InlineText::CAPACITY],
}

impl InlineText {
    pub const CAPACITY: usize = 30;

    /// `None` when `s` is too long.
    pub fn new(s: &str) -> Option<InlineText> {
        if s.len() > Self::CAPACITY {
            return None;
        }
        let mut bytes = [0u8; Self::CAPACITY];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(InlineText {
            len: s.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        let bytes = &self.bytes[..usize::from(self.len)];
        // SAFETY: `new` is the only constructor and copies the first `len`
        // bytes from a `str`, so they are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

const _: () = assert!(std::mem::size_of::<Text>() == 32);

impl Text {
    /// A copy of `s`: inline when short, else on the heap.
    pub fn copy(s: &str) -> Text {
        match InlineText::new(s) {
            Some(inline) => Text::Inline(inline),
            None => Text::Owned(s.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Owned(s) => s,
            Text::Shared(s) => s,
            Text::Inline(s) => s.as_str(),
        }
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}
impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::Owned(s)
    }
}
impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text::Static(s)
    }
}

impl Default for Text {
    fn default() -> Text {
        Text::Static("")
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(Text),
    Int(i64),
    Bool(bool),
}

impl AttrValue {
    /// A constant string, stored without a copy.
    pub const fn from_static(s: &'static str) -> AttrValue {
        AttrValue::Str(Text::Static(s))
    }

    /// A reference-counted string, shared without a copy.
    pub fn shared(s: &Arc<str>) -> AttrValue {
        AttrValue::Str(Text::Shared(Arc::clone(s)))
    }
}

impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::Str(Text::Owned(v))
    }
}
impl From<&str> for AttrValue {
    fn from(v: &str) -> Self {
        AttrValue::Str(Text::copy(v))
    }
}
impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}
impl From<u16> for AttrValue {
    fn from(v: u16) -> Self {
        AttrValue::Int(i64::from(v))
    }
}
impl From<u64> for AttrValue {
    fn from(v: u64) -> Self {
        AttrValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}

/// The attributes of a span, in the order they were set.
pub type Attributes = Vec<(&'static str, AttrValue)>;

/// Room for the attributes of a usual span (12 to 15 for HTTP); the rare
/// span with more grows its vector once. Queued spans hold this memory until
/// exported, so it is not sized for the worst case.
pub const ATTRIBUTES_CAPACITY: usize = 16;

/// Trace context of a span: ids, flags and the W3C `tracestate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// W3C trace flags; bit 0 is "sampled".
    pub trace_flags: u8,
    /// The raw `tracestate` header value, carried along unchanged.
    pub trace_state: Option<String>,
}

impl SpanContext {
    pub fn is_sampled(&self) -> bool {
        self.trace_flags & 1 == 1
    }
}

/// A link from a span to another span's context: for a CONSUMER span, the
/// context its message carried (the PRODUCER span in another process).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanLink {
    pub context: SpanContext,
    /// The linked context came from another process.
    pub remote: bool,
}

/// A finished span, ready for export.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    pub name: Text,
    pub kind: SpanKind,
    pub context: SpanContext,
    pub parent_span_id: Option<[u8; 8]>,
    /// True when the parent came from another process (a `traceparent`).
    pub parent_is_remote: bool,
    pub start: SystemTime,
    pub end: SystemTime,
    pub status: SpanStatus,
    pub attributes: Attributes,
    /// Empty for most spans; a CONSUMER span's one link names the context
    /// its message carried.
    pub links: Vec<SpanLink>,
    /// Attributes the span's connection gives every span of it, already
    /// encoded for OTLP (once per connection, not once per span).
    pub encoded: Option<EncodedRun>,
}

/// A run of a span's attributes, `attributes[at..at + count]`, and the same
/// attributes encoded as OTLP `Span.attributes` fields (field 9). The
/// attributes stay in the record for everything else that reads them
/// (filters, the span dump, tests); the OTLP encoder copies `bytes` in
/// their place. Whoever changes those attributes drops the run.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedRun {
    pub at: usize,
    pub count: usize,
    pub bytes: Arc<[u8]>,
}

impl SpanRecord {
    /// The value of an attribute, for tests and filters.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_copies_are_inline_and_read_back_exactly() {
        let fits = "/index.html?a=1&b=2&c=3&d=45xy";
        assert_eq!(fits.len(), InlineText::CAPACITY);
        for s in ["", "a", "é/ü ☃", fits] {
            let t = Text::copy(s);
            assert!(matches!(t, Text::Inline(_)), "{s:?}");
            assert_eq!(t.as_str(), s);
            assert_eq!(t, Text::Owned(s.to_owned()));
            assert_eq!(
                AttrValue::from(s),
                AttrValue::Str(Text::Owned(s.to_owned()))
            );
        }
        let long = format!("{fits}z");
        let t = Text::copy(&long);
        assert!(matches!(t, Text::Owned(_)));
        assert_eq!(t, long.as_str());
        assert_eq!(format!("{:?}", Text::copy("a\"b")), format!("{:?}", "a\"b"));
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0a, 0xff]), "000aff");
    }
}
