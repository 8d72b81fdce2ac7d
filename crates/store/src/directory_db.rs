//! What a database must provide for the directory (units and people), beside
//! [`crate::backend`]. The rules (which unit sits where, which function fits which unit) are
//! `okey_domain::org`'s; these traits only store and fetch checked values.

use okey_domain::org::{Function, LotRef, Person, PersonId, Unit, UnitId};

use crate::StoreError;
use crate::lots::LotRow;

/// The read side.
pub trait DirectoryRead: Send + Sync {
    /// Every unit, by id.
    fn units(&self) -> Result<Vec<Unit>, StoreError>;
    /// One person.
    fn person(&self, id: &PersonId) -> Result<Option<Person>, StoreError>;
    /// Everyone in `unit` holding `function`, by id.
    fn people_with(&self, unit: &UnitId, function: Function) -> Result<Vec<Person>, StoreError>;
    /// How many people work in `unit`.
    fn people_count(&self, unit: &UnitId) -> Result<u64, StoreError>;
    /// The units directly under `unit`, by id.
    fn children(&self, unit: &UnitId) -> Result<Vec<UnitId>, StoreError>;
    /// The person the API key `name` is bound to (none: no such key, or bound to nobody).
    fn caller_person(&self, name: &str) -> Result<Option<PersonId>, StoreError>;
    /// The lots of these kinds and units (a person's scope), by id.
    fn lots_of(&self, lots: &[LotRef]) -> Result<Vec<LotRow>, StoreError>;
    /// The enabled API keys bound to `person`, by name.
    fn callers_of(&self, person: &PersonId) -> Result<Vec<String>, StoreError>;
}

/// The write side, inside the writer's transaction.
pub trait DirectoryTx {
    /// Every unit, as this transaction sees them.
    fn units(&mut self) -> Result<Vec<Unit>, StoreError>;
    /// Insert or replace a unit; true if it was new.
    fn put_unit(&mut self, unit: &Unit, at: u64) -> Result<bool, StoreError>;
    /// Insert or replace a person and their functions; true if they were new.
    fn put_person(&mut self, person: &Person, at: u64) -> Result<bool, StoreError>;
    /// Bind the existing API key `name` to `person`.
    fn bind_caller(&mut self, name: &str, person: &PersonId) -> Result<(), StoreError>;
    /// Whether the person exists.
    fn person_exists(&mut self, id: &PersonId) -> Result<bool, StoreError>;
}
