//! The protobuf codec of every okey RPC, on both ends: prost messages, with per-call buffers
//! sized for okey's messages.
//!
//! tonic's default codec reserves 8 KiB to encode and another 8 KiB to decode for every call.
//! A Verify request or answer is well under 200 bytes, so at thousands of verifies a second
//! those reservations are most of what the allocator does, on the server and on the client.
//! Buffers here start at [`BUFFER_SIZE`] and grow to fit larger messages (token lists,
//! seed-file chunks) as needed; streamed replies are still flushed every
//! [`YIELD_THRESHOLD`] bytes.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// Initial size (and growth step) of a call's encode and decode buffers.
pub const BUFFER_SIZE: usize = 512;
/// Bytes of a streamed reply collected before they are handed to the transport.
pub const YIELD_THRESHOLD: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

/// Encodes `T` and decodes `U` with prost, using [`BUFFER_SIZE`] buffers.
#[derive(Debug, Clone, Copy)]
pub struct ProtoCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        ProtoCodec(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder(PhantomData)
    }
}

/// Messages that did not decode (not protobuf, a string field that is not UTF-8), since start.
static MALFORMED: AtomicU64 = AtomicU64::new(0);

/// How many received messages did not decode as their protobuf type, in this process.
pub fn malformed_messages() -> u64 {
    MALFORMED.load(Ordering::Relaxed)
}

/// Decodes `U` with prost. A message that does not decode is the sender's fault:
/// `INVALID_ARGUMENT` (prost's own decoder says `INTERNAL`), and it is counted.
#[derive(Debug, Clone, Copy)]
pub struct CheckedDecoder<U>(PhantomData<U>);

impl<U: prost::Message + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            MALFORMED.fetch_add(1, Ordering::Relaxed);
            Status::invalid_argument(format!("the message is not valid protobuf: {e}"))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        settings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codec::{Decoder, Encoder};

    #[test]
    fn calls_start_with_small_buffers_and_stream_in_large_flushes() {
        let mut codec =
            ProtoCodec::<crate::proto::VerifyResponse, crate::proto::VerifyRequest>::default();
        let (enc, dec) = (codec.encoder(), codec.decoder());
        // BufferSettings keeps its fields private; its Debug form shows them.
        let ours = format!("{:?}", BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD));
        assert_ne!(ours, format!("{:?}", BufferSettings::default()));
        for s in [enc.buffer_settings(), dec.buffer_settings()] {
            assert_eq!(format!("{s:?}"), ours);
        }
        // A Verify request with the longest user name and passcode the service accepts, and a
        // transaction id, fits the initial buffer: the hot path never grows it.
        let largest_verify = prost::Message::encoded_len(&crate::proto::VerifyRequest {
            subject: Some(crate::proto::Subject {
                kind: Some(crate::proto::subject::Kind::User(
                    "u".repeat(okey_domain::MAX_HOLDER_LEN),
                )),
            }),
            passcode: "9".repeat(crate::service::MAX_PASSCODE_LEN),
            transaction_id: "t".repeat(64),
            client: None,
        });
        assert!(largest_verify + 5 <= BUFFER_SIZE, "{largest_verify}");
    }
}
