//! What a database must provide for the support desk (migration 10), beside
//! [`crate::backend`]: cases, their per-unit sequences, their messages and internal notes, and
//! the temporary keys issued while a replacement is prepared. The rules are
//! `okey_domain::support`'s; these traits only store and fetch checked values.

use okey_domain::support::{CaseKind, Priority};

use crate::StoreError;

/// Where a case stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaseState {
    /// Waiting for, or being handled by, the support desk.
    Open,
    /// Resolved: the declarant was told how.
    Resolved,
}

impl CaseState {
    /// Its name in the database and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            CaseState::Open => "open",
            CaseState::Resolved => "resolved",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Result<CaseState, StoreError> {
        match s {
            "open" => Ok(CaseState::Open),
            "resolved" => Ok(CaseState::Resolved),
            _ => Err(StoreError::Corrupt(format!("unknown case state {s:?}"))),
        }
    }
}

/// A support case as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseRow {
    /// Its number (`okey_domain::support::case_number`).
    pub number: String,
    /// The declarant's unit.
    pub unit: String,
    /// The declarant (a directory person id).
    pub declarant: String,
    /// Their address, from the directory when the case was opened.
    pub declarant_email: String,
    /// Copied on every mail of the case: the IEN of a primary school director (003 case 3).
    pub copy_to: Option<String>,
    /// What it is about.
    pub kind: CaseKind,
    /// How urgent.
    pub priority: Priority,
    /// Nom et prénom, as given.
    pub name: String,
    /// Fonction.
    pub function: String,
    /// Téléphone.
    pub phone: String,
    /// Établissement / ville.
    pub unit_town: String,
    /// Objet.
    pub subject: String,
    /// Population concernée.
    pub population: String,
    /// Description précise.
    pub description: String,
    /// URL or breadcrumb.
    pub location: String,
    /// The attachments given, one line each: name, media type, size, SHA-256.
    pub attachments: Vec<String>,
    /// The key concerned, for the kinds that name one.
    pub serial: Option<String>,
    /// The serials a "keys not in okey" case lists.
    pub serials: Vec<String>,
    /// Open or resolved.
    pub state: CaseState,
    /// The support agent it is assigned to.
    pub assignee: Option<String>,
    /// Opened (Unix seconds).
    pub opened_at: u64,
    /// Last change.
    pub updated_at: u64,
    /// Resolved.
    pub resolved_at: Option<u64>,
    /// How it was resolved.
    pub resolution: Option<String>,
}

/// A message on a case: a reply (mailed) or an internal note (never mailed, never shown to
/// the declarant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseMessage {
    /// Row id (0 before insertion).
    pub id: u64,
    /// The case.
    pub number: String,
    /// When.
    pub at: u64,
    /// Who (the audit actor's text).
    pub author: String,
    /// An internal note.
    pub internal: bool,
    /// The text.
    pub body: String,
}

/// A temporary key issued while a new hardware key is prepared (003 case 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemporaryKey {
    /// The temporary key.
    pub serial: String,
    /// The key it stands in for (disabled, kept).
    pub replaces: String,
    /// Their holder.
    pub holder: String,
    /// The case it was issued on, if any.
    pub case_number: Option<String>,
    /// Issued (Unix seconds).
    pub issued_at: u64,
    /// It stops working at this time on its own (the token's validity end).
    pub expires_at: u64,
    /// Who issued it.
    pub issued_by: String,
}

/// Which cases to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseFilter {
    /// Only open cases (the queue).
    pub open_only: bool,
    /// Only this declarant's.
    pub declarant: Option<String>,
    /// Only those assigned to this agent.
    pub assignee: Option<String>,
}

/// The read side.
pub trait SupportRead: Send + Sync {
    /// One case.
    fn case(&self, number: &str) -> Result<Option<CaseRow>, StoreError>;
    /// Cases matching `filter`, open ones first, then by priority, then oldest first.
    fn cases(&self, filter: &CaseFilter, limit: u32) -> Result<Vec<CaseRow>, StoreError>;
    /// A case's messages, oldest first.
    fn case_messages(&self, number: &str) -> Result<Vec<CaseMessage>, StoreError>;
    /// The temporary keys standing in for `serial`, or issued as `serial`.
    fn temporary_keys(&self, serial: &str) -> Result<Vec<TemporaryKey>, StoreError>;
}

/// The write side, inside the writer's transaction.
pub trait SupportTx {
    /// One case, as this transaction sees it.
    fn case(&mut self, number: &str) -> Result<Option<CaseRow>, StoreError>;
    /// The next sequence number of `unit`'s cases in `year` (from 1), taken.
    fn next_case_seq(&mut self, unit: &str, year: i32) -> Result<u64, StoreError>;
    /// Insert a new case (its number must be new).
    fn insert_case(&mut self, case: &CaseRow) -> Result<(), StoreError>;
    /// Write a case's moving fields (state, assignee, priority, times, resolution).
    fn update_case(&mut self, case: &CaseRow) -> Result<(), StoreError>;
    /// Add a message; returns its id.
    fn insert_case_message(&mut self, m: &CaseMessage) -> Result<u64, StoreError>;
    /// Record a temporary key.
    fn insert_temporary_key(&mut self, k: &TemporaryKey) -> Result<(), StoreError>;
}

/// The case columns, in the order the backends read them.
pub(crate) const CASE_COLS: &str = "number, unit, declarant, declarant_email, copy_to, kind, \
     priority, name, function, phone, unit_town, subject, population, description, location, \
     attachments, serial, serials, state, assignee, opened_at, updated_at, resolved_at, resolution";

/// Split a stored list (one item per line).
pub(crate) fn lines(s: &str) -> Vec<String> {
    s.split('\n')
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The kind column, checked.
pub(crate) fn kind(s: &str) -> Result<CaseKind, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown case kind {s:?}")))
}

/// The priority column, checked.
pub(crate) fn priority(s: &str) -> Result<Priority, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown case priority {s:?}")))
}
