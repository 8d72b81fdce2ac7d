//! A `Read` wrapper that refuses overlong runs of bytes before the XML parser buffers them.
//!
//! quick-xml reads a whole text node or tag into its buffer before handing it over, so a
//! 100 MB text node would be held in memory before any length check could see it. This
//! guard sits below the parser: it counts the bytes since the last `<` or `>` and fails
//! the read once a run exceeds the limit, so the parser never holds more than the limit
//! plus one read buffer. It also counts the bytes read, for progress reports.

use std::io::{self, Read};

/// Read wrapper enforcing a maximum run between markup delimiters.
#[derive(Debug)]
pub(crate) struct Guard<R> {
    inner: R,
    run: usize,
    limit: usize,
    total: u64,
    tripped: bool,
}

impl<R> Guard<R> {
    pub(crate) fn new(inner: R, limit: usize) -> Self {
        Self {
            inner,
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
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tripped {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "text or tag too long",
            ));
        }
        let n = self.inner.read(buf)?;
        let chunk = buf.get(..n).unwrap_or_default();
        self.total = self.total.saturating_add(n as u64);
        for &b in chunk {
            if b == b'<' || b == b'>' {
                self.run = 0;
            } else {
                self.run += 1;
                if self.run > self.limit {
                    self.tripped = true;
                }
            }
        }
        if self.run > self.limit {
            self.tripped = true;
        }
        if self.tripped {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "text or tag too long",
            ));
        }
        Ok(n)
    }
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
}
