//! Lots, stock and the custody of keys: registering keys into a lot, moving them, orders,
//! hand-overs and returns with their receipts, lost and found keys, expiry and deactivation.
//!
//! Every change is one job in the writer: it reads the token row and its lot row in the
//! transaction, asks [`okey_domain::transition`] whether the acting party may take the key from
//! its state with this action, and writes the new custody state with the row's compare-and-set,
//! the lot row, a history event, a receipt if any and an audit record, all in one commit. A
//! refusal writes nothing. Because the custody state is a column of the row a verify reads (and
//! caches), a key declared lost stops logging in with the commit that declares it.

use okey_domain::org::LotKind;
use okey_domain::{FoundDecision, KeyAction, KeyState, Party};

use crate::StoreError;
use crate::audit;
use crate::backend::TokenRow;
use crate::cache::Hot;
use crate::custody_db::CustodyTx;
use crate::notices::Notice;
use crate::store::Store;
use crate::types::{Actor, TokenKind, TokenStatus};

/// Longest lot id, unit id, person id.
pub const MAX_ID_LEN: usize = 64;
/// Longest free text (comment, place, condition).
pub const MAX_TEXT_LEN: usize = 500;

/// A lot as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LotRow {
    /// Stable id (e.g. `2D-9740001A`).
    pub id: String,
    /// One per school (2D), per district (1D), the Rectorat's, the exams office's.
    pub kind: LotKind,
    /// The unit the lot belongs to (a school's code, a district, the Rectorat, the DEC).
    pub unit: String,
    /// Display name.
    pub name: String,
    /// Validity given to keys registered into this lot, in days (none: no validity end).
    pub validity_days: Option<u32>,
    /// Creation time.
    pub created_at: u64,
}

/// Which lot a key is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustodyRow {
    /// The key.
    pub serial: String,
    /// The lot it is in now.
    pub lot: String,
    /// The lot it was first registered into (where a found key goes back to).
    pub origin_lot: String,
    /// Since when its return is due (on the lot manager's list), if it is.
    pub return_due: Option<u64>,
    /// Who it is set aside for, while reserved.
    pub reserved_for: Option<String>,
    /// Last change.
    pub changed_at: u64,
}

/// One change in a key's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEvent {
    /// The key.
    pub serial: String,
    /// When.
    pub at: u64,
    /// Who (the acting person, or the caller's name).
    pub actor: String,
    /// The action's name ([`KeyAction::as_str`]).
    pub action: String,
    /// State before (none: in no lot).
    pub state_before: Option<String>,
    /// State after.
    pub state_after: Option<String>,
    /// Lot before.
    pub lot_before: Option<String>,
    /// Lot after.
    pub lot_after: Option<String>,
    /// Holder before.
    pub holder_before: Option<String>,
    /// Holder after.
    pub holder_after: Option<String>,
    /// Free text given with the change.
    pub comment: Option<String>,
}

/// Hand-over or return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptKind {
    /// Bordereau de remise.
    HandOver,
    /// Bordereau de restitution.
    Return,
}

impl ReceiptKind {
    /// Stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReceiptKind::HandOver => "handover",
            ReceiptKind::Return => "return",
        }
    }
}

impl std::str::FromStr for ReceiptKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "handover" => Ok(ReceiptKind::HandOver),
            "return" => Ok(ReceiptKind::Return),
            _ => Err(StoreError::Corrupt(format!("unknown receipt kind {s:?}"))),
        }
    }
}

/// A hand-over or return record: the data of its receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Receipt number (printed on the receipt; the holder may confirm by typing it back).
    pub number: String,
    /// Hand-over or return.
    pub kind: ReceiptKind,
    /// The key.
    pub serial: String,
    /// The lot it was handed from or returned to.
    pub lot: String,
    /// The holder who received or gave back the key.
    pub holder: String,
    /// The person who handed it over or took it back.
    pub staff: String,
    /// When.
    pub at: u64,
    /// Where.
    pub place: Option<String>,
    /// The key's condition (returns).
    pub condition: Option<String>,
    /// End of a temporary holder's period (hand-overs).
    pub until: Option<u64>,
    /// When the holder signed (confirmed).
    pub confirmed_at: Option<u64>,
    /// How: `code` (first valid code) or `receipt` (number typed back).
    pub confirmed_how: Option<String>,
}

/// Where an order is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderState {
    /// Waiting for keys.
    Open,
    /// Keys moved into the lot.
    Fulfilled,
    /// Withdrawn.
    Cancelled,
}

impl OrderState {
    /// Stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderState::Open => "open",
            OrderState::Fulfilled => "fulfilled",
            OrderState::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for OrderState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "open" => Ok(OrderState::Open),
            "fulfilled" => Ok(OrderState::Fulfilled),
            "cancelled" => Ok(OrderState::Cancelled),
            _ => Err(StoreError::Corrupt(format!("unknown order state {s:?}"))),
        }
    }
}

/// An order of keys for a lot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// Number (assigned by the store).
    pub id: u64,
    /// The lot that ordered.
    pub lot: String,
    /// How many keys.
    pub quantity: u32,
    /// Where it is.
    pub state: OrderState,
    /// Free text.
    pub comment: Option<String>,
    /// Who ordered.
    pub ordered_by: String,
    /// When.
    pub ordered_at: u64,
    /// Who fulfilled or cancelled it.
    pub closed_by: Option<String>,
    /// When.
    pub closed_at: Option<u64>,
    /// The keys that fulfilled it.
    pub serials: Vec<String>,
}

/// A key as a lot manager sees it in their lot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LotKey {
    /// Serial.
    pub serial: String,
    /// Hardware or software.
    pub kind: TokenKind,
    /// Authentication status.
    pub status: TokenStatus,
    /// Custody state (none: in no lot).
    pub custody: Option<KeyState>,
    /// Holder.
    pub holder: Option<String>,
    /// Lot (none: in no lot).
    pub lot: Option<String>,
    /// Origin lot.
    pub origin_lot: Option<String>,
    /// Validity end.
    pub valid_until: Option<u64>,
    /// Deactivation time.
    pub active_until: Option<u64>,
    /// Since when its return is due.
    pub return_due: Option<u64>,
    /// Reserved for.
    pub reserved_for: Option<String>,
    /// Last custody change.
    pub changed_at: u64,
}

/// A lot with its stock counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LotSummary {
    /// The lot.
    pub lot: LotRow,
    /// Keys per custody state (states with none left out), in [`KeyState::ALL`] order.
    pub counts: Vec<(KeyState, u64)>,
    /// Open orders.
    pub open_orders: u64,
}

/// Everything known about one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// Where it is.
    pub key: LotKey,
    /// Its history, oldest first.
    pub history: Vec<KeyEvent>,
    /// Its receipts, oldest first.
    pub receipts: Vec<Receipt>,
}

/// Who is acting and as which parties: the organisation's answer for one person (their
/// functions and scope), handed to the store, which picks the party per key from the key's lot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acting {
    /// For the audit chain and the history.
    pub actor: Actor,
    /// The acting person, if the caller is one.
    pub person: Option<String>,
    /// Parties this person is for every key: [`Party::SupportCentre`], [`Party::ItDepartment`],
    /// [`Party::Scheduler`].
    pub central: Vec<Party>,
    /// Lots this person manages (is [`Party::LotManager`] of).
    pub manages: Vec<String>,
}

impl Acting {
    /// The parties this person is for a key in `lot` held by `holder`, strongest first.
    pub fn parties(&self, lot: Option<&str>, holder: Option<&str>) -> Vec<Party> {
        let mut out: Vec<Party> = self
            .central
            .iter()
            .copied()
            .filter(|p| *p != Party::LotManager && *p != Party::Holder)
            .collect();
        if let Some(l) = lot
            && self.manages.iter().any(|m| m == l)
        {
            out.push(Party::LotManager);
        }
        if let (Some(p), Some(h)) = (&self.person, holder)
            && p == h
        {
            out.push(Party::Holder);
        }
        out
    }

    /// The parties of a person as the organisation describes them: the support centre's
    /// found-key desk and the IT department's recycling desk from their scope, and lot manager
    /// of each of `lots` whose kind and unit their scope includes.
    pub fn from_scope(
        actor: Actor,
        person: &str,
        scope: &okey_domain::org::Scope,
        lots: &[LotRow],
    ) -> Acting {
        let mut central = Vec::new();
        if scope.found_key_desk {
            central.push(Party::SupportCentre);
        }
        if scope.recycling {
            central.push(Party::ItDepartment);
        }
        let manages = lots
            .iter()
            .filter(|l| {
                scope
                    .lots
                    .iter()
                    .any(|r| r.kind == l.kind && r.unit.as_str() == l.unit)
            })
            .map(|l| l.id.clone())
            .collect();
        Acting {
            actor,
            person: Some(person.to_ascii_lowercase()),
            central,
            manages,
        }
    }

    /// Whether this person may see or act on lot `lot` at all (manages it, or is central).
    pub fn sees_lot(&self, lot: &str) -> bool {
        !self.central.is_empty() || self.manages.iter().any(|m| m == lot)
    }

    fn name(&self) -> String {
        self.person
            .clone()
            .unwrap_or_else(|| self.actor.name.clone())
    }
}

/// A custody change asked for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// Put a key in no lot yet into `lot` (its origin lot), delivered. `valid_until` overrides
    /// the lot's default validity.
    Register {
        /// Target lot.
        lot: String,
        /// Validity end.
        valid_until: Option<u64>,
    },
    /// Set aside for a person.
    Reserve {
        /// For whom.
        person: String,
    },
    /// Back from a reservation.
    Unreserve,
    /// Bind to a holder.
    Assign {
        /// The holder.
        holder: String,
    },
    /// Unbind.
    Unassign,
    /// Hand over to `to` (a receipt is made). `until`: a temporary holder's period end, when
    /// the key is deactivated and its return becomes due.
    HandOver {
        /// The holder.
        to: String,
        /// Where.
        place: Option<String>,
        /// End of the period.
        until: Option<u64>,
    },
    /// The holder gives it back (a receipt is made).
    Return {
        /// The key's condition: `good`, `damaged` or `broken`.
        condition: Option<String>,
        /// Where it is given back.
        place: Option<String>,
    },
    /// Lost, stolen, broken.
    Lost {
        /// Why, in words.
        comment: Option<String>,
    },
    /// A lost key, found: back to its origin lot, delivered.
    Restock,
    /// To another lot.
    Move {
        /// Target lot.
        to: String,
    },
    /// Stop logging in at `at` (now if none): end of function, end of a deputy's period. The
    /// return becomes due then (at once if `at` is not in the future, otherwise when the
    /// scheduled job reaches it). An earlier deactivation time already set is kept.
    Deactivate {
        /// When.
        at: Option<u64>,
        /// Why.
        comment: Option<String>,
    },
    /// Past its validity end.
    Expire,
    /// Destroy.
    Scrap,
    /// To the IT department to be initialised again.
    Recycle,
    /// Back in stock after being initialised again.
    Reissue,
}

impl KeyChange {
    /// The table's action for this change.
    pub fn action(&self) -> KeyAction {
        match self {
            KeyChange::Register { .. } => KeyAction::Register,
            KeyChange::Reserve { .. } => KeyAction::Reserve,
            KeyChange::Unreserve => KeyAction::Unreserve,
            KeyChange::Assign { .. } => KeyAction::Assign,
            KeyChange::Unassign => KeyAction::Unassign,
            KeyChange::HandOver { .. } => KeyAction::HandOver,
            KeyChange::Return { .. } => KeyAction::Return,
            KeyChange::Lost { .. } => KeyAction::DeclareLost,
            KeyChange::Restock => KeyAction::Restock,
            KeyChange::Move { .. } => KeyAction::Move,
            KeyChange::Deactivate { .. } => KeyAction::Deactivate,
            KeyChange::Expire => KeyAction::Expire,
            KeyChange::Scrap => KeyAction::Scrap,
            KeyChange::Recycle => KeyAction::Recycle,
            KeyChange::Reissue => KeyAction::Reissue,
        }
    }
}

/// What a change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeOutcome {
    /// The key after the change.
    pub key: LotKey,
    /// The receipt made, for hand-overs and returns.
    pub receipt: Option<Receipt>,
}

/// What the support centre should do with a found key, and the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundOutcome {
    /// The FAQ's decision.
    pub decision: FoundDecision,
    /// The key after the look-up (a lost key is now found).
    pub key: LotKey,
    /// The lot's kind.
    pub lot_kind: Option<LotKind>,
}

/// The hand-over meeting of a first appointment batch, for the convocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meeting {
    /// When (Unix seconds, in the future).
    pub at: u64,
    /// Where.
    pub place: String,
}

/// Something the scheduled job did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueEvent {
    /// The key.
    pub serial: String,
    /// Its lot (whose managers are told).
    pub lot: Option<String>,
    /// `expire` or `deactivate`.
    pub action: KeyAction,
    /// The holder, if any (whose return is due).
    pub holder: Option<String>,
}

fn check_id(field: &'static str, v: &str) -> Result<(), StoreError> {
    if v.is_empty() || v.len() > MAX_ID_LEN {
        return Err(StoreError::invalid(
            field,
            format!("must be 1 to {MAX_ID_LEN} characters"),
        ));
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
    {
        return Err(StoreError::invalid(
            field,
            "may contain only letters, digits and . _ - @",
        ));
    }
    Ok(())
}

fn check_text(field: &'static str, v: &Option<String>) -> Result<(), StoreError> {
    if let Some(t) = v {
        if t.trim().is_empty() || t.chars().count() > MAX_TEXT_LEN {
            return Err(StoreError::invalid(
                field,
                format!("must be 1 to {MAX_TEXT_LEN} characters"),
            ));
        }
        if t.chars().any(char::is_control) {
            return Err(StoreError::invalid(
                field,
                "must not contain control characters",
            ));
        }
    }
    Ok(())
}

/// A person id as the directory folds it (lower case).
fn person(field: &'static str, v: &str) -> Result<String, StoreError> {
    okey_domain::org::PersonId::parse(v)
        .map(|p| p.as_str().to_owned())
        .map_err(|e| StoreError::invalid(field, e.to_string()))
}

/// Check a change and fold the person ids it names.
fn check_change(c: KeyChange) -> Result<KeyChange, StoreError> {
    Ok(match c {
        KeyChange::Register { lot, valid_until } => {
            check_id("lot", &lot)?;
            KeyChange::Register { lot, valid_until }
        }
        KeyChange::Reserve { person: p } => KeyChange::Reserve {
            person: person("person", &p)?,
        },
        KeyChange::Assign { holder } => KeyChange::Assign {
            holder: person("holder", &holder)?,
        },
        KeyChange::HandOver { to, place, until } => {
            check_text("place", &place)?;
            KeyChange::HandOver {
                to: person("holder", &to)?,
                place,
                until,
            }
        }
        KeyChange::Return { condition, place } => {
            check_text("place", &place)?;
            match condition.as_deref() {
                None | Some("good" | "damaged" | "broken") => {
                    KeyChange::Return { condition, place }
                }
                Some(_) => {
                    return Err(StoreError::invalid(
                        "condition",
                        "must be good, damaged or broken",
                    ));
                }
            }
        }
        KeyChange::Lost { comment } => {
            check_text("comment", &comment)?;
            KeyChange::Lost { comment }
        }
        KeyChange::Deactivate { at, comment } => {
            check_text("comment", &comment)?;
            KeyChange::Deactivate { at, comment }
        }
        KeyChange::Move { to } => {
            check_id("lot", &to)?;
            KeyChange::Move { to }
        }
        c @ (KeyChange::Unreserve
        | KeyChange::Unassign
        | KeyChange::Restock
        | KeyChange::Expire
        | KeyChange::Scrap
        | KeyChange::Recycle
        | KeyChange::Reissue) => c,
    })
}

/// A receipt number: a prefix for the kind and 40 random bits in Crockford base32, in two
/// groups (`RM-7K3Q-9XPA`): short enough to type back, not guessable.
fn receipt_number(kind: ReceiptKind) -> Result<String, StoreError> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut raw = [0u8; 5];
    getrandom::fill(&mut raw).map_err(|e| StoreError::Corrupt(format!("no randomness: {e}")))?;
    let mut v = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut chars = [0u8; 8];
    for c in chars.iter_mut().rev() {
        *c = ALPHABET[(v & 31) as usize];
        v >>= 5;
    }
    let text = String::from_utf8_lossy(&chars).into_owned();
    let prefix = match kind {
        ReceiptKind::HandOver => "RM",
        ReceiptKind::Return => "RS",
    };
    Ok(format!("{prefix}-{}-{}", &text[..4], &text[4..]))
}

/// A receipt number as typed back: case and separators do not matter.
fn normalise_receipt(n: &str) -> String {
    n.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn lot_key(row: &TokenRow, c: Option<&CustodyRow>) -> LotKey {
    LotKey {
        serial: row.serial.clone(),
        kind: row.kind,
        status: row.status,
        custody: row.custody,
        holder: row.holder.clone(),
        lot: c.map(|c| c.lot.clone()),
        origin_lot: c.map(|c| c.origin_lot.clone()),
        valid_until: row.valid_until,
        active_until: row.active_until,
        return_due: c.and_then(|c| c.return_due),
        reserved_for: c.and_then(|c| c.reserved_for.clone()),
        changed_at: c.map_or(row.updated_at, |c| c.changed_at),
    }
}

fn read_lot(tx: &mut dyn CustodyTx, id: &str) -> Result<LotRow, StoreError> {
    tx.lot(id)?
        .ok_or_else(|| StoreError::UnknownLot(id.to_owned()))
}

/// The party `by` acts as for this key and action: the first of its parties the table allows;
/// refused with the table's sentence (wrong state) or a scope sentence (no party at all).
fn pick_party(
    by: &Acting,
    serial: &str,
    state: Option<KeyState>,
    action: KeyAction,
    lot: Option<&str>,
    holder: Option<&str>,
) -> Result<(Party, KeyState), StoreError> {
    let parties = by.parties(lot, holder);
    let mut first_err = None;
    for p in &parties {
        match okey_domain::transition(state, action, *p) {
            Ok(to) => return Ok((*p, to)),
            Err(e @ okey_domain::KeyTransitionError::State { .. }) => {
                return Err(StoreError::Precondition(format!("key {serial}: {e}")));
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    // No party of this person may. If nobody may from this state, say so in the table's terms.
    if let Err(e) = okey_domain::transition(state, action, Party::SupportCentre)
        && Party::ALL.iter().all(|p| {
            okey_domain::transition(state, action, *p)
                .is_err_and(|e| matches!(e, okey_domain::KeyTransitionError::State { .. }))
        })
    {
        return Err(StoreError::Precondition(format!("key {serial}: {e}")));
    }
    Err(StoreError::Forbidden(match (first_err, lot) {
        (Some(e), _) => format!("key {serial}: {e}"),
        (None, Some(l)) => format!(
            "{} does not manage lot {l}, where key {serial} is, and may not act on it",
            by.name()
        ),
        (None, None) => format!(
            "key {serial} is in no lot: only the support centre or the IT department may register it"
        ),
    }))
}

impl Store {
    fn custody_write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn crate::backend::WriteTx, &Store) -> Result<T, StoreError>
            + Send
            + 'static,
    {
        let store = self.clone();
        self.write_blocking(move |tx| f(tx, &store))
    }

    /// Create a lot. Only administrators (through the RPC table) create lots.
    pub fn create_lot(&self, lot: LotRow, actor: &Actor) -> Result<LotRow, StoreError> {
        check_id("lot", &lot.id)?;
        let unit = okey_domain::org::UnitId::parse(&lot.unit)
            .map_err(|e| StoreError::invalid("unit", e.to_string()))?;
        let mut lot = lot;
        lot.unit = unit.as_str().to_owned();
        check_text("name", &Some(lot.name.clone()))?;
        if lot.validity_days == Some(0) || lot.validity_days.is_some_and(|d| d > 36_500) {
            return Err(StoreError::invalid("validity", "must be 1 to 36500 days"));
        }
        let entry = Self::audit_entry(
            actor,
            "lot.create",
            &lot.id,
            None,
            "ok",
            &format!("{} lot of unit {}", lot.kind, lot.unit),
            lot.created_at,
        );
        let row = lot.clone();
        self.custody_write(move |tx, store| {
            tx.custody().insert_lot(&row)?;
            audit::append(tx, &store.inner.audit_key, entry)?;
            Ok(())
        })?;
        Ok(lot)
    }

    /// Name (or remove) a delegate manager of a lot.
    pub fn set_lot_delegate(
        &self,
        lot: &str,
        person: &str,
        remove: bool,
        actor: &Actor,
        now: u64,
    ) -> Result<(), StoreError> {
        check_id("lot", lot)?;
        let person = &self::person("person", person)?;
        let entry = Self::audit_entry(
            actor,
            "lot.delegate",
            lot,
            None,
            "ok",
            &format!("{} {person}", if remove { "removed" } else { "added" }),
            now,
        );
        let (lot, person) = (lot.to_owned(), person.to_owned());
        self.custody_write(move |tx, store| {
            read_lot(tx.custody(), &lot)?;
            tx.custody().set_delegate(&lot, &person, remove)?;
            audit::append(tx, &store.inner.audit_key, entry)?;
            Ok(())
        })
    }

    /// The named delegate managers of a lot.
    pub fn lot_delegates(&self, lot: &str) -> Result<Vec<String>, StoreError> {
        self.inner.backend.custody().delegates(lot)
    }

    /// The lots a person is a named delegate manager of.
    pub fn lots_delegated_to(&self, person: &str) -> Result<Vec<String>, StoreError> {
        self.inner.backend.custody().delegated_to(person)
    }

    /// Reserve one available key of `lot` for each of `persons` (a first appointment batch):
    /// one commit, all or none.
    pub fn reserve_keys(
        &self,
        lot: &str,
        persons: Vec<String>,
        meeting: Option<Meeting>,
        by: &Acting,
        now: u64,
    ) -> Result<Vec<LotKey>, StoreError> {
        check_id("lot", lot)?;
        if let Some(m) = &meeting {
            check_text("meeting place", &Some(m.place.clone()))?;
            if m.at <= now {
                return Err(StoreError::invalid(
                    "meeting",
                    "the hand-over meeting must be in the future",
                ));
            }
        }
        if persons.is_empty() || persons.len() > 10_000 {
            return Err(StoreError::invalid("persons", "give 1 to 10000 persons"));
        }
        let persons = persons
            .iter()
            .map(|p| person("person", p))
            .collect::<Result<Vec<_>, _>>()?;
        let lot = lot.to_owned();
        let by = by.clone();
        let done = self.custody_write(move |tx, store| {
            let lot_row = read_lot(tx.custody(), &lot)?;
            let n = u32::try_from(persons.len()).unwrap_or(u32::MAX);
            let keys = tx.custody().available_keys(&lot, n)?;
            if keys.len() < persons.len() {
                return Err(StoreError::Precondition(format!(
                    "lot {lot} has {} available keys, {} are needed: order more",
                    keys.len(),
                    persons.len()
                )));
            }
            let mut out = Vec::with_capacity(persons.len());
            for (serial, person) in keys.into_iter().zip(persons) {
                let entry = match &meeting {
                    Some(_) => store.directory_entry(&person)?,
                    None => None,
                };
                out.push(apply(
                    tx,
                    store,
                    &serial,
                    KeyChange::Reserve { person },
                    &by,
                    now,
                )?);
                if let (Some(m), Some((name, email))) = (&meeting, entry) {
                    let notice = Notice::Convocation {
                        name,
                        serial: serial.clone(),
                        lot_name: lot_row.name.clone(),
                        meeting_at: m.at,
                        place: m.place.clone(),
                    };
                    store.notify(tx, &notice, vec![email], now)?;
                }
            }
            Ok(out)
        })?;
        Ok(done
            .into_iter()
            .map(|(row, o)| {
                self.inner.cache.update(&row.serial, Hot::of(&row));
                o.key
            })
            .collect())
    }

    /// Every lot with its counts.
    pub fn lots(&self) -> Result<Vec<LotSummary>, StoreError> {
        let db = self.inner.backend.custody();
        let counts = db.lot_counts()?;
        let orders = db.orders(None)?;
        Ok(db
            .lots()?
            .into_iter()
            .map(|lot| summary(lot, &counts, &orders))
            .collect())
    }

    /// One lot with its counts.
    pub fn lot(&self, id: &str) -> Result<LotSummary, StoreError> {
        let db = self.inner.backend.custody();
        let lot = db
            .lot(id)?
            .ok_or_else(|| StoreError::UnknownLot(id.to_owned()))?;
        let counts = db.lot_counts()?;
        let orders = db.orders(Some(id))?;
        Ok(summary(lot, &counts, &orders))
    }

    /// The keys of a lot, by serial.
    pub fn lot_keys(&self, id: &str) -> Result<Vec<LotKey>, StoreError> {
        let db = self.inner.backend.custody();
        if db.lot(id)?.is_none() {
            return Err(StoreError::UnknownLot(id.to_owned()));
        }
        db.lot_keys(id)
    }

    /// Orders of a lot (or all).
    pub fn orders(&self, lot: Option<&str>) -> Result<Vec<Order>, StoreError> {
        self.inner.backend.custody().orders(lot)
    }

    /// A key: where it is, its history and receipts.
    pub fn key_record(&self, serial: &str) -> Result<KeyRecord, StoreError> {
        let row = self
            .inner
            .backend
            .token(serial)?
            .ok_or_else(|| StoreError::UnknownSerial(serial.to_owned()))?;
        let db = self.inner.backend.custody();
        let c = db.custody(serial)?;
        Ok(KeyRecord {
            key: lot_key(&row, c.as_ref()),
            history: db.history(serial)?,
            receipts: db.receipts(serial)?,
        })
    }

    /// The keys `person` holds now, by serial.
    pub fn keys_held_by(&self, person: &str) -> Result<Vec<LotKey>, StoreError> {
        let db = self.inner.backend.custody();
        self.inner
            .backend
            .tokens_of(person)?
            .iter()
            .map(|row| Ok(lot_key(row, db.custody(&row.serial)?.as_ref())))
            .collect()
    }

    /// Apply one custody change to one key, as `by`, at `now`. Refused (nothing written) when the
    /// table does not allow the action from the key's state, or not for any party `by` is for
    /// this key.
    pub fn change_key(
        &self,
        serial: &str,
        change: KeyChange,
        by: &Acting,
        now: u64,
    ) -> Result<ChangeOutcome, StoreError> {
        crate::store::valid_serial(serial)?;
        let change = check_change(change)?;
        let serial = serial.to_owned();
        let by = by.clone();
        let (row, outcome) =
            self.custody_write(move |tx, store| apply(tx, store, &serial, change, &by, now))?;
        self.inner.cache.update(&row.serial, Hot::of(&row));
        Ok(outcome)
    }

    /// The same change to several keys in one commit (a batch of hand-overs at a first
    /// appointment meeting): all or none.
    pub fn change_keys(
        &self,
        changes: Vec<(String, KeyChange)>,
        by: &Acting,
        now: u64,
    ) -> Result<Vec<ChangeOutcome>, StoreError> {
        let changes = changes
            .into_iter()
            .map(|(s, c)| {
                crate::store::valid_serial(&s)?;
                Ok((s, check_change(c)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let by = by.clone();
        let done = self.custody_write(move |tx, store| {
            let mut out = Vec::with_capacity(changes.len());
            for (serial, change) in changes {
                out.push(apply(tx, store, &serial, change, &by, now)?);
            }
            Ok(out)
        })?;
        Ok(done
            .into_iter()
            .map(|(row, o)| {
                self.inner.cache.update(&row.serial, Hot::of(&row));
                o
            })
            .collect())
    }

    /// Someone brought key `serial` in: the FAQ's decision. A key declared lost becomes found
    /// (and stays unusable until a new hand-over); any other key is only looked up, and the
    /// look-up is on the audit record.
    pub fn found_key(
        &self,
        serial: &str,
        by: &Acting,
        now: u64,
    ) -> Result<FoundOutcome, StoreError> {
        crate::store::valid_serial(serial)?;
        let serial = serial.to_owned();
        let by = by.clone();
        let (row, outcome) = self.custody_write(move |tx, store| {
            let row = tx
                .token(&serial)?
                .ok_or_else(|| StoreError::UnknownSerial(serial.clone()))?;
            let c = tx.custody().custody(&serial)?;
            let Some(state) = row.custody else {
                return Err(StoreError::Precondition(format!(
                    "key {serial} is in no lot: okey does not know where it belongs; register it \
                     into a lot first"
                )));
            };
            let lot = match &c {
                Some(c) => Some(read_lot(tx.custody(), &c.lot)?),
                None => None,
            };
            let expired = row.valid_until.is_some_and(|end| now >= end);
            let rectorat = lot.as_ref().is_some_and(|l| l.kind == LotKind::Rectorat);
            let decision =
                okey_domain::found_decision(state, row.holder.as_deref(), expired, rectorat);
            if !by
                .parties(c.as_ref().map(|c| c.lot.as_str()), None)
                .iter()
                .any(|p| matches!(p, Party::SupportCentre | Party::ItDepartment))
            {
                return Err(StoreError::Forbidden(format!(
                    "found keys are handled by the support centre or the IT department; {} is \
                     neither",
                    by.name()
                )));
            }
            let (row, key) = if state == KeyState::Lost {
                let (row, out) = apply_found(tx, store, row, c, &by, now, &decision)?;
                (row, out)
            } else {
                let entry = Store::audit_entry(
                    &by.actor,
                    "key.found",
                    &serial,
                    Some(&serial),
                    "ok",
                    &format!("{} (looked up, unchanged): {}", state, decision.as_str()),
                    now,
                );
                audit::append(tx, &store.inner.audit_key, entry)?;
                let key = lot_key(&row, c.as_ref());
                (row, key)
            };
            Ok((
                row,
                FoundOutcome {
                    decision,
                    key,
                    lot_kind: lot.map(|l| l.kind),
                },
            ))
        })?;
        self.inner.cache.update(&row.serial, Hot::of(&row));
        Ok(outcome)
    }

    /// A lot manager orders `quantity` keys for their lot.
    pub fn order_keys(
        &self,
        lot: &str,
        quantity: u32,
        comment: Option<String>,
        by: &Acting,
        now: u64,
    ) -> Result<Order, StoreError> {
        check_id("lot", lot)?;
        check_text("comment", &comment)?;
        if quantity == 0 || quantity > 10_000 {
            return Err(StoreError::invalid("quantity", "must be 1 to 10000"));
        }
        if !by.sees_lot(lot) {
            return Err(StoreError::Forbidden(format!(
                "{} does not manage lot {lot} and may not order keys for it",
                by.name()
            )));
        }
        let mut order = Order {
            id: 0,
            lot: lot.to_owned(),
            quantity,
            state: OrderState::Open,
            comment,
            ordered_by: by.name(),
            ordered_at: now,
            closed_by: None,
            closed_at: None,
            serials: Vec::new(),
        };
        let actor = by.actor.clone();
        self.custody_write(move |tx, store| {
            read_lot(tx.custody(), &order.lot)?;
            order.id = tx.custody().insert_order(&order)?;
            let entry = Store::audit_entry(
                &actor,
                "lot.order",
                &order.lot,
                None,
                "ok",
                &format!("order {} of {} keys", order.id, order.quantity),
                now,
            );
            audit::append(tx, &store.inner.audit_key, entry)?;
            Ok(order)
        })
    }

    /// Fulfil an open order with these keys (moved, or registered if in no lot, into the
    /// order's lot), or cancel it (`serials` empty and `cancel`). All or nothing.
    pub fn close_order(
        &self,
        id: u64,
        serials: Vec<String>,
        cancel: bool,
        by: &Acting,
        now: u64,
    ) -> Result<Order, StoreError> {
        for s in &serials {
            crate::store::valid_serial(s)?;
        }
        if cancel != serials.is_empty() {
            return Err(StoreError::invalid(
                "order",
                "give the keys that fulfil the order, or cancel it, not both",
            ));
        }
        let by = by.clone();
        let (rows, order) = self.custody_write(move |tx, store| {
            let order = tx
                .custody()
                .order(id)?
                .ok_or_else(|| StoreError::invalid("order", format!("no order {id}")))?;
            if order.state != OrderState::Open {
                return Err(StoreError::Precondition(format!(
                    "order {id} is {} and cannot be changed",
                    order.state.as_str()
                )));
            }
            let central = by
                .central
                .iter()
                .any(|p| matches!(p, Party::SupportCentre | Party::ItDepartment));
            let may = central || (cancel && by.manages.contains(&order.lot));
            if !may {
                return Err(StoreError::Forbidden(format!(
                    "{} may not {} order {id}",
                    by.name(),
                    if cancel { "cancel" } else { "fulfil" }
                )));
            }
            let mut rows = Vec::new();
            for s in &serials {
                let in_lot = tx
                    .token(s)?
                    .ok_or_else(|| StoreError::UnknownSerial(s.clone()))?
                    .custody
                    .is_some();
                let change = if in_lot {
                    KeyChange::Move {
                        to: order.lot.clone(),
                    }
                } else {
                    KeyChange::Register {
                        lot: order.lot.clone(),
                        valid_until: None,
                    }
                };
                rows.push(apply(tx, store, s, change, &by, now)?.0);
            }
            let state = if cancel {
                OrderState::Cancelled
            } else {
                OrderState::Fulfilled
            };
            if !tx
                .custody()
                .close_order(id, state, &by.name(), now, &serials)?
            {
                return Err(StoreError::Conflict);
            }
            let entry = Store::audit_entry(
                &by.actor,
                "lot.order",
                &order.lot,
                None,
                "ok",
                &format!("order {id}: open -> {}", state.as_str()),
                now,
            );
            audit::append(tx, &store.inner.audit_key, entry)?;
            let order = tx
                .custody()
                .order(id)?
                .ok_or_else(|| StoreError::Corrupt("the order vanished".into()))?;
            Ok((rows, order))
        })?;
        for row in rows {
            self.inner.cache.update(&row.serial, Hot::of(&row));
        }
        Ok(order)
    }

    /// The holder signs their hand-over receipt by typing its number back. Refused unless the
    /// number is that of the key's latest hand-over, unsigned.
    pub fn confirm_handover(
        &self,
        serial: &str,
        number: &str,
        how: &'static str,
        by: &Acting,
        now: u64,
    ) -> Result<Receipt, StoreError> {
        crate::store::valid_serial(serial)?;
        let serial = serial.to_owned();
        let typed = normalise_receipt(number);
        let actor = by.actor.clone();
        let by = by.clone();
        let (new, receipt) = self.custody_write(move |tx, store| {
            let row = tx
                .token(&serial)?
                .ok_or_else(|| StoreError::UnknownSerial(serial.clone()))?;
            let wrong = || {
                StoreError::Precondition(format!(
                    "this is not the receipt number of key {serial}'s hand-over waiting for \
                     its holder's signature"
                ))
            };
            if row.custody != Some(KeyState::HandedOver) {
                return Err(wrong());
            }
            let latest = tx
                .custody()
                .receipts(&serial)?
                .into_iter()
                .rev()
                .find(|r| r.kind == ReceiptKind::HandOver)
                .ok_or_else(wrong)?;
            let same: bool = subtle::ConstantTimeEq::ct_eq(
                normalise_receipt(&latest.number).as_bytes(),
                typed.as_bytes(),
            )
            .into();
            let central = by
                .central
                .iter()
                .any(|p| matches!(p, Party::SupportCentre | Party::ItDepartment));
            if !central && by.person.as_deref() != Some(latest.holder.as_str()) {
                return Err(StoreError::Forbidden(format!(
                    "only the holder of key {serial} signs its hand-over receipt"
                )));
            }
            if !same || latest.confirmed_at.is_some() {
                return Err(wrong());
            }
            if !tx.custody().confirm_receipt(&latest.number, now, how)? {
                return Err(wrong());
            }
            let mut new = row.clone();
            new.handover_unconfirmed = false;
            new.updated_at = now;
            if !tx.update_token(row.version, &new)? {
                return Err(StoreError::Conflict);
            }
            new.version = row.version + 1;
            let entry = Store::audit_entry(
                &actor,
                "key.handover.confirm",
                &serial,
                Some(&serial),
                "ok",
                &format!("receipt {} signed by {how}", latest.number),
                now,
            );
            audit::append(tx, &store.inner.audit_key, entry)?;
            let receipt = tx
                .custody()
                .receipt(&latest.number)?
                .ok_or_else(|| StoreError::Corrupt("the receipt vanished".into()))?;
            Ok((new, receipt))
        })?;
        self.inner.cache.update(&new.serial, Hot::of(&new));
        Ok(receipt)
    }

    /// The scheduled job: mark keys past their validity end expired, and put the return of
    /// handed-over keys past their deactivation time on their lot manager's list. Returns what
    /// it did, for the lot managers to be told.
    pub fn run_due(&self, now: u64, actor: &Actor) -> Result<Vec<DueEvent>, StoreError> {
        let by = Acting {
            actor: actor.clone(),
            person: None,
            central: vec![Party::Scheduler],
            manages: Vec::new(),
        };
        let mut all = Vec::new();
        loop {
            let by = by.clone();
            let (rows, events) = self.custody_write(move |tx, store| {
                let due = tx.custody().due_keys(now, 500)?;
                let mut rows = Vec::new();
                let mut events = Vec::new();
                for serial in due {
                    let Some(row) = tx.token(&serial)? else {
                        continue;
                    };
                    let expired = row.valid_until.is_some_and(|e| now >= e)
                        && !matches!(
                            row.custody,
                            Some(KeyState::Expired | KeyState::Scrapped | KeyState::Recycled)
                        );
                    let change = if expired {
                        KeyChange::Expire
                    } else {
                        KeyChange::Deactivate {
                            at: row.active_until,
                            comment: Some("deactivation time reached".into()),
                        }
                    };
                    let action = change.action();
                    let (row, out) = apply(tx, store, &serial, change, &by, now)?;
                    events.push(DueEvent {
                        serial,
                        lot: out.key.lot.clone(),
                        action,
                        holder: out.key.holder.clone(),
                    });
                    rows.push(row);
                }
                // The lot managers learn which of their keys expired: one mail per lot.
                let mut expired: std::collections::BTreeMap<String, Vec<(String, Option<String>)>> =
                    std::collections::BTreeMap::new();
                for e in events.iter().filter(|e| e.action == KeyAction::Expire) {
                    if let Some(lot) = &e.lot {
                        let holder = match e.holder.as_deref() {
                            Some(h) => Some(store.display_name(h)?),
                            None => None,
                        };
                        expired
                            .entry(lot.clone())
                            .or_default()
                            .push((e.serial.clone(), holder));
                    }
                }
                for (lot, keys) in expired {
                    let lot = read_lot(tx.custody(), &lot)?;
                    let to = store.lot_manager_addresses(&lot)?;
                    let notice = Notice::Expired {
                        lot: lot.id.clone(),
                        lot_name: lot.name.clone(),
                        keys,
                    };
                    store.notify(tx, &notice, to, now)?;
                }
                Ok((rows, events))
            })?;
            for row in &rows {
                self.inner.cache.update(&row.serial, Hot::of(row));
            }
            let n = events.len();
            all.extend(events);
            if n < 500 {
                return Ok(all);
            }
        }
    }
}

fn summary(lot: LotRow, counts: &[(String, String, u64)], orders: &[Order]) -> LotSummary {
    let counts = KeyState::ALL
        .into_iter()
        .filter_map(|s| {
            counts
                .iter()
                .find(|(l, st, _)| *l == lot.id && st == s.as_str())
                .map(|(_, _, n)| (s, *n))
        })
        .collect();
    let open_orders = orders
        .iter()
        .filter(|o| o.lot == lot.id && o.state == OrderState::Open)
        .count() as u64;
    LotSummary {
        lot,
        counts,
        open_orders,
    }
}

/// One change inside the writer's transaction: check, write the row by compare-and-set, the
/// lot row, the history, the receipt and the audit record.
pub(crate) fn apply(
    tx: &mut dyn crate::backend::WriteTx,
    store: &Store,
    serial: &str,
    change: KeyChange,
    by: &Acting,
    now: u64,
) -> Result<(TokenRow, ChangeOutcome), StoreError> {
    let mut row = tx
        .token(serial)?
        .ok_or_else(|| StoreError::UnknownSerial(serial.to_owned()))?;
    if row.status == TokenStatus::Revoked {
        return Err(StoreError::Precondition(format!(
            "key {serial} is revoked; it has no custody to change"
        )));
    }
    let before = row.clone();
    let old = tx.custody().custody(serial)?;
    let action = change.action();
    let (_party, to) = pick_party(
        by,
        serial,
        row.custody,
        action,
        old.as_ref().map(|c| c.lot.as_str()),
        row.holder.as_deref(),
    )?;
    let mut c = old.clone().unwrap_or(CustodyRow {
        serial: serial.to_owned(),
        lot: String::new(),
        origin_lot: String::new(),
        return_due: None,
        reserved_for: None,
        changed_at: now,
    });
    let mut receipt = None;
    let mut comment = None;
    match change {
        KeyChange::Register { lot, valid_until } => {
            let l = read_lot(tx.custody(), &lot)?;
            c.lot = lot.clone();
            c.origin_lot = lot;
            row.valid_until = valid_until.or_else(|| {
                l.validity_days
                    .map(|d| now.saturating_add(u64::from(d) * 86_400))
            });
            row.holder = None;
            row.active_until = None;
        }
        KeyChange::Reserve { person } => c.reserved_for = Some(person),
        KeyChange::Unreserve => c.reserved_for = None,
        KeyChange::Assign { holder } => {
            c.reserved_for = None;
            row.holder = Some(holder);
        }
        KeyChange::Unassign => row.holder = None,
        KeyChange::HandOver { to, place, until } => {
            if before.custody == Some(KeyState::Assigned) && before.holder.as_deref() != Some(&to) {
                return Err(StoreError::Precondition(format!(
                    "key {serial} is assigned to {}, not to {to}: unassign it first",
                    before.holder.as_deref().unwrap_or("nobody")
                )));
            }
            if let Some(r) = c.reserved_for.as_deref().filter(|r| *r != to)
                && before.custody == Some(KeyState::Reserved)
            {
                return Err(StoreError::Precondition(format!(
                    "key {serial} is reserved for {r}, not for {to}: put it back from its \
                     reservation first"
                )));
            }
            if until.is_some_and(|u| u <= now) {
                return Err(StoreError::invalid(
                    "until",
                    "the period must end in the future",
                ));
            }
            c.reserved_for = None;
            c.return_due = None;
            row.holder = Some(to.clone());
            row.active_until = until;
            row.handover_unconfirmed = true;
            // A key request waiting for this key is completed, and the key gets its PIN.
            store.on_handover(tx, &mut row, &to, by, now)?;
            let r = Receipt {
                number: receipt_number(ReceiptKind::HandOver)?,
                kind: ReceiptKind::HandOver,
                serial: serial.to_owned(),
                lot: c.lot.clone(),
                holder: to,
                staff: by.name(),
                at: now,
                place,
                condition: None,
                until,
                confirmed_at: None,
                confirmed_how: None,
            };
            tx.custody().insert_receipt(&r)?;
            comment = Some(format!("receipt {}", r.number));
            receipt = Some(r);
        }
        KeyChange::Return { condition, place } => {
            let holder = before.holder.clone().unwrap_or_default();
            let r = Receipt {
                number: receipt_number(ReceiptKind::Return)?,
                kind: ReceiptKind::Return,
                serial: serial.to_owned(),
                lot: c.lot.clone(),
                holder,
                staff: by.name(),
                at: now,
                place,
                condition: condition.clone(),
                until: None,
                confirmed_at: None,
                confirmed_how: None,
            };
            tx.custody().insert_receipt(&r)?;
            comment = Some(match &condition {
                Some(k) => format!("receipt {}; condition: {k}", r.number),
                None => format!("receipt {}", r.number),
            });
            receipt = Some(r);
            c.return_due = None;
            row.holder = None;
            row.active_until = None;
        }
        KeyChange::Lost { comment: why } => {
            comment = why;
            c.return_due = None;
            c.reserved_for = None;
            row.holder = None;
            row.active_until = None;
        }
        KeyChange::Restock => {
            c.lot = c.origin_lot.clone();
            row.holder = None;
            row.active_until = None;
        }
        KeyChange::Move { to } => {
            read_lot(tx.custody(), &to)?;
            if to == c.lot {
                return Err(StoreError::Precondition(format!(
                    "key {serial} is already in lot {to}"
                )));
            }
            c.lot = to;
        }
        KeyChange::Deactivate { at, comment: why } => {
            // A time in the future schedules it (an end of function date): the key logs in
            // until then, and the scheduled job puts its return on the list at that time.
            let at = at.unwrap_or(now);
            row.active_until = Some(row.active_until.map_or(at, |a| a.min(at)));
            if at <= now {
                c.return_due.get_or_insert(now);
            }
            comment = why;
        }
        KeyChange::Expire => {
            if row.holder.is_some() {
                c.return_due.get_or_insert(now);
            }
        }
        KeyChange::Scrap | KeyChange::Recycle => {
            row.holder = None;
            row.active_until = None;
            c.return_due = None;
            c.reserved_for = None;
        }
        KeyChange::Reissue => {}
    }
    if to != KeyState::HandedOver {
        row.handover_unconfirmed = false;
    }
    row.custody = Some(to);
    row.updated_at = now;
    c.changed_at = now;
    let expect = before.version;
    if !tx.update_token(expect, &row)? {
        return Err(StoreError::Conflict);
    }
    row.version = expect + 1;
    tx.custody().put_custody(&c)?;
    let event = KeyEvent {
        serial: serial.to_owned(),
        at: now,
        actor: by.name(),
        action: action.as_str().to_owned(),
        state_before: before.custody.map(|s| s.as_str().to_owned()),
        state_after: Some(to.as_str().to_owned()),
        lot_before: old.as_ref().map(|o| o.lot.clone()),
        lot_after: Some(c.lot.clone()),
        holder_before: before.holder.clone(),
        holder_after: row.holder.clone(),
        comment: comment.clone(),
    };
    tx.custody().insert_event(&event)?;
    // A key that comes into the lot's stock (registered, or back from a reservation a request
    // no longer needs): a key request waiting for stock there goes on, and may take it.
    let taken = if matches!(action, KeyAction::Register | KeyAction::Unreserve) {
        store
            .stock_arrived(tx, &c.lot, &by.actor, now)?
            .filter(|r| r.serial == row.serial)
    } else {
        None
    };
    match action {
        KeyAction::DeclareLost => {
            if let Some(holder) = before.holder.as_deref()
                && let Some((name, email)) = store.directory_entry(holder)?
            {
                let notice = Notice::Lost {
                    name,
                    serial: serial.to_owned(),
                    by: store.display_name(&by.name())?,
                    comment: comment.clone(),
                    at: now,
                };
                store.notify(tx, &notice, vec![email], now)?;
            }
        }
        KeyAction::Deactivate => {
            let was_due = old.as_ref().and_then(|o| o.return_due).is_some();
            if let (false, Some(since)) = (was_due, c.return_due) {
                let lot = read_lot(tx.custody(), &c.lot)?;
                let holder = match before.holder.as_deref() {
                    Some(h) => store.display_name(h)?,
                    None => "personne".to_owned(),
                };
                let notice = Notice::ReturnDue {
                    lot: lot.id.clone(),
                    lot_name: lot.name.clone(),
                    serial: serial.to_owned(),
                    holder,
                    since,
                };
                let to = store.lot_manager_addresses(&lot)?;
                store.notify(tx, &notice, to, now)?;
            }
        }
        _ => {}
    }
    audit::append(
        tx,
        &store.inner.audit_key,
        Store::audit_entry(
            &by.actor,
            &format!("key.{}", action.as_str()),
            serial,
            Some(serial),
            "ok",
            &describe(&event),
            now,
        ),
    )?;
    let outcome = ChangeOutcome {
        key: lot_key(&row, Some(&c)),
        receipt,
    };
    Ok((taken.unwrap_or(row), outcome))
}

/// A lost key found: the Find transition, then the FAQ's "back to its origin lot, delivered"
/// (two events, one commit).
fn apply_found(
    tx: &mut dyn crate::backend::WriteTx,
    store: &Store,
    row: TokenRow,
    c: Option<CustodyRow>,
    by: &Acting,
    now: u64,
    decision: &FoundDecision,
) -> Result<(TokenRow, LotKey), StoreError> {
    let serial = row.serial.clone();
    let (_, to) = pick_party(
        by,
        &serial,
        row.custody,
        KeyAction::Find,
        c.as_ref().map(|c| c.lot.as_str()),
        None,
    )?;
    let mut new = row.clone();
    new.custody = Some(to);
    new.updated_at = now;
    if !tx.update_token(row.version, &new)? {
        return Err(StoreError::Conflict);
    }
    new.version = row.version + 1;
    let lot = c.as_ref().map(|c| c.lot.clone());
    let event = KeyEvent {
        serial: serial.clone(),
        at: now,
        actor: by.name(),
        action: KeyAction::Find.as_str().to_owned(),
        state_before: row.custody.map(|s| s.as_str().to_owned()),
        state_after: Some(to.as_str().to_owned()),
        lot_before: lot.clone(),
        lot_after: lot,
        holder_before: row.holder.clone(),
        holder_after: new.holder.clone(),
        comment: Some(format!("decision: {}", decision.as_str())),
    };
    tx.custody().insert_event(&event)?;
    audit::append(
        tx,
        &store.inner.audit_key,
        Store::audit_entry(
            &by.actor,
            "key.found",
            &serial,
            Some(&serial),
            "ok",
            &describe(&event),
            now,
        ),
    )?;
    if *decision == FoundDecision::BackToOriginLot {
        let (row, out) = apply(tx, store, &serial, KeyChange::Restock, by, now)?;
        return Ok((row, out.key));
    }
    Ok((new.clone(), lot_key(&new, c.as_ref())))
}

/// `before -> after` for the audit record.
fn describe(e: &KeyEvent) -> String {
    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    let mut s = format!(
        "{} -> {}; lot {} -> {}; holder {} -> {}",
        e.state_before.as_deref().unwrap_or("in no lot"),
        o(&e.state_after),
        o(&e.lot_before),
        o(&e.lot_after),
        o(&e.holder_before),
        o(&e.holder_after)
    );
    if let Some(c) = &e.comment {
        s.push_str("; ");
        s.push_str(c);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_numbers_are_typed_back_loosely_and_differ() {
        let a = receipt_number(ReceiptKind::HandOver).expect("number");
        let b = receipt_number(ReceiptKind::HandOver).expect("number");
        assert_ne!(a, b);
        assert!(a.starts_with("RM-") && a.len() == 12, "{a}");
        assert_eq!(
            normalise_receipt(&a.to_lowercase().replace('-', " ")),
            normalise_receipt(&a)
        );
        assert!(
            receipt_number(ReceiptKind::Return)
                .expect("n")
                .starts_with("RS-")
        );
    }

    #[test]
    fn the_acting_person_is_lot_manager_only_of_their_lots() {
        let head = Acting {
            actor: Actor::new("head", "support"),
            person: Some("p.head".into()),
            central: vec![],
            manages: vec!["2D-A".into()],
        };
        assert_eq!(head.parties(Some("2D-A"), None), vec![Party::LotManager]);
        assert!(head.parties(Some("2D-B"), None).is_empty());
        assert_eq!(
            head.parties(Some("2D-B"), Some("p.head")),
            vec![Party::Holder]
        );
        let support = Acting {
            central: vec![Party::SupportCentre, Party::LotManager],
            ..head
        };
        // A central party cannot claim to be a lot manager by listing it.
        assert_eq!(
            support.parties(Some("2D-B"), None),
            vec![Party::SupportCentre]
        );
    }
}
