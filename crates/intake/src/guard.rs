//! A `Read` wrapper that refuses overlong XML tokens before the XML parser buffers them.
//!
//! quick-xml reads a whole text node, tag, comment, CDATA section or processing instruction
//! into its buffer before handing it over, so a 100 MB node would be held in memory before
//! any length check could see it. This guard sits below the parser and follows the same
//! lexical boundaries quick-xml does: text runs to the next `<`; a tag (start or end) to the
//! first `>` outside a quoted attribute value; a comment to `-->`; a CDATA section to `]]>`;
//! a processing instruction (and the XML declaration) to `?>`. A `>` anywhere else — in
//! text, in an attribute value, inside a comment — ends nothing, and does not reset the
//! count. A DOCTYPE (refused by the reader anyway) and any other `<!` construct never end
//! for the guard: their bytes count until the limit, however many `>` they hold.
//!
//! The guard counts the bytes of the current token (without the `<` and `>` delimiting
//! markup) and fails the read once one exceeds the limit, so the parser never holds more
//! than the limit plus one read buffer. It also counts the bytes read, for progress
//! reports.

use std::io::{self, Read};

/// Where the input is, lexically, as quick-xml will split it into events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Character data (and references) up to the next `<`.
    Text,
    /// Just after a `<`: the next byte says what the markup is.
    Open,
    /// In a start or end tag; `Some(quote)` inside a quoted attribute value.
    Tag(Option<u8>),
    /// Just after `<!`.
    Bang,
    /// In a comment, until `-->` (quick-xml's minimal comment is `<!---->`).
    Comment,
    /// In a CDATA section, until `]]>`.
    CData,
    /// In a processing instruction or the XML declaration, until `?>`.
    Pi,
    /// In a DOCTYPE or an invalid `<!` construct: never ends, the count only grows.
    Opaque,
}

/// Read wrapper enforcing a maximum length of every XML token.
#[derive(Debug)]
pub(crate) struct Guard<R> {
    inner: R,
    lex: Lex,
    /// The two bytes before the current one (for the `-->`, `]]>` and `?>` terminators).
    prev: [u8; 2],
    /// Bytes of the current token so far.
    run: usize,
    limit: usize,
    total: u64,
    tripped: bool,
}

impl<R> Guard<R> {
    pub(crate) fn new(inner: R, limit: usize) -> Self {
        Self {
            inner,
            lex: Lex::Text,
            prev: [0; 2],
            run: 0,
            limit,
            total: 0,
            tripped: false,
        }
    }

    /// Whether the limit was hit (the read error that followed is ours).
    pub(crate) fn tripped(&self) -> bool {
        self.tripped
    }

    /// Bytes read from the input so far.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Advances the lexical state over one byte; counts it, or resets the count when the
    /// byte begins or ends markup.
    fn step(&mut self, b: u8) {
        use Lex::{Bang, CData, Comment, Opaque, Open, Pi, Tag, Text};
        let [_, last] = self.prev;
        let (next, reset) = match (self.lex, b) {
            (Text, b'<') => (Open, true),
            (Text, _) => (Text, false),
            (Open, b'!') => (Bang, false),
            (Open, b'?') => (Pi, false),
            (Open, b'>') | (Tag(None), b'>') => (Text, true),
            (Open | Tag(None), b'"' | b'\'') => (Tag(Some(b)), false),
            (Open, _) => (Tag(None), false),
            (Tag(Some(quote)), _) if b == quote => (Tag(None), false),
            (Tag(_), _) => (self.lex, false),
            (Bang, b'-') => (Comment, false),
            (Bang, b'[') => (CData, false),
            (Bang, _) => (Opaque, false),
            // `run` counts the bytes after `<`; quick-xml ends a comment at the first `-->`
            // from `<!---->` on, so at least five bytes (`!----`) come before its `>`.
            (Comment, b'>') if self.prev == *b"--" && self.run >= 5 => (Text, true),
            (CData, b'>') if self.prev == *b"]]" => (Text, true),
            // `<?>` ends too: the `?` may be the one just after `<`.
            (Pi, b'>') if last == b'?' => (Text, true),
            (Comment | CData | Pi | Opaque, _) => (self.lex, false),
        };
        self.lex = next;
        if reset {
            self.run = 0;
        } else {
            self.run = self.run.saturating_add(1);
            if self.run > self.limit {
                self.tripped = true;
            }
        }
        self.prev = [last, b];
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tripped {
            return Err(too_long());
        }
        let n = self.inner.read(buf)?;
        let chunk = buf.get(..n).unwrap_or_default();
        self.total = self.total.saturating_add(n as u64);
        for &b in chunk {
            self.step(b);
            if self.tripped {
                return Err(too_long());
            }
        }
        Ok(n)
    }
}

fn too_long() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "text or tag too long")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], limit: usize, chunk: usize) -> Result<Vec<u8>, bool> {
        let mut g = Guard::new(data, limit);
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            match g.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => return Err(g.tripped()),
            }
        }
    }

    #[test]
    fn runs_up_to_limit_pass_longer_fail() {
        for chunk in [1, 3, 7, 64] {
            let ok = format!("<a>{}</a>", "x".repeat(10));
            assert_eq!(read_all(ok.as_bytes(), 10, chunk).unwrap(), ok.as_bytes());
            let bad = format!("<a>{}</a>", "x".repeat(11));
            assert_eq!(
                read_all(bad.as_bytes(), 10, chunk),
                Err(true),
                "chunk {chunk}"
            );
            let tail = "x".repeat(11);
            assert_eq!(read_all(tail.as_bytes(), 10, chunk), Err(true));
        }
    }

    /// `pattern` repeated and cut to `n` bytes.
    fn fill(pattern: &str, n: usize) -> String {
        pattern.chars().cycle().take(n).collect()
    }

    /// Parses `doc` with quick-xml over a guard, as the reader does: `Ok` with the number of
    /// events, or `Err(tripped)`.
    fn parse(doc: &str, limit: usize, capacity: usize) -> Result<usize, bool> {
        let guard = Guard::new(doc.as_bytes(), limit);
        let mut xml =
            quick_xml::Reader::from_reader(std::io::BufReader::with_capacity(capacity, guard));
        xml.config_mut().check_end_names = false;
        let mut buf = Vec::new();
        let mut events = 0;
        loop {
            match xml.read_event_into(&mut buf) {
                Ok(quick_xml::events::Event::Eof) => return Ok(events),
                Ok(_) => events += 1,
                Err(_) => return Err(xml.get_ref().get_ref().tripped()),
            }
            buf.clear();
        }
    }

    /// Each construct whose content may hold a literal `>`, built so the token the guard
    /// counts (markup without its `<` and `>`) is exactly `len` bytes.
    fn constructs(len: usize) -> Vec<(&'static str, String)> {
        vec![
            ("text", format!("<a>{}</a>", fill("x>", len))),
            ("comment", format!("<a><!--{}--></a>", fill("a->", len - 5))),
            (
                "cdata",
                format!("<a><![CDATA[{}]]></a>", fill("]>a", len - 10)),
            ),
            ("pi", format!("<a><?pi {}?></a>", fill("a>", len - 5))),
            ("decl", format!("<?xml {}?><a/>", fill("a>", len - 6))),
            ("double", format!("<a b=\"{}\"/>", fill("a>'<", len - 7))),
            ("single", format!("<a b='{}'/>", fill("a>\"<", len - 7))),
            ("end", format!("<a></a b=\"{}\">", fill("a>", len - 7))),
        ]
    }

    #[test]
    fn a_gt_inside_a_token_does_not_reset_the_count() {
        let limit = 40;
        for capacity in [1, 2, 3, 7, 64] {
            for (what, doc) in constructs(limit) {
                assert!(
                    parse(&doc, limit, capacity).is_ok(),
                    "{what} at the limit, capacity {capacity}: {doc}"
                );
            }
            for (what, doc) in constructs(limit + 1) {
                assert_eq!(
                    parse(&doc, limit, capacity),
                    Err(true),
                    "{what} over the limit, capacity {capacity}: {doc}"
                );
            }
        }
    }

    /// The count restarts where quick-xml ends a token: a long document of short tokens,
    /// with near-miss terminators in every construct, reads under a small limit.
    #[test]
    fn tokens_end_where_the_parser_ends_them() {
        let unit = concat!(
            "<a x=\">'\" y='\">'>t>t</a>",
            "<!-- - -> ->> --><!---->",
            "<![CDATA[ ] ]> ]] > ]]]><![CDATA[]]>",
            "<?pi ? > ??><??>",
            "<b/>\n",
        );
        let doc = format!("<r>{}</r>", unit.repeat(2000));
        for capacity in [1, 5, 8192] {
            assert!(
                parse(&doc, 1 << 30, capacity).is_ok(),
                "capacity {capacity}"
            );
            assert!(parse(&doc, 32, capacity).is_ok(), "capacity {capacity}");
        }
    }

    /// A DOCTYPE never ends for the guard (the reader refuses it anyway): whatever follows
    /// counts on.
    #[test]
    fn doctype_counts_until_the_limit() {
        let doc = format!(
            "<!DOCTYPE r [<!ENTITY e \">\">]><r>{}</r>",
            "<a>x</a>".repeat(100)
        );
        assert_eq!(read_all(doc.as_bytes(), 200, 64), Err(true));
        assert!(read_all(doc.as_bytes(), doc.len(), 64).is_ok());
    }
}
