//! The `DirectoryService`: loading the directory from the administration's CSV exports, and
//! showing one person or unit.
//!
//! An import arrives as a stream of chunks of the two files, so a directory of 300,000 people
//! passes gRPC's message limit; the server keeps the bytes (bounded), then parses them with
//! [`okey_intake::directory::CsvDirectory`] and lets the store check and write everything in one
//! transaction, or nothing.

use std::sync::Arc;

use okey_domain::org::{LotRef, OrgTree, Person, PersonId, Scope, UnitId, UnitKind};
use okey_domain::{Operation, Role};
use okey_intake::directory::{CsvDirectory, DirectorySource};
use okey_store::{Acting, LotRow, Store};
use tonic::{Request, Response, Status, Streaming};

use crate::callers::Principal;
use crate::lifecycle::actor_of;
use crate::proto;
use crate::service::Okey;
use crate::status::{invalid, shown, store_status};

/// Largest chunk of a file.
pub const MAX_CHUNK: usize = 1 << 20;
/// Largest file.
pub const MAX_FILE: usize = 256 << 20;

/// One file being received.
struct Upload {
    name: Option<String>,
    bytes: Vec<u8>,
}

impl Upload {
    fn new() -> Upload {
        Upload {
            name: None,
            bytes: Vec::new(),
        }
    }

    fn push(&mut self, default: &str, chunk: proto::DirectoryChunk) -> Result<(), Status> {
        if self.name.is_none() {
            let name = if chunk.name.is_empty() {
                default.to_owned()
            } else {
                chunk.name
            };
            if name.chars().count() > 100 || name.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "the file name {} must be at most 100 printable characters",
                    shown(&name)
                )));
            }
            self.name = Some(name);
        }
        if chunk.data.len() > MAX_CHUNK {
            return Err(invalid(format!(
                "a chunk carries at most {MAX_CHUNK} bytes, this one {}",
                chunk.data.len()
            )));
        }
        if self.bytes.len() + chunk.data.len() > MAX_FILE {
            return Err(invalid(format!(
                "{} is larger than {} MiB",
                self.name.as_deref().unwrap_or(default),
                MAX_FILE >> 20
            )));
        }
        self.bytes.extend_from_slice(&chunk.data);
        Ok(())
    }

    fn name(&self, default: &str) -> String {
        self.name.clone().unwrap_or_else(|| default.to_owned())
    }
}

fn lot_text(l: &LotRef) -> String {
    format!("{} {}", l.kind, l.unit)
}

fn person_ref(p: &Person) -> proto::PersonRef {
    proto::PersonRef {
        id: p.id.as_str().to_owned(),
        name: p.name.clone(),
    }
}

impl Okey {
    /// Whether the caller may see the people and units whose keys come from `home`: every
    /// reader role; a person acting centrally (the support centre, the IT department); a lot
    /// manager when `home` is a lot their functions give them (`scope`) or one naming them as
    /// a delegate.
    fn sees_home(
        p: &Principal,
        viewer: Option<&(Acting, Scope)>,
        home: Option<&LotRef>,
        lots: &[LotRow],
    ) -> bool {
        if p.roles
            .iter()
            .any(|r| matches!(r, Role::Admin | Role::Support | Role::Auditor))
        {
            return true;
        }
        let Some((acting, scope)) = viewer else {
            return false;
        };
        if !acting.central.is_empty() {
            return true;
        }
        home.is_some_and(|h| {
            scope.manages(h.kind, &h.unit)
                || lots.iter().any(|l| {
                    l.kind == h.kind && l.unit == h.unit.as_str() && acting.manages.contains(&l.id)
                })
        })
    }

    fn person_entry(
        &self,
        tree: &OrgTree,
        person: Person,
        scope: &Scope,
        admin: bool,
    ) -> Result<proto::DirectoryPerson, Status> {
        let unit = tree.unit(&person.unit);
        let (manager, second_manager, manager_error) = match tree.manager(&person, &self.store) {
            Ok(n1) => {
                let n2 = match &n1 {
                    Some(_) => tree.second_manager(&person, &self.store).ok().flatten(),
                    None => None,
                };
                (n1, n2, String::new())
            }
            Err(e) => (None, None, e.to_string()),
        };
        let callers = if admin {
            self.store.callers_of(&person.id).map_err(store_status)?
        } else {
            Vec::new()
        };
        Ok(proto::DirectoryPerson {
            id: person.id.as_str().to_owned(),
            name: person.name.clone(),
            email: person.email.clone(),
            unit: person.unit.as_str().to_owned(),
            unit_name: unit.map(|u| u.name.clone()).unwrap_or_default(),
            unit_kind: unit.map(|u| u.kind.name().to_owned()).unwrap_or_default(),
            functions: person
                .functions
                .iter()
                .map(|f| f.name().to_owned())
                .collect(),
            explicit_manager: person
                .manager
                .as_ref()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default(),
            manager: manager.as_ref().map(person_ref),
            second_manager: second_manager.as_ref().map(person_ref),
            manager_error,
            manages: scope.lots.iter().map(lot_text).collect(),
            found_key_desk: scope.found_key_desk,
            recycling: scope.recycling,
            callers,
        })
    }

    fn unit_entry(&self, tree: &OrgTree, id: &UnitId) -> Result<proto::DirectoryUnit, Status> {
        let unit = tree
            .unit(id)
            .ok_or_else(|| Status::not_found(format!("no person or unit {id} in the directory")))?;
        let parent = unit.parent.as_ref().and_then(|p| tree.unit(p));
        let (home_lot, lot_error) = match tree.home_lot(id) {
            Ok(l) => (lot_text(&l), String::new()),
            Err(e) => (String::new(), e.to_string()),
        };
        Ok(proto::DirectoryUnit {
            id: unit.id.as_str().to_owned(),
            name: unit.name.clone(),
            kind: unit.kind.name().to_owned(),
            parent: unit
                .parent
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            parent_name: parent.map(|p| p.name.clone()).unwrap_or_default(),
            under_contract: matches!(
                unit.kind,
                UnitKind::School {
                    under_contract: true,
                    ..
                }
            ),
            home_lot,
            lot_error,
            people: self.store.people_count(id).map_err(store_status)?,
            children: self
                .store
                .unit_children(id)
                .map_err(store_status)?
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
        })
    }
}

fn import_blocking(
    store: &Store,
    units: Upload,
    people: Upload,
    actor: &okey_store::Actor,
) -> Result<proto::DirectoryImportResponse, Status> {
    let (units_name, people_name) = (units.name("units.csv"), people.name("people.csv"));
    let mut source = CsvDirectory::new(
        &units_name,
        units.bytes.as_slice(),
        &people_name,
        people.bytes.as_slice(),
    );
    let mut unit_rows = Vec::new();
    source.units(&mut |u| unit_rows.push(u)).map_err(invalid)?;
    let mut people_rows = Vec::new();
    source
        .people(&mut |p| people_rows.push(p))
        .map_err(invalid)?;
    let (units_read, people_read) = (unit_rows.len() as u64, people_rows.len() as u64);
    let done = store
        .import_directory(unit_rows, people_rows, actor)
        .map_err(store_status)?;
    Ok(proto::DirectoryImportResponse {
        units_read,
        people_read,
        units_created: done.units_created,
        units_updated: done.units_updated,
        people_created: done.people_created,
        people_updated: done.people_updated,
    })
}

#[tonic::async_trait]
impl proto::directory_service_server::DirectoryService for Arc<Okey> {
    #[tracing::instrument(skip_all, fields(op = "ImportDirectory"))]
    async fn import_directory(
        &self,
        request: Request<Streaming<proto::DirectoryChunk>>,
    ) -> Result<Response<proto::DirectoryImportResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ImportDirectory)
            .await?;
        let mut stream = request.into_inner();
        let (mut units, mut people) = (Upload::new(), Upload::new());
        while let Some(chunk) = stream.message().await? {
            match proto::DirectoryFile::try_from(chunk.file) {
                Ok(proto::DirectoryFile::Units) => units.push("units.csv", chunk)?,
                Ok(proto::DirectoryFile::People) => people.push("people.csv", chunk)?,
                _ => {
                    return Err(invalid(
                        "each chunk names its file: DIRECTORY_FILE_UNITS or DIRECTORY_FILE_PEOPLE",
                    ));
                }
            }
        }
        let store = self.store.clone();
        let actor = actor_of(&p);
        let done =
            tokio::task::spawn_blocking(move || import_blocking(&store, units, people, &actor))
                .await
                .map_err(|_| Status::internal("the directory import stopped"))??;
        tracing::info!(
            units = done.units_read,
            people = done.people_read,
            "directory imported"
        );
        Ok(Response::new(done))
    }

    #[tracing::instrument(skip_all, fields(op = "ShowDirectoryEntry"))]
    async fn show_directory_entry(
        &self,
        request: Request<proto::DirectoryRef>,
    ) -> Result<Response<proto::DirectoryEntry>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ShowDirectory)
            .await?;
        let id = request.into_inner().id;
        let as_person = PersonId::parse(&id);
        let as_unit = UnitId::parse(&id);
        if as_person.is_err() && as_unit.is_err() {
            return Err(invalid(format!(
                "{} is neither a person id nor a unit id",
                shown(&id)
            )));
        }
        let readers = p
            .roles
            .iter()
            .any(|r| matches!(r, Role::Admin | Role::Support | Role::Auditor));
        let viewer = if readers {
            None
        } else {
            let acting = self.acting(&p)?;
            let scope = match acting.person.as_deref().map(PersonId::parse) {
                Some(Ok(me)) => self
                    .store
                    .person_scope(&me)
                    .map_err(store_status)?
                    .map(|(_, s)| s)
                    .unwrap_or_default(),
                _ => Scope::default(),
            };
            Some((acting, scope))
        };
        let tree = self.store.org_tree().map_err(store_status)?;
        let lots = if readers {
            Vec::new()
        } else {
            self.store.lot_rows().map_err(store_status)?
        };
        let refused = || {
            Status::permission_denied(format!(
                "{} may see only the people and units of the lots they manage",
                p.name
            ))
        };
        if let Ok(pid) = &as_person
            && let Some((person, scope)) = self.store.person_scope(pid).map_err(store_status)?
        {
            let own = viewer
                .as_ref()
                .and_then(|(a, _)| a.person.as_deref())
                .is_some_and(|me| me == pid.as_str());
            let home = tree.home_lot(&person.unit).ok();
            if !own && !Okey::sees_home(&p, viewer.as_ref(), home.as_ref(), &lots) {
                return Err(refused());
            }
            let admin = p.roles.contains(&Role::Admin);
            let entry = self.person_entry(&tree, person, &scope, admin)?;
            return Ok(Response::new(proto::DirectoryEntry {
                entry: Some(proto::directory_entry::Entry::Person(entry)),
            }));
        }
        let uid = as_unit
            .map_err(|_| Status::not_found(format!("no person {} in the directory", shown(&id))))?;
        let home = tree.home_lot(&uid).ok();
        if !Okey::sees_home(&p, viewer.as_ref(), home.as_ref(), &lots) {
            return Err(refused());
        }
        let unit = self.unit_entry(&tree, &uid)?;
        Ok(Response::new(proto::DirectoryEntry {
            entry: Some(proto::directory_entry::Entry::Unit(unit)),
        }))
    }
}
