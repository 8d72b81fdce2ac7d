//! E-mail in the service: the `[smtp]` relay's sender task, the mail RPCs, and the outbox's
//! metrics.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use okey_domain::Operation;
use okey_notify::sender::{self, SenderConfig, SenderMetrics, Waker};
use okey_notify::{Composer, SmtpConfig, SmtpMailer, Templates, context};
use okey_store::Store;
use okey_store::outbox::{MailRow, MailState, OutboxStats};
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use crate::clock;
use crate::proto;
use crate::serve::ServeError;
use crate::service::{Okey, actor_of};
use crate::status::store_status;

/// What the service keeps of the mail set-up.
pub(crate) struct MailContext {
    pub(crate) composer: Composer,
    /// The zone mails are dated in.
    pub(crate) zone: jiff::tz::TimeZone,
    pub(crate) waker: Waker,
    pub(crate) metrics: Arc<SenderMetrics>,
    /// The portal's public base URL (no trailing slash), which request mails link to.
    pub(crate) portal_url: String,
}

/// Check the `[smtp]` table and its templates (a broken one refuses the start), and start the
/// sender task.
pub(crate) fn start(
    store: &Store,
    cfg: &SmtpConfig,
    portal_url: String,
) -> Result<(Arc<MailContext>, JoinHandle<()>), ServeError> {
    let settings = cfg.resolve().map_err(|e| ServeError::Mail(e.to_string()))?;
    let templates = Templates::load(settings.templates.as_deref())
        .map_err(|e| ServeError::Mail(e.to_string()))?;
    let mailer = SmtpMailer::new(&settings).map_err(|e| ServeError::Mail(e.to_string()))?;
    let zone = crate::dates::zone(
        cfg.time_zone
            .as_deref()
            .unwrap_or(crate::dates::DEFAULT_ZONE),
    )
    .map_err(|e| ServeError::Mail(format!("[smtp] time_zone: {e}")))?;
    let composer = Composer::new(templates, Some(&settings.from));
    let waker = Waker::default();
    let metrics = Arc::new(SenderMetrics::default());
    let task = tokio::spawn(sender::run(
        store.clone(),
        mailer,
        SenderConfig::new(settings.retry, settings.poll, settings.timeout),
        metrics.clone(),
        waker.clone(),
    ));
    tracing::info!(relay = %settings.relay, port = settings.port, tls = ?settings.tls, "mail sender started");
    Ok((
        Arc::new(MailContext {
            composer,
            zone,
            waker,
            metrics,
            portal_url,
        }),
        task,
    ))
}

fn queued(r: MailRow) -> proto::QueuedMail {
    proto::QueuedMail {
        id: r.id,
        message_id: r.mail.message_id,
        template: r.mail.template,
        to: r.mail.to,
        cc: r.mail.cc,
        subject: r.mail.subject,
        state: r.state.as_str().to_owned(),
        attempts: r.attempts,
        created_at: r.created_at,
        next_attempt_at: if r.state == MailState::Pending {
            r.next_attempt_at
        } else {
            0
        },
        last_error: r.last_error.unwrap_or_default(),
        sent_at: r.sent_at.unwrap_or(0),
    }
}

/// The lifecycle's mails, rendered with the service's templates (see `okey_store::Notice`).
pub(crate) struct LifecycleMails(pub(crate) Arc<MailContext>);

impl okey_store::LifecycleMailer for LifecycleMails {
    fn compose(
        &self,
        notice: &okey_store::Notice,
        to: &[String],
    ) -> Result<okey_store::outbox::NewMail, String> {
        use okey_store::Notice;
        let ctx = match notice {
            Notice::Convocation {
                name,
                serial,
                lot_name,
                meeting_at,
                place,
            } => context! {
                name => name,
                serial => serial,
                lot_name => lot_name,
                meeting_at => crate::dates::french(*meeting_at, &self.0.zone),
                place => place,
            },
            Notice::Expired {
                lot,
                lot_name,
                keys,
            } => {
                let list = keys
                    .iter()
                    .map(|(serial, holder)| match holder {
                        Some(h) => format!("- {serial} (détenue par {h})"),
                        None => format!("- {serial}"),
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                context! {
                    lot => lot,
                    lot_name => lot_name,
                    count => keys.len().to_string(),
                    keys => list,
                    expired_at => crate::dates::french(clock::now(), &self.0.zone),
                }
            }
            Notice::ReturnDue {
                lot,
                lot_name,
                serial,
                holder,
                since,
            } => context! {
                lot => lot,
                lot_name => lot_name,
                serial => serial,
                holder => holder,
                since => crate::dates::french(*since, &self.0.zone),
            },
            Notice::Lost {
                name,
                serial,
                by,
                comment,
                at,
            } => context! {
                name => name,
                serial => serial,
                declared_by => by,
                declared_at => crate::dates::french(*at, &self.0.zone),
                comment => comment.clone().unwrap_or_default(),
            },
            Notice::Request(r) => context! {
                id => r.id.to_string(),
                requester => r.requester,
                reason => r.reason,
                validator => r.validator,
                lot_name => r.lot_name,
                detail => r.detail,
                portal_url => self.0.portal_url,
            },
            Notice::CaseOpened {
                number,
                name,
                subject,
                priority,
                opened_at,
            } => context! {
                number => number,
                name => name,
                subject => subject,
                priority => priority,
                opened_at => crate::dates::french(*opened_at, &self.0.zone),
            },
            Notice::CaseReply {
                number,
                subject,
                author,
                body,
            } => context! {
                number => number,
                subject => subject,
                author => author,
                reply => body,
            },
            Notice::CaseResolved {
                number,
                subject,
                resolution,
                resolved_at,
            } => context! {
                number => number,
                subject => subject,
                resolution => resolution,
                resolved_at => crate::dates::french(*resolved_at, &self.0.zone),
            },
        };
        let mail = self
            .0
            .composer
            .compose(notice.template(), to, ctx)
            .map_err(|e| e.to_string())?;
        self.0.waker.wake();
        Ok(mail)
    }
}

#[tonic::async_trait]
impl proto::mail_service_server::MailService for Arc<Okey> {
    #[tracing::instrument(skip_all, fields(op = "SendTestMail"))]
    async fn send_test_mail(
        &self,
        request: Request<proto::SendTestMailRequest>,
    ) -> Result<Response<proto::SendTestMailResponse>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::SendTestMail)
            .await?;
        let to = request.into_inner().to.trim().to_owned();
        let Some(mail) = self.mail.clone() else {
            return Err(Status::failed_precondition(
                "no mail relay is configured: add an [smtp] table to the serve configuration",
            ));
        };
        let id = mail
            .composer
            .message_id()
            .map_err(|_| Status::unavailable("the system random generator failed"))?;
        let composed = mail
            .composer
            .compose_with_id(
                "test",
                std::slice::from_ref(&to),
                context! {
                    requested_by => principal.name.clone(),
                    message_number => id.clone(),
                    queued_at => crate::dates::french(clock::now(), &mail.zone),
                },
                id,
            )
            .map_err(|e| match e {
                okey_notify::ComposeError::Recipient(_) => {
                    Status::invalid_argument(format!("{to:?} is not a mail address"))
                }
                other => {
                    tracing::error!(error = %other, "cannot compose the test mail");
                    Status::internal("the test mail could not be composed")
                }
            })?;
        let message_id = composed.message_id.clone();
        let store = self.store.clone();
        let actor = actor_of(&principal);
        let row = tokio::task::spawn_blocking(move || store.enqueue_mail(composed, &actor))
            .await
            .map_err(|_| Status::internal("the enqueue task failed"))?
            .map_err(store_status)?;
        mail.waker.wake();
        Ok(Response::new(proto::SendTestMailResponse {
            id: row,
            message_id,
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ListMailQueue"))]
    async fn list_mail_queue(
        &self,
        request: Request<proto::ListMailQueueRequest>,
    ) -> Result<Response<proto::ListMailQueueResponse>, Status> {
        self.callers
            .authorize(&request, Operation::ListMailQueue)
            .await?;
        let req = request.into_inner();
        let limit = match req.limit {
            0 => 100,
            n if n > 1000 => return Err(Status::invalid_argument("limit is at most 1000")),
            n => n,
        };
        let mut states = vec![MailState::Pending, MailState::Failed];
        if req.include_sent {
            states.push(MailState::Sent);
        }
        let rows = self.store.mail_list(&states, limit).map_err(store_status)?;
        let stats = self.store.mail_stats().map_err(store_status)?;
        Ok(Response::new(proto::ListMailQueueResponse {
            mails: rows.into_iter().map(queued).collect(),
            pending: stats.pending,
            failed: stats.failed,
            sent: stats.sent,
            oldest_pending_at: stats.oldest_pending_at.unwrap_or(0),
        }))
    }
}

/// The outbox's metrics: durable counts from the store, and this process's attempts.
pub(crate) fn render(
    out: &mut String,
    stats: &OutboxStats,
    now: u64,
    sender: Option<&SenderMetrics>,
) {
    let _ = writeln!(out, "# HELP okey_mail_queued Mails waiting in the outbox.");
    let _ = writeln!(out, "# TYPE okey_mail_queued gauge");
    let _ = writeln!(out, "okey_mail_queued {}", stats.pending);
    let _ = writeln!(
        out,
        "# HELP okey_mail_sent Mails the relay accepted (whole outbox)."
    );
    let _ = writeln!(out, "# TYPE okey_mail_sent gauge");
    let _ = writeln!(out, "okey_mail_sent {}", stats.sent);
    let _ = writeln!(
        out,
        "# HELP okey_mail_failed Mails given up (whole outbox)."
    );
    let _ = writeln!(out, "# TYPE okey_mail_failed gauge");
    let _ = writeln!(out, "okey_mail_failed {}", stats.failed);
    let _ = writeln!(
        out,
        "# HELP okey_mail_oldest_pending_age_seconds Age of the oldest waiting mail (0: none)."
    );
    let _ = writeln!(out, "# TYPE okey_mail_oldest_pending_age_seconds gauge");
    let _ = writeln!(
        out,
        "okey_mail_oldest_pending_age_seconds {}",
        stats.oldest_pending_at.map_or(0, |t| now.saturating_sub(t))
    );
    if let Some(s) = sender {
        let _ = writeln!(
            out,
            "# HELP okey_mail_attempts_total Delivery attempts by this process, by outcome."
        );
        let _ = writeln!(out, "# TYPE okey_mail_attempts_total counter");
        let _ = writeln!(
            out,
            "okey_mail_attempts_total{{result=\"sent\"}} {}",
            s.sent.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "okey_mail_attempts_total{{result=\"failed\"}} {}",
            s.attempts_failed.load(Ordering::Relaxed)
        );
    }
}
