//! Key requests (seeds 001 and 002), charters and pickup slots.
//!
//! A request moves only by [`okey_domain::request::request_transition`]: the store reads the row
//! in the writer's transaction, asks the table whether the acting person, as the party they are
//! for this request (its requester, the validator named on it, their N+2, the manager of the lot
//! the key comes from, the support centre), may make the move with the facts of the request, and
//! writes the new state with the row's compare-and-set, a history event, the mails the move
//! sends (outbox) and an audit record, in one commit. A refusal writes nothing.
//!
//! The PIN the requester chooses is kept only as its holder-bound verifier,
//! HMAC-SHA256(pepper, holder ‖ PIN) (`okey_otp::PinBinding::Holder`), the same value a key of
//! that holder stores: at the hand-over it is put on the key in the key's own compare-and-set,
//! and a renewal copies the previous key's verifier onto the request, so nobody, okey included,
//! ever reads the PIN again.

use okey_domain::Party;
use okey_domain::org::{Function, PersonId, UnitKind};
use okey_domain::request::{
    Need, PinPolicy, RequestAction, RequestFacts, RequestParty, RequestRefusal, RequestState,
    RequestedKey, automatic_approval, may_request, request_transition,
};
use okey_otp::{Pin, PinBinding};

use crate::StoreError;
use crate::attachments::{AttachmentInfo, NewAttachment};
use crate::audit;
use crate::backend::{TokenRow, WriteTx};
use crate::cache::Hot;
use crate::lots::{Acting, KeyChange, LotRow};
use crate::notices::Notice;
use crate::store::Store;
use crate::types::Actor;

/// Longest reason or comment.
pub const MAX_REASON_LEN: usize = 500;
/// Longest charter number.
pub const MAX_CHARTER_NUMBER_LEN: usize = 32;
/// Largest charter document.
pub const MAX_CHARTER_BYTES: usize = 2 * 1024 * 1024;

/// A request as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestRow {
    /// Id (0 before insertion).
    pub id: u64,
    /// Who asked (a directory person's id).
    pub requester: String,
    /// Their unit when they asked.
    pub unit: String,
    /// `new` or `renewal`.
    pub need: String,
    /// `hardware` or `software`.
    pub key_type: String,
    /// Why they need it.
    pub reason: String,
    /// [`RequestState::as_str`].
    pub state: String,
    /// The N+1 who decides.
    pub validator: Option<String>,
    /// The N+2, who may decide when the N+1 is absent.
    pub second_validator: Option<String>,
    /// Who approved or refused.
    pub decided_by: Option<String>,
    /// Why (a refusal's reason, or why the approval was automatic).
    pub decision_reason: Option<String>,
    /// The lot the key comes from.
    pub lot: Option<String>,
    /// The key reserved for it.
    pub serial: Option<String>,
    /// The charter version signed.
    pub charter_version: Option<u32>,
    /// When.
    pub charter_signed_at: Option<u64>,
    /// The holder-bound PIN verifier (never the PIN).
    pub pin_verifier: Option<[u8; 32]>,
    /// `chosen`, or `carried from SERIAL` on a renewal.
    pub pin_source: Option<String>,
    /// The booked pickup slot.
    pub slot: Option<u64>,
    /// How many reminders the validator got.
    pub reminders: u32,
    /// Filing time.
    pub created_at: u64,
    /// Last change.
    pub updated_at: u64,
    /// When it was sent to the validator.
    pub submitted_at: Option<u64>,
    /// Row version: the compare-and-set token.
    pub version: u64,
}

impl std::fmt::Debug for RequestRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestRow")
            .field("id", &self.id)
            .field("requester", &self.requester)
            .field("state", &self.state)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl RequestRow {
    /// Its state.
    pub fn state(&self) -> Result<RequestState, StoreError> {
        RequestState::parse(&self.state)
            .ok_or_else(|| StoreError::Corrupt(format!("request {}: bad state", self.id)))
    }

    /// The key kind asked for.
    pub fn key(&self) -> RequestedKey {
        if self.key_type == "software" {
            RequestedKey::Software
        } else {
            RequestedKey::Hardware
        }
    }

    /// The owner text of its attachments.
    pub fn owner(&self) -> String {
        owner(self.id)
    }
}

fn owner(id: u64) -> String {
    format!("request:{id}")
}

/// One change in a request's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestEvent {
    /// The request.
    pub request: u64,
    /// When.
    pub at: u64,
    /// Who (a person, or `okey`).
    pub actor: String,
    /// What ([`RequestAction::as_str`], or `file`, `attach`, `charter`, `pin`, `appointment`).
    pub action: String,
    /// State before.
    pub state_before: Option<String>,
    /// State after.
    pub state_after: String,
    /// Free text.
    pub comment: Option<String>,
}

/// A published charter version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charter {
    /// 1, 2, ...
    pub version: u32,
    /// The number printed at the bottom of the document, which a signer types back.
    pub number: String,
    /// Title.
    pub title: String,
    /// The document.
    pub content: Vec<u8>,
    /// SHA-256 of the document.
    pub sha256: [u8; 32],
    /// Who published it.
    pub published_by: String,
    /// When.
    pub published_at: u64,
}

/// An appointment a lot manager offers for collecting keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickupSlot {
    /// Id (0 before insertion).
    pub id: u64,
    /// The lot.
    pub lot: String,
    /// When (Unix seconds).
    pub starts_at: u64,
    /// Where.
    pub place: String,
    /// The request that booked it.
    pub request: Option<u64>,
    /// Who offered it.
    pub created_by: String,
    /// When.
    pub created_at: u64,
}

/// A request with what its parties see of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestView {
    /// The row (its PIN verifier is never shown: see [`RequestView::pin_set`]).
    pub row: RequestRow,
    /// Its attachments (never their content).
    pub attachments: Vec<AttachmentInfo>,
    /// Its history, oldest first.
    pub events: Vec<RequestEvent>,
    /// The booked slot.
    pub slot: Option<PickupSlot>,
}

impl RequestView {
    /// Whether a PIN is chosen or carried.
    pub fn pin_set(&self) -> bool {
        self.row.pin_verifier.is_some()
    }
}

/// A request being filed.
#[derive(Clone, Debug)]
pub struct NewRequest {
    /// New key or renewal.
    pub need: Need,
    /// Hardware or software.
    pub key: RequestedKey,
    /// Why.
    pub reason: String,
    /// The validator the requester names instead of their N+1 from the directory.
    pub validator: Option<String>,
    /// The attachments.
    pub attachments: Vec<NewAttachment>,
    /// Send it to the validator now (when it has attachments).
    pub submit: bool,
}

/// The mail a request's move sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestMail {
    /// To the validator: a request waits for you.
    Waiting,
    /// To the validator: it still waits.
    Reminder,
    /// To the requester: approved (what to do next).
    Approved,
    /// To the requester: refused, with the reason.
    Refused,
    /// To the requester and the lot's managers: no key left in the lot.
    OutOfStock,
    /// To the requester: a key arrived, the request goes on.
    StockArrived,
    /// To the requester: your key is ready, where to collect it.
    Ready,
    /// To the requester: the request was left too long (no decision, or the key never
    /// collected) and okey closed it.
    Expired,
}

impl RequestMail {
    /// The template's name.
    pub fn template(self) -> &'static str {
        match self {
            RequestMail::Waiting => "request.waiting",
            RequestMail::Reminder => "request.reminder",
            RequestMail::Approved => "request.approved",
            RequestMail::Refused => "request.refused",
            RequestMail::OutOfStock => "request.out_of_stock",
            RequestMail::StockArrived => "request.stock_arrived",
            RequestMail::Ready => "request.ready",
            RequestMail::Expired => "request.expired",
        }
    }
}

/// How long a request may wait before okey expires it, in seconds (0: never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestExpiry {
    /// A submitted request that nobody decided.
    pub submitted_seconds: u64,
    /// A key ready for pickup that nobody collected (counted from its reservation, or from the
    /// booked slot when that is later).
    pub ready_seconds: u64,
}

/// What a request mail says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestNotice {
    /// Which mail.
    pub mail: RequestMail,
    /// The request's number.
    pub id: u64,
    /// The requester's name.
    pub requester: String,
    /// The request's reason.
    pub reason: String,
    /// The validator's name (or empty).
    pub validator: String,
    /// The lot's display name (or empty).
    pub lot_name: String,
    /// The move's detail: a refusal's reason, a place, the days waited.
    pub detail: String,
}

fn refusal(e: RequestRefusal) -> StoreError {
    match e {
        RequestRefusal::NotThisParty { .. } => StoreError::Forbidden(e.to_string()),
        _ => StoreError::Precondition(e.to_string()),
    }
}

fn check_reason(field: &'static str, s: &str) -> Result<String, StoreError> {
    let t = s.trim();
    if t.is_empty()
        || t.chars().count() > MAX_REASON_LEN
        || t.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(StoreError::invalid(
            field,
            format!("1 to {MAX_REASON_LEN} characters, no control character"),
        ));
    }
    Ok(t.to_owned())
}

fn person_id(field: &'static str, s: &str) -> Result<String, StoreError> {
    PersonId::parse(s)
        .map(|p| p.as_str().to_ascii_lowercase())
        .map_err(|e| StoreError::invalid(field, e.to_string()))
}

/// The parties `by` is for `r`, in the table's order of preference.
fn parties_of(by: &Acting, r: &RequestRow) -> Vec<RequestParty> {
    let mut out = Vec::new();
    let me = by.person.as_deref();
    if me.is_some() && me == Some(r.requester.as_str()) {
        out.push(RequestParty::Requester);
    }
    if me.is_some() && me == r.validator.as_deref() {
        out.push(RequestParty::Validator);
    }
    if me.is_some() && me == r.second_validator.as_deref() {
        out.push(RequestParty::SecondValidator);
    }
    if r.lot
        .as_deref()
        .is_some_and(|l| by.manages.iter().any(|m| m == l))
    {
        out.push(RequestParty::LotManager);
    }
    if by.central.contains(&Party::SupportCentre) {
        out.push(RequestParty::SupportCentre);
    }
    out
}

/// Only the request's requester takes this step: anyone else is refused, as not a party at all
/// or as a party who is not the requester (`what`: "signs the charter of", ...).
fn requester_only(by: &Acting, r: &RequestRow, id: u64, what: &str) -> Result<(), StoreError> {
    if by.person.as_deref() == Some(r.requester.as_str()) {
        return Ok(());
    }
    Err(if parties_of(by, r).is_empty() {
        not_a_party(by, id)
    } else {
        StoreError::Forbidden(format!("only the requester {what} request {id}"))
    })
}

fn not_a_party(by: &Acting, id: u64) -> StoreError {
    StoreError::Forbidden(format!(
        "{} is not the requester, a validator or the lot manager of request {id}, and may not see or act on it",
        by.person.as_deref().unwrap_or(&by.actor.name)
    ))
}

fn facts(
    tx: &mut dyn WriteTx,
    r: &RequestRow,
    reason_given: bool,
) -> Result<RequestFacts, StoreError> {
    Ok(RequestFacts {
        attachments: tx.requests().attachments(&r.owner())?.len(),
        charter_signed: r.charter_version.is_some(),
        pin_set: r.pin_verifier.is_some(),
        reason_given,
    })
}

/// The acting party for okey itself.
fn system(actor: &Actor, lot: &str) -> Acting {
    Acting {
        actor: actor.clone(),
        person: None,
        central: Vec::new(),
        manages: vec![lot.to_owned()],
    }
}

/// One move, checked by the table and written with the row's compare-and-set, its event and its
/// audit record.
#[allow(clippy::too_many_arguments)]
fn step(
    tx: &mut dyn WriteTx,
    akey: &okey_otp::OtpKey,
    r: &mut RequestRow,
    action: RequestAction,
    parties: &[RequestParty],
    reason_given: bool,
    actor: &Actor,
    who: &str,
    comment: Option<String>,
    now: u64,
) -> Result<(), StoreError> {
    let before = r.state()?;
    let f = facts(tx, r, reason_given)?;
    let mut first_err = None;
    let mut to = None;
    for p in parties {
        match request_transition(before, action, *p, &f) {
            Ok(s) => {
                to = Some(s);
                break;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let Some(to) = to else {
        return Err(first_err.map_or_else(
            || StoreError::Forbidden(format!("nobody may {action} request {}", r.id)),
            refusal,
        ));
    };
    r.state = to.as_str().to_owned();
    r.updated_at = now;
    write(
        tx,
        akey,
        r,
        action.as_str(),
        Some(before),
        actor,
        who,
        comment,
        now,
    )
}

/// Write `r` with its compare-and-set, an event and an audit record.
#[allow(clippy::too_many_arguments)]
fn write(
    tx: &mut dyn WriteTx,
    akey: &okey_otp::OtpKey,
    r: &mut RequestRow,
    action: &str,
    before: Option<RequestState>,
    actor: &Actor,
    who: &str,
    comment: Option<String>,
    now: u64,
) -> Result<(), StoreError> {
    let expect = r.version;
    if !tx.requests().update_request(expect, r)? {
        return Err(StoreError::Conflict);
    }
    r.version = expect + 1;
    event(tx, akey, r, action, before, actor, who, comment, now)
}

#[allow(clippy::too_many_arguments)]
fn event(
    tx: &mut dyn WriteTx,
    akey: &okey_otp::OtpKey,
    r: &RequestRow,
    action: &str,
    before: Option<RequestState>,
    actor: &Actor,
    who: &str,
    comment: Option<String>,
    now: u64,
) -> Result<(), StoreError> {
    let e = RequestEvent {
        request: r.id,
        at: now,
        actor: who.to_owned(),
        action: action.to_owned(),
        state_before: before.map(|s| s.as_str().to_owned()),
        state_after: r.state.clone(),
        comment: comment.clone(),
    };
    tx.requests().insert_request_event(&e)?;
    let mut what = match before {
        Some(b) if b.as_str() != r.state => format!("{who}: {b} -> {}", r.state),
        _ => format!("{who}: {}", r.state),
    };
    if let Some(c) = &comment {
        what.push_str("; ");
        what.push_str(c);
    }
    audit::append(
        tx,
        akey,
        Store::audit_entry(
            actor,
            &format!("request.{action}"),
            &owner(r.id),
            r.serial.as_deref(),
            "ok",
            &what,
            now,
        ),
    )?;
    Ok(())
}

fn read(tx: &mut dyn WriteTx, id: u64) -> Result<RequestRow, StoreError> {
    tx.requests()
        .request(id)?
        .ok_or_else(|| StoreError::Precondition(format!("there is no request {id}")))
}

/// What the directory says about a requester, read before the transaction.
#[derive(Clone, Debug)]
struct Requester {
    functions: Vec<Function>,
    in_1d_school: bool,
}

impl Store {
    fn mail(
        &self,
        tx: &mut dyn WriteTx,
        r: &RequestRow,
        mail: RequestMail,
        to: Vec<String>,
        detail: String,
        now: u64,
    ) -> Result<(), StoreError> {
        let name = |p: Option<&str>| -> Result<String, StoreError> {
            p.map_or(Ok(String::new()), |p| self.display_name(p))
        };
        let lot_name = match r.lot.as_deref() {
            Some(l) => tx.custody().lot(l)?.map(|l| l.name).unwrap_or_default(),
            None => String::new(),
        };
        let notice = Notice::Request(RequestNotice {
            mail,
            id: r.id,
            requester: name(Some(&r.requester))?,
            reason: r.reason.clone(),
            validator: name(r.validator.as_deref())?,
            lot_name,
            detail,
        });
        self.notify(tx, &notice, to, now)
    }

    fn email_of(&self, person: Option<&str>) -> Result<Vec<String>, StoreError> {
        Ok(match person {
            Some(p) => self
                .directory_entry(p)?
                .map(|(_, e)| e)
                .into_iter()
                .collect(),
            None => Vec::new(),
        })
    }

    fn requester_facts(
        &self,
        person: &str,
    ) -> Result<(okey_domain::org::Person, Requester, LotRow, bool), StoreError> {
        let id =
            PersonId::parse(person).map_err(|e| StoreError::invalid("person", e.to_string()))?;
        let p = self.person(&id)?.ok_or_else(|| {
            StoreError::Precondition(format!(
                "{person} is not in the directory: only people of the directory ask for keys"
            ))
        })?;
        let tree = self.org_tree()?;
        let unit = tree.unit(&p.unit).ok_or_else(|| {
            StoreError::Precondition(format!("unit {} is not in the directory", p.unit.as_str()))
        })?;
        let parent_kind = unit
            .parent
            .as_ref()
            .and_then(|u| tree.unit(u))
            .map(|u| u.kind.clone());
        let is_school = matches!(unit.kind, UnitKind::School { .. });
        let is_2d = is_school && !matches!(parent_kind, Some(UnitKind::District));
        let _ = (&unit.name, is_2d);
        let unit_kind = unit.kind.clone();
        let unit_name = unit.name.clone();
        let lot_ref = tree
            .home_lot(&p.unit)
            .map_err(|e| StoreError::Precondition(e.to_string()));
        Ok((
            p.clone(),
            Requester {
                functions: p.functions.clone(),
                in_1d_school: is_school && !is_2d,
            },
            {
                // The school's contract is checked first: its sentence is the one 001 asks for.
                if let UnitKind::School {
                    under_contract: false,
                    ..
                } = unit_kind
                {
                    return Err(StoreError::Forbidden(
                        okey_domain::request::FilingRefusal::OutsideContract { unit: unit_name }
                            .to_string(),
                    ));
                }
                let lot_ref = lot_ref?;
                self.lot_rows()?
                    .into_iter()
                    .find(|l| l.kind == lot_ref.kind && l.unit == lot_ref.unit.as_str())
                    .ok_or_else(|| {
                        StoreError::Precondition(format!(
                            "no {} lot exists for unit {} yet: keys cannot be asked for there",
                            lot_ref.kind,
                            lot_ref.unit.as_str()
                        ))
                    })?
            },
            is_2d,
        ))
    }

    fn validators(
        &self,
        p: &okey_domain::org::Person,
        named: Option<&str>,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let tree = self.org_tree()?;
        let n1 = match named {
            Some(v) => {
                let id = person_id("validator", v)?;
                if id == p.id.as_str().to_ascii_lowercase() {
                    return Err(StoreError::invalid(
                        "validator",
                        "a requester does not validate their own request",
                    ));
                }
                let pid = PersonId::parse(&id)
                    .map_err(|e| StoreError::invalid("validator", e.to_string()))?;
                Some(self.person(&pid)?.ok_or_else(|| {
                    StoreError::invalid("validator", format!("{id} is not in the directory"))
                })?)
            }
            None => tree.manager(p, self).map_err(|e| {
                StoreError::Precondition(format!("the N+1 of {} is unknown: {e:?}", p.id.as_str()))
            })?,
        };
        let n2 = match &n1 {
            Some(m) => tree
                .manager(m, self)
                .ok()
                .flatten()
                .filter(|x| x.id != p.id && x.id != m.id),
            None => None,
        };
        let low =
            |x: Option<okey_domain::org::Person>| x.map(|x| x.id.as_str().to_ascii_lowercase());
        Ok((low(n1), low(n2)))
    }

    /// File a request as the person `by` acts for. Checked against the directory (a school
    /// outside contract is refused, software keys are not for 2D staff, one open request per
    /// need), its attachments checked and sealed; sent to the validator at once when asked and
    /// it has attachments (otherwise it stays a draft).
    pub fn file_request(
        &self,
        new: NewRequest,
        by: &Acting,
        now: u64,
    ) -> Result<RequestView, StoreError> {
        let me = by.person.clone().ok_or_else(|| {
            StoreError::Precondition(
                "requests are filed by a person: the API key must be bound to a directory person"
                    .into(),
            )
        })?;
        let reason = check_reason("reason", &new.reason)?;
        if new.attachments.len() > okey_domain::request::MAX_ATTACHMENTS {
            return Err(StoreError::invalid(
                "attachment",
                okey_domain::request::AttachmentRefusal::TooMany.to_string(),
            ));
        }
        for a in &new.attachments {
            okey_domain::request::check_attachment(&a.name, a.declared.as_deref(), &a.content)
                .map_err(|e| StoreError::invalid("attachment", e.to_string()))?;
        }
        let (p, who, lot, is_2d) = self.requester_facts(&me)?;
        let unit = self.org_tree()?.unit(&p.unit).cloned();
        if let Some(u) = &unit {
            may_request(&u.name, &u.kind, is_2d, new.key)
                .map_err(|e| StoreError::Forbidden(e.to_string()))?;
        }
        let (validator, second) = self.validators(&p, new.validator.as_deref())?;
        // A renewal keeps the previous key's PIN: its holder-bound verifier is copied, never
        // the PIN (which nobody has).
        let carried = if new.need == Need::Renewal {
            self.inner
                .backend
                .tokens_of(&me)?
                .into_iter()
                .filter(|t| t.pin_scheme == 2 && t.holder.as_deref() == Some(me.as_str()))
                .filter_map(|t| t.pin_verifier.map(|v| (t.serial, v)))
                .next_back()
        } else {
            None
        };
        let row = RequestRow {
            id: 0,
            requester: me.clone(),
            unit: p.unit.as_str().to_owned(),
            need: match new.need {
                Need::NewKey => "new",
                Need::Renewal => "renewal",
            }
            .to_owned(),
            key_type: match new.key {
                RequestedKey::Hardware => "hardware",
                RequestedKey::Software => "software",
            }
            .to_owned(),
            reason,
            state: RequestState::Draft.as_str().to_owned(),
            validator,
            second_validator: second,
            decided_by: None,
            decision_reason: None,
            lot: Some(lot.id.clone()),
            serial: None,
            charter_version: None,
            charter_signed_at: None,
            pin_source: carried.as_ref().map(|(s, _)| format!("carried from {s}")),
            pin_verifier: carried.map(|(_, v)| v),
            slot: None,
            reminders: 0,
            created_at: now,
            updated_at: now,
            submitted_at: None,
            version: 0,
        };
        let by = by.clone();
        let files = new.attachments;
        let submit = new.submit;
        let (id, touched) = self.request_write(move |tx, store, touched| {
            for r in tx.requests().requests_of_person(&row.requester)? {
                if r.requester == row.requester
                    && r.need == row.need
                    && r.state().is_ok_and(RequestState::is_open)
                {
                    return Err(StoreError::Precondition(
                        okey_domain::request::FilingRefusal::AlreadyOpen(r.id).to_string(),
                    ));
                }
            }
            let mut r = row;
            r.id = tx.requests().insert_request(&r)?;
            let sealed = store.seal_attachments(&r.owner(), &files, &me, now)?;
            for a in &sealed {
                tx.requests().insert_attachment(a)?;
            }
            let comment = format!(
                "{} {} key; {} attachment(s){}",
                r.need,
                r.key_type,
                sealed.len(),
                r.pin_source
                    .as_deref()
                    .map(|s| format!("; PIN {s}"))
                    .unwrap_or_default()
            );
            event(
                tx,
                &store.inner.audit_key,
                &r,
                "file",
                None,
                &by.actor,
                &me,
                Some(comment),
                now,
            )?;
            if submit && !sealed.is_empty() {
                store.submit_in(tx, &mut r, &who, &by, now, touched)?;
            }
            Ok(r.id)
        })?;
        let _ = touched;
        self.request_view(id, None)
    }

    /// The writer job of this module; the token rows it changed go to the cache after commit.
    fn request_write<T, F>(&self, f: F) -> Result<(T, usize), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn WriteTx, &Store, &mut Vec<TokenRow>) -> Result<T, StoreError>
            + Send
            + 'static,
    {
        let store = self.clone();
        let (out, rows) = self.write_blocking(move |tx| {
            let mut touched = Vec::new();
            let out = f(tx, &store, &mut touched)?;
            Ok((out, touched))
        })?;
        for row in &rows {
            self.inner.cache.update(&row.serial, Hot::of(row));
        }
        Ok((out, rows.len()))
    }

    fn submit_in(
        &self,
        tx: &mut dyn WriteTx,
        r: &mut RequestRow,
        who: &Requester,
        by: &Acting,
        now: u64,
        touched: &mut Vec<TokenRow>,
    ) -> Result<(), StoreError> {
        let me = by.person.clone().unwrap_or_default();
        if r.validator.is_none() {
            return Err(StoreError::Precondition(format!(
                "nobody is named to validate request {}: name your validator (--validator)",
                r.id
            )));
        }
        r.submitted_at = Some(now);
        step(
            tx,
            &self.inner.audit_key,
            r,
            RequestAction::Submit,
            &parties_of(by, r),
            false,
            &by.actor,
            &me,
            None,
            now,
        )?;
        if let Some(why) = automatic_approval(&who.functions, who.in_1d_school) {
            r.decided_by = Some("okey".into());
            r.decision_reason = Some(why.to_owned());
            step(
                tx,
                &self.inner.audit_key,
                r,
                RequestAction::AutoApprove,
                &[RequestParty::System],
                false,
                &by.actor,
                "okey",
                Some(why.to_owned()),
                now,
            )?;
            let to = self.email_of(Some(&r.requester))?;
            self.mail(tx, r, RequestMail::Approved, to, why.to_owned(), now)?;
            self.advance(tx, r, &by.actor, now, touched)?;
        } else {
            let to = self.email_of(r.validator.as_deref())?;
            self.mail(tx, r, RequestMail::Waiting, to, String::new(), now)?;
        }
        Ok(())
    }

    /// Add attachments to a draft (the requester only).
    pub fn attach_to_request(
        &self,
        id: u64,
        files: Vec<NewAttachment>,
        by: &Acting,
        now: u64,
    ) -> Result<RequestView, StoreError> {
        if files.is_empty() {
            return Err(StoreError::invalid("attachment", "give at least one file"));
        }
        for a in &files {
            okey_domain::request::check_attachment(&a.name, a.declared.as_deref(), &a.content)
                .map_err(|e| StoreError::invalid("attachment", e.to_string()))?;
        }
        let by = by.clone();
        self.request_write(move |tx, store, _| {
            let mut r = read(tx, id)?;
            requester_only(&by, &r, id, "adds attachments to")?;
            if r.state()? != RequestState::Draft {
                return Err(StoreError::Precondition(format!(
                    "request {id} is {}: attachments are added to a draft",
                    r.state
                )));
            }
            let have = tx.requests().attachments(&r.owner())?.len();
            if have + files.len() > okey_domain::request::MAX_ATTACHMENTS {
                return Err(StoreError::invalid(
                    "attachment",
                    okey_domain::request::AttachmentRefusal::TooMany.to_string(),
                ));
            }
            let me = by.person.clone().unwrap_or_default();
            let sealed = store.seal_attachments(&r.owner(), &files, &me, now)?;
            for a in &sealed {
                tx.requests().insert_attachment(a)?;
            }
            r.updated_at = now;
            let names = sealed
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            write(
                tx,
                &store.inner.audit_key,
                &mut r,
                "attach",
                Some(RequestState::Draft),
                &by.actor,
                &me,
                Some(names),
                now,
            )
        })?;
        self.request_view(id, None)
    }

    /// Send a draft to its validator (the requester only; it needs its attachments). The
    /// requester may name another validator than the directory's N+1 before sending.
    pub fn submit_request(
        &self,
        id: u64,
        validator: Option<String>,
        by: &Acting,
        now: u64,
    ) -> Result<RequestView, StoreError> {
        let me = by
            .person
            .clone()
            .ok_or_else(|| StoreError::Precondition(
                    "requests are sent by their requester: the API key must be bound to a directory person"
                        .into(),
                ))?;
        let (p, who, _, _) = self.requester_facts(&me)?;
        let named = match validator.as_deref() {
            Some(v) => Some(self.validators(&p, Some(v))?),
            None => None,
        };
        let by = by.clone();
        self.request_write(move |tx, store, touched| {
            let mut r = read(tx, id)?;
            if r.requester != me {
                return Err(not_a_party(&by, id));
            }
            if let Some((n1, n2)) = named {
                r.validator = n1;
                r.second_validator = n2;
            }
            store.submit_in(tx, &mut r, &who, &by, now, touched)
        })?;
        self.request_view(id, None)
    }

    /// The validator (or the N+2) approves or refuses; a refusal gives a reason the requester
    /// sees. A requester never decides their own request.
    pub fn decide_request(
        &self,
        id: u64,
        approve: bool,
        reason: Option<String>,
        by: &Acting,
        now: u64,
    ) -> Result<RequestView, StoreError> {
        let reason = reason.map(|r| check_reason("reason", &r)).transpose()?;
        let by = by.clone();
        self.request_write(move |tx, store, touched| {
            let mut r = read(tx, id)?;
            let parties = parties_of(&by, &r);
            if parties.is_empty() {
                return Err(not_a_party(&by, id));
            }
            let me = by.person.clone().unwrap_or_else(|| by.actor.name.clone());
            let action = if approve {
                RequestAction::Approve
            } else {
                RequestAction::Refuse
            };
            let as_n2 = !parties.contains(&RequestParty::Validator)
                && parties.contains(&RequestParty::SecondValidator);
            r.decided_by = Some(me.clone());
            r.decision_reason = reason.clone();
            let comment = match (as_n2, &reason) {
                (true, Some(x)) => Some(format!("as N+2 (the N+1 is absent); {x}")),
                (true, None) => Some("as N+2 (the N+1 is absent)".to_owned()),
                (false, x) => x.clone(),
            };
            step(
                tx,
                &store.inner.audit_key,
                &mut r,
                action,
                &parties,
                reason.is_some(),
                &by.actor,
                &me,
                comment,
                now,
            )?;
            let to = store.email_of(Some(&r.requester))?;
            if approve {
                store.mail(tx, &r, RequestMail::Approved, to, String::new(), now)?;
                store.advance(tx, &mut r, &by.actor, now, touched)?;
            } else {
                store.mail(
                    tx,
                    &r,
                    RequestMail::Refused,
                    to,
                    reason.unwrap_or_default(),
                    now,
                )?;
            }
            Ok(())
        })?;
        self.request_view(id, None)
    }

    /// Withdraw a request (its requester, or the support centre). A key reserved for it goes
    /// back to stock.
    pub fn cancel_request(
        &self,
        id: u64,
        by: &Acting,
        now: u64,
    ) -> Result<RequestView, StoreError> {
        let by = by.clone();
        self.request_write(move |tx, store, touched| {
            let mut r = read(tx, id)?;
            let parties = parties_of(&by, &r);
            if parties.is_empty() {
                return Err(not_a_party(&by, id));
            }
            let me = by.person.clone().unwrap_or_else(|| by.actor.name.clone());
            let reserved = r
                .serial
                .clone()
                .filter(|_| r.state == RequestState::ReadyForPickup.as_str());
            // Its booked slot is offered to others again.
            r.slot = None;
            step(
                tx,
                &store.inner.audit_key,
                &mut r,
                RequestAction::Cancel,
                &parties,
                false,
                &by.actor,
                &me,
                None,
                now,
            )?;
            tx.requests().free_slot_of(id)?;
            if let (Some(serial), Some(lot)) = (reserved, r.lot.clone()) {
                let (row, _) = crate::lots::apply(
                    tx,
                    store,
                    &serial,
                    KeyChange::Unreserve,
                    &system(&by.actor, &lot),
                    now,
                )?;
                touched.push(row);
            }
            Ok(())
        })?;
        self.request_view(id, None)
    }

    /// Sign the current charter: the requester types the number printed at its bottom and
    /// says they read it. The signature records the version, the number and the time.
    pub fn sign_charter(
        &self,
        id: u64,
        number: &str,
        accept: bool,
        by: &Acting,
        now: u64,
    ) -> Result<RequestView, StoreError> {
        if !accept {
            return Err(StoreError::invalid(
                "accept",
                "tick \"I have read the charter\" (--accept) to sign it",
            ));
        }
        let typed = number.trim().to_owned();
        if typed.is_empty() || typed.len() > MAX_CHARTER_NUMBER_LEN {
            return Err(StoreError::invalid(
                "number",
                "type the number printed at the bottom of the charter",
            ));
        }
        let by = by.clone();
        self.request_write(move |tx, store, touched| {
            let mut r = read(tx, id)?;
            requester_only(&by, &r, id, "signs the charter of")?;
            let state = r.state()?;
            if !matches!(
                state,
                RequestState::Approved
                    | RequestState::WaitingForStock
                    | RequestState::ReadyForPickup
            ) {
                return Err(StoreError::Precondition(format!(
                    "request {id} is {state}: the charter is signed once the request is approved"
                )));
            }
            let c = tx.requests().current_charter()?.ok_or_else(|| {
                StoreError::Precondition(
                    "no charter is published yet: an administrator publishes it".into(),
                )
            })?;
            if !c.number.eq_ignore_ascii_case(&typed) {
                return Err(StoreError::invalid(
                    "number",
                    "this is not the number printed at the bottom of the current charter",
                ));
            }
            r.charter_version = Some(c.version);
            r.charter_signed_at = Some(now);
            r.updated_at = now;
            let me = r.requester.clone();
            write(
                tx,
                &store.inner.audit_key,
                &mut r,
                "charter",
                Some(state),
                &by.actor,
                &me,
                Some(format!("charter version {} number {}", c.version, c.number)),
                now,
            )?;
            store.advance(tx, &mut r, &by.actor, now, touched)
        })?;
        self.request_view(id, None)
    }

    /// The requester chooses their PIN (checked against `policy`; weak PINs refused). Only its
    /// holder-bound verifier is kept.
    pub fn set_request_pin(
        &self,
        id: u64,
        pin: &Pin,
        policy: &PinPolicy,
        by: &Acting,
        now: u64,
    ) -> Result<RequestView, StoreError> {
        let text = std::str::from_utf8(pin.expose())
            .map_err(|_| StoreError::invalid("pin", "not text"))?;
        policy
            .check(text)
            .map_err(|e| StoreError::invalid("pin", e.to_string()))?;
        let pin = pin.clone();
        let by = by.clone();
        self.request_write(move |tx, store, touched| {
            let mut r = read(tx, id)?;
            requester_only(&by, &r, id, "chooses the PIN of")?;
            let state = r.state()?;
            if !matches!(
                state,
                RequestState::Approved
                    | RequestState::WaitingForStock
                    | RequestState::ReadyForPickup
            ) {
                return Err(StoreError::Precondition(format!(
                    "request {id} is {state}: the PIN is chosen once the request is approved"
                )));
            }
            let v = store
                .inner
                .pepper
                .verifier(PinBinding::Holder(&r.requester), &pin);
            r.pin_verifier = Some(v.0);
            r.pin_source = Some("chosen".into());
            r.updated_at = now;
            let me = r.requester.clone();
            write(
                tx,
                &store.inner.audit_key,
                &mut r,
                "pin",
                Some(state),
                &by.actor,
                &me,
                Some("PIN chosen".into()),
                now,
            )?;
            store.advance(tx, &mut r, &by.actor, now, touched)
        })?;
        self.request_view(id, None)
    }

    /// Go on as far as the request can: an approved hardware request without a key left in its
    /// lot waits for stock (mails to the requester and the lot's managers); once the charter is
    /// signed and the PIN chosen, a key is reserved and the requester is told where to collect it.
    fn advance(
        &self,
        tx: &mut dyn WriteTx,
        r: &mut RequestRow,
        actor: &Actor,
        now: u64,
        touched: &mut Vec<TokenRow>,
    ) -> Result<(), StoreError> {
        if r.key() != RequestedKey::Hardware || r.state()? != RequestState::Approved {
            return Ok(());
        }
        let Some(lot) = r.lot.clone() else {
            return Ok(());
        };
        let avail = tx.custody().available_keys(&lot, 1)?;
        let Some(serial) = avail.into_iter().next() else {
            step(
                tx,
                &self.inner.audit_key,
                r,
                RequestAction::OutOfStock,
                &[RequestParty::System],
                false,
                actor,
                "okey",
                Some(format!("no key left in lot {lot}")),
                now,
            )?;
            let lot_row = tx.custody().lot(&lot)?;
            let mut to = self.email_of(Some(&r.requester))?;
            if let Some(l) = &lot_row {
                to.extend(self.lot_manager_addresses(l)?);
            }
            return self.mail(tx, r, RequestMail::OutOfStock, to, String::new(), now);
        };
        if r.charter_version.is_none() || r.pin_verifier.is_none() {
            return Ok(());
        }
        let (row, _) = crate::lots::apply(
            tx,
            self,
            &serial,
            KeyChange::Reserve {
                person: r.requester.clone(),
            },
            &system(actor, &lot),
            now,
        )?;
        touched.push(row);
        r.serial = Some(serial.clone());
        step(
            tx,
            &self.inner.audit_key,
            r,
            RequestAction::KeyReady,
            &[RequestParty::System],
            false,
            actor,
            "okey",
            Some(format!("key {serial} reserved")),
            now,
        )?;
        let place = tx.custody().lot(&lot)?.map(|l| l.name).unwrap_or_default();
        let to = self.email_of(Some(&r.requester))?;
        self.mail(tx, r, RequestMail::Ready, to, place, now)
    }

    /// Called in the transaction of a key registered into `lot`: the oldest request waiting for
    /// stock there goes on (mail to its requester) and, when it can, gets the key.
    pub(crate) fn stock_arrived(
        &self,
        tx: &mut dyn WriteTx,
        lot: &str,
        actor: &Actor,
        now: u64,
    ) -> Result<Option<TokenRow>, StoreError> {
        let waiting = tx
            .requests()
            .requests_in_state(RequestState::WaitingForStock.as_str())?
            .into_iter()
            .find(|r| r.lot.as_deref() == Some(lot));
        let Some(mut r) = waiting else {
            return Ok(None);
        };
        step(
            tx,
            &self.inner.audit_key,
            &mut r,
            RequestAction::StockArrived,
            &[RequestParty::System],
            false,
            actor,
            "okey",
            None,
            now,
        )?;
        let to = self.email_of(Some(&r.requester))?;
        self.mail(tx, &r, RequestMail::StockArrived, to, String::new(), now)?;
        let mut touched = Vec::new();
        self.advance(tx, &mut r, actor, now, &mut touched)?;
        Ok(touched.pop())
    }

    /// Called in the transaction of a hand-over of `serial` to `holder`, before the key's row is
    /// written: a request ready for pickup with this key is completed, and the key gets the
    /// request's PIN verifier (bound to the holder) in the same compare-and-set.
    pub(crate) fn on_handover(
        &self,
        tx: &mut dyn WriteTx,
        row: &mut TokenRow,
        holder: &str,
        by: &Acting,
        now: u64,
    ) -> Result<(), StoreError> {
        let found = tx
            .requests()
            .requests_of_person(holder)?
            .into_iter()
            .find(|r| {
                r.requester == holder
                    && r.state == RequestState::ReadyForPickup.as_str()
                    && r.serial.as_deref() == Some(row.serial.as_str())
            });
        let Some(mut r) = found else {
            return Ok(());
        };
        let who = by.person.clone().unwrap_or_else(|| by.actor.name.clone());
        step(
            tx,
            &self.inner.audit_key,
            &mut r,
            RequestAction::Complete,
            &[RequestParty::LotManager],
            false,
            &by.actor,
            &who,
            Some(format!("key {} handed over", row.serial)),
            now,
        )?;
        if let Some(v) = r.pin_verifier {
            row.pin_verifier = Some(v);
            row.pin_scheme = 2;
            row.sealed_pin_hash = None;
        }
        Ok(())
    }

    /// Offer a pickup slot in a lot the acting person manages (a central desk: in any lot).
    pub fn offer_slot(
        &self,
        lot: &str,
        starts_at: u64,
        place: &str,
        by: &Acting,
        now: u64,
    ) -> Result<PickupSlot, StoreError> {
        if lot.is_empty() || lot.len() > crate::lots::MAX_ID_LEN {
            return Err(StoreError::invalid("lot", "1 to 64 characters"));
        }
        // A lot's manager, or a central desk (which acts on every lot, as in the lifecycle).
        if !by.sees_lot(lot) {
            return Err(StoreError::Forbidden(format!(
                "{} does not manage lot {lot} and may not offer its pickup slots",
                by.person.as_deref().unwrap_or(&by.actor.name)
            )));
        }
        if starts_at <= now {
            return Err(StoreError::invalid("at", "a slot starts in the future"));
        }
        let place = check_reason("place", place)?;
        let mut s = PickupSlot {
            id: 0,
            lot: lot.to_owned(),
            starts_at,
            place,
            request: None,
            created_by: by.person.clone().unwrap_or_else(|| by.actor.name.clone()),
            created_at: now,
        };
        let s2 = s.clone();
        let actor = by.actor.clone();
        let (id, _) = self.request_write(move |tx, store, _| {
            tx.custody()
                .lot(&s2.lot)?
                .ok_or_else(|| StoreError::UnknownLot(s2.lot.clone()))?;
            let id = tx.requests().insert_slot(&s2)?;
            audit::append(
                tx,
                &store.inner.audit_key,
                Store::audit_entry(
                    &actor,
                    "request.slot",
                    &s2.lot,
                    None,
                    "ok",
                    &format!("slot {id} at {} in {}", s2.starts_at, s2.place),
                    now,
                ),
            )?;
            Ok(id)
        })?;
        s.id = id;
        Ok(s)
    }

    /// The pickup slots of a lot, by time (every slot, for okey's own use: callers acting
    /// for a person go through [`Store::visible_slots`]).
    pub fn slots(&self, lot: &str) -> Result<Vec<PickupSlot>, StoreError> {
        let lot = lot.to_owned();
        self.write_blocking(move |tx| tx.requests().slots(&lot))
    }

    /// The pickup slots `by` may see, by lot then time: every slot of the lots they manage
    /// (the central desks: of any lot); of the lots that serve them, their unit's lot and the
    /// lots of their open requests, the free slots still to come and the one their request
    /// booked (never who booked the others). With `lot`, only that lot's, and a lot that is
    /// neither theirs nor serves them is refused.
    pub fn visible_slots(
        &self,
        by: &Acting,
        lot: Option<&str>,
        now: u64,
    ) -> Result<Vec<PickupSlot>, StoreError> {
        if let Some(l) = lot
            && (l.is_empty() || l.len() > crate::lots::MAX_ID_LEN)
        {
            return Err(StoreError::invalid("lot", "1 to 64 characters"));
        }
        // The central desks (support centre, IT department) act on every lot.
        let every_lot = !by.central.is_empty();
        let mut served: Vec<String> = Vec::new();
        if let Some(me) = by.person.as_deref()
            && let Ok(id) = PersonId::parse(me)
            && let Some(p) = self.person(&id)?
            && let Ok(home) = self.org_tree()?.home_lot(&p.unit)
            && let Some(l) = self
                .lot_rows()?
                .into_iter()
                .find(|l| l.kind == home.kind && l.unit == home.unit.as_str())
        {
            served.push(l.id);
        }
        let me = by.person.clone();
        let manages = by.manages.clone();
        let lot = lot.map(str::to_owned);
        let who = by.person.clone().unwrap_or_else(|| by.actor.name.clone());
        self.write_blocking(move |tx| {
            let mine: Vec<RequestRow> = match &me {
                Some(me) => tx
                    .requests()
                    .requests_of_person(me)?
                    .into_iter()
                    .filter(|r| &r.requester == me && r.state().is_ok_and(RequestState::is_open))
                    .collect(),
                None => Vec::new(),
            };
            for l in mine.iter().filter_map(|r| r.lot.clone()) {
                if !served.contains(&l) {
                    served.push(l);
                }
            }
            let full = |l: &str| every_lot || manages.iter().any(|m| m == l);
            let lots: Vec<String> = match &lot {
                Some(l) if full(l) || served.contains(l) => vec![l.clone()],
                Some(l) => {
                    return Err(StoreError::Forbidden(format!(
                        "{who} neither manages lot {l} nor is served by it, and may not see its \
                         pickup slots: a person sees the slots of their own unit's lot and of \
                         their requests' lots, a lot manager those of the lots they manage"
                    )));
                }
                None => {
                    let mut all = manages.clone();
                    for l in &served {
                        if !all.contains(l) {
                            all.push(l.clone());
                        }
                    }
                    all.sort();
                    all
                }
            };
            let mut out = Vec::new();
            for l in &lots {
                let whole = full(l);
                for s in tx.requests().slots(l)? {
                    let own = s.request.is_some_and(|id| mine.iter().any(|r| r.id == id));
                    if whole || own || (s.request.is_none() && s.starts_at > now) {
                        out.push(s);
                    }
                }
            }
            Ok(out)
        })
    }

    /// The requester books a free slot of their key's lot, once the key is ready.
    pub fn book_slot(
        &self,
        id: u64,
        slot: u64,
        by: &Acting,
        now: u64,
    ) -> Result<RequestView, StoreError> {
        let by = by.clone();
        self.request_write(move |tx, store, _| {
            let mut r = read(tx, id)?;
            requester_only(&by, &r, id, "books the appointment of")?;
            let state = r.state()?;
            if state != RequestState::ReadyForPickup {
                return Err(StoreError::Precondition(format!(
                    "request {id} is {state}: an appointment is booked once the key is ready"
                )));
            }
            let s = tx
                .requests()
                .slot(slot)?
                .filter(|s| r.lot.as_deref() == Some(s.lot.as_str()))
                .ok_or_else(|| {
                    StoreError::invalid(
                        "slot",
                        format!(
                            "slot {slot} is not one of lot {}",
                            r.lot.clone().unwrap_or_default()
                        ),
                    )
                })?;
            if s.starts_at <= now {
                return Err(StoreError::Precondition(format!("slot {slot} is past")));
            }
            if !tx.requests().book_slot(slot, id)? {
                return Err(StoreError::Precondition(format!(
                    "slot {slot} is taken: choose another"
                )));
            }
            r.slot = Some(slot);
            r.updated_at = now;
            let me = r.requester.clone();
            write(
                tx,
                &store.inner.audit_key,
                &mut r,
                "appointment",
                Some(state),
                &by.actor,
                &me,
                Some(format!("slot {slot} at {} in {}", s.starts_at, s.place)),
                now,
            )
        })?;
        self.request_view(id, None)
    }

    /// Publish a new charter version; its number is what signers type back.
    pub fn publish_charter(
        &self,
        number: &str,
        title: &str,
        content: Vec<u8>,
        actor: &Actor,
        now: u64,
    ) -> Result<Charter, StoreError> {
        let number = number.trim().to_owned();
        if number.is_empty()
            || number.len() > MAX_CHARTER_NUMBER_LEN
            || !number
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(StoreError::invalid(
                "number",
                "1 to 32 letters, digits, '-' or '.'",
            ));
        }
        let title = check_reason("title", title)?;
        if content.is_empty() || content.len() > MAX_CHARTER_BYTES {
            return Err(StoreError::invalid(
                "charter",
                "the document must be 1 byte to 2 MiB",
            ));
        }
        use sha2::Digest;
        let sha256: [u8; 32] = sha2::Sha256::digest(&content).into();
        let actor = actor.clone();
        let (c, _) = self.request_write(move |tx, store, _| {
            let version = tx
                .requests()
                .current_charter()?
                .map_or(1, |c| c.version + 1);
            let c = Charter {
                version,
                number,
                title,
                content,
                sha256,
                published_by: actor.name.clone(),
                published_at: now,
            };
            tx.requests().insert_charter(&c)?;
            audit::append(
                tx,
                &store.inner.audit_key,
                Store::audit_entry(
                    &actor,
                    "charter.publish",
                    &format!("charter:{version}"),
                    None,
                    "ok",
                    &format!("number {}; sha256 {}", c.number, hex::encode(sha256)),
                    now,
                ),
            )?;
            Ok(c)
        })?;
        Ok(c)
    }

    /// The current charter.
    pub fn current_charter(&self) -> Result<Option<Charter>, StoreError> {
        self.write_blocking(|tx| tx.requests().current_charter())
    }

    /// One request with its attachments and history; with `by`, only if they are one of its
    /// parties.
    pub fn request_view(&self, id: u64, by: Option<&Acting>) -> Result<RequestView, StoreError> {
        let by = by.cloned();
        self.write_blocking(move |tx| {
            let r = read(tx, id)?;
            if let Some(b) = &by
                && parties_of(b, &r).is_empty()
            {
                return Err(not_a_party(b, id));
            }
            let attachments = tx
                .requests()
                .attachments(&r.owner())?
                .iter()
                .map(AttachmentInfo::from)
                .collect();
            let events = tx.requests().request_events(id)?;
            let slot = match r.slot {
                Some(s) => tx.requests().slot(s)?,
                None => None,
            };
            Ok(RequestView {
                row: r,
                attachments,
                events,
                slot,
            })
        })
    }

    /// The requests the acting person filed or may decide; with `waiting_for_me`, only those
    /// waiting for their decision (the validator's home list).
    pub fn list_requests(
        &self,
        by: &Acting,
        waiting_for_me: bool,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let Some(me) = by.person.clone() else {
            return Ok(Vec::new());
        };
        self.write_blocking(move |tx| {
            let mut rows = tx.requests().requests_of_person(&me)?;
            if waiting_for_me {
                rows.retain(|r| {
                    r.state == RequestState::Submitted.as_str()
                        && (r.validator.as_deref() == Some(&me)
                            || r.second_validator.as_deref() == Some(&me))
                });
            }
            Ok(rows)
        })
    }

    /// Remind validators of requests waiting longer than each of `after_days` (3 and 7 days:
    /// a first reminder after 3 days, a second after 7). The number of reminders is on the row,
    /// so each is sent once. Returns how many were sent.
    pub fn remind_requests(
        &self,
        after_days: Vec<u32>,
        actor: &Actor,
        now: u64,
    ) -> Result<u64, StoreError> {
        let mut days = after_days;
        days.sort_unstable();
        days.dedup();
        if days.is_empty() {
            return Ok(0);
        }
        let actor = actor.clone();
        let (n, _) = self.request_write(move |tx, store, _| {
            let mut sent = 0;
            for mut r in tx
                .requests()
                .requests_in_state(RequestState::Submitted.as_str())?
            {
                let Some(at) = r.submitted_at else { continue };
                let waited = now.saturating_sub(at) / 86_400;
                let due = days.iter().filter(|d| u64::from(**d) <= waited).count() as u32;
                if due <= r.reminders {
                    continue;
                }
                r.reminders = due;
                r.updated_at = now;
                let mut to = store.email_of(r.validator.as_deref())?;
                to.extend(store.email_of(r.second_validator.as_deref())?);
                write(
                    tx,
                    &store.inner.audit_key,
                    &mut r,
                    "remind",
                    Some(RequestState::Submitted),
                    &actor,
                    "okey",
                    Some(format!("waiting for {waited} day(s)")),
                    now,
                )?;
                store.mail(tx, &r, RequestMail::Reminder, to, waited.to_string(), now)?;
                sent += 1;
            }
            Ok(sent)
        })?;
        Ok(n)
    }

    /// Close the requests left too long, as okey's own move (`RequestAction::Expire`): a
    /// request submitted more than `expiry.submitted_seconds` ago that nobody decided, and a key
    /// ready for pickup more than `expiry.ready_seconds` after it was reserved (or after the
    /// booked slot, if later) that nobody collected; that key goes back to its lot's stock.
    /// Each request expires in its own commit, with its history event, its audit record and the
    /// mail to its requester; the row is re-read and moved by compare-and-set in the writer's
    /// transaction, so a run that another node or an earlier run already made changes nothing.
    /// Returns how many requests expired.
    pub fn expire_requests(
        &self,
        expiry: RequestExpiry,
        actor: &Actor,
        now: u64,
    ) -> Result<u64, StoreError> {
        let mut candidates = Vec::new();
        for (state, after) in [
            (RequestState::Submitted, expiry.submitted_seconds),
            (RequestState::ReadyForPickup, expiry.ready_seconds),
        ] {
            if after == 0 {
                continue;
            }
            let rows =
                self.write_blocking(move |tx| tx.requests().requests_in_state(state.as_str()))?;
            candidates.extend(rows.into_iter().map(|r| (r.id, state, after)));
        }
        let mut expired = 0;
        for (id, state, after) in candidates {
            let actor = actor.clone();
            let done = self.request_write(move |tx, store, touched| {
                let mut r = read(tx, id)?;
                if r.state()? != state {
                    return Ok(false);
                }
                let since = match state {
                    RequestState::Submitted => r.submitted_at.unwrap_or(r.updated_at),
                    _ => {
                        let ready = tx
                            .requests()
                            .request_events(id)?
                            .iter()
                            .rev()
                            .find(|e| e.state_after == state.as_str())
                            .map_or(r.updated_at, |e| e.at);
                        let slot = match r.slot {
                            Some(s) => tx.requests().slot(s)?.map_or(0, |s| s.starts_at),
                            None => 0,
                        };
                        ready.max(slot)
                    }
                };
                if now < since.saturating_add(after) {
                    return Ok(false);
                }
                let days = now.saturating_sub(since) / 86_400;
                let (why, mail_detail) = match state {
                    RequestState::Submitted => (
                        format!("no decision for {days} day(s)"),
                        "sans décision du valideur".to_owned(),
                    ),
                    _ => (
                        format!(
                            "key {} not collected for {days} day(s); back in stock",
                            r.serial.as_deref().unwrap_or("")
                        ),
                        "la clé préparée n'a pas été retirée".to_owned(),
                    ),
                };
                let reserved = r
                    .serial
                    .clone()
                    .filter(|_| state == RequestState::ReadyForPickup);
                // Its booked slot is offered to others again.
                r.slot = None;
                step(
                    tx,
                    &store.inner.audit_key,
                    &mut r,
                    RequestAction::Expire,
                    &[RequestParty::System],
                    false,
                    &actor,
                    "okey",
                    Some(why),
                    now,
                )?;
                tx.requests().free_slot_of(id)?;
                if let (Some(serial), Some(lot)) = (reserved, r.lot.clone()) {
                    let (row, _) = crate::lots::apply(
                        tx,
                        store,
                        &serial,
                        KeyChange::Unreserve,
                        &system(&actor, &lot),
                        now,
                    )?;
                    touched.push(row);
                }
                let to = store.email_of(Some(&r.requester))?;
                store.mail(tx, &r, RequestMail::Expired, to, mail_detail, now)?;
                Ok(true)
            });
            match done {
                Ok((true, _)) => expired += 1,
                Ok((false, _)) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }

    /// The requester of an approved software request installs the app (`platform`: android or
    /// ios) and gets the key `token` (its otpauth URI is built by the caller from the seed it
    /// chose): the key is created pending, held by the requester, with the request's PIN
    /// verifier, and the request stays approved until the key's first valid code completes it
    /// (002: the screen persists until done).
    pub fn enrol_software(
        &self,
        id: u64,
        platform: &str,
        token: crate::types::NewToken,
        by: &Acting,
        now: u64,
    ) -> Result<RequestView, StoreError> {
        let platform = match platform {
            "android" | "ios" => platform.to_owned(),
            _ => return Err(StoreError::invalid("platform", "android or ios")),
        };
        let by = by.clone();
        self.request_write(move |tx, store, _| {
            let mut r = read(tx, id)?;
            requester_only(&by, &r, id, "enrols the key of")?;
            let state = r.state()?;
            if r.key() != RequestedKey::Software || state != RequestState::Approved {
                return Err(StoreError::Precondition(format!(
                    "request {id} is a {} request that is {state}: a software key is enrolled once a software request is approved",
                    r.key_type
                )));
            }
            if r.charter_version.is_none() || r.pin_verifier.is_none() {
                return Err(StoreError::Precondition(format!(
                    "request {id}: sign the charter and choose the PIN before enrolling the key"
                )));
            }
            if let Some(s) = &r.serial {
                return Err(StoreError::Precondition(format!(
                    "request {id} already has key {s}: confirm it with its first code"
                )));
            }
            let mut row = store.seal_new(&token, now)?;
            row.status = crate::types::TokenStatus::Pending;
            row.holder = Some(r.requester.clone());
            row.pin_verifier = r.pin_verifier;
            row.pin_scheme = 2;
            // The first accepted code confirms the key, in the verify's own commit.
            row.handover_unconfirmed = true;
            tx.insert_token(&row)?;
            r.serial = Some(row.serial.clone());
            r.updated_at = now;
            let me = r.requester.clone();
            write(
                tx,
                &store.inner.audit_key,
                &mut r,
                "enrol",
                Some(state),
                &by.actor,
                &me,
                Some(format!("software key {} on {platform}", row.serial)),
                now,
            )
        })?;
        self.request_view(id, None)
    }
}

/// Called in the commit of a key's first accepted code: the approved software request that
/// enrolled it is completed (okey's move, audited with that commit).
pub(crate) fn confirmed_by_first_code(
    tx: &mut dyn WriteTx,
    akey: &okey_otp::OtpKey,
    serial: &str,
    at: u64,
) -> Result<(), StoreError> {
    let found = tx
        .requests()
        .requests_in_state(RequestState::Approved.as_str())?
        .into_iter()
        .find(|r| r.key() == RequestedKey::Software && r.serial.as_deref() == Some(serial));
    let Some(mut r) = found else {
        return Ok(());
    };
    step(
        tx,
        akey,
        &mut r,
        RequestAction::Complete,
        &[RequestParty::System],
        false,
        &Actor::new("okey", "system"),
        "okey",
        Some(format!(
            "software key {serial} confirmed by its first valid code"
        )),
        at,
    )
}
