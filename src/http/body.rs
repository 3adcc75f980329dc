//! Message bodies: framing and streaming chunked decoding.
//!
//! Bodies are never buffered. A [`Body`] is told each piece of the stream as
//! it passes and says how much of it belonged to the body, how many bytes of
//! content that was, and whether the body ended there. The chunked decoder is
//! a byte-level state machine, so chunk-size lines, extensions, trailers and
//! CRLFs may be split at any byte; chunk data is skipped in one step
//! whatever its size.

/// How a message body is delimited, and how much of it is left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// `Content-Length`: this many bytes are left (never 0 at creation).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// A response with neither: the body ends when the connection closes.
    UntilClose,
}

/// What one [`Body::feed`] call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Bytes of the input that belong to this body (the rest start the next
    /// message).
    pub consumed: usize,
    /// Bytes of content among them (chunk data only, for chunked bodies).
    pub content: u64,
    /// The body ended within these bytes.
    pub done: bool,
}

/// The body's bytes broke its framing (a bad chunk size or missing CRLF),
/// or bytes that could not be seen fell outside what the framing can skip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FramingError;

impl Body {
    /// Takes the body's bytes from the front of `data`.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<Progress, FramingError> {
        self.feed_with(data, &mut |_| {})
    }

    /// As [`Body::feed`], handing each piece of content (decoded: chunk
    /// data without its framing) to `content` as it passes.
    pub(crate) fn feed_with(
        &mut self,
        data: &[u8],
        content: &mut dyn FnMut(&[u8]),
    ) -> Result<Progress, FramingError> {
        match self {
            Body::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                // `take` fits in u64 (usize is at most 64 bits wide).
                *left -= take as u64;
                content(data.get(..take).unwrap_or_default());
                Ok(Progress {
                    consumed: take,
                    content: take as u64,
                    done: *left == 0,
                })
            }
            Body::Chunked(decoder) => decoder.feed(data, content),
            Body::UntilClose => {
                content(data);
                Ok(Progress {
                    consumed: data.len(),
                    content: data.len() as u64,
                    done: false,
                })
            }
        }
    }

    /// Accounts for `n` bytes that passed unseen (`sendfile`). Only body
    /// content can be skipped blind; anything that would reach framing bytes
    /// or the next message is an error.
    pub(crate) fn skip(&mut self, n: u64) -> Result<Progress, FramingError> {
        let consumed = usize::try_from(n).map_err(|_| FramingError)?;
        match self {
            Body::Length(left) if n <= *left => {
                *left -= n;
                Ok(Progress {
                    consumed,
                    content: n,
                    done: *left == 0,
                })
            }
            Body::Chunked(decoder) => decoder.skip(n).map(|done| Progress {
                consumed,
                content: n,
                done,
            }),
            Body::UntilClose => Ok(Progress {
                consumed,
                content: n,
                done: false,
            }),
            Body::Length(_) => Err(FramingError),
        }
    }
}

/// Streaming decoder of `Transfer-Encoding: chunked` (RFC 9112 §7.1).
/// Lenient where peers are: bare LF line ends, whitespace before an
/// extension, extensions of any length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Chunked {
    state: ChunkState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size; `digits` read so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// After the size: whitespace or an extension, up to the line's LF.
    Extension {
        value: u64,
    },
    /// Size line ended by CR; expecting LF.
    SizeLf {
        value: u64,
    },
    /// Inside chunk data; this many bytes left.
    Data(u64),
    /// After chunk data; expecting CR (or a bare LF).
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Final line started with CR; expecting LF.
    TrailerLf,
    Done,
}

/// More hex digits than this cannot be a size that fits in u64.
const MAX_SIZE_DIGITS: u8 = 16;

impl Chunked {
    pub(crate) fn new() -> Chunked {
        Chunked {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
        }
    }

    fn feed(
        &mut self,
        data: &[u8],
        on_content: &mut dyn FnMut(&[u8]),
    ) -> Result<Progress, FramingError> {
        use ChunkState::*;
        let mut content = 0u64;
        let mut pos = 0usize;
        while pos < data.len() && self.state != Done {
            let rest = data.get(pos..).unwrap_or_default();
            match self.state {
                Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    on_content(rest.get(..take).unwrap_or_default());
                    pos += take;
                    content += take as u64;
                    let left = left - take as u64;
                    self.state = if left == 0 { DataCr } else { Data(left) };
                }
                Extension { .. } | Trailer => {
                    // Skip to the end of the line in one step.
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            pos += i + 1;
                            self.state = match self.state {
                                Extension { value } => Self::after_size_line(value),
                                _ => TrailerStart,
                            };
                        }
                        None => pos = data.len(),
                    }
                }
                _ => {
                    let Some(&b) = rest.first() else { break };
                    pos += 1;
                    self.state = self.step(b)?;
                }
            }
        }
        Ok(Progress {
            consumed: pos,
            content,
            done: self.state == Done,
        })
    }

    /// One byte in any state but `Data`, `Extension` and `Trailer`.
    fn step(&self, b: u8) -> Result<ChunkState, FramingError> {
        use ChunkState::*;
        let next = match (self.state, b) {
            (Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                if digits >= MAX_SIZE_DIGITS {
                    return Err(FramingError);
                }
                let digit = (b as char).to_digit(16).unwrap_or(0);
                Size {
                    value: (value << 4) | u64::from(digit),
                    digits: digits + 1,
                }
            }
            (Size { value, digits }, b';' | b' ' | b'\t') if digits > 0 => Extension { value },
            (Size { value, digits }, b'\r') if digits > 0 => SizeLf { value },
            (Size { value, digits }, b'\n') if digits > 0 => Self::after_size_line(value),
            (SizeLf { value }, b'\n') => Self::after_size_line(value),
            (DataCr, b'\r') => DataLf,
            (DataCr | DataLf, b'\n') => Size {
                value: 0,
                digits: 0,
            },
            (TrailerStart, b'\r') => TrailerLf,
            (TrailerStart | TrailerLf, b'\n') => Done,
            (TrailerStart, _) => Trailer,
            _ => return Err(FramingError),
        };
        Ok(next)
    }

    fn after_size_line(value: u64) -> ChunkState {
        if value == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data(value)
        }
    }

    /// `n` unseen bytes: fine only inside chunk data. Returns whether the
    /// body is done (never: the final chunk is always seen).
    fn skip(&mut self, n: u64) -> Result<bool, FramingError> {
        match self.state {
            ChunkState::Data(left) if n <= left => {
                self.state = if n == left {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data(left - n)
                };
                Ok(false)
            }
            _ if n == 0 => Ok(self.state == ChunkState::Done),
            _ => Err(FramingError),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns (consumed, content,
    /// done) or None on a framing error.
    fn run(mut body: Body, input: &[u8], step: usize) -> Outcome {
        let (mut consumed, mut content) = (0, 0);
        for piece in input.chunks(step.max(1)) {
            let p = body.feed(piece).ok()?;
            consumed += p.consumed;
            content += p.content;
            if p.done {
                return Some((consumed, content, true));
            }
            assert_eq!(
                p.consumed,
                piece.len(),
                "an unfinished body takes all its input"
            );
        }
        Some((consumed, content, false))
    }

    /// (consumed, content, done), or None for a framing error.
    type Outcome = Option<(usize, u64, bool)>;

    const CHUNKED: &[(&[u8], Outcome)] = &[
        (b"5\r\nhello\r\n0\r\n\r\n", Some((15, 5, true))),
        (
            b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
            Some((15, 5, true)),
        ),
        (b"5\nhello\n0\n\n", Some((11, 5, true))),
        (
            b"A\r\n0123456789\r\n1;ext=\"x;y\"\r\nZ\r\n0\r\n\r\n",
            Some((36, 11, true)),
        ),
        (b"a \r\n0123456789\r\n0\r\n\r\n", Some((21, 10, true))),
        (
            b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n",
            Some((41, 5, true)),
        ),
        (b"5\r\nhel", Some((6, 3, false))),
        (b"0000000000000003\r\nabc\r\n0\r\n\r\n", Some((28, 3, true))),
        (b"FFFFFFFFFFFFFFFF\r\nabc", Some((21, 3, false))),
        (b"10000000000000000\r\n", None),
        (b"\r\n", None),
        (b"x\r\n", None),
        (b"5\r\nhelloX", None),
        (b"5\r\nhello\rX", None),
        (b";ext\r\n", None),
        (b"0\r\n\rX", None),
    ];

    #[test]
    fn chunked_decoding_at_every_split() {
        for (input, want) in CHUNKED {
            for step in 1..=input.len() {
                let got = run(Body::Chunked(Chunked::new()), input, step);
                assert_eq!(
                    got,
                    *want,
                    "{:?} in pieces of {step}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn content_length_bodies() {
        assert_eq!(run(Body::Length(5), b"helloGET", 64), Some((5, 5, true)));
        assert_eq!(run(Body::Length(5), b"hello", 1), Some((5, 5, true)));
        assert_eq!(run(Body::Length(5), b"hel", 2), Some((3, 3, false)));
        assert_eq!(run(Body::Length(u64::MAX), b"abc", 2), Some((3, 3, false)));
    }

    #[test]
    fn until_close_takes_everything() {
        assert_eq!(
            run(Body::UntilClose, b"anything at all", 4),
            Some((15, 15, false))
        );
    }

    #[test]
    fn skipping_unseen_bytes() {
        let mut b = Body::Length(10);
        assert_eq!(
            b.skip(4),
            Ok(Progress {
                consumed: 4,
                content: 4,
                done: false
            })
        );
        assert_eq!(
            b.skip(6),
            Ok(Progress {
                consumed: 6,
                content: 6,
                done: true
            })
        );
        assert_eq!(Body::Length(3).skip(4), Err(FramingError));

        let mut c = Body::Chunked(Chunked::new());
        assert_eq!(
            c.skip(1),
            Err(FramingError),
            "a size line cannot be skipped"
        );
        c.feed(b"8\r\n").unwrap();
        assert!(c.skip(5).is_ok());
        assert_eq!(c.skip(4), Err(FramingError), "past the chunk's end");
        assert!(c.skip(3).is_ok());
        assert!(c.feed(b"\r\n0\r\n\r\n").unwrap().done);

        assert!(Body::UntilClose.skip(1 << 40).is_ok());
    }
}
