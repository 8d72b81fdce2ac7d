//! The XML Encryption and XML Signature primitives PSKC uses: AES-CBC with the IV in
//! front of the ciphertext and PKCS#7 padding, HMAC value MACs, PBKDF2 key derivation.
//!
//! Every buffer that holds a key or a plaintext is a [`Zeroizing`] buffer; MACs are
//! compared with `subtle`.

use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// AES block (and IV) size.
pub(crate) const BLOCK: usize = 16;

/// A value cipher of XML Encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// `http://www.w3.org/2001/04/xmlenc#aes128-cbc`
    Aes128Cbc,
    /// `http://www.w3.org/2001/04/xmlenc#aes192-cbc`
    Aes192Cbc,
    /// `http://www.w3.org/2001/04/xmlenc#aes256-cbc`
    Aes256Cbc,
}

impl Cipher {
    /// The XML Encryption algorithm URI.
    #[must_use]
    pub fn uri(self) -> &'static str {
        match self {
            Self::Aes128Cbc => "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
            Self::Aes192Cbc => "http://www.w3.org/2001/04/xmlenc#aes192-cbc",
            Self::Aes256Cbc => "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
        }
    }

    /// Reads an algorithm URI.
    #[must_use]
    pub fn from_uri(uri: &str) -> Option<Self> {
        match uri.trim() {
            "http://www.w3.org/2001/04/xmlenc#aes128-cbc" => Some(Self::Aes128Cbc),
            "http://www.w3.org/2001/04/xmlenc#aes192-cbc" => Some(Self::Aes192Cbc),
            "http://www.w3.org/2001/04/xmlenc#aes256-cbc" => Some(Self::Aes256Cbc),
            _ => None,
        }
    }

    /// Key size in bytes.
    #[must_use]
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128Cbc => 16,
            Self::Aes192Cbc => 24,
            Self::Aes256Cbc => 32,
        }
    }

    /// A short name for messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes128Cbc => "AES-128-CBC",
            Self::Aes192Cbc => "AES-192-CBC",
            Self::Aes256Cbc => "AES-256-CBC",
        }
    }
}

/// The MAC algorithm of a container (`MACMethod/@Algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacAlgorithm {
    /// `http://www.w3.org/2000/09/xmldsig#hmac-sha1`
    HmacSha1,
    /// `http://www.w3.org/2001/04/xmldsig-more#hmac-sha256`
    HmacSha256,
}

impl MacAlgorithm {
    /// The XML Signature algorithm URI.
    #[must_use]
    pub fn uri(self) -> &'static str {
        match self {
            Self::HmacSha1 => "http://www.w3.org/2000/09/xmldsig#hmac-sha1",
            Self::HmacSha256 => "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
        }
    }

    /// Reads an algorithm URI.
    #[must_use]
    pub fn from_uri(uri: &str) -> Option<Self> {
        match uri.trim() {
            "http://www.w3.org/2000/09/xmldsig#hmac-sha1" => Some(Self::HmacSha1),
            "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256" => Some(Self::HmacSha256),
            _ => None,
        }
    }

    /// Output length in bytes (also the length of the MAC key okey generates).
    #[must_use]
    pub fn output_len(self) -> usize {
        match self {
            Self::HmacSha1 => 20,
            Self::HmacSha256 => 32,
        }
    }

    /// HMAC of `data` under `key`.
    pub(crate) fn compute(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::HmacSha1 => hmac_of::<Hmac<sha1::Sha1>>(key, data),
            Self::HmacSha256 => hmac_of::<Hmac<sha2::Sha256>>(key, data),
        }
    }

    /// Constant-time check of a MAC value.
    pub(crate) fn verify(self, key: &[u8], data: &[u8], expected: &[u8]) -> bool {
        let actual = self.compute(key, data);
        actual.len() == expected.len() && bool::from(actual.ct_eq(expected))
    }
}

fn hmac_of<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here; the fallback
    // keeps the code free of panics and can never verify.
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The PBKDF2 pseudo-random function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    /// HMAC-SHA1 (the PKCS#5 default when `PRF` is absent).
    HmacSha1,
    /// HMAC-SHA256.
    HmacSha256,
}

impl Prf {
    /// URI okey writes.
    #[must_use]
    pub fn uri(self) -> &'static str {
        match self {
            Self::HmacSha1 => "http://www.w3.org/2000/09/xmldsig#hmac-sha1",
            Self::HmacSha256 => "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
        }
    }

    /// Reads a PRF URI (XML Signature names and the PKCS#5 schema names).
    #[must_use]
    pub fn from_uri(uri: &str) -> Option<Self> {
        match uri.trim() {
            "http://www.w3.org/2000/09/xmldsig#hmac-sha1"
            | "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#hmac-sha1"
            | "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5#hmac-sha1" => {
                Some(Self::HmacSha1)
            }
            "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
            | "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#hmac-sha256"
            | "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5#hmac-sha256" => {
                Some(Self::HmacSha256)
            }
            _ => None,
        }
    }

    /// PBKDF2 of `password` into `out.len()` bytes.
    pub(crate) fn derive(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
        len: usize,
    ) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; len]);
        match self {
            Self::HmacSha1 => {
                pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut out)
            }
            Self::HmacSha256 => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
            }
        }
        out
    }
}

/// Why a value did not decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecryptError {
    /// Key size does not match the cipher.
    KeySize,
    /// Ciphertext length or padding is wrong (a wrong key, most often).
    Invalid,
}

/// Decrypts `IV || ciphertext` (XML Encryption CBC layout) and removes PKCS#7 padding.
pub(crate) fn decrypt(
    cipher: Cipher,
    key: &[u8],
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    if key.len() != cipher.key_len() {
        return Err(DecryptError::KeySize);
    }
    let (iv, ct) = data.split_at_checked(BLOCK).ok_or(DecryptError::Invalid)?;
    if ct.is_empty() || ct.len() % BLOCK != 0 {
        return Err(DecryptError::Invalid);
    }
    let mut buf = Zeroizing::new(ct.to_vec());
    let len = match cipher {
        Cipher::Aes128Cbc => cbc_decrypt::<aes::Aes128>(key, iv, &mut buf)?,
        Cipher::Aes192Cbc => cbc_decrypt::<aes::Aes192>(key, iv, &mut buf)?,
        Cipher::Aes256Cbc => cbc_decrypt::<aes::Aes256>(key, iv, &mut buf)?,
    };
    buf.truncate(len);
    Ok(buf)
}

fn cbc_decrypt<C>(key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<usize, DecryptError>
where
    C: aes::cipher::BlockCipherDecrypt + aes::cipher::KeyInit,
    cbc::Decryptor<C>: KeyIvInit + BlockModeDecrypt,
{
    let dec = cbc::Decryptor::<C>::new_from_slices(key, iv).map_err(|_| DecryptError::KeySize)?;
    dec.decrypt_padded::<Pkcs7>(buf)
        .map(<[u8]>::len)
        .map_err(|_| DecryptError::Invalid)
}

/// Encrypts `plain` under `key` with a fresh random IV; returns `IV || ciphertext`.
pub(crate) fn encrypt(cipher: Cipher, key: &[u8], plain: &[u8]) -> Result<Vec<u8>, DecryptError> {
    if key.len() != cipher.key_len() {
        return Err(DecryptError::KeySize);
    }
    let mut iv = [0u8; BLOCK];
    rand::rng().fill_bytes(&mut iv);
    let padded_len = (plain.len() / BLOCK + 1) * BLOCK;
    let mut buf = Zeroizing::new(vec![0u8; padded_len]);
    buf.get_mut(..plain.len())
        .ok_or(DecryptError::Invalid)?
        .copy_from_slice(plain);
    let ct_len = match cipher {
        Cipher::Aes128Cbc => cbc_encrypt::<aes::Aes128>(key, &iv, &mut buf, plain.len())?,
        Cipher::Aes192Cbc => cbc_encrypt::<aes::Aes192>(key, &iv, &mut buf, plain.len())?,
        Cipher::Aes256Cbc => cbc_encrypt::<aes::Aes256>(key, &iv, &mut buf, plain.len())?,
    };
    let mut out = Vec::with_capacity(BLOCK + ct_len);
    out.extend_from_slice(&iv);
    out.extend_from_slice(buf.get(..ct_len).ok_or(DecryptError::Invalid)?);
    Ok(out)
}

fn cbc_encrypt<C>(key: &[u8], iv: &[u8], buf: &mut [u8], len: usize) -> Result<usize, DecryptError>
where
    C: aes::cipher::BlockCipherEncrypt + aes::cipher::KeyInit,
    cbc::Encryptor<C>: KeyIvInit + BlockModeEncrypt,
{
    let enc = cbc::Encryptor::<C>::new_from_slices(key, iv).map_err(|_| DecryptError::KeySize)?;
    enc.encrypt_padded::<Pkcs7>(buf, len)
        .map(<[u8]>::len)
        .map_err(|_| DecryptError::Invalid)
}

/// Fresh random bytes in a zeroizing buffer.
pub(crate) fn random_secret(len: usize) -> Zeroizing<Vec<u8>> {
    let mut k = Zeroizing::new(vec![0u8; len]);
    rand::rng().fill_bytes(&mut k);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbc_round_trip_every_cipher_and_length() {
        for cipher in [Cipher::Aes128Cbc, Cipher::Aes192Cbc, Cipher::Aes256Cbc] {
            let key = random_secret(cipher.key_len());
            for len in [0usize, 1, 15, 16, 17, 20, 32, 64] {
                let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let ct = encrypt(cipher, &key, &plain).unwrap();
                assert_eq!(ct.len(), BLOCK + (len / BLOCK + 1) * BLOCK);
                assert_eq!(&*decrypt(cipher, &key, &ct).unwrap(), &plain[..]);
            }
            assert_eq!(
                decrypt(cipher, &key[1..], &[0; 32]),
                Err(DecryptError::KeySize)
            );
            assert_eq!(decrypt(cipher, &key, &[0; 16]), Err(DecryptError::Invalid));
            assert_eq!(decrypt(cipher, &key, &[0; 33]), Err(DecryptError::Invalid));
        }
    }

    /// NIST SP 800-38A F.2.1 CBC-AES128.Encrypt, first block (no padding involved: the
    /// known block is checked as the first block of our padded output).
    #[test]
    fn aes128_cbc_known_answer() {
        let key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let iv = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let pt = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        let mut buf = vec![0u8; 32];
        buf[..16].copy_from_slice(&pt);
        let n = cbc_encrypt::<aes::Aes128>(&key, &iv, &mut buf, 16).unwrap();
        assert_eq!(n, 32);
        assert_eq!(hex::encode(&buf[..16]), "7649abac8119b246cee98e9b12e9197d");
    }

    /// RFC 6070 PBKDF2-HMAC-SHA1 vector 2 and a SHA-256 value cross-checked with Python's
    /// `hashlib.pbkdf2_hmac`.
    #[test]
    fn pbkdf2_vectors() {
        let k = Prf::HmacSha1.derive(b"password", b"salt", 2, 20);
        assert_eq!(hex::encode(&*k), "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957");
        let k = Prf::HmacSha256.derive(b"password", b"salt", 1, 32);
        assert_eq!(
            hex::encode(&*k),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
    }

    /// RFC 2202 test case 2 (HMAC-SHA1) and RFC 4231 test case 2 (HMAC-SHA256).
    #[test]
    fn hmac_vectors() {
        let m = MacAlgorithm::HmacSha1.compute(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(&m), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        let m = MacAlgorithm::HmacSha256.compute(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(&m),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(MacAlgorithm::HmacSha1.verify(
            b"Jefe",
            b"what do ya want for nothing?",
            &hex::decode("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79").unwrap()
        ));
        assert!(!MacAlgorithm::HmacSha1.verify(b"Jefe", b"what do ya want for nothing?", &[0; 20]));
        assert!(!MacAlgorithm::HmacSha1.verify(b"Jefe", b"what do ya want for nothing?", &[]));
    }
}
