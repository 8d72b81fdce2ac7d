//! The support desk: cases (opened by the people `okey_domain::support::may_open` allows,
//! numbered per unit and year, their number mailed to the declarant in the transaction that
//! opens them), replies and internal notes, assignment, resolution; the diagnosis facts of a
//! key; and the temporary key that stands in for a lost one (003 case 3), bound to the holder's
//! PIN without anyone reading it, and that stops working on its own at its validity end.
//!
//! Every mail of a case goes to the declarant, with the IEN of a primary school director in
//! copy; an internal note is never mailed.

use okey_domain::org::{Function, PersonId, UnitKind};
use okey_domain::support::{
    self as rules, CaseError, CaseForm, CaseKind, Failure, KeyFacts, Priority,
};
use okey_domain::validate_serial;

use crate::backend::WriteTx;
use crate::cache::Hot;
use crate::notices::Notice;
use crate::outbox;
use crate::store::{Store, carried_pin, info_of};
use crate::support_db::{CaseFilter, CaseMessage, CaseRow, CaseState, TemporaryKey};
use crate::types::{Actor, NewToken, OtpKind, TokenInfo, TokenStatus};
use crate::{StoreError, audit};

/// How many of the newest audit records a diagnosis reads for a key's logins.
const DIAGNOSIS_AUDIT_WINDOW: u32 = 20_000;
/// Most cases one listing returns.
pub const MAX_CASES: u32 = 1_000;
/// Longest temporary validity (days): a temporary key is short-lived by definition.
pub const MAX_TEMPORARY_DAYS: u64 = 60;

/// A case to open.
#[derive(Clone, Debug)]
pub struct NewCase {
    /// The declarant: a directory person.
    pub declarant: String,
    /// What it is about.
    pub kind: CaseKind,
    /// How urgent.
    pub priority: Priority,
    /// The fields 004 asks for (its attachments already checked by content).
    pub form: CaseForm,
    /// The attachments' descriptions, one line each (name, type, size, digest).
    pub attachment_lines: Vec<String>,
    /// The attachments themselves: sealed with the case, owner `case:NUMBER`.
    pub files: Vec<crate::attachments::NewAttachment>,
    /// The key concerned (required for the kinds that name one).
    pub serial: Option<String>,
    /// The serials of a "keys not in okey" case.
    pub serials: Vec<String>,
}

/// A case and its messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseView {
    /// The case.
    pub case: CaseRow,
    /// Its messages, oldest first (internal notes included: the caller filters them).
    pub messages: Vec<CaseMessage>,
}

/// The owner of a case's attachments in the attachment store.
pub fn case_owner(number: &str) -> String {
    format!("case:{number}")
}

fn refused(e: CaseError) -> StoreError {
    match e {
        CaseError::NotAllowed { .. } => StoreError::Forbidden(e.to_string()),
        CaseError::Missing(field) | CaseError::Bad { field, .. } => StoreError::Invalid {
            field,
            why: e.to_string(),
        },
        CaseError::Unknown { what, .. } => StoreError::Invalid {
            field: what,
            why: e.to_string(),
        },
    }
}

impl Store {
    /// Write `notice` to `to` with `cc` in copy into the outbox, inside `tx` (nothing without a
    /// mailer or a recipient).
    fn notify_cc(
        &self,
        tx: &mut dyn WriteTx,
        notice: &Notice,
        to: Vec<String>,
        cc: Vec<String>,
        now: u64,
    ) -> Result<(), StoreError> {
        let Some(mailer) = self.lifecycle_mailer() else {
            return Ok(());
        };
        if to.is_empty() {
            return Ok(());
        }
        let mut mail = mailer
            .compose(notice, &to)
            .map_err(|why| StoreError::invalid("mail", why))?;
        mail.cc = cc.into_iter().filter(|c| !to.contains(c)).collect();
        outbox::enqueue(tx, &mail, now)?;
        Ok(())
    }

    /// Open a case for its declarant. Refused, with nothing written: a declarant the
    /// directory does not know or who may not open a case (the sentence says who may), a
    /// missing or malformed field (named), a key kind without a known key, a "keys not in
    /// okey" case without serials. The case number is mailed to the declarant (and their IEN
    /// when they direct a primary school) in the same transaction.
    pub fn open_case(&self, new: NewCase, actor: &Actor, now: u64) -> Result<CaseRow, StoreError> {
        let id = PersonId::parse(&new.declarant).map_err(|e| {
            StoreError::Forbidden(format!("the declarant must be a directory person: {e}"))
        })?;
        let person = self.person(&id)?.ok_or_else(|| {
            StoreError::Forbidden(format!(
                "{} is not in the directory: only people of the directory open support cases",
                new.declarant
            ))
        })?;
        let tree = self.org_tree()?;
        let opener = rules::may_open(&person, &tree).map_err(refused)?;
        new.form.check().map_err(refused)?;
        let serial = match (new.kind.names_a_key(), new.serial.as_deref()) {
            (true, None) => return Err(refused(CaseError::Missing("key serial"))),
            (_, Some(s)) => {
                validate_serial(s).map_err(|e| StoreError::invalid("serial", e.to_string()))?;
                // The key must be one okey knows (its diagnosis is offered on the case).
                self.token(s)?;
                Some(s.to_owned())
            }
            (false, None) => None,
        };
        if new.kind == CaseKind::KeysNotInOkey {
            if new.serials.is_empty() {
                return Err(refused(CaseError::Missing("serials of the keys")));
            }
            if new.serials.len() > rules::MAX_SERIALS {
                return Err(StoreError::invalid(
                    "serials",
                    format!("a case lists at most {} serials", rules::MAX_SERIALS),
                ));
            }
            for s in &new.serials {
                validate_serial(s).map_err(|e| StoreError::invalid("serials", e.to_string()))?;
            }
        } else if !new.serials.is_empty() {
            return Err(StoreError::invalid(
                "serials",
                "only a \"keys not in okey\" case lists serials",
            ));
        }
        let copy_to = if opener.copies_ien() {
            tree.manager(&person, self)
                .map_err(|e| StoreError::Precondition(format!("the declarant's IEN: {e}")))?
                .filter(|m| m.has(Function::DistrictInspector))
                .map(|m| m.email)
        } else {
            None
        };
        let unit = tree
            .unit(&person.unit)
            .map(|u| u.id.as_str().to_owned())
            .unwrap_or_else(|| person.unit.as_str().to_owned());
        let year = rules::year_of(now);
        let f = new.form;
        let files = new.files;
        let case = CaseRow {
            number: String::new(),
            unit: unit.clone(),
            declarant: person.id.as_str().to_owned(),
            declarant_email: person.email.clone(),
            copy_to,
            kind: new.kind,
            priority: new.priority,
            name: f.name,
            function: f.function,
            phone: f.phone,
            unit_town: f.unit_town,
            subject: f.subject,
            population: f.population,
            description: f.description,
            location: f.location,
            attachments: new.attachment_lines,
            serial,
            serials: new.serials,
            state: CaseState::Open,
            assignee: None,
            opened_at: now,
            updated_at: now,
            resolved_at: None,
            resolution: None,
        };
        let store = self.clone();
        let actor = actor.clone();
        self.inner.writer.run_blocking(move |tx| {
            let seq = tx.support().next_case_seq(&unit, year)?;
            let mut case = case;
            case.number = rules::case_number(&unit, year, seq);
            tx.support().insert_case(&case)?;
            let sealed =
                store.seal_attachments(&case_owner(&case.number), &files, &case.declarant, now)?;
            for a in &sealed {
                tx.requests().insert_attachment(a)?;
            }
            let notice = Notice::CaseOpened {
                number: case.number.clone(),
                name: person.name.clone(),
                subject: case.subject.clone(),
                priority: case.priority.french().to_owned(),
                opened_at: now,
            };
            store.notify_cc(
                tx,
                &notice,
                vec![case.declarant_email.clone()],
                case.copy_to.clone().into_iter().collect(),
                now,
            )?;
            audit::append(
                tx,
                &store.inner.audit_key,
                Store::audit_entry(
                    &actor,
                    "case.open",
                    &case.number,
                    case.serial.as_deref(),
                    "ok",
                    &format!("{} {} by {}", case.kind, case.priority, case.declarant),
                    now,
                ),
            )?;
            Ok(case)
        })
    }

    /// One case with its messages.
    pub fn case(&self, number: &str) -> Result<CaseView, StoreError> {
        let case = self
            .inner
            .backend
            .support()
            .case(number)?
            .ok_or_else(|| StoreError::Precondition(format!("no case {number}")))?;
        let messages = self.inner.backend.support().case_messages(number)?;
        Ok(CaseView { case, messages })
    }

    /// Cases matching `filter`: open ones first, by priority then age (the queue).
    pub fn cases(&self, filter: &CaseFilter, limit: u32) -> Result<Vec<CaseRow>, StoreError> {
        self.inner
            .backend
            .support()
            .cases(filter, limit.clamp(1, MAX_CASES))
    }

    /// Change an open case inside one transaction: `change` edits it and says which mail (if
    /// any) goes out and which message is added.
    fn change_case(
        &self,
        number: &str,
        action: &'static str,
        actor: &Actor,
        now: u64,
        change: impl FnOnce(&mut CaseRow) -> Result<(Option<CaseMessage>, Option<Notice>), StoreError>
        + Send
        + 'static,
    ) -> Result<CaseRow, StoreError> {
        let store = self.clone();
        let actor = actor.clone();
        let number = number.to_owned();
        self.inner.writer.run_blocking(move |tx| {
            let mut case = tx
                .support()
                .case(&number)?
                .ok_or_else(|| StoreError::Precondition(format!("no case {number}")))?;
            if case.state == CaseState::Resolved {
                return Err(StoreError::Precondition(format!(
                    "case {number} is resolved"
                )));
            }
            let (message, notice) = change(&mut case)?;
            case.updated_at = now;
            tx.support().update_case(&case)?;
            let mut reason = String::new();
            if let Some(m) = &message {
                tx.support().insert_case_message(m)?;
                reason = if m.internal { "internal note" } else { "reply" }.to_owned();
            }
            if let Some(n) = &notice {
                store.notify_cc(
                    tx,
                    n,
                    vec![case.declarant_email.clone()],
                    case.copy_to.clone().into_iter().collect(),
                    now,
                )?;
            }
            if action == "case.assign" {
                reason = format!("to {}", case.assignee.as_deref().unwrap_or("nobody"));
            }
            audit::append(
                tx,
                &store.inner.audit_key,
                Store::audit_entry(
                    &actor,
                    action,
                    &case.number,
                    case.serial.as_deref(),
                    "ok",
                    &reason,
                    now,
                ),
            )?;
            Ok(case)
        })
    }

    /// Add a reply (mailed to the declarant, IEN in copy) or an internal note (never mailed)
    /// to an open case.
    pub fn reply_case(
        &self,
        number: &str,
        author: &str,
        body: &str,
        internal: bool,
        actor: &Actor,
        now: u64,
    ) -> Result<CaseMessage, StoreError> {
        rules::check_text(if internal { "note" } else { "reply" }, body).map_err(refused)?;
        let m = CaseMessage {
            id: 0,
            number: number.to_owned(),
            at: now,
            author: author.to_owned(),
            internal,
            body: body.to_owned(),
        };
        let msg = m.clone();
        self.change_case(number, "case.reply", actor, now, move |case| {
            let notice = (!internal).then(|| Notice::CaseReply {
                number: case.number.clone(),
                subject: case.subject.clone(),
                author: msg.author.clone(),
                body: msg.body.clone(),
            });
            Ok((Some(msg), notice))
        })?;
        Ok(m)
    }

    /// Give an open case to a support agent (a directory person with the function support),
    /// and optionally change its priority.
    pub fn assign_case(
        &self,
        number: &str,
        agent: &str,
        priority: Option<Priority>,
        actor: &Actor,
        now: u64,
    ) -> Result<CaseRow, StoreError> {
        let id = PersonId::parse(agent).map_err(|e| StoreError::invalid("agent", e.to_string()))?;
        let person = self.person(&id)?.ok_or_else(|| {
            StoreError::invalid("agent", format!("{agent} is not in the directory"))
        })?;
        let tree = self.org_tree()?;
        let in_centre = tree
            .unit(&person.unit)
            .is_some_and(|u| u.kind == UnitKind::SupportCentre);
        if !(person.has(Function::SupportAgent) && in_centre) {
            return Err(StoreError::invalid(
                "agent",
                format!("{agent} is not an agent of the support centre"),
            ));
        }
        let agent = person.id.as_str().to_owned();
        self.change_case(number, "case.assign", actor, now, move |case| {
            case.assignee = Some(agent);
            if let Some(p) = priority {
                case.priority = p;
            }
            Ok((None, None))
        })
    }

    /// Resolve an open case: the resolution is mailed to the declarant (IEN in copy).
    pub fn resolve_case(
        &self,
        number: &str,
        author: &str,
        resolution: &str,
        actor: &Actor,
        now: u64,
    ) -> Result<CaseRow, StoreError> {
        rules::check_text("resolution", resolution).map_err(refused)?;
        let m = CaseMessage {
            id: 0,
            number: number.to_owned(),
            at: now,
            author: author.to_owned(),
            internal: false,
            body: resolution.to_owned(),
        };
        let text = resolution.to_owned();
        self.change_case(number, "case.resolve", actor, now, move |case| {
            case.state = CaseState::Resolved;
            case.resolved_at = Some(now);
            case.resolution = Some(text.clone());
            let notice = Notice::CaseResolved {
                number: case.number.clone(),
                subject: case.subject.clone(),
                resolution: text,
                resolved_at: now,
            };
            Ok((Some(m), Some(notice)))
        })
    }

    /// Record on an open case what was done for it (an internal note, not mailed): used after
    /// registering a "keys not in okey" case's serials.
    pub fn note_case(
        &self,
        number: &str,
        body: &str,
        actor: &Actor,
        now: u64,
    ) -> Result<(), StoreError> {
        self.reply_case(number, &actor.name, body, true, actor, now)
            .map(|_| ())
    }

    /// What is known of key `serial` for its diagnosis at `now`: its row, and from the newest
    /// audit records its last accepted login and its last refusals.
    pub fn key_facts(&self, serial: &str, now: u64) -> Result<KeyFacts, StoreError> {
        let row = self
            .inner
            .backend
            .token(serial)?
            .ok_or_else(|| StoreError::UnknownSerial(serial.to_owned()))?;
        let mut last_accept = None;
        let mut recent_failures = Vec::new();
        for rec in self.inner.backend.audit_tail(DIAGNOSIS_AUDIT_WINDOW)? {
            let e = &rec.entry;
            if e.action != "verify" || e.serial.as_deref() != Some(serial) {
                continue;
            }
            if e.result == "accepted" {
                if last_accept.is_none() {
                    last_accept = Some(e.at);
                }
                // Refusals before the last accepted login are history, not the fault.
                break;
            }
            if recent_failures.len() < 10 {
                recent_failures.push(Failure {
                    at: e.at,
                    reason: e.reason.clone(),
                });
            }
        }
        let cfg = self.config();
        Ok(KeyFacts {
            custody: row.custody,
            status: row.status.domain(),
            locked: row.locked,
            locked_until: row.locked_until,
            failures: row.failures,
            lock_threshold: cfg.lockout.hard_after,
            last_accept,
            recent_failures,
            valid_until: row.valid_until,
            active_until: row.active_until,
            totp_drift: matches!(row.otp, OtpKind::Totp { .. }).then_some(row.drift),
            totp_skew: cfg.totp_skew,
            has_pin: row.pin_verifier.is_some(),
            software: row.kind == crate::types::TokenKind::Software,
            now,
        })
    }

    /// The temporary keys issued for, or as, `serial`.
    pub fn temporary_keys(&self, serial: &str) -> Result<Vec<TemporaryKey>, StoreError> {
        self.inner.backend.support().temporary_keys(serial)
    }

    /// Issue the temporary key `t` (a software key) for the holder of `lost`, in one
    /// transaction: `t` gets the holder and their PIN (carried as
    /// [`Store::carry_pin`] does, nobody reads it), its validity ends at `t.valid_until` (it
    /// then stops working on its own), and `lost` is disabled, not deleted. Refused with
    /// nothing written: a key with no holder, a PIN that cannot be carried, a key that is
    /// neither active nor disabled.
    pub fn issue_temporary_key(
        &self,
        lost: &str,
        mut t: NewToken,
        case_number: Option<String>,
        actor: &Actor,
        now: u64,
    ) -> Result<(TokenInfo, TemporaryKey), StoreError> {
        let Some(expires_at) = t.valid_until.filter(|end| *end > now) else {
            return Err(StoreError::invalid(
                "validity",
                "a temporary key ends after it is issued",
            ));
        };
        if expires_at - now > MAX_TEMPORARY_DAYS * 86_400 {
            return Err(StoreError::invalid(
                "validity",
                format!("a temporary key lasts at most {MAX_TEMPORARY_DAYS} days"),
            ));
        }
        let source = self
            .inner
            .backend
            .token(lost)?
            .ok_or_else(|| StoreError::UnknownSerial(lost.to_owned()))?;
        let Some(holder) = source.holder.clone() else {
            return Err(StoreError::Precondition(format!(
                "key {lost} has no holder: a temporary key stands in for someone's key"
            )));
        };
        if let Some(n) = &case_number {
            let case = self.case(n)?.case;
            if case.state != CaseState::Open {
                return Err(StoreError::Precondition(format!("case {n} is resolved")));
            }
        }
        t.holder = Some(holder.clone());
        t.status = TokenStatus::Pending;
        let mut row = self.seal_new(&t, now)?;
        let rec = TemporaryKey {
            serial: t.serial.clone(),
            replaces: lost.to_owned(),
            holder: holder.clone(),
            case_number,
            issued_at: now,
            expires_at,
            issued_by: actor.name.clone(),
        };
        let store = self.clone();
        let actor = actor.clone();
        let lost_owned = lost.to_owned();
        let record = rec.clone();
        let (row, lost_row) = self.inner.writer.run_blocking(move |tx| {
            let mut src = tx
                .token(&lost_owned)?
                .ok_or_else(|| StoreError::UnknownSerial(lost_owned.clone()))?;
            if src.holder.as_deref() != Some(holder.as_str()) {
                return Err(StoreError::Conflict);
            }
            if !tx.data_keys()?.iter().any(|d| d.version == row.key_version) {
                return Err(StoreError::Conflict);
            }
            carried_pin(&store, &src, &mut row)?;
            if tx.token(&row.serial)?.is_some() {
                return Err(StoreError::DuplicateSerial(row.serial.clone()));
            }
            tx.insert_token(&row)?;
            match src.status {
                TokenStatus::Active => {
                    let expect = src.version;
                    src.status = TokenStatus::Disabled;
                    src.updated_at = now;
                    if !tx.update_token(expect, &src)? {
                        return Err(StoreError::Conflict);
                    }
                    src.version = expect + 1;
                }
                TokenStatus::Disabled => {}
                other => {
                    return Err(StoreError::Precondition(format!(
                        "key {lost_owned} is {}: only an active or disabled key is stood in for",
                        other.as_str()
                    )));
                }
            }
            tx.support().insert_temporary_key(&record)?;
            if let Some(n) = &record.case_number {
                tx.support().insert_case_message(&CaseMessage {
                    id: 0,
                    number: n.clone(),
                    at: now,
                    author: actor.name.clone(),
                    internal: true,
                    body: format!(
                        "temporary key {} issued for {holder} until {}; key {lost_owned} disabled",
                        record.serial, record.expires_at
                    ),
                })?;
            }
            audit::append(
                tx,
                &store.inner.audit_key,
                Store::audit_entry(
                    &actor,
                    "support.temporary",
                    &record.serial,
                    Some(&record.serial),
                    "ok",
                    &format!(
                        "for {holder} in place of {lost_owned} until {}",
                        record.expires_at
                    ),
                    now,
                ),
            )?;
            Ok((row, src))
        })?;
        self.inner.cache.update(lost, Hot::of(&lost_row));
        Ok((info_of(&row), rec))
    }
}
