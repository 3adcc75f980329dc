//! Where a `traceparent` line goes into an outbound request head.
//!
//! The line is inserted just before the empty line that ends the head, so
//! every header the app wrote has been seen by then: an app that already
//! sends `traceparent` (any case), or signs the request with AWS SigV4, is
//! left untouched. The insertion point is found as soon as its first byte
//! is in the bytes about to be written: after a line feed, a header line
//! can never start with CR or LF, so that byte begins the empty line.

/// What [`find_insertion`] found in the bytes about to be written.
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
}

/// Looks for the start of the head's empty line in `pieces` (the bytes of
/// one write, in order), given the head bytes already sent (`head_so_far`).
/// `None` if the head does not end in these bytes (or passes `limit`).
pub fn find_insertion(head_so_far: &[u8], pieces: &[&[u8]], limit: usize) -> Option<Insertion> {
    let mut prev = head_so_far.last().copied();
    // Leading blank lines before a request line are skipped by receivers;
    // they are not the end of a head.
    let mut seen_text = head_so_far.iter().any(|b| !matches!(b, b'\r' | b'\n'));
    let mut offset = 0usize;
    let budget = limit.saturating_sub(head_so_far.len());
    for piece in pieces {
        for &b in piece.iter() {
            if offset >= budget {
                return None;
            }
            let blank = matches!(b, b'\r' | b'\n');
            if seen_text && prev == Some(b'\n') && blank {
                let mut head = Vec::with_capacity(head_so_far.len() + offset);
                head.extend_from_slice(head_so_far);
                let mut left = offset;
                for p in pieces {
                    let take = left.min(p.len());
                    head.extend_from_slice(&p[..take]);
                    left -= take;
                }
                return Some(inspect(&head, offset, b == b'\r'));
            }
            seen_text |= !blank;
            prev = Some(b);
            offset += 1;
        }
    }
    None
}

/// Reads the header lines of a head (request line first, no empty line).
fn inspect(head: &[u8], offset: usize, crlf: bool) -> Insertion {
    let mut found = Insertion {
        offset,
        crlf,
        leave_alone: false,
        traceparent: None,
        tracestate: None,
    };
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty());
    if let Some(request_line) = lines.next() {
        // A tunnel request is for the proxy, not the service behind it.
        if request_line.starts_with(b"CONNECT ") {
            found.leave_alone = true;
        }
    }
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let value = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_owned();
        if name.eq_ignore_ascii_case(b"traceparent") {
            found.leave_alone = true;
            found.traceparent.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b"tracestate") {
            found.tracestate.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b"x-amz-content-sha256")
            || (name.eq_ignore_ascii_case(b"authorization")
                && value.starts_with("AWS4-HMAC-SHA256"))
        {
            found.leave_alone = true;
        }
    }
    found
}

/// The header line(s) to insert for a request whose span is `traceparent`.
pub fn header_lines(traceparent: &str, tracestate: Option<&str>, crlf: bool) -> Vec<u8> {
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"traceparent: ");
    out.extend_from_slice(traceparent.as_bytes());
    out.extend_from_slice(eol);
    if let Some(state) = tracestate {
        out.extend_from_slice(b"tracestate: ");
        out.extend_from_slice(state.as_bytes());
        out.extend_from_slice(eol);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";

    /// The insertion point is the same whichever way the head is split
    /// between what was already sent and what is being written.
    #[test]
    fn found_at_the_empty_line_for_every_split() {
        let end = HEAD.len() - 2;
        for split in 0..HEAD.len() {
            let (sent, rest) = HEAD.split_at(split);
            let found = find_insertion(sent, &[rest], 16 * 1024);
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
        let f = find_insertion(b"", &pieces, 16 * 1024).unwrap();
        assert_eq!(f.offset, HEAD.len() - 2);
    }

    #[test]
    fn head_without_headers_and_bare_lf() {
        let f = find_insertion(b"", &[b"GET / HTTP/1.0\r\n\r\n"], 1024).unwrap();
        assert_eq!(f.offset, 16);
        let f = find_insertion(b"", &[b"GET / HTTP/1.1\nHost: a\n\nbody"], 1024).unwrap();
        assert_eq!(f.offset, 23);
        assert!(!f.crlf);
    }

    #[test]
    fn body_after_the_head_does_not_matter() {
        let f = find_insertion(
            b"",
            &[b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\r\n\r\n"],
            1024,
        )
        .unwrap();
        assert_eq!(f.offset, 36);
    }

    #[test]
    fn existing_traceparent_any_case_is_left_alone() {
        let f = find_insertion(
            b"",
            &[b"GET / HTTP/1.1\r\nTraceParent: 00-abc\r\ntracestate: k=v\r\n\r\n"],
            1024,
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
            assert!(find_insertion(b"", &[head], 1024).unwrap().leave_alone);
        }
        let plain = b"GET /b HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n";
        assert!(!find_insertion(b"", &[plain], 1024).unwrap().leave_alone);
    }

    #[test]
    fn incomplete_head_or_past_the_limit() {
        assert_eq!(
            find_insertion(b"", &[b"GET / HTTP/1.1\r\nHost: x\r\n"], 1024),
            None
        );
        assert_eq!(find_insertion(b"", &[HEAD], 10), None);
        assert_eq!(
            find_insertion(b"", &[b"\r\n\r\n"], 1024),
            None,
            "leading blank lines"
        );
    }

    #[test]
    fn lines_to_insert() {
        assert_eq!(header_lines("00-x", None, true), b"traceparent: 00-x\r\n");
        assert_eq!(
            header_lines("00-x", Some("a=b"), false),
            b"traceparent: 00-x\ntracestate: a=b\n"
        );
    }
}
