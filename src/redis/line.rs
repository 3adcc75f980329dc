//! One line of RESP (`+OK\r\n`, `$5\r\n`, an inline command), read across
//! calls and kept up to a cap: the rest of a long line is counted, not kept.

/// A line being read. RESP ends lines with CRLF; a bare LF is accepted too
/// (as Redis does for inline commands) and a CR before it is not content.
#[derive(Debug, Default)]
pub(crate) struct Line {
    kept: Vec<u8>,
    cap: usize,
    /// Bytes of the line seen so far, kept or not, including a trailing CR.
    seen: u64,
    last: u8,
}

impl Line {
    /// Starts a new line, keeping at most `cap` bytes of it.
    pub(crate) fn start(&mut self, cap: usize) {
        self.kept.clear();
        self.cap = cap;
        self.seen = 0;
        self.last = 0;
    }

    /// Takes bytes up to and including the line's LF. Returns how many were
    /// taken once the line is complete, `None` (all taken) while it is not.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Option<usize> {
        match data.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.take(data.get(..i).unwrap_or_default());
                Some(i + 1)
            }
            None => {
                self.take(data);
                None
            }
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        if let Some(&b) = bytes.last() {
            self.last = b;
        }
        self.seen = self.seen.saturating_add(bytes.len() as u64);
        let room = self.cap.saturating_sub(self.kept.len());
        self.kept
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
    }

    /// Length of the complete line's content (without CR LF).
    pub(crate) fn len(&self) -> u64 {
        self.seen - u64::from(self.seen > 0 && self.last == b'\r')
    }

    /// The kept part of the content.
    pub(crate) fn content(&self) -> &[u8] {
        let n = usize::try_from(self.len()).unwrap_or(usize::MAX);
        self.kept.get(..n.min(self.kept.len())).unwrap_or_default()
    }

    /// Whether the whole content was kept.
    pub(crate) fn complete(&self) -> bool {
        self.content().len() as u64 == self.len()
    }

    /// Bytes held.
    pub(crate) fn buffered(&self) -> usize {
        self.kept.len()
    }

    /// Frees the buffer (when tracing stops).
    pub(crate) fn release(&mut self) {
        self.kept = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_calls() {
        let mut l = Line::default();
        l.start(16);
        assert_eq!(l.feed(b"+O"), None);
        assert_eq!(l.feed(b"K\r"), None);
        assert_eq!(l.feed(b"\nrest"), Some(1));
        assert_eq!(l.content(), b"+OK");
        assert!(l.complete());

        l.start(16);
        assert_eq!(l.feed(b"a\n"), Some(2));
        assert_eq!(l.content(), b"a");

        l.start(16);
        assert_eq!(l.feed(b"\r\n"), Some(2));
        assert_eq!(l.content(), b"");
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn long_lines_are_counted_not_kept() {
        let mut l = Line::default();
        l.start(4);
        assert_eq!(l.feed(b"abcdefgh"), None);
        assert_eq!(l.feed(b"ij\r\n"), Some(4));
        assert_eq!(l.content(), b"abcd");
        assert_eq!(l.len(), 10);
        assert!(!l.complete());
        assert_eq!(l.buffered(), 4);
        // A cap that ends on the CR.
        l.start(3);
        assert_eq!(l.feed(b"ab\r\n"), Some(4));
        assert_eq!(l.content(), b"ab");
        assert!(l.complete());
    }
}
