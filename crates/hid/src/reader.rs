//! Bounds-checked reading of device reports: every access is checked, so a short or malformed
//! report becomes a [`ParseError`], never a panic.

use thiserror::Error;

/// Why a report could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The report ended before a field could be read.
    #[error("report too short: needed {needed} byte(s) at offset {offset}, report has {len}")]
    Short {
        /// Offset of the field that did not fit.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Length of the report.
        len: usize,
    },
    /// The report has the wrong length for its protocol.
    #[error("report has {actual} bytes, expected {expected}")]
    Length {
        /// Expected length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },
    /// A checksum did not match.
    #[error("report checksum mismatch (expected {expected:#x}, computed {computed:#x})")]
    Checksum {
        /// Checksum carried by the report.
        expected: u32,
        /// Checksum computed over the report.
        computed: u32,
    },
    /// A field holds a value the protocol does not allow.
    #[error("invalid field {field}: {detail}")]
    Invalid {
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        detail: &'static str,
    },
}

/// A cursor over a byte slice whose every read is bounds checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at offset 0.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Reads `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::Short {
            offset: self.pos,
            needed: n,
            len: self.data.len(),
        })?;
        let out = self.data.get(self.pos..end).ok_or(ParseError::Short {
            offset: self.pos,
            needed: n,
            len: self.data.len(),
        })?;
        self.pos = end;
        Ok(out)
    }

    /// Reads exactly `N` bytes into an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), ParseError> {
        self.bytes(n).map(|_| ())
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian u16.
    pub fn u16_le(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a big-endian u16.
    pub fn u16_be(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a little-endian u32.
    pub fn u32_le(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a big-endian u32.
    pub fn u32_be(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a little-endian u64.
    pub fn u64_le(&mut self) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

/// Writes `src` into `dst` at `offset`, checking bounds (used when building requests).
pub(crate) fn put(dst: &mut [u8], offset: usize, src: &[u8]) -> Result<(), ParseError> {
    let len = dst.len();
    let end = offset.checked_add(src.len()).ok_or(ParseError::Short {
        offset,
        needed: src.len(),
        len,
    })?;
    let slot = dst.get_mut(offset..end).ok_or(ParseError::Short {
        offset,
        needed: src.len(),
        len,
    })?;
    slot.copy_from_slice(src);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_and_stops_at_the_end() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut r = Reader::new(&data);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16_le(), Ok(0x0302));
        assert_eq!(r.u32_be(), Ok(0x0405_0607));
        assert_eq!(r.remaining(), 2);
        assert_eq!(
            r.u32_le(),
            Err(ParseError::Short {
                offset: 7,
                needed: 4,
                len: 9
            })
        );
        // A failed read consumes nothing.
        assert_eq!(r.u16_be(), Ok(0x0809));
        assert!(r.u8().is_err());
    }

    #[test]
    fn huge_lengths_do_not_overflow() {
        let mut r = Reader::new(&[0u8; 4]);
        r.skip(2).ok();
        assert!(r.bytes(usize::MAX).is_err());
        let mut buf = [0u8; 4];
        assert!(put(&mut buf, usize::MAX, &[1]).is_err());
        assert!(put(&mut buf, 3, &[1, 2]).is_err());
        assert!(put(&mut buf, 2, &[1, 2]).is_ok());
        assert_eq!(buf, [0, 0, 1, 2]);
    }
}
