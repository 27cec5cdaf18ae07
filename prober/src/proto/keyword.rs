//! Keyword search over a streamed body: matches that straddle two reads are found, memory is
//! bounded by the longest keyword, and the compiled needles are built once per check.

use memchr::memmem::Finder;

use jetmon_shared::check::MAX_KEYWORDS;

/// Required and forbidden keywords of one check, compiled once (at `UpsertCheck`).
#[derive(Debug, Clone)]
pub struct Keywords {
    finders: Vec<Finder<'static>>,
    /// Bit i set: keyword i is forbidden (else required).
    forbidden_mask: u64,
    case_sensitive: bool,
    max_len: usize,
}

const _: () = assert!(MAX_KEYWORDS <= 64);

impl Keywords {
    /// `None` when there is nothing to look for.
    pub fn compile(
        required: &[String],
        forbidden: &[String],
        case_sensitive: bool,
    ) -> Option<Keywords> {
        if required.is_empty() && forbidden.is_empty() {
            return None;
        }
        let fold = |k: &String| {
            let bytes = k.as_bytes();
            if case_sensitive {
                bytes.to_vec()
            } else {
                bytes.to_ascii_lowercase()
            }
        };
        let mut finders = Vec::new();
        let mut forbidden_mask = 0u64;
        for k in required.iter().take(MAX_KEYWORDS) {
            finders.push(Finder::new(&fold(k)).into_owned());
        }
        for k in forbidden.iter().take(MAX_KEYWORDS - finders.len()) {
            forbidden_mask |= 1 << finders.len();
            finders.push(Finder::new(&fold(k)).into_owned());
        }
        let max_len = finders.iter().map(|f| f.needle().len()).max().unwrap_or(1);
        Some(Keywords {
            finders,
            forbidden_mask,
            case_sensitive,
            max_len,
        })
    }

    fn all_mask(&self) -> u64 {
        if self.finders.len() == 64 {
            u64::MAX
        } else {
            (1u64 << self.finders.len()) - 1
        }
    }

    /// Bits of the required keywords.
    pub fn required_mask(&self) -> u64 {
        self.all_mask() & !self.forbidden_mask
    }

    /// True when there is at least one forbidden keyword (the whole budget must be read).
    pub fn has_forbidden(&self) -> bool {
        self.forbidden_mask != 0
    }
}

/// Per-probe scanning state; `scratch` is a pooled buffer (no allocation per probe once warm).
#[derive(Debug, Default)]
pub struct KeywordScan {
    found: u64,
    /// The last `max_len - 1` bytes seen (folded), for matches across a read boundary.
    carry: Vec<u8>,
}

impl KeywordScan {
    pub fn new(mut carry: Vec<u8>) -> KeywordScan {
        carry.clear();
        KeywordScan { found: 0, carry }
    }

    /// Bits of the keywords seen so far.
    pub fn found(&self) -> u64 {
        self.found
    }

    /// Gives the pooled buffer back.
    pub fn into_buffer(self) -> Vec<u8> {
        self.carry
    }

    /// Scans the next piece of body. `fold` is a pooled buffer for case folding.
    pub fn feed(&mut self, kw: &Keywords, data: &[u8], fold: &mut Vec<u8>) {
        if data.is_empty() || self.found == kw.all_mask() {
            return;
        }
        let data = if kw.case_sensitive {
            data
        } else {
            fold.clear();
            fold.extend(data.iter().map(u8::to_ascii_lowercase));
            fold.as_slice()
        };
        let keep = kw.max_len.saturating_sub(1);
        // Boundary window: carry + the first `keep` bytes of this piece.
        if !self.carry.is_empty() {
            let head = &data[..data.len().min(keep)];
            let start = self.carry.len();
            self.carry.extend_from_slice(head);
            search(kw, &self.carry, &mut self.found);
            self.carry.truncate(start);
        }
        search(kw, data, &mut self.found);
        // New carry: the last `keep` bytes of carry + data.
        if data.len() >= keep {
            self.carry.clear();
            self.carry.extend_from_slice(&data[data.len() - keep..]);
        } else {
            self.carry.extend_from_slice(data);
            let excess = self.carry.len().saturating_sub(keep);
            self.carry.drain(..excess);
        }
    }

    /// Required keywords not seen.
    pub fn missing(&self, kw: &Keywords) -> bool {
        self.found & kw.required_mask() != kw.required_mask()
    }

    /// A forbidden keyword was seen.
    pub fn forbidden_seen(&self, kw: &Keywords) -> bool {
        self.found & kw.forbidden_mask != 0
    }
}

fn search(kw: &Keywords, hay: &[u8], found: &mut u64) {
    for (i, f) in kw.finders.iter().enumerate() {
        if *found & (1 << i) == 0 && f.find(hay).is_some() {
            *found |= 1 << i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(kw: &Keywords, body: &[u8], step: usize) -> KeywordScan {
        let mut s = KeywordScan::new(Vec::new());
        let mut fold = Vec::new();
        for piece in body.chunks(step.max(1)) {
            s.feed(kw, piece, &mut fold);
        }
        s
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_keywords_across_every_split() {
        let kw =
            Keywords::compile(&strings(&["Hello World", "wp-content"]), &[], true).expect("kw");
        let body = b"<html>xx Hello World yy /wp-content/themes</html>";
        for step in 1..body.len() {
            let s = scan(&kw, body, step);
            assert!(!s.missing(&kw), "step {step}");
        }
        let s = scan(&kw, b"Hello Worl d wp-conten", 3);
        assert!(s.missing(&kw));
    }

    #[test]
    fn case_insensitive_and_forbidden() {
        let kw = Keywords::compile(&strings(&["welcome"]), &strings(&["Fatal Error"]), false)
            .expect("kw");
        let s = scan(&kw, b"WELCOME ... PHP fatal ERROR in x.php", 5);
        assert!(!s.missing(&kw));
        assert!(s.forbidden_seen(&kw));
        let s = scan(&kw, b"Welcome, all fine", 4);
        assert!(!s.forbidden_seen(&kw));
        assert!(kw.has_forbidden());
    }

    #[test]
    fn nothing_to_look_for_compiles_to_none() {
        assert!(Keywords::compile(&[], &[], false).is_none());
    }

    #[test]
    fn carry_stays_bounded() {
        let kw = Keywords::compile(&strings(&["abcdef"]), &[], true).expect("kw");
        let mut s = KeywordScan::new(Vec::new());
        let mut fold = Vec::new();
        for _ in 0..1000 {
            s.feed(&kw, b"zzzzzzzzzzzzzzzzzzzzzzzz", &mut fold);
            assert!(s.carry.len() <= 5);
        }
    }
}
