//! Where a `traceparent` line goes into an outbound request head, and
//! where a forwarded one sits.
//!
//! The line is inserted just before the empty line that ends the head, so
//! every header the app wrote has been seen by then: an app that already
//! sends `traceparent` (any case), or signs the request with AWS SigV4, is
//! left untouched. The insertion point is found as soon as its first byte
//! is in the bytes about to be written: after a line feed, a header line
//! can never start with CR or LF, so that byte begins the empty line.
//!
//! Heads of any length are scanned: what was sent before the bytes being
//! written is what the parser kept of it (`SentHead`: the first
//! [`MAX_HEAD_BYTES`](super::MAX_HEAD_BYTES) bytes, and the header lines
//! that matter from past them), so a `traceparent` past the cap is seen too.
//! The bytes being written are read line by line without copying more than
//! the start of each line.

use super::parser::Beyond;
use super::MAX_FIELD_BYTES;

/// What was sent of the request head before the bytes being written.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SentHead<'a> {
    /// Its first bytes (all of them, unless the head passed the cap), from
    /// the first byte that is not a leading blank line.
    pub kept: &'a [u8],
    /// Past the cap: the lines that matter, and the line in progress.
    pub beyond: Option<&'a Beyond>,
    /// The last byte sent was a line feed.
    pub after_lf: bool,
    /// The last bytes sent were a line feed and a CR: the head's empty line
    /// has begun.
    pub after_lf_cr: bool,
}

/// What `scan_head` found: where the head ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insertion {
    /// Offset, in the bytes about to be written, where the line goes.
    pub offset: usize,
    /// The head ends lines with CRLF (else bare LF): the inserted line does too.
    pub crlf: bool,
    /// The whole head before the insertion point says not to inject.
    pub leave_alone: bool,
    /// The app's own `traceparent` value, if it sent one.
    pub traceparent: Option<String>,
    /// The app's own `tracestate` value, if it sent one.
    pub tracestate: Option<String>,
    /// Headers of other propagators the app sent (they keep their values).
    pub present: crate::propagators::Present,
}

/// The head's first `traceparent` value, when all of it lies in the bytes
/// about to be written (so it can still be replaced in place).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueAt {
    /// Offset of the value's first byte in the bytes about to be written.
    pub offset: usize,
    /// The value, without surrounding blanks.
    pub value: Vec<u8>,
}

/// What `scan_head` found in the bytes about to be written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadScan {
    /// The head ends in these bytes: where the line goes, and what the
    /// head says.
    pub end: Option<Insertion>,
    /// The head's first `traceparent`, if its value lies in these bytes
    /// (looked for only when asked).
    pub traceparent: Option<ValueAt>,
}

/// Most bytes of one line looked at (a value a span keeps, and its name).
const LINE_BYTES: usize = MAX_FIELD_BYTES + 64;

/// Looks for the start of the head's empty line in `pieces` (the bytes of
/// one write, in order), given what was sent of the head before them; and,
/// with `want_traceparent`, for a `traceparent` header in them.
pub(crate) fn scan_head(sent: SentHead<'_>, pieces: &[&[u8]], want_traceparent: bool) -> HeadScan {
    let end = find_end(sent, pieces);
    if end.is_none() && !want_traceparent {
        return HeadScan::default();
    }
    let limit = end.map(|(offset, _)| offset);
    let mut found = Insertion {
        offset: limit.unwrap_or(0),
        crlf: end.is_some_and(|(_, crlf)| crlf),
        leave_alone: false,
        traceparent: None,
        tracestate: None,
        present: Default::default(),
    };
    let mut here = None;
    // Past the cap, the kept bytes' unfinished line is in `beyond`.
    let tail_start = memchr::memrchr(b'\n', sent.kept).map_or(0, |i| i + 1);
    // Lines sent before: complete lines of what was kept, then those kept
    // past the cap.
    for line in sent.kept[..tail_start].split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        inspect_line(line.strip_suffix(b"\r").unwrap_or(line), &mut found);
    }
    if let Some(beyond) = sent.beyond {
        for (name, value) in beyond.lines() {
            inspect_header(name, value, &mut found);
        }
    }
    // The line in progress, then the lines of these bytes.
    let tail = match sent.beyond {
        Some(b) => b.line_so_far(),
        None => &sent.kept[tail_start..],
    };
    let mut line: Vec<u8> = Vec::new();
    let mut line_cut = false;
    let mut line_start: isize = -(tail.len() as isize);
    push_capped(&mut line, &mut line_cut, tail);
    let mut pos = 0usize;
    'pieces: for piece in pieces {
        let mut rest = *piece;
        while !rest.is_empty() {
            let room = limit.map_or(usize::MAX, |l| l.saturating_sub(pos));
            if room == 0 {
                break 'pieces;
            }
            let window = &rest[..rest.len().min(room)];
            match memchr::memchr(b'\n', window) {
                Some(i) => {
                    push_capped(&mut line, &mut line_cut, &window[..i]);
                    if !line_cut {
                        let full = line.strip_suffix(b"\r").unwrap_or(&line);
                        let first_tp = found.traceparent.is_none();
                        inspect_line(full, &mut found);
                        if want_traceparent && first_tp && found.traceparent.is_some() {
                            here = value_at(full, line_start);
                        }
                    }
                    line.clear();
                    line_cut = false;
                    pos += i + 1;
                    line_start = pos as isize;
                    rest = &rest[i + 1..];
                }
                None => {
                    push_capped(&mut line, &mut line_cut, window);
                    pos += window.len();
                    rest = &rest[window.len()..];
                }
            }
        }
    }
    HeadScan {
        end: end.map(|_| found),
        traceparent: here,
    }
}

/// The offset of the value of `line` (a `traceparent` header line starting
/// at `line_start` in the bytes being written), if it lies in those bytes.
fn value_at(line: &[u8], line_start: isize) -> Option<ValueAt> {
    let colon = memchr::memchr(b':', line)?;
    let after = &line[colon + 1..];
    let lead = after
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(after.len());
    let value = after[lead..].trim_ascii_end();
    let offset = line_start + (colon + 1 + lead) as isize;
    (offset >= 0 && !value.is_empty()).then(|| ValueAt {
        offset: offset as usize,
        value: value.to_vec(),
    })
}

fn push_capped(line: &mut Vec<u8>, cut: &mut bool, bytes: &[u8]) {
    let room = LINE_BYTES.saturating_sub(line.len());
    *cut |= bytes.len() > room;
    line.extend_from_slice(&bytes[..room.min(bytes.len())]);
}

/// Where the head's empty line starts in `pieces`, and whether it is a CRLF.
fn find_end(sent: SentHead<'_>, pieces: &[&[u8]]) -> Option<(usize, bool)> {
    // Leading blank lines before a request line are skipped by receivers;
    // they are not the end of a head.
    let mut seen_text = !sent.kept.is_empty();
    let mut after_lf = sent.after_lf || !seen_text;
    if sent.after_lf_cr && pieces.iter().find_map(|p| p.first()) == Some(&b'\n') {
        // The empty line began in the last write and ends here: past the
        // head, it is too late for a line (what follows is the body).
        return None;
    }
    let mut offset = 0usize;
    for piece in pieces {
        let mut i = 0;
        while i < piece.len() {
            if !after_lf {
                // Inside a line: on to its end.
                match memchr::memchr(b'\n', &piece[i..]) {
                    Some(j) => {
                        i += j + 1;
                        after_lf = true;
                    }
                    None => i = piece.len(),
                }
                continue;
            }
            let b = piece[i];
            let blank = matches!(b, b'\r' | b'\n');
            if seen_text && blank {
                return Some((offset + i, b == b'\r'));
            }
            seen_text |= !blank;
            after_lf = b == b'\n';
            i += 1;
        }
        offset += piece.len();
    }
    None
}

/// One line of the head (request line or header line, no line end).
fn inspect_line(line: &[u8], found: &mut Insertion) {
    // A tunnel request is for the proxy, not the service behind it.
    if line.starts_with(b"CONNECT ") {
        found.leave_alone = true;
        return;
    }
    let Some(colon) = memchr::memchr(b':', line) else {
        return;
    };
    inspect_header(&line[..colon], line[colon + 1..].trim_ascii(), found);
}

fn inspect_header(name: &[u8], value: &[u8], found: &mut Insertion) {
    found.present.note(name);
    if name.eq_ignore_ascii_case(b"traceparent") {
        found.leave_alone = true;
        found
            .traceparent
            .get_or_insert_with(|| String::from_utf8_lossy(value).into_owned());
    } else if name.eq_ignore_ascii_case(b"tracestate") {
        found
            .tracestate
            .get_or_insert_with(|| String::from_utf8_lossy(value).into_owned());
    } else if name.eq_ignore_ascii_case(b"x-amz-content-sha256")
        || (name.eq_ignore_ascii_case(b"authorization") && value.starts_with(b"AWS4-HMAC-SHA256"))
    {
        found.leave_alone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parser::{HeadKind, HeadReader, HeadStep};
    use crate::http::MAX_HEAD_BYTES;
    use std::time::SystemTime;

    /// Feeds `sent` to a request head reader (as the connection does with
    /// the bytes that went out), then scans `pieces` after it.
    fn scan(sent: &[u8], pieces: &[&[u8]], want_traceparent: bool) -> HeadScan {
        let mut reader = HeadReader::new(HeadKind::Request);
        let step = reader.feed(sent, SystemTime::UNIX_EPOCH);
        assert!(matches!(step, HeadStep::Partial), "{step:?}");
        scan_head(reader.sent_head(), pieces, want_traceparent)
    }

    fn find_insertion(sent: &[u8], pieces: &[&[u8]]) -> Option<Insertion> {
        scan(sent, pieces, false).end
    }

    const HEAD: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";

    /// The insertion point is the same whichever way the head is split
    /// between what was already sent and what is being written.
    #[test]
    fn found_at_the_empty_line_for_every_split() {
        let end = HEAD.len() - 2;
        for split in 0..HEAD.len() {
            let (sent, rest) = HEAD.split_at(split);
            let found = find_insertion(sent, &[rest]);
            if split <= end {
                let f = found.unwrap_or_else(|| panic!("split {split}"));
                assert_eq!(f.offset, end - split, "split {split}");
                assert!(f.crlf && !f.leave_alone);
            } else {
                assert_eq!(found, None, "split {split}: the empty line already started");
            }
        }
    }

    #[test]
    fn found_across_many_pieces() {
        let pieces: Vec<&[u8]> = HEAD.chunks(3).collect();
        let f = find_insertion(b"", &pieces).unwrap();
        assert_eq!(f.offset, HEAD.len() - 2);
    }

    #[test]
    fn head_without_headers_and_bare_lf() {
        let f = find_insertion(b"", &[b"GET / HTTP/1.0\r\n\r\n"]).unwrap();
        assert_eq!(f.offset, 16);
        let f = find_insertion(b"", &[b"GET / HTTP/1.1\nHost: a\n\nbody"]).unwrap();
        assert_eq!(f.offset, 23);
        assert!(!f.crlf);
    }

    /// The empty line's CR went out in one write and its LF in the next:
    /// what follows is body, even when it starts with a CR or LF, and no
    /// line may go there (the old scan put one into such a body).
    #[test]
    fn an_empty_line_cut_after_its_cr_gets_no_line_in_the_body() {
        let sent = b"GET / HTTP/1.1\r\nHost: a\r\n\r";
        assert_eq!(find_insertion(sent, &[b"\n\r\nbody"]), None);
        assert_eq!(find_insertion(sent, &[b"\n", b"\n\n"]), None);
    }

    #[test]
    fn body_after_the_head_does_not_matter() {
        let f = find_insertion(
            b"",
            &[b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\r\n\r\n"],
        )
        .unwrap();
        assert_eq!(f.offset, 36);
    }

    #[test]
    fn existing_traceparent_any_case_is_left_alone() {
        let f = find_insertion(
            b"",
            &[b"GET / HTTP/1.1\r\nTraceParent: 00-abc\r\ntracestate: k=v\r\n\r\n"],
        )
        .unwrap();
        assert!(f.leave_alone);
        assert_eq!(f.traceparent.as_deref(), Some("00-abc"));
        assert_eq!(f.tracestate.as_deref(), Some("k=v"));
    }

    #[test]
    fn sigv4_and_connect_are_left_alone() {
        for head in [
            &b"PUT /b HTTP/1.1\r\nx-amz-content-sha256: UNSIGNED\r\n\r\n"[..],
            b"GET /b HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=x\r\n\r\n",
            b"CONNECT host:443 HTTP/1.1\r\nHost: host:443\r\n\r\n",
        ] {
            assert!(find_insertion(b"", &[head]).unwrap().leave_alone);
        }
        let plain = b"GET /b HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n";
        assert!(!find_insertion(b"", &[plain]).unwrap().leave_alone);
    }

    #[test]
    fn incomplete_head_or_past_the_limit() {
        assert_eq!(
            find_insertion(b"", &[b"GET / HTTP/1.1\r\nHost: x\r\n"]),
            None
        );
        assert_eq!(
            find_insertion(b"", &[b"\r\n\r\n"]),
            None,
            "leading blank lines"
        );
    }

    /// A head with a 20 KiB cookie and, past the cap, a `traceparent` and
    /// `tracestate`.
    fn big_head(traceparent: &str) -> Vec<u8> {
        let mut h = b"GET /big HTTP/1.1\r\nHost: x\r\nCookie: c=".to_vec();
        h.resize(h.len() + 20 * 1024, b'a');
        h.extend_from_slice(b"\r\nTraceParent: ");
        h.extend_from_slice(traceparent.as_bytes());
        h.extend_from_slice(b"\r\ntracestate: k=v\r\nAccept: */*\r\n\r\n");
        h
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// The end of a head longer than the cap is found, and its own
    /// `traceparent` past the cap is seen, whichever way the head is split
    /// between what was already sent and what is being written.
    #[test]
    fn a_traceparent_past_the_cap_is_seen_at_every_split() {
        let head = big_head(TP);
        assert!(head.len() > MAX_HEAD_BYTES);
        let end = head.len() - 2;
        let tp_at = head.len() - TP.len() - 2 - b"\r\ntracestate: k=v\r\nAccept: */*\r\n".len();
        assert_eq!(&head[tp_at..tp_at + TP.len()], TP.as_bytes());
        for split in 0..=end {
            let (sent, rest) = head.split_at(split);
            let got = scan(sent, &[rest], true);
            let f = got.end.unwrap_or_else(|| panic!("split {split}"));
            assert_eq!(f.offset, end - split, "split {split}");
            assert!(f.leave_alone, "split {split}");
            assert_eq!(f.traceparent.as_deref(), Some(TP), "split {split}");
            assert_eq!(f.tracestate.as_deref(), Some("k=v"), "split {split}");
            let here = got.traceparent.map(|v| (v.offset, v.value));
            if split <= tp_at {
                assert_eq!(
                    here,
                    Some((tp_at - split, TP.as_bytes().to_vec())),
                    "split {split}"
                );
            } else {
                assert_eq!(
                    here, None,
                    "split {split}: part of the value already went out"
                );
            }
        }
    }

    #[test]
    fn a_head_past_the_cap_without_traceparent_gets_one_at_its_end() {
        let mut head = b"GET / HTTP/1.1\r\nCookie: ".to_vec();
        head.resize(40 * 1024, b'z');
        head.extend_from_slice(b"\r\nHost: h\r\n\r\n");
        let end = head.len() - 2;
        for split in (0..=end).step_by(97).chain(end - 40..=end) {
            let (sent, rest) = head.split_at(split);
            let pieces: Vec<&[u8]> = rest.chunks(1000).collect();
            let f = find_insertion(sent, &pieces).unwrap_or_else(|| panic!("split {split}"));
            assert_eq!(f.offset, end - split);
            assert!(!f.leave_alone && f.crlf);
        }
    }

    #[test]
    fn a_traceparent_in_a_write_that_does_not_end_the_head() {
        let got = scan(
            b"GET / HTTP/1.1\r\n",
            &[
                b"Host: h\r\ntraceparent:  ",
                TP.as_bytes(),
                b" \r\nA: b\r\n",
            ],
            true,
        );
        assert_eq!(got.end, None);
        let v = got.traceparent.unwrap();
        assert_eq!((v.offset, v.value.as_slice()), (23, TP.as_bytes()));
        // The second traceparent is not the one receivers use.
        let got = scan(
            b"GET / HTTP/1.1\r\ntraceparent: x\r\n",
            &[b"traceparent: ", TP.as_bytes(), b"\r\n\r\n"],
            true,
        );
        assert_eq!(got.traceparent, None);
        assert_eq!(got.end.unwrap().traceparent.as_deref(), Some("x"));
    }
}
