//! A minimal gRPC client for `okey.v1.AuthService/Verify` over plain HTTP/2, for load generation.
//!
//! `okey bench` shares the machine with the server it measures, so every microsecond its client
//! spends is taken from the server. The tonic client queues each call through a buffer task and
//! a dispatch task before it reaches the HTTP/2 connection; this one writes the call straight
//! onto an `h2` stream: request headers, one length-prefixed protobuf message, then reads the
//! answer and checks `grpc-status` like any gRPC client. It speaks the same wire protocol, so
//! the server does exactly the work a front end's call costs it. TLS is not supported here: use
//! the tonic client (`okey bench --client tonic`) against an `https://` server.

use anyhow::{Context, anyhow, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Uri};
use okey_server::proto;
use prost::Message;

/// The path of the Verify method.
const VERIFY_PATH: &str = "/okey.v1.AuthService/Verify";
/// Largest answer accepted (a Verify answer is a few hundred bytes).
const MAX_ANSWER: usize = 64 * 1024;

/// One HTTP/2 connection to the server; cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct VerifyClient {
    send: h2::client::SendRequest<Bytes>,
    uri: Uri,
    authorization: HeaderValue,
}

impl VerifyClient {
    /// Connect to `server` (`http://host:port`) and authenticate every call with `api_key`.
    pub async fn connect(server: &str, api_key: &str) -> anyhow::Result<VerifyClient> {
        let base: Uri = server
            .parse()
            .with_context(|| format!("{server} is not a server address"))?;
        if base.scheme_str() != Some("http") {
            bail!(
                "the bench's own client speaks plain HTTP/2 only; use --client tonic for {server}"
            );
        }
        let authority = base
            .authority()
            .with_context(|| format!("{server} names no host"))?
            .clone();
        let tcp = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .with_context(|| format!("cannot connect to {server}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .handshake::<_, Bytes>(tcp)
            .await
            .with_context(|| format!("HTTP/2 handshake with {server} failed"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "bench connection closed");
            }
        });
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(VERIFY_PATH)
            .build()?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {api_key}"))
            .context("the API key is not a valid header value")?;
        authorization.set_sensitive(true);
        Ok(VerifyClient {
            send,
            uri,
            authorization,
        })
    }

    /// Call Verify once and return the server's answer; a non-OK gRPC status is an error.
    pub async fn verify(
        &mut self,
        request: &proto::VerifyRequest,
    ) -> anyhow::Result<proto::VerifyResponse> {
        let head = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header(http::header::AUTHORIZATION, self.authorization.clone())
            .body(())?;
        let body = frame(request)?;
        std::future::poll_fn(|cx| self.send.poll_ready(cx)).await?;
        let (answer, mut stream) = self.send.send_request(head, false)?;
        stream.send_data(body, true)?;
        let answer = answer.await?;
        let (parts, mut body) = answer.into_parts();
        if parts.status != http::StatusCode::OK {
            bail!("the server answered HTTP {}", parts.status);
        }
        // A trailers-only answer carries its status in the headers.
        if let Some(status) = grpc_error(&parts.headers) {
            return Err(status);
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            body.flow_control().release_capacity(chunk.len())?;
            if data.len() + chunk.len() > MAX_ANSWER {
                bail!("the answer is larger than {MAX_ANSWER} bytes");
            }
            data.extend_from_slice(&chunk);
        }
        let trailers = body
            .trailers()
            .await?
            .context("the answer has no gRPC status")?;
        if let Some(status) = grpc_error(&trailers) {
            return Err(status);
        }
        if trailers.get("grpc-status").is_none() {
            bail!("the answer has no gRPC status");
        }
        unframe(data.freeze())
    }
}

/// One gRPC message: uncompressed flag, big-endian length, protobuf bytes.
fn frame(message: &proto::VerifyRequest) -> anyhow::Result<Bytes> {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len)?);
    message.encode(&mut buf)?;
    Ok(buf.freeze())
}

/// The single message of a unary answer.
fn unframe(mut data: Bytes) -> anyhow::Result<proto::VerifyResponse> {
    if data.len() < 5 {
        bail!("the answer holds no gRPC message");
    }
    let compressed = data.get_u8();
    let len = usize::try_from(data.get_u32())?;
    if compressed != 0 {
        bail!("the answer is compressed, which was not asked for");
    }
    if data.len() != len {
        bail!(
            "the answer's message is {} bytes, its frame says {len}",
            data.len()
        );
    }
    Ok(proto::VerifyResponse::decode(data)?)
}

/// The error a `grpc-status` header other than 0 stands for, if any.
fn grpc_error(headers: &http::HeaderMap) -> Option<anyhow::Error> {
    let status = headers.get("grpc-status")?;
    if status.as_bytes() == b"0" {
        return None;
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("");
    Some(anyhow!(
        "the server answered gRPC status {}: {message}",
        String::from_utf8_lossy(status.as_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_framing_as_tonic_frames_it() {
        let answer = proto::VerifyResponse {
            result: proto::VerifyResult::Accept as i32,
            serial: "OK0001".into(),
            reason: "accepted".into(),
            ..Default::default()
        };
        // tonic's framing: flag 0, u32 big-endian length, the message.
        let body = answer.encode_to_vec();
        let mut wire = vec![0u8];
        wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
        wire.extend_from_slice(&body);
        assert_eq!(unframe(Bytes::from(wire.clone())).expect("decodes"), answer);
        // Truncated, over-long and compressed frames are refused.
        assert!(unframe(Bytes::from(wire[..wire.len() - 1].to_vec())).is_err());
        let mut longer = wire.clone();
        longer.push(0);
        assert!(unframe(Bytes::from(longer)).is_err());
        let mut compressed = wire;
        compressed[0] = 1;
        assert!(unframe(Bytes::from(compressed)).is_err());
        assert!(unframe(Bytes::from_static(&[0, 0, 0])).is_err());
    }

    #[test]
    fn a_request_is_framed_with_its_length() {
        let request = proto::VerifyRequest {
            passcode: "123456".into(),
            ..Default::default()
        };
        let framed = frame(&request).expect("frames");
        assert_eq!(framed[0], 0);
        let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
        assert_eq!(len, framed.len() - 5);
        assert_eq!(
            proto::VerifyRequest::decode(&framed[5..]).expect("decodes"),
            request
        );
    }

    #[test]
    fn only_status_zero_is_success() {
        let mut h = http::HeaderMap::new();
        assert!(grpc_error(&h).is_none());
        h.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(grpc_error(&h).is_none());
        h.insert("grpc-status", HeaderValue::from_static("16"));
        h.insert("grpc-message", HeaderValue::from_static("no key"));
        let e = grpc_error(&h).expect("an error").to_string();
        assert!(e.contains("16") && e.contains("no key"), "{e}");
    }
}
