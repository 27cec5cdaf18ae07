//! Content-Encoding, sans-IO: gzip and deflate bodies decoded as they stream in, so keyword
//! checks and the body budget apply to what the page says, not to compressed bytes. The
//! budget is enforced on the *decoded* size by the caller, piece by piece, so a
//! decompression bomb costs at most the budget plus one piece.
//!
//! flate2's low-level `Decompress` (miniz_oxide backend) does the inflating. Its gzip framing
//! lives in the high-level readers only, so we parse the gzip header ourselves (RFC 1952:
//! magic, method, flags with optional extra / name / comment / header CRC); the trailer (CRC32
//! and size) is not checked — a truncated body is caught by the HTTP framing instead.
//! `deflate` is zlib-wrapped per RFC 9110, but some servers send raw deflate: the first two
//! bytes tell which.

use flate2::{Decompress, FlushDecompress, Status};

/// Decoded bytes produced per inflate call.
pub const PIECE_BYTES: usize = 8 * 1024;
/// Longest gzip header we accept (file name and comment included).
pub const MAX_GZIP_HEADER_BYTES: usize = 1024;
/// Compressed bytes given to the inflater per call. Calls cover fixed offsets of the
/// compressed stream — never "whatever one read brought" — so where an error is noticed, and
/// what was decoded before it, cannot depend on how the body was split into reads.
pub const INFLATE_STEP_BYTES: usize = 512;

/// The codings we decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
}

/// The coding of a `Content-Encoding` value; None for identity, unknown codings (br, zstd)
/// and stacked codings, whose bytes are then taken as they come.
pub fn coding_of(value: &[u8]) -> Option<Coding> {
    let v = value.trim_ascii();
    if v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"x-gzip") {
        Some(Coding::Gzip)
    } else if v.eq_ignore_ascii_case(b"deflate") {
        Some(Coding::Deflate)
    } else {
        None
    }
}

/// The body is not valid for its Content-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEncoding;

#[derive(Debug)]
enum Stage {
    /// Collecting the gzip header.
    GzipHeader,
    /// Waiting for the first two bytes of a deflate body (zlib or raw?).
    DeflateStart,
    Inflating,
    /// The compressed stream ended; anything after it (the gzip trailer) is ignored.
    Ended,
}

/// One body's decoder.
pub struct ContentDecoder {
    stage: Stage,
    inflate: Option<Decompress>,
    pending: Vec<u8>,
    /// Compressed bytes waiting for a whole step (or the end of the body).
    staged: Vec<u8>,
    out: Vec<u8>,
}

impl std::fmt::Debug for ContentDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentDecoder")
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl ContentDecoder {
    pub fn new(coding: Coding) -> ContentDecoder {
        ContentDecoder {
            stage: match coding {
                Coding::Gzip => Stage::GzipHeader,
                Coding::Deflate => Stage::DeflateStart,
            },
            inflate: None,
            pending: Vec::new(),
            staged: Vec::new(),
            out: Vec::new(),
        }
    }

    /// True once the compressed stream has ended.
    pub fn ended(&self) -> bool {
        matches!(self.stage, Stage::Ended)
    }

    /// Decodes what is left staged at the end of the body (or when the caller stops reading).
    pub fn finish(&mut self, mut sink: impl FnMut(&[u8]) -> bool) -> Result<(), BadEncoding> {
        if !matches!(self.stage, Stage::Inflating) || self.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut self.staged);
        let result = self.inflate_all(&staged, &mut sink).map(|_| ());
        self.staged = staged;
        self.staged.clear();
        result
    }

    /// Feeds compressed bytes in whole steps; a partial step waits for more (or `finish`).
    fn stage(
        &mut self,
        mut input: &[u8],
        sink: &mut impl FnMut(&[u8]) -> bool,
    ) -> Result<(), BadEncoding> {
        while !input.is_empty() && matches!(self.stage, Stage::Inflating) {
            let take = (INFLATE_STEP_BYTES - self.staged.len()).min(input.len());
            self.staged.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.staged.len() == INFLATE_STEP_BYTES {
                let step = std::mem::take(&mut self.staged);
                let result = self.inflate_all(&step, sink);
                self.staged = step;
                self.staged.clear();
                if !result? {
                    return Ok(()); // the caller has seen enough
                }
            }
        }
        Ok(())
    }

    /// Decodes `input`, handing each decoded piece to `sink`, which returns false to stop
    /// (the caller has seen enough). Bytes of a header split across reads are kept; the
    /// compressed stream is inflated in fixed steps (call `finish` at the end of the body).
    pub fn feed(
        &mut self,
        input: &[u8],
        mut sink: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), BadEncoding> {
        let zlib = match self.stage {
            Stage::Ended => return Ok(()),
            Stage::Inflating => return self.stage(input, &mut sink),
            Stage::GzipHeader | Stage::DeflateStart if input.is_empty() => return Ok(()),
            Stage::GzipHeader => {
                self.pending.extend_from_slice(input);
                match gzip_header_len(&self.pending)? {
                    Some(n) => {
                        self.pending.drain(..n);
                        false
                    }
                    None => return Ok(()),
                }
            }
            Stage::DeflateStart => {
                self.pending.extend_from_slice(input);
                if self.pending.len() < 2 {
                    return Ok(());
                }
                let (a, b) = (self.pending[0], self.pending[1]);
                a & 0x0f == 8 && a >> 4 <= 7 && (u16::from(a) << 8 | u16::from(b)) % 31 == 0
            }
        };
        self.inflate = Some(Decompress::new(zlib));
        self.stage = Stage::Inflating;
        let rest = std::mem::take(&mut self.pending);
        self.stage(&rest, &mut sink)
    }

    /// Inflates one step; Ok(false) when the sink said stop.
    fn inflate_all(
        &mut self,
        mut input: &[u8],
        sink: &mut impl FnMut(&[u8]) -> bool,
    ) -> Result<bool, BadEncoding> {
        let Some(inflate) = self.inflate.as_mut() else {
            return Err(BadEncoding);
        };
        if self.out.len() < PIECE_BYTES {
            self.out.resize(PIECE_BYTES, 0);
        }
        loop {
            let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
            let result = inflate.decompress(input, &mut self.out, FlushDecompress::None);
            let used = (inflate.total_in() - in_before) as usize;
            let made = (inflate.total_out() - out_before) as usize;
            input = &input[used..];
            // What was decoded before an error is delivered first: if the caller has seen
            // enough by then, the error does not matter (the same verdict as when the bytes
            // came in smaller reads and decoding stopped before reaching the error).
            if made > 0 && !sink(&self.out[..made]) {
                return Ok(false);
            }
            let status = result.map_err(|_| BadEncoding)?;
            match status {
                Status::StreamEnd => {
                    self.stage = Stage::Ended;
                    return Ok(true);
                }
                Status::Ok | Status::BufError => {
                    // Out of input and the output was not filled: wait for more bytes.
                    if (input.is_empty() && made < self.out.len()) || (used == 0 && made == 0) {
                        return Ok(true);
                    }
                }
            }
        }
    }
}

/// The length of a complete gzip header at the start of `buf`, None when more bytes are
/// needed.
fn gzip_header_len(buf: &[u8]) -> Result<Option<usize>, BadEncoding> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if buf.len() < 10 {
        return if buf.len() >= 2 && buf[..2] != [0x1f, 0x8b] {
            Err(BadEncoding)
        } else {
            Ok(None)
        };
    }
    if buf[..3] != [0x1f, 0x8b, 8] || buf[3] & 0xe0 != 0 {
        return Err(BadEncoding);
    }
    let flags = buf[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let Some(len) = buf.get(at..at + 2) else {
            return more(buf);
        };
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            match buf.get(at..).and_then(|rest| memchr::memchr(0, rest)) {
                Some(nul) => at += nul + 1,
                None => return more(buf),
            }
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if at > MAX_GZIP_HEADER_BYTES {
        return Err(BadEncoding);
    }
    Ok((buf.len() >= at).then_some(at))
}

fn more(buf: &[u8]) -> Result<Option<usize>, BadEncoding> {
    if buf.len() > MAX_GZIP_HEADER_BYTES {
        Err(BadEncoding)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn deflate(data: &[u8], zlib: bool) -> Vec<u8> {
        let mut c = Compress::new(Compression::default(), zlib);
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Finish)
            .expect("compress");
        out
    }

    fn gzip(data: &[u8], name: Option<&str>) -> Vec<u8> {
        let mut out = vec![
            0x1f,
            0x8b,
            8,
            if name.is_some() { 8 } else { 0 },
            0,
            0,
            0,
            0,
            0,
            255,
        ];
        if let Some(n) = name {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        out.extend(deflate(data, false));
        out.extend_from_slice(&[0; 8]); // trailer (not checked)
        out
    }

    fn decode_in_pieces(coding: Coding, body: &[u8], step: usize) -> Result<Vec<u8>, BadEncoding> {
        let mut d = ContentDecoder::new(coding);
        let mut got = Vec::new();
        for chunk in body.chunks(step.max(1)) {
            d.feed(chunk, |piece| {
                got.extend_from_slice(piece);
                true
            })?;
        }
        d.finish(|piece| {
            got.extend_from_slice(piece);
            true
        })?;
        Ok(got)
    }

    #[test]
    fn gzip_zlib_and_raw_deflate_decode_across_any_split() {
        let text = b"<html>jetmon keyword far down the page</html>".repeat(500);
        for step in [1, 7, 100, 100_000] {
            assert_eq!(
                decode_in_pieces(Coding::Gzip, &gzip(&text, None), step),
                Ok(text.clone())
            );
            assert_eq!(
                decode_in_pieces(Coding::Gzip, &gzip(&text, Some("index.html")), step),
                Ok(text.clone())
            );
            assert_eq!(
                decode_in_pieces(Coding::Deflate, &deflate(&text, true), step),
                Ok(text.clone())
            );
            assert_eq!(
                decode_in_pieces(Coding::Deflate, &deflate(&text, false), step),
                Ok(text.clone())
            );
        }
    }

    #[test]
    fn bombs_stop_when_the_sink_says_so() {
        let zeros = vec![0u8; 50 << 20];
        let bomb = gzip(&zeros, None);
        assert!(
            bomb.len() < 100 << 10,
            "a 50 MiB bomb in {} bytes",
            bomb.len()
        );
        let mut d = ContentDecoder::new(Coding::Gzip);
        let mut seen = 0usize;
        d.feed(&bomb, |piece| {
            seen += piece.len();
            seen < 256 << 10
        })
        .expect("decode");
        assert!(
            ((256 << 10)..(256 << 10) + PIECE_BYTES).contains(&seen),
            "{seen}"
        );
    }

    #[test]
    fn corrupt_bodies_are_bad_encoding() {
        assert_eq!(
            decode_in_pieces(Coding::Gzip, b"not gzip at all", 4),
            Err(BadEncoding)
        );
        let mut broken = gzip(b"hello hello hello", None);
        broken[10] = 0xff; // the deflate block type 3 is reserved
        assert_eq!(
            decode_in_pieces(Coding::Gzip, &broken, 64),
            Err(BadEncoding)
        );
        let mut long_name = vec![0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 255];
        long_name.extend(std::iter::repeat_n(b'a', 2000));
        assert_eq!(
            decode_in_pieces(Coding::Gzip, &long_name, 100),
            Err(BadEncoding)
        );
        assert_eq!(coding_of(b" GZIP "), Some(Coding::Gzip));
        assert_eq!(coding_of(b"br"), None);
        assert_eq!(coding_of(b"gzip, br"), None);
    }
}
