//! The text of a body for its attribute: decoded (`gzip`, `deflate`),
//! summarised when binary, masked by kind (JSON, multipart, form), cut.

use std::borrow::Cow;

use super::mask_json;
use crate::config::cut_str;
use crate::mask::{Masker, MASK};

/// The text of a body for its attribute: `kept` is the first bytes of its
/// content, `size` its whole size. Masked (see the module docs), then cut
/// to `limit` bytes.
pub fn body_text(
    kept: &[u8],
    size: u64,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    masker: &Masker,
    limit: usize,
) -> String {
    // Media types are nearly always written in lower case already.
    let kind = content_type.unwrap_or_default();
    let kind: Cow<'_, str> = if kind.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(kind.to_ascii_lowercase())
    } else {
        Cow::Borrowed(kind)
    };
    let encoding = content_encoding
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
    let inflated;
    let (bytes, cut) = match encoding {
        None => (Some(kept), (kept.len() as u64) < size),
        Some(encoding) => match inflate(kept, encoding, limit) {
            Some((text, cut)) => {
                inflated = text;
                (Some(&inflated[..]), cut || (kept.len() as u64) < size)
            }
            None => (None, true),
        },
    };
    let text = match bytes {
        Some(bytes) if !binary_type(&kind) => text_of(bytes, cut),
        _ => None,
    };
    let Some(text) = text else {
        let media = kind.split(';').next().unwrap_or_default().trim();
        let summary = if media.is_empty() {
            format!("<binary body: {size} bytes>")
        } else {
            format!("<binary body: {size} bytes, {media}>")
        };
        return cut_str(&summary, limit).to_owned();
    };
    if masker.masks_everything() {
        return cut_str(MASK, limit).to_owned();
    }
    let trimmed = text.trim_start();
    let boundary = kind
        .starts_with("multipart/")
        .then(|| multipart_boundary(content_type.unwrap_or_default()))
        .flatten();
    let masked = if let Some(boundary) = boundary {
        mask_multipart(text, boundary, masker)
    } else if names_json(&kind) || trimmed.starts_with(['{', '[']) {
        mask_json(text, masker)
    } else {
        masker.mask_query(text)
    };
    crate::spare::copy(cut_str(&masked, limit))
}

/// Adds to `out` the values [`body_text`] masks in a body (with the same
/// masker): JSON values of secret keys, form fields and multipart parts of
/// secret names, decoded first as `body_text` decodes it. Nothing for a
/// body it shows whole as text (no secret to find) or summarises.
pub(super) fn body_secrets(
    kept: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    masker: &Masker,
    limit: usize,
    out: &mut Vec<String>,
) {
    if kept.is_empty() || masker.masks_everything() {
        return;
    }
    let kind = content_type.unwrap_or_default().to_ascii_lowercase();
    let encoding = content_encoding
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
    let inflated;
    let bytes = match encoding {
        None => kept,
        Some(encoding) => match inflate(kept, encoding, limit) {
            Some((text, _)) => {
                inflated = text;
                &inflated[..]
            }
            None => return,
        },
    };
    let text = String::from_utf8_lossy(bytes);
    let boundary = kind
        .starts_with("multipart/")
        .then(|| multipart_boundary(content_type.unwrap_or_default()))
        .flatten();
    if let Some(boundary) = boundary {
        let _ = mask_multipart_noting(&text, boundary, masker, &mut |value| {
            super::add_secret(out, value)
        });
    } else if names_json(&kind) || text.trim_start().starts_with(['{', '[']) {
        super::json::json_secrets(&text, masker, out);
    } else if memchr::memchr(b'=', bytes).is_some() {
        super::form_secrets(&text, masker, out);
    }
}

/// Whether a (lower-case) media type says `json` anywhere: compared as
/// bytes, which costs less than a substring search on a type this short.
fn names_json(kind: &str) -> bool {
    kind.as_bytes()
        .windows(4)
        .any(|w| matches!(w, [b'j', b's', b'o', b'n']))
}

/// The `boundary` parameter of a multipart media type, as written.
fn multipart_boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

/// Masks the content of every part of a multipart body whose field name
/// (`Content-Disposition: form-data; name="…"`) is secret; a part the
/// text cuts short is masked too if its name is. Everything else is kept.
fn mask_multipart<'a>(text: &'a str, boundary: &str, masker: &Masker) -> Cow<'a, str> {
    mask_multipart_noting(text, boundary, masker, &mut |_| {})
}

/// [`mask_multipart`], telling `noted` the content of each part it masks.
fn mask_multipart_noting<'a>(
    text: &'a str,
    boundary: &str,
    masker: &Masker,
    noted: &mut dyn FnMut(&str),
) -> Cow<'a, str> {
    let delimiter = format!("--{boundary}");
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut from = 0;
    while let Some(at) = text.get(from..).and_then(|t| t.find(&delimiter)) {
        let part_start = from + at + delimiter.len();
        let part_end = text
            .get(part_start..)
            .and_then(|t| t.find(&delimiter))
            .map_or(text.len(), |i| part_start + i);
        let part = text.get(part_start..part_end).unwrap_or_default();
        // The part's headers end at its first empty line.
        let content = part
            .find("\r\n\r\n")
            .map(|i| i + 4)
            .or_else(|| part.find("\n\n").map(|i| i + 2));
        if let Some(content) = content {
            let headers = &part[..content];
            let secret = headers.lines().any(|line| {
                let lower = line.to_ascii_lowercase();
                lower.starts_with("content-disposition:")
                    && field_name(line).is_some_and(|n| masker.is_secret(n))
            });
            if secret {
                let body_start = part_start + content;
                // Up to the line end before the next delimiter.
                let body_end = if part_end == text.len() {
                    text.len()
                } else {
                    let before = text.get(body_start..part_end).unwrap_or_default();
                    body_start + before.trim_end_matches(['\r', '\n']).len()
                };
                if body_end > body_start {
                    noted(text.get(body_start..body_end).unwrap_or_default());
                    let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    out.push_str(text.get(copied..body_start).unwrap_or_default());
                    out.push_str(MASK);
                    copied = body_end;
                }
            }
        }
        from = part_end;
        if part_end == text.len() {
            break;
        }
    }
    match out {
        Some(mut out) => {
            out.push_str(text.get(copied..).unwrap_or_default());
            Cow::Owned(out)
        }
        None => Cow::Borrowed(text),
    }
}

/// The `name="…"` of a `Content-Disposition` line.
fn field_name(line: &str) -> Option<&str> {
    line.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("name")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// The first (up to `limit`) bytes that a `gzip` or `deflate` encoded
/// prefix decodes to, and whether there may be more; `None` for other
/// encodings, or when nothing decodes.
fn inflate(bytes: &[u8], encoding: &str, limit: usize) -> Option<(Vec<u8>, bool)> {
    use std::io::Read;
    let decode = |reader: &mut dyn Read| {
        let mut out = vec![0u8; limit];
        let mut n = 0;
        let mut cut = true;
        while n < limit {
            match reader.read(out.get_mut(n..).unwrap_or_default()) {
                Ok(0) => {
                    cut = false;
                    break;
                }
                Ok(k) => n += k,
                // A prefix ends inside the stream.
                Err(_) => break,
            }
        }
        out.truncate(n);
        (n > 0).then_some((out, cut))
    };
    if encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip") {
        decode(&mut flate2::read::MultiGzDecoder::new(bytes))
    } else if encoding.eq_ignore_ascii_case("deflate") {
        // The zlib format, as specified, else the raw deflate some servers send.
        decode(&mut flate2::read::ZlibDecoder::new(bytes))
            .or_else(|| decode(&mut flate2::read::DeflateDecoder::new(bytes)))
    } else {
        None
    }
}

/// Media types whose bodies are not text.
fn binary_type(kind: &str) -> bool {
    const BINARY: [&str; 12] = [
        "image/",
        "audio/",
        "video/",
        "font/",
        "application/octet-stream",
        "application/zip",
        "application/gzip",
        "application/pdf",
        "application/grpc",
        "application/protobuf",
        "application/x-protobuf",
        "application/msgpack",
    ];
    BINARY.iter().any(|b| kind.starts_with(b))
}

/// `bytes` as text, if they are: valid UTF-8 (a character cut short at the
/// end of a `cut` prefix is dropped) without control bytes other than
/// blanks.
fn text_of(bytes: &[u8], cut: bool) -> Option<&str> {
    let (control, ascii) = scan_text(bytes);
    if control {
        return None;
    }
    if ascii {
        // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    match std::str::from_utf8(bytes) {
        Ok(t) => Some(t),
        // An incomplete last character of a cut prefix.
        Err(e) if cut && e.error_len().is_none() => {
            std::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or_default()).ok()
        }
        Err(_) => None,
    }
}

/// Whether `b` holds a control byte other than a blank (tab, line feed,
/// form feed, carriage return), and whether all of it is ASCII (then it
/// is text without a UTF-8 check), in one pass. On x86-64 16 bytes are
/// checked at a time (SSE2), the last block overlapping the one before it.
fn scan_text(b: &[u8]) -> (bool, bool) {
    let control = |x: u8| (x < 0x20 && !matches!(x, b'\t' | b'\n' | b'\r' | 0x0c)) || x == 0x7f;
    #[cfg(target_arch = "x86_64")]
    if b.len() >= 16 {
        use std::arch::x86_64::{
            _mm_andnot_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8, _mm_setzero_si128, _mm_subs_epu8,
        };
        // (control bytes, bytes of 0x80 and above) among the 16 at `at`.
        let block = |at: usize| -> (i32, i32) {
            debug_assert!(at + 16 <= b.len());
            // SAFETY: SSE2 is part of x86-64; the 16 bytes at `at` are in
            // `b` (the loop keeps `at + 16 <= len`); unaligned loads are
            // allowed.
            unsafe {
                let v = _mm_loadu_si128(b.as_ptr().add(at).cast());
                let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
                // Below 0x20: saturating `v - 0x1f` is zero.
                let low =
                    _mm_cmpeq_epi8(_mm_subs_epu8(v, _mm_set1_epi8(0x1f)), _mm_setzero_si128());
                let blank = _mm_or_si128(
                    _mm_or_si128(eq(b'\t'), eq(b'\n')),
                    _mm_or_si128(eq(b'\r'), eq(0x0c)),
                );
                (
                    _mm_movemask_epi8(_mm_or_si128(_mm_andnot_si128(blank, low), eq(0x7f))),
                    _mm_movemask_epi8(v),
                )
            }
        };
        let (mut at, mut high) = (0, 0);
        while at + 16 <= b.len() {
            let (c, h) = block(at);
            if c != 0 {
                return (true, false);
            }
            high |= h;
            at += 16;
        }
        if at < b.len() {
            let (c, h) = block(b.len() - 16);
            if c != 0 {
                return (true, false);
            }
            high |= h;
        }
        return (false, high == 0);
    }
    (b.iter().any(|&x| control(x)), b.is_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_type_names_json_anywhere() {
        for (kind, want) in [
            ("application/json", true),
            ("application/vnd.api+json; charset=utf-8", true),
            ("json", true),
            ("text/jso", false),
            ("text/html", false),
            ("", false),
            ("j", false),
        ] {
            assert_eq!(names_json(kind), want, "{kind}");
            assert_eq!(names_json(kind), kind.contains("json"), "{kind}");
        }
    }

    #[test]
    fn control_and_non_ascii_bytes_are_found_at_every_offset_and_length() {
        let plain =
            |x: u8| !((x < 0x20 && !matches!(x, b'\t' | b'\n' | b'\r' | 0x0c)) || x == 0x7f);
        for len in 0..70 {
            let text = vec![b'a'; len];
            assert_eq!(scan_text(&text), (false, true), "{len}");
            for at in 0..len {
                for byte in (0..=0xff).step_by(1) {
                    let mut t = text.clone();
                    t[at] = byte;
                    let (control, ascii) = scan_text(&t);
                    assert_eq!(control, !plain(byte), "{byte:#x} at {at} of {len}");
                    if !control {
                        assert_eq!(ascii, byte < 0x80, "{byte:#x} at {at} of {len}");
                    }
                }
            }
        }
    }

    #[test]
    fn text_is_ascii_or_checked_utf8() {
        assert_eq!(
            text_of(b"plain ascii text, longer than sixteen", false),
            Some("plain ascii text, longer than sixteen")
        );
        let e_acute = "caf\u{e9} au lait, then some more";
        assert_eq!(text_of(e_acute.as_bytes(), false), Some(e_acute));
        // Not UTF-8, past the SIMD blocks' first one and in a short tail.
        assert_eq!(text_of(b"0123456789abcdef\xff and more", false), None);
        assert_eq!(text_of(b"short \xc3", false), None);
        // A character cut by the prefix's end: the text before it.
        assert_eq!(
            text_of(
                "abcdefghijklmnop\u{e9}".as_bytes().split_last().unwrap().1,
                true
            ),
            Some("abcdefghijklmnop")
        );
        assert_eq!(text_of(b"a control \x01 byte in it here", false), None);
    }
}
