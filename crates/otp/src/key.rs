//! Secret key material held as precomputed HMAC inner and outer hash states.
//!
//! HMAC(K, m) = H((K ⊕ opad) ‖ H((K ⊕ ipad) ‖ m)). The two key blocks are the same for every
//! message, so we compress them once, when the key is loaded, and keep only the two chaining
//! states. A one-time code over an 8-byte counter then costs exactly two compressions (one for the
//! padded counter, one for the padded inner digest) instead of four. The raw key bytes are never
//! kept: only these states, which are zeroized when the key is dropped.

use sha1::block_api::compress as sha1_compress;
use sha2::block_api::{compress256, compress512};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;

/// The hash function under HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC-SHA1 (RFC 4226's default).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    /// Size of the digest in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// Size of the compression function's block in bytes.
    pub const fn block_len(self) -> usize {
        match self {
            Algorithm::Sha1 | Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// The lower-case name used in configuration, URIs and the CLI (`sha1`, `sha256`, `sha512`).
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" | "sha-1" => Ok(Algorithm::Sha1),
            "sha256" | "sha-256" => Ok(Algorithm::Sha256),
            "sha512" | "sha-512" => Ok(Algorithm::Sha512),
            _ => Err(Error::UnknownAlgorithm(s.chars().take(32).collect())),
        }
    }
}

const SHA1_IV: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];
const SHA512_IV: [u64; 8] = [
    0x6a09_e667_f3bc_c908,
    0xbb67_ae85_84ca_a73b,
    0x3c6e_f372_fe94_f82b,
    0xa54f_f53a_5f1d_36f1,
    0x510e_527f_ade6_82d1,
    0x9b05_688c_2b3e_6c1f,
    0x1f83_d9ab_fb41_bd6b,
    0x5be0_cd19_137e_2179,
];

/// The largest key we accept. Longer keys are hashed down by HMAC anyway; a limit keeps a
/// hostile import from making us hash megabytes.
pub const MAX_KEY_LEN: usize = 1024;

#[derive(Clone, Zeroize)]
enum States {
    Sha1 { inner: [u32; 5], outer: [u32; 5] },
    Sha256 { inner: [u32; 8], outer: [u32; 8] },
    Sha512 { inner: [u64; 8], outer: [u64; 8] },
}

/// An HMAC key ready for one-time-code computation: the precomputed inner and outer states.
///
/// No `Debug` output shows key material, and the states are zeroized on drop. The only way to
/// use the key is to compute MACs with it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct OtpKey {
    states: States,
}

impl std::fmt::Debug for OtpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OtpKey({}, <secret>)", self.algorithm())
    }
}

/// A digest as returned by [`OtpKey::mac`]: up to 64 bytes, the valid prefix is `len` long.
#[derive(Clone, Copy)]
pub struct Mac {
    bytes: [u8; 64],
    len: usize,
}

impl Mac {
    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }

    /// RFC 4226 §5.3 dynamic truncation: the 31-bit value at the offset named by the low nibble of
    /// the last byte.
    pub fn truncate(&self) -> u32 {
        let bytes = self.as_bytes();
        let offset = usize::from(bytes.last().copied().unwrap_or(0) & 0x0f);
        let mut word = [0u8; 4];
        // The offset is at most 15 and every digest is at least 20 bytes long, so the four bytes
        // always exist; `get` keeps this free of a panic path regardless.
        if let Some(slice) = bytes.get(offset..offset + 4) {
            word.copy_from_slice(slice);
        }
        u32::from_be_bytes(word) & 0x7fff_ffff
    }
}

impl OtpKey {
    /// Load a key: hash it down if it is longer than a block, pad it, and compress the two
    /// HMAC key blocks. The caller's buffer is not kept; temporary copies are zeroized.
    pub fn new(algorithm: Algorithm, secret: &[u8]) -> Result<Self, Error> {
        if secret.is_empty() {
            return Err(Error::EmptyKey);
        }
        if secret.len() > MAX_KEY_LEN {
            return Err(Error::KeyTooLong(secret.len()));
        }
        let block_len = algorithm.block_len();
        let mut key_block = Zeroizing::new([0u8; 128]);
        if secret.len() > block_len {
            let digest = Zeroizing::new(digest(algorithm, secret));
            key_block[..digest.len].copy_from_slice(digest.as_bytes());
        } else {
            key_block[..secret.len()].copy_from_slice(secret);
        }
        let mut ipad = Zeroizing::new([0u8; 128]);
        let mut opad = Zeroizing::new([0u8; 128]);
        for i in 0..block_len {
            ipad[i] = key_block[i] ^ 0x36;
            opad[i] = key_block[i] ^ 0x5c;
        }
        let states = match algorithm {
            Algorithm::Sha1 | Algorithm::Sha256 => {
                let mut ib = Zeroizing::new([0u8; 64]);
                let mut ob = Zeroizing::new([0u8; 64]);
                ib.copy_from_slice(&ipad[..64]);
                ob.copy_from_slice(&opad[..64]);
                if algorithm == Algorithm::Sha1 {
                    let (mut inner, mut outer) = (SHA1_IV, SHA1_IV);
                    sha1_compress(&mut inner, std::slice::from_ref(&*ib));
                    sha1_compress(&mut outer, std::slice::from_ref(&*ob));
                    States::Sha1 { inner, outer }
                } else {
                    let (mut inner, mut outer) = (SHA256_IV, SHA256_IV);
                    compress256(&mut inner, std::slice::from_ref(&*ib));
                    compress256(&mut outer, std::slice::from_ref(&*ob));
                    States::Sha256 { inner, outer }
                }
            }
            Algorithm::Sha512 => {
                let (mut inner, mut outer) = (SHA512_IV, SHA512_IV);
                compress512(&mut inner, std::slice::from_ref(&*ipad));
                compress512(&mut outer, std::slice::from_ref(&*opad));
                States::Sha512 { inner, outer }
            }
        };
        Ok(OtpKey { states })
    }

    /// The hash function this key was loaded for.
    pub fn algorithm(&self) -> Algorithm {
        match self.states {
            States::Sha1 { .. } => Algorithm::Sha1,
            States::Sha256 { .. } => Algorithm::Sha256,
            States::Sha512 { .. } => Algorithm::Sha512,
        }
    }

    /// HMAC of `message` under this key.
    pub fn mac(&self, message: &[u8]) -> Mac {
        match &self.states {
            States::Sha1 { inner, outer } => {
                let mut st = *inner;
                finish_sha1(&mut st, 64, message);
                let inner_digest = sha1_bytes(&st);
                let mut st = *outer;
                finish_sha1(&mut st, 64, &inner_digest);
                let mut bytes = [0u8; 64];
                bytes[..20].copy_from_slice(&sha1_bytes(&st));
                Mac { bytes, len: 20 }
            }
            States::Sha256 { inner, outer } => {
                let mut st = *inner;
                finish_sha256(&mut st, 64, message);
                let inner_digest = sha256_bytes(&st);
                let mut st = *outer;
                finish_sha256(&mut st, 64, &inner_digest);
                let mut bytes = [0u8; 64];
                bytes[..32].copy_from_slice(&sha256_bytes(&st));
                Mac { bytes, len: 32 }
            }
            States::Sha512 { inner, outer } => {
                let mut st = *inner;
                finish_sha512(&mut st, 128, message);
                let inner_digest = sha512_bytes(&st);
                let mut st = *outer;
                finish_sha512(&mut st, 128, &inner_digest);
                Mac {
                    bytes: sha512_bytes(&st),
                    len: 64,
                }
            }
        }
    }

    /// HMAC of an 8-byte big-endian counter, the HOTP message.
    ///
    /// The fast path of [`OtpKey::mac`] for the one message size the hot path uses: the padded
    /// counter and the padded inner digest each fill exactly one fixed block, built in place.
    #[inline]
    pub fn mac_counter(&self, counter: u64) -> Mac {
        match &self.states {
            States::Sha1 { inner, outer } => counter_mac(inner, outer, counter, sha1_one),
            States::Sha256 { inner, outer } => counter_mac(inner, outer, counter, sha256_one),
            States::Sha512 { inner, outer } => counter_mac(inner, outer, counter, sha512_one),
        }
    }

    /// The RFC 4226 truncated values of the counters `first`, `first + 1`, ... one per slot of
    /// `out`: the hot loop of window verification.
    ///
    /// The candidates are independent, so they are computed in batches of [`BATCH`]: first every
    /// inner compression of the batch, then every outer one. Consecutive compressions then never
    /// wait for each other, and the processor overlaps them instead of running one dependency
    /// chain at a time (about half the time per candidate of one-at-a-time with SHA-NI). The
    /// work depends only on `out.len()`. Counters wrap past `u64::MAX`; callers that care stop
    /// before.
    pub(crate) fn truncated_counters(&self, first: u64, out: &mut [u32]) {
        match &self.states {
            States::Sha1 { inner, outer } => counter_batch(inner, outer, first, out, sha1_one),
            States::Sha256 { inner, outer } => counter_batch(inner, outer, first, out, sha256_one),
            States::Sha512 { inner, outer } => counter_batch(inner, outer, first, out, sha512_one),
        }
    }
}

/// Candidates computed together by [`OtpKey::truncated_counters`].
pub(crate) const BATCH: usize = 16;

/// A hash chaining state that can be written out as its big-endian digest.
trait Chaining: Copy + Default {
    /// Digest length in bytes.
    const LEN: usize;
    /// Write the digest into the first [`Chaining::LEN`] bytes of `out`.
    fn put_digest(&self, out: &mut [u8]);

    /// The digest as a [`Mac`].
    #[inline(always)]
    fn to_mac(&self) -> Mac {
        let mut bytes = [0u8; 64];
        self.put_digest(&mut bytes);
        Mac {
            bytes,
            len: Self::LEN,
        }
    }

    /// RFC 4226 dynamic truncation of the digest, straight from the state.
    #[inline(always)]
    fn truncate(&self) -> u32 {
        let mut bytes = [0u8; 64];
        self.put_digest(&mut bytes);
        let last = bytes.get(Self::LEN - 1).copied().unwrap_or(0);
        let offset = usize::from(last & 0x0f);
        let mut word = [0u8; 4];
        if let Some(slice) = bytes.get(offset..offset + 4) {
            word.copy_from_slice(slice);
        }
        u32::from_be_bytes(word) & 0x7fff_ffff
    }
}

impl Chaining for [u32; 5] {
    const LEN: usize = 20;
    #[inline(always)]
    fn put_digest(&self, out: &mut [u8]) {
        for (chunk, word) in out.chunks_exact_mut(4).zip(self) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }
}

impl Chaining for [u32; 8] {
    const LEN: usize = 32;
    #[inline(always)]
    fn put_digest(&self, out: &mut [u8]) {
        for (chunk, word) in out.chunks_exact_mut(4).zip(self) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }
}

impl Chaining for [u64; 8] {
    const LEN: usize = 64;
    #[inline(always)]
    fn put_digest(&self, out: &mut [u8]) {
        for (chunk, word) in out.chunks_exact_mut(8).zip(self) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }
}

/// The final block of a message of `len` bytes hashed after one key block of `B` bytes, with
/// the message bytes left zero for the caller to fill: the `0x80` marker after them and the
/// length in bits in the last 16 bytes (for 64-byte blocks the high 8 of those are zero for
/// any length used here, so one routine serves both block sizes). `len` is at most 64 (a
/// counter or an inner digest), which always fits with its padding.
#[inline(always)]
fn padding_block<const B: usize>(len: usize) -> [u8; B] {
    let mut block = [0u8; B];
    if let Some(marker) = block.get_mut(len) {
        *marker = 0x80;
    }
    let bits = ((B + len) as u128).wrapping_mul(8);
    if let Some(tail) = block.get_mut(B.saturating_sub(16)..) {
        tail.copy_from_slice(&bits.to_be_bytes());
    }
    block
}

#[inline(always)]
fn put_counter<const B: usize>(block: &mut [u8; B], counter: u64) {
    if let Some(head) = block.get_mut(..8) {
        head.copy_from_slice(&counter.to_be_bytes());
    }
}

#[inline(always)]
fn counter_mac<S: Chaining, const B: usize>(
    inner: &S,
    outer: &S,
    counter: u64,
    compress: impl Fn(&mut S, &[u8; B]),
) -> Mac {
    let mut block = padding_block::<B>(8);
    put_counter(&mut block, counter);
    let mut st = *inner;
    compress(&mut st, &block);
    let mut block = padding_block::<B>(S::LEN);
    st.put_digest(&mut block);
    st = *outer;
    compress(&mut st, &block);
    st.to_mac()
}

#[inline(always)]
fn counter_batch<S: Chaining, const B: usize>(
    inner: &S,
    outer: &S,
    first: u64,
    out: &mut [u32],
    compress: impl Fn(&mut S, &[u8; B]),
) {
    let inner_template = padding_block::<B>(8);
    let outer_template = padding_block::<B>(S::LEN);
    let mut counter = first;
    for chunk in out.chunks_mut(BATCH) {
        let n = chunk.len();
        // Slots past the chunk's length stay zero: no copy of the key states is left in them.
        let mut states = [S::default(); BATCH];
        let mut blocks = [[0u8; B]; BATCH];
        // Each phase writes every block before the next phase reads any. Were a block written
        // just before its compression, the compression's wide loads would wait for the narrow
        // stores to reach the cache (a failed store forwarding), serialising the candidates; in
        // phases, the compressions of the batch are independent and overlap in the processor.
        for (block, st) in blocks.iter_mut().zip(states.iter_mut()).take(n) {
            *block = inner_template;
            put_counter(block, counter);
            *st = *inner;
            counter = counter.wrapping_add(1);
        }
        for (block, st) in blocks.iter().zip(states.iter_mut()).take(n) {
            compress(st, block);
        }
        for (block, st) in blocks.iter_mut().zip(states.iter_mut()).take(n) {
            *block = outer_template;
            st.put_digest(block);
            *st = *outer;
        }
        for (block, st) in blocks.iter().zip(states.iter_mut()).take(n) {
            compress(st, block);
        }
        for (st, slot) in states.iter().zip(chunk.iter_mut()) {
            *slot = st.truncate();
        }
    }
}

#[inline(always)]
fn sha1_one(state: &mut [u32; 5], block: &[u8; 64]) {
    sha1_compress(state, std::slice::from_ref(block));
}

#[inline(always)]
fn sha256_one(state: &mut [u32; 8], block: &[u8; 64]) {
    compress256(state, std::slice::from_ref(block));
}

#[inline(always)]
fn sha512_one(state: &mut [u64; 8], block: &[u8; 128]) {
    compress512(state, std::slice::from_ref(block));
}

impl Zeroize for Mac {
    fn zeroize(&mut self) {
        self.bytes.zeroize();
    }
}

/// Plain digest of `data` (used to shorten over-long HMAC keys and for OCRA PIN hashes).
pub fn digest(algorithm: Algorithm, data: &[u8]) -> Mac {
    let mut bytes = [0u8; 64];
    match algorithm {
        Algorithm::Sha1 => {
            let mut st = SHA1_IV;
            finish_sha1(&mut st, 0, data);
            bytes[..20].copy_from_slice(&sha1_bytes(&st));
        }
        Algorithm::Sha256 => {
            let mut st = SHA256_IV;
            finish_sha256(&mut st, 0, data);
            bytes[..32].copy_from_slice(&sha256_bytes(&st));
        }
        Algorithm::Sha512 => {
            let mut st = SHA512_IV;
            finish_sha512(&mut st, 0, data);
            bytes = sha512_bytes(&st);
        }
    }
    Mac {
        bytes,
        len: algorithm.output_len(),
    }
}

fn sha1_bytes(st: &[u32; 5]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_exact_mut(4).zip(st) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn sha256_bytes(st: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(st) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn sha512_bytes(st: &[u64; 8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (chunk, word) in out.chunks_exact_mut(8).zip(st) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Merkle–Damgård tail for 64-byte-block hashes: compress the full blocks of `msg`, then the
/// padded final block(s). `prefix` is the number of bytes already compressed into `state`.
fn finish_64(mut state_compress: impl FnMut(&[[u8; 64]]), prefix: u64, msg: &[u8]) {
    let (blocks, rest) = msg.as_chunks::<64>();
    if !blocks.is_empty() {
        state_compress(blocks);
    }
    let total_bits = (prefix + msg.len() as u64).wrapping_mul(8);
    let mut tail = [[0u8; 64]; 2];
    let flat = tail.as_flattened_mut();
    flat[..rest.len()].copy_from_slice(rest);
    flat[rest.len()] = 0x80;
    let n = if rest.len() < 56 { 1 } else { 2 };
    flat[n * 64 - 8..n * 64].copy_from_slice(&total_bits.to_be_bytes());
    state_compress(&tail[..n]);
}

fn finish_sha1(state: &mut [u32; 5], prefix: u64, msg: &[u8]) {
    finish_64(|b| sha1_compress(state, b), prefix, msg);
}

fn finish_sha256(state: &mut [u32; 8], prefix: u64, msg: &[u8]) {
    finish_64(|b| compress256(state, b), prefix, msg);
}

fn finish_sha512(state: &mut [u64; 8], prefix: u64, msg: &[u8]) {
    let (blocks, rest) = msg.as_chunks::<128>();
    if !blocks.is_empty() {
        compress512(state, blocks);
    }
    let total_bits = u128::from(prefix + msg.len() as u64).wrapping_mul(8);
    let mut tail = [[0u8; 128]; 2];
    let flat = tail.as_flattened_mut();
    flat[..rest.len()].copy_from_slice(rest);
    flat[rest.len()] = 0x80;
    let n = if rest.len() < 112 { 1 } else { 2 };
    flat[n * 128 - 16..n * 128].copy_from_slice(&total_bits.to_be_bytes());
    compress512(state, &tail[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_equal_single_macs_at_every_length_and_across_the_top() {
        for algorithm in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            let key = OtpKey::new(algorithm, b"batch test key").expect("key");
            for first in [0u64, 1_000, u64::MAX - 20] {
                for len in 0..=2 * BATCH + 3 {
                    let mut out = vec![0u32; len];
                    key.truncated_counters(first, &mut out);
                    for (j, value) in (0u64..).zip(&out) {
                        let c = first.wrapping_add(j);
                        assert_eq!(
                            *value,
                            key.mac_counter(c).truncate(),
                            "{algorithm} counter {c} in a batch of {len}"
                        );
                        assert_eq!(
                            key.mac_counter(c).as_bytes(),
                            key.mac(&c.to_be_bytes()).as_bytes(),
                            "{algorithm} counter {c}: fast path against the general MAC"
                        );
                    }
                }
            }
        }
    }
}
