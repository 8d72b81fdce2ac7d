//! Generated PSKC containers for benchmarks, load tests and fuzz seeds: a `Read` that
//! produces a plain container of any number of HOTP key packages on the fly, so a
//! 100,000-package import can be measured without a file on disk or in memory.
//!
//! The seeds are public by construction (package `i` has the 20 ASCII digits of `i`),
//! so these containers must never provision a real token.

use std::io::{self, Read};

use data_encoding::BASE64;

/// Seed of synthetic package `i` (1-based): the 20 ASCII digits of `i`, zero-padded.
#[must_use]
pub fn synthetic_secret(i: usize) -> Vec<u8> {
    format!("{i:020}").into_bytes()
}

/// Serial of synthetic package `i`: ten digits with leading zeros.
#[must_use]
pub fn synthetic_serial(i: usize) -> String {
    format!("{i:010}")
}

/// A plain PSKC container of `n` HOTP packages, generated as it is read.
#[derive(Debug)]
pub struct SyntheticPskc {
    n: usize,
    next: usize,
    chunk: Vec<u8>,
    pos: usize,
    footer_done: bool,
}

impl SyntheticPskc {
    /// A container of `n` packages.
    #[must_use]
    pub fn new(n: usize) -> Self {
        let head = concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
            "<KeyContainer Version=\"1.0\" Id=\"synthetic\" xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\">\n"
        );
        Self {
            n,
            next: 1,
            chunk: head.as_bytes().to_vec(),
            pos: 0,
            footer_done: false,
        }
    }

    fn refill(&mut self) {
        self.chunk.clear();
        self.pos = 0;
        if self.next <= self.n {
            let i = self.next;
            self.next += 1;
            let package = format!(
                concat!(
                    "  <KeyPackage>\n",
                    "    <DeviceInfo><Manufacturer>Synthetic</Manufacturer><SerialNo>{serial}</SerialNo><Model>S1</Model></DeviceInfo>\n",
                    "    <Key Id=\"k{i}\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:hotp\">\n",
                    "      <Issuer>okey</Issuer>\n",
                    "      <AlgorithmParameters><ResponseFormat Length=\"6\" Encoding=\"DECIMAL\"/></AlgorithmParameters>\n",
                    "      <Data>\n",
                    "        <Secret><PlainValue>{secret}</PlainValue></Secret>\n",
                    "        <Counter><PlainValue>0</PlainValue></Counter>\n",
                    "      </Data>\n",
                    "    </Key>\n",
                    "  </KeyPackage>\n",
                ),
                serial = synthetic_serial(i),
                i = i,
                secret = BASE64.encode(&synthetic_secret(i)),
            );
            self.chunk.extend_from_slice(package.as_bytes());
        } else if !self.footer_done {
            self.footer_done = true;
            self.chunk.extend_from_slice(b"</KeyContainer>\n");
        }
    }
}

impl Read for SyntheticPskc {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.chunk.len() {
            self.refill();
        }
        let rest = self.chunk.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}
