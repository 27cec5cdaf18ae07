//! `Transfer-Encoding: chunked` decoder, sans-IO: fed slices of any size, yields body data
//! slices borrowed from the input. Every line it must buffer is bounded.

/// Longest chunk-size line we accept (hex digits plus extensions).
pub const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
/// Most hex digits in a chunk size (a u64).
pub const MAX_CHUNK_SIZE_DIGITS: usize = 16;
/// Most bytes of trailer section after the last chunk.
pub const MAX_TRAILER_BYTES: usize = 64 * 1024;

/// Why a chunked body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk size that is not hex, or too long.
    BadSize,
    /// A line longer than its limit.
    LineTooLong,
    /// Chunk data not followed by CRLF.
    MissingCrlf,
    /// Trailers larger than their limit.
    TrailersTooLarge,
}

/// One step of decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Body bytes.
    Data(&'a [u8]),
    /// The input was consumed without completing anything: feed more.
    NeedMore,
    /// The terminal chunk and trailers are complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a size.
    Size {
        digits: usize,
    },
    /// After the digits: extensions until LF.
    Extension,
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// Expecting CR after data.
    DataCr,
    /// Expecting LF after data.
    DataLf,
    /// After the zero chunk: trailer lines until an empty one. `at_line_start` with
    /// `line_len` counting bytes of the current line.
    Trailer {
        at_line_start: bool,
    },
    Done,
}

/// The decoder. `size` accumulates the current chunk size; `line` counts the bytes of the
/// current size line; `trailer` the trailer bytes seen.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    line: usize,
    trailer: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            line: 0,
            trailer: 0,
        }
    }

    /// True once the terminal chunk and its trailers were read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input`; returns how many bytes were consumed and what they
    /// made. Call again with the rest until it returns `NeedMore` with everything consumed.
    pub fn next<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Chunk<'a>), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => {
                    self.line += 1;
                    if let Some(v) = hex_value(b) {
                        if digits == MAX_CHUNK_SIZE_DIGITS {
                            return Err(ChunkError::BadSize);
                        }
                        self.size = (self.size << 4) | u64::from(v);
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(ChunkError::BadSize);
                    } else if b == b'\n' {
                        self.end_size_line();
                    } else if b == b';' || b == b'\r' || b == b' ' || b == b'\t' {
                        self.state = State::Extension;
                    } else {
                        return Err(ChunkError::BadSize);
                    }
                }
                State::Extension => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE_BYTES {
                        return Err(ChunkError::LineTooLong);
                    }
                    if b == b'\n' {
                        self.end_size_line();
                    }
                }
                State::Data { remaining } => {
                    let take =
                        (input.len() - i).min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok((i + take, Chunk::Data(&input[i..i + take])));
                }
                State::DataCr => {
                    self.state = match b {
                        b'\r' => State::DataLf,
                        b'\n' => State::Size { digits: 0 },
                        _ => return Err(ChunkError::MissingCrlf),
                    };
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::Trailer { at_line_start } => {
                    self.trailer += 1;
                    if self.trailer > MAX_TRAILER_BYTES {
                        return Err(ChunkError::TrailersTooLarge);
                    }
                    if b == b'\n' {
                        if at_line_start {
                            self.state = State::Done;
                            return Ok((i + 1, Chunk::End));
                        }
                        self.state = State::Trailer {
                            at_line_start: true,
                        };
                    } else if b != b'\r' {
                        self.state = State::Trailer {
                            at_line_start: false,
                        };
                    }
                }
                State::Done => return Ok((i, Chunk::End)),
            }
            i += 1;
        }
        Ok((
            i,
            if self.state == State::Done {
                Chunk::End
            } else {
                Chunk::NeedMore
            },
        ))
    }

    fn end_size_line(&mut self) {
        self.line = 0;
        self.state = if self.size == 0 {
            State::Trailer {
                at_line_start: true,
            }
        } else {
            State::Data {
                remaining: self.size,
            }
        };
        self.size = 0;
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns (body, ended).
    fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut body = Vec::new();
        for piece in input.chunks(step.max(1)) {
            let mut rest = piece;
            loop {
                let (n, chunk) = d.next(rest)?;
                rest = &rest[n..];
                match chunk {
                    Chunk::Data(data) => body.extend_from_slice(data),
                    Chunk::End => return Ok((body, true)),
                    Chunk::NeedMore => break,
                }
            }
        }
        Ok((body, false))
    }

    #[test]
    fn decodes_at_every_split() {
        let wire = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: y\r\n\r\n";
        for step in 1..wire.len() {
            let (body, ended) = decode(wire, step).expect("valid");
            assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.", "step {step}");
            assert!(ended);
        }
    }

    #[test]
    fn bare_lf_is_tolerated() {
        assert_eq!(decode(b"3\nabc\n0\n\n", 2), Ok((b"abc".to_vec(), true)));
    }

    #[test]
    fn incomplete_stream_has_not_ended() {
        assert_eq!(decode(b"5\r\nab", 100), Ok((b"ab".to_vec(), false)));
        assert_eq!(
            decode(b"5\r\nabcde\r\n", 100),
            Ok((b"abcde".to_vec(), false))
        );
    }

    #[test]
    fn rejects_bad_sizes_and_framing() {
        assert_eq!(decode(b"zz\r\n", 1), Err(ChunkError::BadSize));
        assert_eq!(decode(b"\r\n", 1), Err(ChunkError::BadSize));
        assert_eq!(
            decode(b"11111111111111111\r\n", 4),
            Err(ChunkError::BadSize)
        );
        assert_eq!(decode(b"3\r\nabcX", 3), Err(ChunkError::MissingCrlf));
        let long_ext = [b"1;".as_slice(), &vec![b'a'; MAX_CHUNK_LINE_BYTES + 1]].concat();
        assert_eq!(decode(&long_ext, 512), Err(ChunkError::LineTooLong));
        let trailers = [b"0\r\n".as_slice(), &vec![b'a'; MAX_TRAILER_BYTES + 1]].concat();
        assert_eq!(decode(&trailers, 4096), Err(ChunkError::TrailersTooLarge));
    }
}
