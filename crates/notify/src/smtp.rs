//! Delivery through an SMTP relay with lettre over rustls.

use std::time::{Duration, UNIX_EPOCH};

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use okey_store::outbox::MailRow;

use crate::config::{SmtpSettings, TlsMode};

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// The relay refused for good (5xx, or the mail itself is unusable): do not retry.
    pub permanent: bool,
    /// What happened (no secret: lettre's errors carry no password).
    pub message: String,
}

/// Something that delivers one mail of the outbox.
pub trait Mailer: Send + Sync + 'static {
    /// Deliver `row`; `Ok` once the relay accepted it.
    fn deliver(&self, row: &MailRow) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// The SMTP relay of the `[smtp]` table.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for these settings (connects only when it sends).
    pub fn new(s: &SmtpSettings) -> Result<SmtpMailer, SendError> {
        let setup = |e: lettre::transport::smtp::Error| SendError {
            permanent: true,
            message: format!("cannot set up TLS to {}: {e}", s.relay),
        };
        let tls = match s.tls {
            TlsMode::None => Tls::None,
            mode => {
                let mut b = TlsParameters::builder(s.relay.clone());
                if let Some(pem) = &s.ca_pem {
                    b = b.add_root_certificate(Certificate::from_pem(pem).map_err(setup)?);
                }
                let params = b.build_rustls().map_err(setup)?;
                if mode == TlsMode::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.relay.clone())
            .port(s.port)
            .tls(tls)
            .timeout(Some(s.timeout));
        if let Some((user, pass)) = &s.credentials {
            b = b.credentials(Credentials::new(user.clone(), pass.to_string()));
        }
        Ok(SmtpMailer {
            transport: b.build(),
            from: s.from.clone(),
        })
    }

    /// The message as sent: headers fixed by the row, so every attempt sends the same mail.
    pub fn message(&self, row: &MailRow) -> Result<Message, SendError> {
        build_message(&self.from, row)
    }
}

/// Build the RFC 5322 message of an outbox row. The Message-ID and the Date come from the row
/// (its enqueueing time), never from the moment of the attempt.
pub fn build_message(from: &Mailbox, row: &MailRow) -> Result<Message, SendError> {
    let bad = |m: String| SendError {
        permanent: true,
        message: m,
    };
    let mut b = Message::builder()
        .from(from.clone())
        .subject(row.mail.subject.clone())
        .message_id(Some(row.mail.message_id.clone()))
        .date(UNIX_EPOCH + Duration::from_secs(row.created_at))
        .header(ContentType::TEXT_PLAIN);
    for to in &row.mail.to {
        let mb: Mailbox = to
            .parse()
            .map_err(|e| bad(format!("recipient {to:?} is not a mail address: {e}")))?;
        b = b.to(mb);
    }
    for cc in &row.mail.cc {
        let mb: Mailbox = cc
            .parse()
            .map_err(|e| bad(format!("copy recipient {cc:?} is not a mail address: {e}")))?;
        b = b.cc(mb);
    }
    b.body(row.mail.body.clone())
        .map_err(|e| bad(format!("cannot build the message: {e}")))
}

impl Mailer for SmtpMailer {
    async fn deliver(&self, row: &MailRow) -> Result<(), SendError> {
        let msg = self.message(row)?;
        match self.transport.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) => Err(SendError {
                permanent: e.is_permanent(),
                message: e.to_string(),
            }),
        }
    }
}
