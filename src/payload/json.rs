//! Masking the values of secret keys in JSON text, tolerant of text cut
//! short or not quite JSON.

use std::borrow::Cow;

use crate::mask::Masker;

/// Masks the value of every secret key of a JSON text, at any depth, as
/// `"****"` (a secret object or array is masked whole). Tolerant: a text cut
/// short (a value it cuts is masked if its key is secret), or not quite
/// JSON (an unquoted value runs to the next `,`, `}` or `]`), is masked as
/// far as it goes. Borrows when nothing is secret.
pub fn mask_json<'a>(text: &'a str, masker: &Masker) -> Cow<'a, str> {
    mask_json_noting(text, masker, &mut |_| {})
}

/// The values [`mask_json`] masks in `text`, as they would read if echoed:
/// a string's content (as written, and with its escapes decoded), a bare
/// token as it stands (but `true`, `false` and `null`, which say nothing).
/// A secret object or array gives its string values, not its keys.
pub fn json_secrets(text: &str, masker: &Masker, out: &mut Vec<String>) {
    let _ = mask_json_noting(text, masker, &mut |value| {
        let b = value.as_bytes();
        match b.first() {
            Some(b'{' | b'[') => {
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'"' {
                        let end = string_end(b, i);
                        if b.get(skip_blanks(b, end)) != Some(&b':') {
                            note_string(value, i, end, out);
                        }
                        i = end;
                    } else {
                        i += 1;
                    }
                }
            }
            Some(b'"') => note_string(value, 0, b.len(), out),
            _ if matches!(value.trim(), "true" | "false" | "null") => {}
            _ => super::add_secret(out, value),
        }
    });
}

/// The string literal `text[start..end]`: its content as written and
/// decoded.
fn note_string(text: &str, start: usize, end: usize, out: &mut Vec<String>) {
    let literal = text.get(start..end).unwrap_or_default();
    let inner = literal.strip_prefix('"').unwrap_or(literal);
    super::add_secret(out, inner.strip_suffix('"').unwrap_or(inner));
    super::add_secret(out, &json_key(text, start, end));
}

/// [`mask_json`], telling `noted` each value it masks (as it stands in the
/// text).
fn mask_json_noting<'a>(
    text: &'a str,
    masker: &Masker,
    noted: &mut dyn FnMut(&str),
) -> Cow<'a, str> {
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    // Whether each open container is an object.
    let mut stack: Vec<bool> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'{' => {
                stack.push(true);
                expect_key = true;
                i += 1;
            }
            b'[' => {
                stack.push(false);
                expect_key = false;
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
                i += 1;
            }
            b',' => {
                expect_key = stack.last() == Some(&true);
                i += 1;
            }
            b'"' => {
                let end = string_end(b, i);
                if !expect_key {
                    i = end;
                    continue;
                }
                expect_key = false;
                let mut j = skip_blanks(b, end);
                if b.get(j) != Some(&b':') {
                    i = end;
                    continue;
                }
                j = skip_blanks(b, j + 1);
                if j < b.len() && masker.is_secret(&json_key(text, i, end)) {
                    let value_end = value_end(b, j);
                    noted(text.get(j..value_end).unwrap_or_default());
                    let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    out.push_str(text.get(copied..j).unwrap_or_default());
                    out.push_str("\"****\"");
                    copied = value_end;
                    i = value_end;
                } else {
                    i = j;
                }
            }
            _ => i += 1,
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

/// The index after the string literal starting at `start` (its closing
/// quote), or the text's end if it is not closed.
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The key of the string literal `text[start..end]`, escapes decoded.
fn json_key(text: &str, start: usize, end: usize) -> Cow<'_, str> {
    let literal = text.get(start..end).unwrap_or_default();
    if !literal.contains('\\') {
        let inner = literal.strip_prefix('"').unwrap_or(literal);
        return Cow::Borrowed(inner.strip_suffix('"').unwrap_or(inner));
    }
    match serde_json::from_str::<String>(literal) {
        Ok(key) => Cow::Owned(key),
        Err(_) => Cow::Borrowed(literal.trim_matches('"')),
    }
}

/// The index after the JSON value starting at `start` (the text's end if
/// it is cut short). A bare token (number, literal, or a value that is not
/// JSON) runs to the next `,`, `}` or `]`, blanks before it excluded.
fn value_end(b: &[u8], start: usize) -> usize {
    match b.get(start) {
        Some(b'"') => string_end(b, start),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = start;
            while let Some(&c) = b.get(i) {
                match c {
                    b'"' => {
                        i = string_end(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        _ => {
            let mut end = b
                .get(start..)
                .unwrap_or_default()
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']'))
                .map_or(b.len(), |p| start + p);
            while end > start && b.get(end - 1).is_some_and(u8::is_ascii_whitespace) {
                end -= 1;
            }
            end
        }
    }
}
