//! The UDP server: receive loops (one per core, on the same socket) do the cheap checks in
//! order (known client, well-formed packet, Access-Request, Message-Authenticator, duplicate),
//! then each new request is verified in its own task and answered with a signed reply that is
//! kept for retransmissions. Several loops keep one descheduled loop from holding every
//! datagram behind it; the duplicate cache is shared, so a retransmission that another loop
//! receives is still answered from it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::config::{Client, Resolved};
use crate::dedup::{Cache, Key, Seen};
use crate::metrics::{DropCause, Metrics, Outcome};
use crate::packet::{
    Authenticity, Builder, MAX_ATTRIBUTE_VALUE, MAX_PACKET, Packet, attr, code, unhide_password,
};
use crate::{Verdict, Verifier, VerifyCall};

/// A running RADIUS listener.
pub struct Running {
    /// The address actually bound.
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stop receiving (requests being verified still finish and are answered).
    pub fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How many receive loops share the socket: one per core the runtime may run on, at most 8.
fn receive_loops() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8))
}

struct Shared<V> {
    socket: UdpSocket,
    config: Resolved,
    verifier: Arc<V>,
    metrics: Arc<Metrics>,
    cache: Cache,
}

/// Bind `config.listen` and serve until the returned handle is stopped or dropped.
pub async fn start<V: Verifier>(
    config: Resolved,
    verifier: Arc<V>,
    metrics: Arc<Metrics>,
) -> std::io::Result<Running> {
    let socket = UdpSocket::bind(config.listen).await?;
    let addr = socket.local_addr()?;
    for c in config.clients.iter() {
        if !c.require_message_authenticator {
            tracing::warn!(
                client = %c.name,
                "RADIUS client {} may send Access-Requests WITHOUT a Message-Authenticator: \
                 its replies can be forged (BlastRADIUS, CVE-2024-3596); turn \
                 require_message_authenticator back on as soon as the equipment sends one",
                c.name
            );
        }
    }
    tracing::info!(%addr, clients = config.clients.len(), "RADIUS listening");
    let cache = Cache::new(Duration::from_secs(config.duplicate_seconds));
    let shared = Arc::new(Shared {
        socket,
        config,
        verifier,
        metrics,
        cache,
    });
    let tasks = (0..receive_loops())
        .map(|_| tokio::spawn(receive_loop(shared.clone())))
        .collect();
    Ok(Running { addr, tasks })
}

async fn receive_loop<V: Verifier>(shared: Arc<Shared<V>>) {
    let mut buf = vec![0u8; MAX_PACKET + 1];
    loop {
        let (n, from) = match shared.socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "RADIUS receive failed");
                continue;
            }
        };
        let started = Instant::now();
        if let Some(job) = screen(&shared, buf.get(..n).unwrap_or(&[]), from, started).await {
            let shared = shared.clone();
            tokio::spawn(async move { answer(&shared, job).await });
        }
    }
}

/// A request that passed the checks, ready to verify.
struct Job {
    key: Key,
    started: Instant,
    client: Arc<Client>,
    identifier: u8,
    authenticator: [u8; 16],
    proxy_state: Vec<Vec<u8>>,
    call: Result<VerifyCall, &'static str>,
}

/// The checks a datagram passes before a verify, each failure dropped and counted; a
/// retransmission of an answered request is answered here, from the cache.
async fn screen<V: Verifier>(
    shared: &Shared<V>,
    datagram: &[u8],
    from: SocketAddr,
    started: Instant,
) -> Option<Job> {
    let metrics = &shared.metrics;
    let Some(client) = shared.config.clients.find(from.ip()) else {
        metrics.dropped(DropCause::UnknownClient);
        tracing::debug!(%from, "RADIUS datagram from an unknown address dropped");
        return None;
    };
    let packet = match Packet::parse(datagram) {
        Ok(p) => p,
        Err(e) => {
            metrics.dropped(DropCause::Malformed);
            tracing::debug!(client = %client.name, error = %e, "malformed RADIUS datagram dropped");
            return None;
        }
    };
    if packet.code != code::ACCESS_REQUEST {
        metrics.dropped(DropCause::UnsupportedCode);
        tracing::debug!(client = %client.name, code = packet.code, "RADIUS packet of an unsupported code dropped");
        return None;
    }
    match packet.message_authenticator(client.secret()) {
        Authenticity::Valid => {}
        Authenticity::Missing if !client.require_message_authenticator => {
            metrics.relaxed();
            if !client.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    client = %client.name,
                    "RADIUS client {} sent an Access-Request without a Message-Authenticator \
                     (allowed for it by require_message_authenticator = false)",
                    client.name
                );
            }
        }
        Authenticity::Missing => {
            metrics.dropped(DropCause::MissingMessageAuthenticator);
            tracing::info!(client = %client.name, "Access-Request without a Message-Authenticator dropped");
            return None;
        }
        Authenticity::Invalid => {
            metrics.dropped(DropCause::BadMessageAuthenticator);
            tracing::info!(
                client = %client.name,
                "Access-Request with a wrong Message-Authenticator dropped (wrong shared secret?)"
            );
            return None;
        }
    }
    let key = Key {
        from,
        identifier: packet.identifier,
        authenticator: packet.authenticator,
    };
    match shared.cache.check(key, started) {
        Seen::New => {}
        Seen::InProgress => {
            metrics.dropped(DropCause::InProgress);
            return None;
        }
        Seen::Answered(reply) => {
            metrics.retransmission();
            if let Err(e) = shared.socket.send_to(&reply, from).await {
                tracing::warn!(error = %e, "RADIUS send failed");
            }
            return None;
        }
        Seen::Full => {
            metrics.dropped(DropCause::Unavailable);
            tracing::warn!("RADIUS duplicate cache full: request dropped");
            return None;
        }
    }
    let proxy_state = packet
        .attributes
        .iter()
        .filter(|a| a.kind == attr::PROXY_STATE)
        .map(|a| a.value.to_vec())
        .collect();
    Some(Job {
        key,
        started,
        client: client.clone(),
        identifier: packet.identifier,
        authenticator: packet.authenticator,
        proxy_state,
        call: call_of(&packet, client, from),
    })
}

/// The verify call a request asks for, or why it is answered Reject without one.
fn call_of(
    packet: &Packet<'_>,
    client: &Client,
    from: SocketAddr,
) -> Result<VerifyCall, &'static str> {
    let text = |kind| {
        packet
            .first(kind)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let user = match packet.first(attr::USER_NAME) {
        None | Some([]) => return Err("no_user_name"),
        Some(u) => std::str::from_utf8(u)
            .map_err(|_| "bad_user_name")?
            .to_owned(),
    };
    let Some(hidden) = packet.first(attr::USER_PASSWORD) else {
        // CHAP and the like cannot carry a one-time code to check.
        return Err("no_pap_password");
    };
    let clear = unhide_password(hidden, client.secret(), &packet.authenticator)
        .map_err(|_| "bad_password_attribute")?;
    let password = Zeroizing::new(
        std::str::from_utf8(&clear)
            .map_err(|_| "bad_format")?
            .to_owned(),
    );
    let state = match packet.first(attr::STATE) {
        None => None,
        Some(s) => Some(
            std::str::from_utf8(s)
                .map_err(|_| "unknown_transaction")?
                .to_owned(),
        ),
    };
    Ok(VerifyCall {
        client: client.name.clone(),
        source: from.ip(),
        user,
        password,
        state,
        nas_identifier: text(attr::NAS_IDENTIFIER),
        calling_station: text(attr::CALLING_STATION_ID),
    })
}

async fn answer<V: Verifier>(shared: &Shared<V>, job: Job) {
    let Job {
        key,
        started,
        client,
        identifier,
        authenticator,
        proxy_state,
        call,
    } = job;
    let (user, verdict) = match call {
        Ok(call) => {
            let user = call.user.clone();
            (user, shared.verifier.verify(call).await)
        }
        Err(reason) => (
            String::new(),
            Verdict::Reject {
                reason: reason.to_owned(),
            },
        ),
    };
    let messages = &shared.config.messages;
    let (code, outcome) = match &verdict {
        Verdict::Accept => (code::ACCESS_ACCEPT, Outcome::Accept),
        Verdict::Reject { .. } => (code::ACCESS_REJECT, Outcome::Reject),
        Verdict::Challenge { .. } => (code::ACCESS_CHALLENGE, Outcome::Challenge),
        Verdict::Unavailable { reason } => {
            shared.metrics.dropped(DropCause::Unavailable);
            shared.cache.forget(&key);
            tracing::warn!(client = %client.name, user = ?user, %reason, "RADIUS request not answered: the verify could not run");
            return;
        }
    };
    let mut b = Builder::new(code, identifier);
    let built = (|| -> Result<(), crate::packet::WriteError> {
        b.message_authenticator()?;
        match &verdict {
            Verdict::Accept => {
                push_text(&mut b, &messages.accept)?;
                for (kind, value) in shared.config.reply_attributes(&user) {
                    b.push(*kind, value)?;
                }
            }
            Verdict::Reject { reason } => {
                tracing::info!(client = %client.name, user = ?user, %reason, "RADIUS Access-Reject");
                push_text(&mut b, &messages.reject)?;
            }
            Verdict::Challenge { state, challenge } => {
                push_text(
                    &mut b,
                    &messages.challenge.replace("{challenge}", challenge),
                )?;
                b.push(attr::STATE, state.as_bytes())?;
            }
            Verdict::Unavailable { .. } => {}
        }
        for p in &proxy_state {
            b.push(attr::PROXY_STATE, p)?;
        }
        Ok(())
    })();
    if let Err(e) = built {
        // Only a configuration or proxy chain too large for one packet gets here.
        tracing::error!(client = %client.name, error = %e, "RADIUS reply could not be written");
        shared.cache.forget(&key);
        shared.metrics.dropped(DropCause::Unavailable);
        return;
    }
    let reply: Arc<[u8]> = Arc::from(b.finish_response(&authenticator, client.secret()));
    shared.cache.complete(key, reply.clone(), Instant::now());
    if let Err(e) = shared.socket.send_to(&reply, key.from).await {
        tracing::warn!(error = %e, "RADIUS send failed");
    }
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    shared.metrics.record(outcome, micros);
}

/// A Reply-Message, when the text is not empty (cut at a character boundary to fit).
fn push_text(b: &mut Builder, text: &str) -> Result<(), crate::packet::WriteError> {
    if text.is_empty() {
        return Ok(());
    }
    let mut end = text.len().min(MAX_ATTRIBUTE_VALUE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    b.push(attr::REPLY_MESSAGE, &text.as_bytes()[..end])?;
    Ok(())
}
