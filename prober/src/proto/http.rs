//! HTTP/1.1 exchange, sans-IO: writes a request into a buffer and classifies the response
//! from byte slices of any size, with every limit of checks.md. No sockets, no clocks: the
//! driver feeds bytes, end-of-stream and deadlines, and gets a [`Verdict`] back.

use jetmon_shared::check::{HttpMethod, MAX_CUSTOM_HEADER_BYTES, MAX_CUSTOM_HEADERS};
use jetmon_shared::outcome::Outcome;

use super::chunked::{Chunk, ChunkError, ChunkedDecoder};
use super::content::{ContentDecoder, coding_of};
use super::keyword::{KeywordScan, Keywords};

/// Largest response head (status line + headers) we buffer.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response headers.
pub const MAX_HEADERS: usize = 100;
/// Longest status line.
pub const MAX_STATUS_LINE_BYTES: usize = 8 * 1024;
/// Most informational (1xx) responses skipped before the final one.
pub const MAX_INFORMATIONAL: u8 = 8;

/// Finer cause of an outcome, carried in the result's `detail` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Detail {
    None = 0,
    /// The server closed the connection without sending anything.
    EmptyResponse = 1,
    HeadTooLarge = 2,
    TooManyHeaders = 3,
    StatusLineTooLong = 4,
    BadSyntax = 5,
    BadContentLength = 6,
    BadChunking = 7,
    TooManyInformational = 8,
    /// The stream ended inside the head.
    TruncatedHead = 9,
    /// The body ended before Content-Length.
    ShortBody = 10,
    /// The chunked body ended before its terminal chunk.
    UnterminatedChunks = 11,
    /// Stopped reading at the body budget.
    BodyBudget = 12,
    /// A redirect's Location is not a usable http(s) URL.
    BadLocation = 13,
    /// The body is not valid gzip/deflate for its Content-Encoding.
    BadEncoding = 14,
}

/// Statuses that redirect (with a Location).
pub const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// What the response must satisfy. Built once per check.
#[derive(Debug, Clone)]
pub struct ResponseRules {
    pub method: HttpMethod,
    /// Inclusive ranges; empty = 1..=399.
    pub accepted: Vec<(u16, u16)>,
    pub keywords: Option<Keywords>,
    /// Body bytes read at most.
    pub body_budget: u64,
    /// Check truncation and emptiness.
    pub integrity: bool,
    /// With `integrity`: a 200 with fewer body bytes is `body_empty` (0 means "no bytes").
    pub min_body_bytes: u64,
    /// A redirect status with a Location ends the exchange as a redirect (the driver decides
    /// what to do with it); without, it is judged as a final response.
    pub follow_redirects: bool,
}

impl ResponseRules {
    fn accepts(&self, status: u16) -> bool {
        if self.accepted.is_empty() {
            (1..=399).contains(&status)
        } else {
            self.accepted
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&status))
        }
    }

    /// True when the body must be read at all.
    fn needs_body(&self) -> bool {
        self.integrity || self.keywords.is_some()
    }
}

/// The classification of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub detail: Detail,
    /// Final status (0 when no valid head arrived).
    pub status: u16,
    /// Body bytes consumed (after de-chunking and, while it mattered, decompression).
    pub body_bytes: u64,
    /// The response redirects: its Location is in [`ResponseMachine::location`].
    pub redirect: bool,
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Feed more bytes (or end-of-stream / deadline).
    NeedMore,
    /// Classified: stop reading and close.
    Done(Verdict),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
enum Phase {
    Head,
    Body { framing: Framing },
    Done(Verdict),
}

/// One response being read. Owns two pooled buffers (head accumulation and keyword scratch)
/// and gives them back with [`ResponseMachine::into_buffers`].
#[derive(Debug)]
pub struct ResponseMachine<'r> {
    rules: &'r ResponseRules,
    phase: Phase,
    head: Vec<u8>,
    fold: Vec<u8>,
    scan: KeywordScan,
    chunked: ChunkedDecoder,
    status: u16,
    informational: u8,
    body_bytes: u64,
    any_bytes: bool,
    /// Times httparse ran: bounded by reads that could end a head.
    head_parses: u32,
    /// A redirect's Location (raw bytes, trimmed).
    location: Vec<u8>,
    /// Body bytes as framed on the wire (after de-chunking, before decompression).
    wire_body: u64,
    /// The body's Content-Encoding decoder, while decoding still matters to the verdict.
    decoder: Option<Box<ContentDecoder>>,
    /// The body has a Content-Encoding we decode (wire bytes are not content).
    encoded: bool,
}

impl<'r> ResponseMachine<'r> {
    /// `head`, `fold` and `carry` are pooled buffers; their contents are discarded.
    pub fn new(rules: &'r ResponseRules, mut head: Vec<u8>, fold: Vec<u8>, carry: Vec<u8>) -> Self {
        head.clear();
        ResponseMachine {
            rules,
            phase: Phase::Head,
            head,
            fold,
            scan: KeywordScan::new(carry),
            chunked: ChunkedDecoder::new(),
            status: 0,
            informational: 0,
            body_bytes: 0,
            any_bytes: false,
            head_parses: 0,
            location: Vec::new(),
            wire_body: 0,
            decoder: None,
            encoded: false,
        }
    }

    /// The Location of a redirect verdict.
    pub fn location(&self) -> &[u8] {
        &self.location
    }

    /// The pooled buffers, for reuse.
    pub fn into_buffers(self) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        (self.head, self.fold, self.scan.into_buffer())
    }

    /// True once the final response's head has been parsed.
    pub fn head_complete(&self) -> bool {
        !matches!(self.phase, Phase::Head)
    }

    /// Feeds bytes read from the connection.
    pub fn feed(&mut self, data: &[u8]) -> Progress {
        self.any_bytes |= !data.is_empty();
        let mut data = data;
        loop {
            match self.phase {
                Phase::Done(v) => return Progress::Done(v),
                Phase::Body { framing } => return self.feed_body(framing, data),
                Phase::Head if data.is_empty() => return Progress::NeedMore,
                // Fast path: nothing buffered, parse straight from the read.
                Phase::Head if self.head.is_empty() => match self.parse_head(data) {
                    Err(detail) => return self.finish(Outcome::HttpMalformed, detail),
                    Ok(Some(n)) => data = &data[n..],
                    Ok(None) => {
                        if data.len() > MAX_HEAD_BYTES {
                            return self.finish(Outcome::HttpMalformed, Detail::HeadTooLarge);
                        }
                        self.head.extend_from_slice(data);
                        return Progress::NeedMore;
                    }
                },
                // A head split across reads: accumulate (bounded) and parse the buffer.
                Phase::Head => {
                    let room = (MAX_HEAD_BYTES + 1).saturating_sub(self.head.len());
                    let take = data.len().min(room);
                    let start = self.head.len();
                    self.head.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    // A head only ends at a blank line: re-parse only when the new bytes may
                    // have completed one, so a head dribbled byte by byte costs linear time.
                    if !may_end_head(&self.head, start) {
                        if self.head.len() > MAX_HEAD_BYTES {
                            return self.finish(Outcome::HttpMalformed, Detail::HeadTooLarge);
                        }
                        if memchr::memchr(b'\n', &self.head).is_none()
                            && self.head.len() > MAX_STATUS_LINE_BYTES
                        {
                            return self.finish(Outcome::HttpMalformed, Detail::StatusLineTooLong);
                        }
                        return Progress::NeedMore;
                    }
                    let buffer = std::mem::take(&mut self.head);
                    match self.parse_head(&buffer) {
                        Err(detail) => return self.finish(Outcome::HttpMalformed, detail),
                        Ok(None) => {
                            self.head = buffer;
                            if self.head.len() > MAX_HEAD_BYTES {
                                return self.finish(Outcome::HttpMalformed, Detail::HeadTooLarge);
                            }
                            return Progress::NeedMore;
                        }
                        Ok(Some(n)) => {
                            // The bytes after the head in the buffer come before `data`. One
                            // level of recursion per head, so at most MAX_INFORMATIONAL + 1.
                            let progress = self.feed(&buffer[n..]);
                            if self.head.is_empty() {
                                let mut reuse = buffer;
                                reuse.clear();
                                self.head = reuse;
                            }
                            if let Progress::Done(v) = progress {
                                return Progress::Done(v);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A buffered partial head is only re-parsed when new bytes could end it; before giving a
    /// verdict on it, parse it once more so a syntax error is reported as such (the same
    /// verdict as if the bytes had arrived in one read).
    fn buffered_head_error(&mut self) -> Option<Detail> {
        if self.head.is_empty() {
            return None;
        }
        let buffer = std::mem::take(&mut self.head);
        let parsed = self.parse_head(&buffer);
        self.head = buffer;
        parsed.err()
    }

    /// The peer closed the connection.
    pub fn end_of_stream(&mut self) -> Verdict {
        match self.phase {
            Phase::Done(v) => v,
            Phase::Head => {
                if let Some(detail) = self.buffered_head_error() {
                    return self.verdict(Outcome::HttpMalformed, detail);
                }
                let detail = if self.any_bytes {
                    Detail::TruncatedHead
                } else {
                    Detail::EmptyResponse
                };
                self.verdict(Outcome::HttpMalformed, detail)
            }
            Phase::Body { framing } => {
                if let Some(Progress::Done(v)) = self.run_decoder(None) {
                    return v;
                }
                let short = match framing {
                    Framing::Length(n) => (self.wire_body < n).then_some(Detail::ShortBody),
                    Framing::Chunked => {
                        (!self.chunked.is_done()).then_some(Detail::UnterminatedChunks)
                    }
                    Framing::UntilClose => None,
                };
                match short {
                    Some(detail) if self.rules.integrity => {
                        self.verdict(Outcome::BodyTruncated, detail)
                    }
                    _ => self.body_verdict(Detail::None),
                }
            }
        }
    }

    /// The probe's deadline passed.
    pub fn deadline(&mut self) -> Verdict {
        match self.phase {
            Phase::Done(v) => v,
            Phase::Head => match self.buffered_head_error() {
                Some(detail) => self.verdict(Outcome::HttpMalformed, detail),
                None => self.verdict(Outcome::TimeoutTtfb, Detail::None),
            },
            Phase::Body { .. } => self.verdict(Outcome::TimeoutBody, Detail::None),
        }
    }

    /// Parses a head from `buf`; `Some(len)` when complete (and the phase moved on).
    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<usize>, Detail> {
        let line_end = memchr::memchr(b'\n', buf);
        if line_end.map_or(buf.len(), |e| e) > MAX_STATUS_LINE_BYTES {
            return Err(Detail::StatusLineTooLong);
        }
        self.head_parses += 1;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let n = match response.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n > MAX_HEAD_BYTES => {
                return Err(Detail::HeadTooLarge);
            }
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Detail::TooManyHeaders),
            Err(_) => return Err(Detail::BadSyntax),
        };
        let status = response.code.ok_or(Detail::BadSyntax)?;
        if (100..200).contains(&status) && status != 101 {
            self.informational += 1;
            if self.informational > MAX_INFORMATIONAL {
                return Err(Detail::TooManyInformational);
            }
            return Ok(Some(n)); // stay in Head: the final response follows
        }
        self.status = status;
        if self.rules.follow_redirects && REDIRECT_STATUSES.contains(&status) {
            let location = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("location"))
                .map(|h| h.value.trim_ascii())
                .filter(|v| !v.is_empty());
            if let Some(location) = location {
                self.location.clear();
                self.location.extend_from_slice(location);
                let v = Verdict {
                    redirect: true,
                    ..self.verdict(Outcome::Ok, Detail::None)
                };
                self.phase = Phase::Done(v);
                return Ok(Some(n));
            }
        }
        let no_body =
            self.rules.method == HttpMethod::Head || status == 204 || status == 304 || status < 200;
        let framing = framing(response.headers)?;
        self.decoder = (self.rules.needs_body() && !no_body)
            .then_some(())
            .and_then(|()| {
                response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-encoding"))
                    .and_then(|h| coding_of(h.value))
                    .map(|c| Box::new(ContentDecoder::new(c)))
            });
        self.encoded = self.decoder.is_some();
        if !self.rules.accepts(status) {
            self.phase = Phase::Done(self.verdict(Outcome::HttpStatus, Detail::None));
        } else if no_body || !self.rules.needs_body() || framing == Framing::Length(0) {
            let v = if no_body {
                self.body_verdict(Detail::None)
            } else {
                self.zero_body_verdict(framing)
            };
            self.phase = Phase::Done(v);
        } else {
            self.phase = Phase::Body { framing };
        }
        Ok(Some(n))
    }

    /// The verdict when the body is not read (or is declared empty).
    fn zero_body_verdict(&self, framing: Framing) -> Verdict {
        if framing == Framing::Length(0) {
            self.body_verdict(Detail::None)
        } else {
            self.verdict(Outcome::Ok, Detail::None)
        }
    }

    fn feed_body(&mut self, framing: Framing, data: &[u8]) -> Progress {
        match framing {
            Framing::Length(total) => {
                let take = (data.len() as u64).min(total - self.wire_body) as usize;
                if let Some(p) = self.body_data(&data[..take]) {
                    return p;
                }
                if self.wire_body == total {
                    return self.end_of_body(Detail::None);
                }
            }
            Framing::UntilClose => {
                if let Some(p) = self.body_data(data) {
                    return p;
                }
            }
            Framing::Chunked => {
                let mut rest = data;
                while !rest.is_empty() {
                    match self.chunked.next(rest) {
                        Ok((n, chunk)) => {
                            rest = &rest[n..];
                            match chunk {
                                Chunk::Data(d) => {
                                    if let Some(p) = self.body_data(d) {
                                        return p;
                                    }
                                }
                                Chunk::End => return self.end_of_body(Detail::None),
                                Chunk::NeedMore => break,
                            }
                        }
                        Err(
                            ChunkError::BadSize
                            | ChunkError::LineTooLong
                            | ChunkError::MissingCrlf
                            | ChunkError::TrailersTooLarge,
                        ) => {
                            return self.finish(Outcome::HttpMalformed, Detail::BadChunking);
                        }
                    }
                }
            }
        }
        Progress::NeedMore
    }

    /// Takes body bytes as framed on the wire: decodes them when the body is compressed and
    /// the verdict still depends on its content; `Some` when that settles the verdict.
    fn body_data(&mut self, data: &[u8]) -> Option<Progress> {
        let wire_before = self.wire_body;
        self.wire_body += data.len() as u64;
        if !self.encoded {
            return self.decoded(data);
        }
        // The decoder sees the same prefix of the wire, bounded by the budget, however the
        // body was split into reads: the verdict cannot depend on the split.
        let room = self.rules.body_budget.saturating_sub(wire_before);
        let data = &data[..(data.len() as u64).min(room) as usize];
        if let Some(p) = self.run_decoder(Some(data)) {
            return Some(p);
        }
        // The wire is bounded by the budget too (a stream that decodes to nothing).
        if self.wire_body >= self.rules.body_budget {
            return Some(self.end_of_body(Detail::BodyBudget));
        }
        None
    }

    /// The body ended (or reading stops at the budget): decode what is still staged, then
    /// judge.
    fn end_of_body(&mut self, detail: Detail) -> Progress {
        if let Some(p) = self.run_decoder(None) {
            return p;
        }
        self.done(self.body_verdict(detail))
    }

    /// Feeds the decoder (`None` = the body ended: flush it). `Some` when decoding settled the
    /// verdict (a keyword, the budget, or invalid data); the decoder is kept while it matters.
    fn run_decoder(&mut self, input: Option<&[u8]>) -> Option<Progress> {
        let mut decoder = self.decoder.take()?;
        let mut settled = None;
        let mut enough = false;
        let sink = |piece: &[u8]| {
            // Without keywords, only the first min_body bytes matter: take exactly those,
            // so how much one inflate call happened to produce cannot change the verdict.
            let piece = if self.rules.keywords.is_none() {
                let want = self.rules.min_body_bytes.max(1)
                    - self.body_bytes.min(self.rules.min_body_bytes.max(1));
                &piece[..(piece.len() as u64).min(want) as usize]
            } else {
                piece
            };
            settled = self.decoded(piece);
            enough = self.decoded_enough();
            settled.is_none() && !enough
        };
        let result = match input {
            Some(data) => decoder.feed(data, sink),
            None => decoder.finish(sink),
        };
        if let Some(p) = settled {
            return Some(p);
        }
        if result.is_err() {
            return Some(self.finish(Outcome::HttpMalformed, Detail::BadEncoding));
        }
        if !enough && !decoder.ended() {
            self.decoder = Some(decoder);
        }
        None
    }

    /// Decoding matters while keywords are searched or the body might still be "empty";
    /// after that only the framing (truncation) is left to judge, on wire bytes. Decoding
    /// stops at that point exactly, whatever the reads, so the verdict does not depend on them.
    fn decoded_enough(&self) -> bool {
        self.rules.keywords.is_none() && self.body_bytes >= self.rules.min_body_bytes.max(1)
    }

    /// Counts and scans decoded body bytes; `Some` when that settles the verdict.
    fn decoded(&mut self, data: &[u8]) -> Option<Progress> {
        let budget_left = self.rules.body_budget.saturating_sub(self.body_bytes);
        let take = (data.len() as u64).min(budget_left) as usize;
        let data = &data[..take];
        self.body_bytes += take as u64;
        if let Some(kw) = &self.rules.keywords {
            self.scan.feed(kw, data, &mut self.fold);
            // Required keywords all seen and nothing else to learn: stop early.
            if !self.rules.integrity && !kw.has_forbidden() && !self.scan.missing(kw) {
                return Some(self.done(self.verdict(Outcome::Ok, Detail::None)));
            }
        }
        if self.body_bytes >= self.rules.body_budget {
            return Some(self.done(self.body_verdict(Detail::BodyBudget)));
        }
        None
    }

    /// The verdict for a body that ended (or was cut at the budget).
    fn body_verdict(&self, detail: Detail) -> Verdict {
        let r = self.rules;
        let empty = r.integrity
            && r.method != HttpMethod::Head
            && self.status == 200
            && self.body_bytes < r.min_body_bytes.max(1);
        if empty && detail != Detail::BodyBudget {
            return self.verdict(Outcome::BodyEmpty, Detail::None);
        }
        if let Some(kw) = &r.keywords {
            if self.scan.forbidden_seen(kw) {
                return self.verdict(Outcome::KeywordForbiddenPresent, detail);
            }
            if self.scan.missing(kw) {
                return self.verdict(Outcome::KeywordMissing, detail);
            }
        }
        self.verdict(Outcome::Ok, detail)
    }

    fn verdict(&self, outcome: Outcome, detail: Detail) -> Verdict {
        Verdict {
            outcome,
            detail,
            status: self.status,
            body_bytes: self.body_bytes,
            redirect: false,
        }
    }

    fn done(&mut self, v: Verdict) -> Progress {
        self.phase = Phase::Done(v);
        Progress::Done(v)
    }

    fn finish(&mut self, outcome: Outcome, detail: Detail) -> Progress {
        let v = self.verdict(outcome, detail);
        self.done(v)
    }
}

/// True when `buf[from..]` (with 2 bytes of overlap before it) contains the end of a head:
/// `\n\n` or `\n\r\n`.
fn may_end_head(buf: &[u8], from: usize) -> bool {
    let window = &buf[from.saturating_sub(2)..];
    memchr::memchr_iter(b'\n', window).any(|i| {
        let after = &window[i + 1..];
        after.first() == Some(&b'\n') || after.starts_with(b"\r\n")
    })
}

fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, Detail> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides: "gzip, chunked" is chunked.
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
            chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(Detail::BadContentLength);
            }
            let n = v.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(Detail::BadContentLength);
            }
            length = Some(n);
        }
    }
    // RFC 9112: Transfer-Encoding overrides Content-Length.
    Ok(if chunked {
        Framing::Chunked
    } else {
        length.map_or(Framing::UntilClose, Framing::Length)
    })
}

/// Request header names a check may not set: framing, hop-by-hop, and Host (ours).
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// True when a custom header may be sent: a token name not in [`FORBIDDEN_HEADERS`] and a
/// value without control characters (no header injection).
pub fn header_allowed(name: &str, value: &str) -> bool {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    !name.is_empty()
        && name.bytes().all(token)
        && !FORBIDDEN_HEADERS
            .iter()
            .any(|f| f.eq_ignore_ascii_case(name))
        && value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Writes a request: method, path, Host, User-Agent, `Connection: close`, and the custom
/// headers that [`header_allowed`] lets through (at most the limits of checks.md).
pub fn write_request(
    out: &mut Vec<u8>,
    method: HttpMethod,
    host_header: &str,
    path_and_query: &str,
    user_agent: &str,
    headers: &[(String, String)],
) {
    out.clear();
    out.extend_from_slice(method.name().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if path_and_query.is_empty() {
        b"/"
    } else {
        path_and_query.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host_header.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: ");
    out.extend_from_slice(user_agent.as_bytes());
    out.extend_from_slice(
        b"\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: close\r\n",
    );
    let mut budget = MAX_CUSTOM_HEADER_BYTES;
    for (name, value) in headers.iter().take(MAX_CUSTOM_HEADERS) {
        if !header_allowed(name, value) || name.len() + value.len() > budget {
            continue;
        }
        budget -= name.len() + value.len();
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
