//! The mails of the key lifecycle, written to the outbox in the transaction of the change that
//! causes them: a convocation to a hand-over meeting for each person of a first appointment
//! batch, the keys that expired (to their lot's managers), a return that became due at an end
//! of function or of a temporary holder's period (to the lot's managers), a key declared lost
//! (to its holder).
//!
//! The store decides *when* a mail is due and *to whom* (addresses from the directory: a
//! person's e-mail; a lot's managers are its named delegates and the people whose function
//! manages that kind of lot in its unit); a [`LifecycleMailer`] set by the server renders it
//! (the French templates live in `okey-notify`, which the store does not depend on). Without a
//! mailer (no relay configured) no mail is written. A person the directory does not know gets
//! no mail; a notice nobody can receive is dropped.

use std::collections::BTreeSet;
use std::sync::Arc;

use okey_domain::org::{Function, LotKind, PersonId, UnitId};

use crate::StoreError;
use crate::backend::WriteTx;
use crate::outbox::{self, NewMail};
use crate::store::Store;

/// A lifecycle event that sends a mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A key is reserved for a newly appointed person: come to the hand-over meeting.
    Convocation {
        /// The person's name (from the directory).
        name: String,
        /// The key reserved for them.
        serial: String,
        /// Its lot's display name.
        lot_name: String,
        /// When the meeting is (Unix seconds).
        meeting_at: u64,
        /// Where.
        place: String,
    },
    /// The scheduled job marked keys of a lot expired.
    Expired {
        /// The lot.
        lot: String,
        /// Its display name.
        lot_name: String,
        /// The keys, with their holder's name when they had one.
        keys: Vec<(String, Option<String>)>,
    },
    /// A key's return is due (end of function, end of a temporary period): it no longer logs in.
    ReturnDue {
        /// The lot.
        lot: String,
        /// Its display name.
        lot_name: String,
        /// The key.
        serial: String,
        /// The holder's name (or id when the directory does not know them).
        holder: String,
        /// Since when (Unix seconds).
        since: u64,
    },
    /// The key was declared lost.
    Lost {
        /// The holder's name.
        name: String,
        /// The key.
        serial: String,
        /// Who declared it.
        by: String,
        /// The comment given.
        comment: Option<String>,
        /// When.
        at: u64,
    },
    /// A support case was opened: its number, to the declarant.
    CaseOpened {
        /// The case number.
        number: String,
        /// The declarant's name.
        name: String,
        /// The case's subject.
        subject: String,
        /// Its priority, in French.
        priority: String,
        /// When (Unix seconds).
        opened_at: u64,
    },
    /// A reply on a support case (never an internal note).
    CaseReply {
        /// The case number.
        number: String,
        /// The case's subject.
        subject: String,
        /// Who replied.
        author: String,
        /// The reply.
        body: String,
    },
    /// A support case was resolved.
    CaseResolved {
        /// The case number.
        number: String,
        /// The case's subject.
        subject: String,
        /// How.
        resolution: String,
        /// When (Unix seconds).
        resolved_at: u64,
    },
    /// A key request moved (submitted, approved, refused, out of stock, ready, ...).
    Request(crate::requests::RequestNotice),
}

impl Notice {
    /// The template it is rendered from.
    pub fn template(&self) -> &'static str {
        match self {
            Notice::Convocation { .. } => "key.convocation",
            Notice::Expired { .. } => "key.expired",
            Notice::ReturnDue { .. } => "key.return_due",
            Notice::Lost { .. } => "key.lost",
            Notice::CaseOpened { .. } => "case.opened",
            Notice::CaseReply { .. } => "case.reply",
            Notice::CaseResolved { .. } => "case.resolved",
            Notice::Request(r) => r.mail.template(),
        }
    }
}

/// Renders lifecycle notices into mails (set with [`Store::set_lifecycle_mailer`]).
pub trait LifecycleMailer: Send + Sync {
    /// The mail for `notice` to `to`, with a fresh Message-ID. An error refuses the change.
    fn compose(&self, notice: &Notice, to: &[String]) -> Result<NewMail, String>;
}

/// The functions whose holders manage a lot of `kind` in its unit.
fn managing(kind: LotKind) -> &'static [Function] {
    match kind {
        LotKind::School2D => &[Function::HeadOfSchool, Function::Delegate],
        LotKind::District1D => &[Function::DistrictInspector, Function::DistrictIctAdviser],
        LotKind::Rectorat => &[Function::SupportAgent],
        LotKind::Examen => &[Function::ExamsOfficeAgent],
    }
}

impl Store {
    /// Render lifecycle mails with `mailer` from now on (the server sets it when a relay is
    /// configured).
    pub fn set_lifecycle_mailer(&self, mailer: Arc<dyn LifecycleMailer>) {
        if let Ok(mut m) = self.inner.mailer.write() {
            *m = Some(mailer);
        }
    }

    pub(crate) fn lifecycle_mailer(&self) -> Option<Arc<dyn LifecycleMailer>> {
        self.inner.mailer.read().ok().and_then(|m| m.clone())
    }

    /// A person's name and address in the directory, if it knows them.
    pub(crate) fn directory_entry(
        &self,
        person: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let Ok(id) = PersonId::parse(person) else {
            return Ok(None);
        };
        Ok(self.person(&id)?.map(|p| (p.name, p.email)))
    }

    /// The name to print for a person: the directory's, else the id.
    pub(crate) fn display_name(&self, person: &str) -> Result<String, StoreError> {
        Ok(self
            .directory_entry(person)?
            .map_or_else(|| person.to_owned(), |(n, _)| n))
    }

    /// The addresses of a lot's managers: its named delegates and the people of its unit whose
    /// function manages its kind of lot.
    pub(crate) fn lot_manager_addresses(
        &self,
        lot: &crate::LotRow,
    ) -> Result<Vec<String>, StoreError> {
        let mut to = BTreeSet::new();
        for d in self.inner.backend.custody().delegates(&lot.id)? {
            if let Some((_, email)) = self.directory_entry(&d)? {
                to.insert(email);
            }
        }
        if let Ok(unit) = UnitId::parse(&lot.unit) {
            for f in managing(lot.kind) {
                for p in self.people_with(&unit, *f)? {
                    to.insert(p.email);
                }
            }
        }
        Ok(to.into_iter().collect())
    }

    /// Write the mail of `notice` to `to` into the outbox, inside `tx`. Nothing without a
    /// mailer or a recipient.
    pub(crate) fn notify(
        &self,
        tx: &mut dyn WriteTx,
        notice: &Notice,
        to: Vec<String>,
        now: u64,
    ) -> Result<(), StoreError> {
        let Some(mailer) = self.lifecycle_mailer() else {
            return Ok(());
        };
        let to: Vec<String> = to
            .into_iter()
            .take(outbox::MAX_RECIPIENTS)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if to.is_empty() {
            return Ok(());
        }
        let mail = mailer
            .compose(notice, &to)
            .map_err(|why| StoreError::invalid("mail", why))?;
        outbox::enqueue(tx, &mail, now)?;
        Ok(())
    }
}
