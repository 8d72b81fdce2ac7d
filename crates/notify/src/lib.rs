//! okey's e-mail: French templates, the durable outbox's sender, SMTP over rustls.
//!
//! **Why an outbox.** A mail that a change causes ("your request waits for approval", "your key
//! is ready") must go out if and only if the change happened. So the mail is rendered and
//! written as a row of the store's outbox *inside the write transaction of the change*
//! ([`okey_store::outbox::enqueue`]): both commit durably together or neither does. Delivery is
//! a separate concern: [`sender::run`] reads due rows and hands them to the relay, retrying with
//! exponential back-off; a relay that is down only delays mail, it never blocks or fails a
//! workflow.
//!
//! **One message, whatever happens.** The Message-ID is chosen when the mail is enqueued and
//! stored with it, and the Date header is the enqueueing time: every attempt (including one
//! after a crash between the relay's acceptance and the "sent" record) is the very same
//! message, which mail systems and readers recognise as one.
//!
//! **Templates** ([`templates`]) are minijinja files in French, embedded, overridable from an
//! operator directory, and all checked at start. **Settings** come from the serve TOML's
//! `[smtp]` table ([`config::SmtpConfig`]); the password is read from a 0600 file and never
//! printed.
#![forbid(unsafe_code)]

mod clock;
pub mod config;
pub mod sender;
pub mod smtp;
pub mod templates;

use minijinja::Value;
use okey_store::outbox::NewMail;

pub use config::{ConfigError, Retry, SmtpConfig, SmtpSettings, TlsMode};
pub use sender::{SenderConfig, SenderMetrics, Waker};
pub use smtp::{Mailer, SendError, SmtpMailer};
pub use templates::{Rendered, TemplateError, Templates};

/// Composes mails: renders a template and gives the mail its Message-ID.
#[derive(Debug)]
pub struct Composer {
    templates: Templates,
    domain: String,
}

/// Why a mail could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A recipient is not a mail address.
    #[error("{0:?} is not a mail address")]
    Recipient(String),
    /// No randomness for the Message-ID.
    #[error("no randomness available for the Message-ID")]
    Random,
}

impl Composer {
    /// A composer with these templates; Message-IDs are `<okey.RANDOM@domain>`, the domain
    /// taken from the sender address (`okey.invalid` when there is none).
    pub fn new(templates: Templates, from: Option<&lettre::message::Mailbox>) -> Composer {
        let domain = from
            .map(|m| m.email.domain().to_owned())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "okey.invalid".to_owned());
        Composer { templates, domain }
    }

    /// The templates.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// A new Message-ID: 128 random bits, so two mails never share one.
    pub fn message_id(&self) -> Result<String, ComposeError> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|_| ComposeError::Random)?;
        Ok(format!("<okey.{}@{}>", hex::encode(b), self.domain))
    }

    /// Render template `name` for `to` with `ctx` into a mail ready for
    /// [`okey_store::outbox::enqueue`], with this Message-ID.
    pub fn compose_with_id(
        &self,
        name: &str,
        to: &[String],
        ctx: Value,
        message_id: String,
    ) -> Result<NewMail, ComposeError> {
        for a in to {
            if a.parse::<lettre::Address>().is_err() {
                return Err(ComposeError::Recipient(a.clone()));
            }
        }
        let r = self.templates.render(name, ctx)?;
        Ok(NewMail {
            message_id,
            template: name.to_owned(),
            to: to.to_vec(),
            cc: Vec::new(),
            subject: r.subject,
            body: r.body,
        })
    }

    /// Render template `name` for `to` with `ctx`, with a new Message-ID.
    pub fn compose(&self, name: &str, to: &[String], ctx: Value) -> Result<NewMail, ComposeError> {
        let id = self.message_id()?;
        self.compose_with_id(name, to, ctx, id)
    }
}

pub use minijinja::Value as TemplateValue;
pub use minijinja::context;
