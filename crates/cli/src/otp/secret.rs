//! Secret command-line values (keys, PINs, codes) and the decoding of keys from hex or base32.
//!
//! A secret argument is held in a [`Zeroizing`] string with a `Debug` that prints nothing, and
//! every buffer derived from it (the whitespace-stripped text, the decoded bytes, the contents of
//! a key file) is zeroized too. Buffers are sized before they are filled so that no reallocation
//! leaves an unzeroized copy behind. Error texts name positions and lengths, never characters of
//! the key.
//!
//! What this cannot reach: the copies the operating system and the argument parser keep of the
//! process arguments. That is why `--key -` (standard input) and `--key @FILE` exist: they keep
//! the key out of `argv`, the shell history and `ps`.

use std::fmt;
use std::io::Read;

use anyhow::{Context, anyhow, bail};
use zeroize::Zeroizing;

/// The longest key text read from standard input or a file: 1024 key bytes in hex is 2048
/// characters; whitespace and a trailing newline fit comfortably below this.
const MAX_SECRET_TEXT: usize = 8192;

/// A secret given on the command line. Zeroized on drop; `Debug` prints nothing secret.
#[derive(Clone)]
pub struct SecretArg(Zeroizing<String>);

impl From<String> for SecretArg {
    fn from(text: String) -> Self {
        SecretArg(Zeroizing::new(text))
    }
}

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretArg(<secret>)")
    }
}

impl SecretArg {
    /// The text as given.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// How a key is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyEncoding {
    /// Hexadecimal digits, either case.
    Hex,
    /// RFC 4648 base32, either case, padding optional.
    Base32,
}

impl KeyEncoding {
    fn option(self) -> &'static str {
        match self {
            KeyEncoding::Hex => "--key",
            KeyEncoding::Base32 => "--base32",
        }
    }
}

/// Resolve `-` (standard input) and `@FILE` to the text they name; anything else is the key
/// text itself.
fn key_text(arg: &SecretArg, option: &str) -> anyhow::Result<Zeroizing<String>> {
    let given = arg.expose();
    if given == "-" {
        return read_limited(std::io::stdin().lock())
            .with_context(|| format!("{option} -: reading the key from standard input"));
    }
    if let Some(path) = given.strip_prefix('@') {
        let file = std::fs::File::open(path)
            .with_context(|| format!("{option} @{path}: cannot open the key file"))?;
        return read_limited(file).with_context(|| format!("{option} @{path}"));
    }
    Ok(Zeroizing::new(given.to_owned()))
}

/// Read at most [`MAX_SECRET_TEXT`] bytes of UTF-8 into a buffer allocated once.
fn read_limited(source: impl Read) -> anyhow::Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_SECRET_TEXT + 1));
    source
        .take(MAX_SECRET_TEXT as u64 + 1)
        .read_to_end(&mut bytes)
        .context("read failed")?;
    if bytes.len() > MAX_SECRET_TEXT {
        bail!("the key text is longer than {MAX_SECRET_TEXT} bytes");
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| anyhow!("the key text is not UTF-8"))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The key bytes named by a `--key`/`--base32` argument. Whitespace anywhere is ignored.
pub fn decode_key(arg: &SecretArg, encoding: KeyEncoding) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let option = encoding.option();
    let text = key_text(arg, option)?;
    let bytes = match encoding {
        KeyEncoding::Hex => decode_hex(&text),
        KeyEncoding::Base32 => decode_base32(&text),
    };
    bytes.context(option)
}

/// Decode hexadecimal digits, ignoring whitespace.
pub fn decode_hex(text: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut digits = Zeroizing::new(String::with_capacity(text.len()));
    for (position, c) in text.chars().filter(|c| !c.is_whitespace()).enumerate() {
        if !c.is_ascii_hexdigit() {
            bail!("not hexadecimal: digit {} is not 0-9 or a-f", position + 1);
        }
        digits.push(c);
    }
    if !digits.len().is_multiple_of(2) {
        bail!(
            "not hexadecimal: {} digits, an odd number (two digits per byte)",
            digits.len()
        );
    }
    let mut bytes = Zeroizing::new(vec![0u8; digits.len() / 2]);
    hex::decode_to_slice(digits.as_bytes(), bytes.as_mut_slice())
        .map_err(|_| anyhow!("not hexadecimal"))?;
    Ok(bytes)
}

/// Decode RFC 4648 base32, ignoring whitespace and case; `=` padding is optional.
pub fn decode_base32(text: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut symbols = Zeroizing::new(String::with_capacity(text.len()));
    symbols.extend(
        text.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase()),
    );
    let unpadded = symbols.trim_end_matches('=');
    if let Some(position) = unpadded
        .chars()
        .position(|c| !matches!(c, 'A'..='Z' | '2'..='7'))
    {
        bail!(
            "not base32: symbol {} is not A-Z or 2-7 (or padding in the middle)",
            position + 1
        );
    }
    let encoding = &data_encoding::BASE32_NOPAD;
    let len = encoding.decode_len(unpadded.len()).map_err(|_| {
        anyhow!(
            "not base32: {} symbols cannot end a base32 text (lengths are 2, 4, 5 or 7 modulo 8)",
            unpadded.len()
        )
    })?;
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    let written = encoding
        .decode_mut(unpadded.as_bytes(), bytes.as_mut_slice())
        .map_err(|partial| match partial.error.kind {
            data_encoding::DecodeKind::Trailing => {
                anyhow!("not base32: the last symbol has bits set past the end of the key")
            }
            _ => anyhow!(
                "not base32: symbol {} is invalid",
                partial.error.position + 1
            ),
        })?;
    bytes.truncate(written);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_hex(text: &str, expected: Result<&str, &str>) {
        let got = decode_hex(text)
            .map(|b| hex::encode(b.as_slice()))
            .map_err(|e| e.to_string());
        assert_eq!(got.as_deref().map_err(String::as_str), expected, "{text:?}");
    }

    fn check_base32(text: &str, expected: Result<&str, &str>) {
        let got = decode_base32(text)
            .map(|b| hex::encode(b.as_slice()))
            .map_err(|e| e.to_string());
        assert_eq!(got.as_deref().map_err(String::as_str), expected, "{text:?}");
    }

    #[test]
    fn hex_keys() {
        check_hex("3132", Ok("3132"));
        check_hex("AbCd", Ok("abcd"));
        check_hex(" 31 32\n", Ok("3132"));
        check_hex("", Ok(""));
        check_hex(
            "313",
            Err("not hexadecimal: 3 digits, an odd number (two digits per byte)"),
        );
        check_hex("31g2", Err("not hexadecimal: digit 3 is not 0-9 or a-f"));
        check_hex("０１", Err("not hexadecimal: digit 1 is not 0-9 or a-f"));
    }

    #[test]
    fn base32_keys() {
        // RFC 4648 §10 test vectors.
        check_base32("MZXW6YTBOI======", Ok("666f6f626172"));
        check_base32("MZXW6YTBOI", Ok("666f6f626172"));
        check_base32("mzxw 6ytb oi", Ok("666f6f626172"));
        check_base32("MY======", Ok("66"));
        check_base32("MZXQ====", Ok("666f"));
        check_base32("MZXW6===", Ok("666f6f"));
        check_base32("MZXW6YQ=", Ok("666f6f62"));
        check_base32(
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            Ok("3132333435363738393031323334353637383930"),
        );
        check_base32(
            "MZXW1",
            Err("not base32: symbol 5 is not A-Z or 2-7 (or padding in the middle)"),
        );
        check_base32(
            "MZ=XW",
            Err("not base32: symbol 3 is not A-Z or 2-7 (or padding in the middle)"),
        );
        check_base32(
            "MZX",
            Err(
                "not base32: 3 symbols cannot end a base32 text (lengths are 2, 4, 5 or 7 modulo 8)",
            ),
        );
        check_base32(
            "MZ",
            Err("not base32: the last symbol has bits set past the end of the key"),
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let arg = SecretArg::from("3132333435".to_owned());
        assert_eq!(format!("{arg:?}"), "SecretArg(<secret>)");
    }
}
