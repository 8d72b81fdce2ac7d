//! The directory: units and people, loaded from the administration's exports.
//!
//! An import is all or nothing: every unit and person is checked (the unit tree as it will be
//! once the file's units replace the stored ones, each person's unit and functions, explicit
//! managers present in the file or the store) inside one writer transaction, and the first
//! refusal names the entry's origin (file and line) and writes nothing. Entries already known
//! are updated; entries the import does not mention are left as they are. One audit record
//! says how many units and people were created and updated.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use okey_domain::org::{Function, OrgTree, PeopleLookup, Person, PersonId, Scope, Unit, UnitId};

use crate::clock::unix_now;
use crate::types::Actor;
use crate::{Store, StoreError, audit};

pub use okey_domain::org::Located;

/// What an import changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectoryImport {
    /// Units new to the store.
    pub units_created: u64,
    /// Units updated.
    pub units_updated: u64,
    /// People new to the store.
    pub people_created: u64,
    /// People updated.
    pub people_updated: u64,
}

fn refused(origin: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid {
        field: "directory entry",
        why: format!("{origin}: {why}"),
    }
}

impl Store {
    /// Load or update the directory, all or nothing (see the module documentation).
    pub fn import_directory(
        &self,
        units: Vec<Located<Unit>>,
        people: Vec<Located<Person>>,
        actor: &Actor,
    ) -> Result<DirectoryImport, StoreError> {
        let mut unit_origin: HashMap<UnitId, String> = HashMap::with_capacity(units.len());
        for u in &units {
            if let Some(first) = unit_origin.insert(u.value.id.clone(), u.origin.clone()) {
                return Err(refused(
                    &u.origin,
                    format!("unit {} is given twice (first at {first})", u.value.id),
                ));
            }
        }
        let mut person_origin: HashMap<&PersonId, &str> = HashMap::with_capacity(people.len());
        for p in &people {
            if let Some(first) = person_origin.insert(&p.value.id, &p.origin) {
                return Err(refused(
                    &p.origin,
                    format!("person {} is given twice (first at {first})", p.value.id),
                ));
            }
        }
        drop(person_origin);
        let now = unix_now();
        let key = self.inner.audit_key.clone();
        let actor = actor.clone();
        let result = self.inner.writer.run_blocking(move |tx| {
            let mut merged: BTreeMap<UnitId, Unit> = tx
                .directory()
                .units()?
                .into_iter()
                .map(|u| (u.id.clone(), u))
                .collect();
            for u in &units {
                merged.insert(u.value.id.clone(), u.value.clone());
            }
            let tree = OrgTree::new(merged.into_values()).map_err(|e| {
                let origin = match &e {
                    okey_domain::org::OrgError::InUnit { unit, .. } => UnitId::parse(unit)
                        .ok()
                        .and_then(|u| unit_origin.get(&u).cloned()),
                    _ => None,
                };
                refused(origin.as_deref().unwrap_or("the stored units"), e)
            })?;
            for p in &people {
                tree.check_person(&p.value)
                    .map_err(|e| refused(&p.origin, e))?;
            }
            let mut summary = DirectoryImport::default();
            for u in &units {
                if tx.directory().put_unit(&u.value, now)? {
                    summary.units_created += 1;
                } else {
                    summary.units_updated += 1;
                }
            }
            let in_file: HashSet<&PersonId> = people.iter().map(|p| &p.value.id).collect();
            for p in &people {
                if tx.directory().put_person(&p.value, now)? {
                    summary.people_created += 1;
                } else {
                    summary.people_updated += 1;
                }
            }
            for p in &people {
                if let Some(m) = &p.value.manager
                    && !in_file.contains(m)
                    && !tx.directory().person_exists(m)?
                {
                    return Err(refused(
                        &p.origin,
                        format!("the manager {m} is in neither the file nor the directory"),
                    ));
                }
            }
            let entry = Store::audit_entry(
                &actor,
                "directory.import",
                &format!("{} units, {} people", units.len(), people.len()),
                None,
                "ok",
                &format!(
                    "units created {} updated {}, people created {} updated {}",
                    summary.units_created,
                    summary.units_updated,
                    summary.people_created,
                    summary.people_updated
                ),
                now,
            );
            audit::append(tx, &key, entry)?;
            Ok(summary)
        });
        if result.is_ok()
            && let Ok(mut t) = self.inner.org_tree.write()
        {
            *t = None;
        }
        result
    }

    /// The unit tree as stored (cached until the next import).
    pub fn org_tree(&self) -> Result<Arc<OrgTree>, StoreError> {
        if let Ok(t) = self.inner.org_tree.read()
            && let Some(t) = t.as_ref()
        {
            return Ok(t.clone());
        }
        let tree = Arc::new(
            OrgTree::new(self.inner.backend.directory().units()?)
                .map_err(|e| StoreError::Corrupt(format!("the stored unit tree: {e}")))?,
        );
        if let Ok(mut t) = self.inner.org_tree.write() {
            *t = Some(tree.clone());
        }
        Ok(tree)
    }

    /// One person of the directory.
    pub fn person(&self, id: &PersonId) -> Result<Option<Person>, StoreError> {
        self.inner.backend.directory().person(id)
    }

    /// Everyone in `unit` holding `function`.
    pub fn people_with(
        &self,
        unit: &UnitId,
        function: Function,
    ) -> Result<Vec<Person>, StoreError> {
        self.inner.backend.directory().people_with(unit, function)
    }

    /// How many people work in `unit`.
    pub fn people_count(&self, unit: &UnitId) -> Result<u64, StoreError> {
        self.inner.backend.directory().people_count(unit)
    }

    /// The units directly under `unit`, by id.
    pub fn unit_children(&self, unit: &UnitId) -> Result<Vec<UnitId>, StoreError> {
        self.inner.backend.directory().children(unit)
    }

    /// Register a new API key bound to the directory person `person`, who must exist: the
    /// lifecycle then acts as that person (their functions and scope). One transaction: an
    /// unknown person writes nothing.
    pub fn add_api_key_for(
        &self,
        name: &str,
        key_hash: [u8; 32],
        roles: &[String],
        person: &PersonId,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        self.add_api_key_bound(name, key_hash, roles, Some(person.clone()), actor)
    }

    /// The person the API key `name` is bound to, if any.
    pub fn caller_person(&self, name: &str) -> Result<Option<PersonId>, StoreError> {
        self.inner.backend.directory().caller_person(name)
    }

    /// The enabled API keys bound to `person`.
    pub fn callers_of(&self, person: &PersonId) -> Result<Vec<String>, StoreError> {
        self.inner.backend.directory().callers_of(person)
    }

    /// A person of the directory with what they may act on: their scope from their functions
    /// and unit, over the cached unit tree (`None`: no such person).
    pub fn person_scope(&self, id: &PersonId) -> Result<Option<(Person, Scope)>, StoreError> {
        let Some(person) = self.person(id)? else {
            return Ok(None);
        };
        let scope = self.org_tree()?.scope(&person);
        Ok(Some((person, scope)))
    }

    /// Every lot (without counts).
    pub fn lot_rows(&self) -> Result<Vec<crate::lots::LotRow>, StoreError> {
        self.inner.backend.custody().lots()
    }

    /// The lots a scope names (by kind and unit), by id: an indexed read per lot of the scope,
    /// not a scan of every lot.
    pub fn scope_lots(&self, scope: &Scope) -> Result<Vec<crate::lots::LotRow>, StoreError> {
        self.inner.backend.directory().lots_of(&scope.lots)
    }
}

impl PeopleLookup for Store {
    type Error = StoreError;
    fn person(&self, id: &PersonId) -> Result<Option<Person>, StoreError> {
        Store::person(self, id)
    }
    fn people_with(&self, unit: &UnitId, function: Function) -> Result<Vec<Person>, StoreError> {
        Store::people_with(self, unit, function)
    }
}
