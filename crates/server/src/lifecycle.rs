//! The `LifecycleService`: lots, stock, orders and the custody of keys.
//!
//! Each handler authorises its caller's roles for one [`Operation`], works out who the caller
//! acts as ([`Okey::acting`]: the acting person and the parties they are), turns the request
//! into checked values and lets the store apply the custody table inside its compare-and-set.

use std::sync::Arc;
use std::time::Duration;

use okey_domain::org::LotKind;
use okey_domain::{FoundDecision, KeyState, Operation, Party, Role};
use okey_store::{
    Acting, Actor, ChangeOutcome, KeyChange, KeyEvent, LotKey, LotRow, LotSummary, Meeting, Order,
    OrderState, Receipt, ReceiptKind, Store,
};
use tonic::{Request, Response, Status};

use crate::callers::Principal;
use crate::clock;
use crate::proto;
use crate::receipt_pdf;
use crate::service::Okey;
use crate::status::store_status;

/// Most keys in one batch request.
const MAX_BATCH: usize = 10_000;

/// The audit chain's actor: the caller, and for a portal the person it acts for.
pub(crate) fn actor_of(p: &Principal) -> Actor {
    let name = match &p.acting_for {
        Some(person) => format!("{} for {person}", p.name),
        None => p.name.clone(),
    };
    Actor {
        name,
        role: p.role_names(),
    }
}

impl Okey {
    /// Who the caller acts as. The acting person is the one a portal names in the request
    /// ([`crate::callers::ACTING_PERSON`]), else the directory person the API key is bound to;
    /// their functions and scope come from the directory ([`okey_domain::org::OrgTree::scope`],
    /// over the store's cached unit tree), plus the lots naming them as a delegate. Keys with
    /// the role admin act as the support centre and the IT department, with the role support
    /// as the support centre, bound to a person or not. Refused: a portal call naming nobody,
    /// a person not in the directory, and a manager key bound to nobody.
    pub(crate) fn acting(&self, p: &Principal) -> Result<Acting, Status> {
        let mut central = Vec::new();
        let portal = p.roles.contains(&Role::Portal);
        let person = if portal {
            Some(p.acting_for.clone().ok_or_else(|| {
                Status::permission_denied(format!(
                    "{} is a portal caller acting for nobody: name the person in the {} \
                     metadata",
                    p.name,
                    crate::callers::ACTING_PERSON
                ))
            })?)
        } else {
            if p.roles.contains(&Role::Admin) {
                central.extend([Party::SupportCentre, Party::ItDepartment]);
            } else if p.roles.contains(&Role::Support) {
                central.push(Party::SupportCentre);
            }
            p.person.clone()
        };
        let Some(person) = person else {
            if central.is_empty() && !Self::reads_all(p) {
                return Err(Status::failed_precondition(format!(
                    "the API key {} has the role manager but acts for nobody: create a key \
                     bound to a directory person (okey caller create NAME --role manager \
                     --person ID)",
                    p.name
                )));
            }
            return Ok(Acting {
                actor: actor_of(p),
                person: None,
                central,
                manages: Vec::new(),
            });
        };
        let id = okey_domain::org::PersonId::parse(&person).map_err(crate::status::invalid)?;
        let (_, scope) = self
            .store
            .person_scope(&id)
            .map_err(store_status)?
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "{} acts for {person}, who is not in the directory",
                    p.name
                ))
            })?;
        let lots = self.store.scope_lots(&scope).map_err(store_status)?;
        let mut acting = Acting::from_scope(actor_of(p), id.as_str(), &scope, &lots);
        for c in central {
            if !acting.central.contains(&c) {
                acting.central.push(c);
            }
        }
        for l in self
            .store
            .lots_delegated_to(id.as_str())
            .map_err(store_status)?
        {
            if !acting.manages.contains(&l) {
                acting.manages.push(l);
            }
        }
        Ok(acting)
    }

    /// Whether the caller may read everything (not only its own lots).
    fn reads_all(p: &Principal) -> bool {
        p.roles
            .iter()
            .any(|r| matches!(r, Role::Admin | Role::Support | Role::Auditor))
    }
}

fn kind_to_proto(kind: LotKind) -> proto::LotKind {
    match kind {
        LotKind::School2D => proto::LotKind::LotKind2d,
        LotKind::District1D => proto::LotKind::LotKind1d,
        LotKind::Rectorat => proto::LotKind::Rectorat,
        LotKind::Examen => proto::LotKind::Examen,
    }
}

fn kind_of(k: i32) -> Result<LotKind, Status> {
    match proto::LotKind::try_from(k) {
        Ok(proto::LotKind::LotKind2d) => Ok(LotKind::School2D),
        Ok(proto::LotKind::LotKind1d) => Ok(LotKind::District1D),
        Ok(proto::LotKind::Rectorat) => Ok(LotKind::Rectorat),
        Ok(proto::LotKind::Examen) => Ok(LotKind::Examen),
        _ => Err(Status::invalid_argument(
            "the lot kind must be 2D, 1D, RECTORAT or EXAMEN",
        )),
    }
}

pub(crate) fn state_to_proto(s: Option<KeyState>) -> proto::KeyState {
    match s {
        None => proto::KeyState::None,
        Some(KeyState::Delivered) => proto::KeyState::Delivered,
        Some(KeyState::Reserved) => proto::KeyState::Reserved,
        Some(KeyState::Assigned) => proto::KeyState::Assigned,
        Some(KeyState::HandedOver) => proto::KeyState::HandedOver,
        Some(KeyState::Returned) => proto::KeyState::Returned,
        Some(KeyState::Lost) => proto::KeyState::Lost,
        Some(KeyState::Found) => proto::KeyState::Found,
        Some(KeyState::Expired) => proto::KeyState::Expired,
        Some(KeyState::Scrapped) => proto::KeyState::Scrapped,
        Some(KeyState::Recycled) => proto::KeyState::Recycled,
    }
}

fn state_name_to_proto(s: &Option<String>) -> i32 {
    let parsed = s.as_deref().and_then(|s| s.parse::<KeyState>().ok());
    state_to_proto(parsed) as i32
}

fn lot_to_proto(l: &LotRow, delegates: Vec<String>) -> proto::Lot {
    proto::Lot {
        id: l.id.clone(),
        kind: kind_to_proto(l.kind) as i32,
        unit: l.unit.clone(),
        name: l.name.clone(),
        validity_days: l.validity_days.unwrap_or(0),
        delegates,
        created_at: l.created_at,
    }
}

fn key_to_proto(k: &LotKey) -> proto::Key {
    proto::Key {
        serial: k.serial.clone(),
        state: state_to_proto(k.custody) as i32,
        status: k.status.as_str().to_owned(),
        kind: k.kind.as_str().to_owned(),
        holder: k.holder.clone().unwrap_or_default(),
        lot: k.lot.clone().unwrap_or_default(),
        origin_lot: k.origin_lot.clone().unwrap_or_default(),
        valid_until: k.valid_until.unwrap_or(0),
        active_until: k.active_until.unwrap_or(0),
        return_due: k.return_due.unwrap_or(0),
        reserved_for: k.reserved_for.clone().unwrap_or_default(),
        changed_at: k.changed_at,
    }
}

fn event_to_proto(e: &KeyEvent) -> proto::KeyEvent {
    proto::KeyEvent {
        at: e.at,
        actor: e.actor.clone(),
        action: e.action.clone(),
        state_before: state_name_to_proto(&e.state_before),
        state_after: state_name_to_proto(&e.state_after),
        lot_before: e.lot_before.clone().unwrap_or_default(),
        lot_after: e.lot_after.clone().unwrap_or_default(),
        holder_before: e.holder_before.clone().unwrap_or_default(),
        holder_after: e.holder_after.clone().unwrap_or_default(),
        comment: e.comment.clone().unwrap_or_default(),
    }
}

fn order_to_proto(o: &Order) -> proto::Order {
    proto::Order {
        id: o.id,
        lot: o.lot.clone(),
        quantity: o.quantity,
        state: match o.state {
            OrderState::Open => proto::OrderState::Open,
            OrderState::Fulfilled => proto::OrderState::Fulfilled,
            OrderState::Cancelled => proto::OrderState::Cancelled,
        } as i32,
        comment: o.comment.clone().unwrap_or_default(),
        ordered_by: o.ordered_by.clone(),
        ordered_at: o.ordered_at,
        closed_by: o.closed_by.clone().unwrap_or_default(),
        closed_at: o.closed_at.unwrap_or(0),
        serials: o.serials.clone(),
    }
}

fn receipt_to_proto(r: &Receipt, lot: Option<&LotRow>) -> proto::Receipt {
    proto::Receipt {
        number: r.number.clone(),
        kind: match r.kind {
            ReceiptKind::HandOver => proto::ReceiptKind::Handover,
            ReceiptKind::Return => proto::ReceiptKind::Return,
        } as i32,
        serial: r.serial.clone(),
        lot: r.lot.clone(),
        unit: lot.map(|l| l.unit.clone()).unwrap_or_default(),
        lot_name: lot.map(|l| l.name.clone()).unwrap_or_default(),
        holder: r.holder.clone(),
        staff: r.staff.clone(),
        at: r.at,
        place: r.place.clone().unwrap_or_default(),
        condition: r.condition.clone().unwrap_or_default(),
        until: r.until.unwrap_or(0),
        confirmed_at: r.confirmed_at.unwrap_or(0),
        confirmed_how: r.confirmed_how.clone().unwrap_or_default(),
    }
}

fn summary_to_proto(s: &LotSummary, delegates: Vec<String>) -> proto::LotSummary {
    proto::LotSummary {
        lot: Some(lot_to_proto(&s.lot, delegates)),
        counts: s
            .counts
            .iter()
            .map(|(st, n)| proto::StateCount {
                state: state_to_proto(Some(*st)) as i32,
                count: *n,
            })
            .collect(),
        open_orders: s.open_orders,
    }
}

fn opt(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

fn opt_time(t: u64) -> Option<u64> {
    if t == 0 { None } else { Some(t) }
}

fn batch<T>(items: &[T], what: &str) -> Result<(), Status> {
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(Status::invalid_argument(format!(
            "give 1 to {MAX_BATCH} {what}"
        )));
    }
    Ok(())
}

fn advice(d: &FoundDecision, k: &LotKey) -> String {
    let lot = k.lot.as_deref().unwrap_or("none");
    match d {
        FoundDecision::Scrap => format!("key {} is expired: scrap it", k.serial),
        FoundDecision::RouteToHolder { holder } => format!(
            "key {} belongs to {holder}: route it back to them (if they no longer need it, they \
             return it to the manager of lot {lot})",
            k.serial
        ),
        FoundDecision::ToLotManager => format!(
            "key {} belongs to nobody: hand it to the manager of lot {lot}",
            k.serial
        ),
        FoundDecision::ToItDepartment => format!(
            "key {} belongs to nobody in the Rectorat's lot {lot}: give it to the IT department \
             to recycle or scrap",
            k.serial
        ),
        FoundDecision::BackToOriginLot => format!(
            "key {} was declared lost: it is back in its origin lot {}, delivered and available \
             again (no login before a new hand-over)",
            k.serial,
            k.origin_lot.as_deref().unwrap_or("none")
        ),
        FoundDecision::NothingToDo => format!(
            "key {} is {}: nothing to do",
            k.serial,
            k.custody.map_or("in no lot", KeyState::words)
        ),
    }
}

fn decision_to_proto(d: &FoundDecision) -> proto::FoundDecision {
    match d {
        FoundDecision::Scrap => proto::FoundDecision::Scrap,
        FoundDecision::RouteToHolder { .. } => proto::FoundDecision::RouteToHolder,
        FoundDecision::ToLotManager => proto::FoundDecision::ToLotManager,
        FoundDecision::ToItDepartment => proto::FoundDecision::ToItDepartment,
        FoundDecision::BackToOriginLot => proto::FoundDecision::BackToOriginLot,
        FoundDecision::NothingToDo => proto::FoundDecision::NothingToDo,
    }
}

impl Okey {
    fn change_response(&self, o: &ChangeOutcome) -> proto::KeyChangeResponse {
        let lot = o
            .receipt
            .as_ref()
            .and_then(|r| self.store.lot(&r.lot).ok())
            .map(|s| s.lot);
        proto::KeyChangeResponse {
            key: Some(key_to_proto(&o.key)),
            receipt: o
                .receipt
                .as_ref()
                .map(|r| receipt_to_proto(r, lot.as_ref())),
        }
    }

    /// The receipt `r` asks for (the key's latest, or by number) and the key, if `p` may read
    /// it: a reader of everything, the holder named on it, or a manager of its lot.
    fn readable_receipt(
        &self,
        p: &Principal,
        r: &proto::GetReceiptRequest,
    ) -> Result<(Receipt, LotKey), Status> {
        let acting = self.acting(p)?;
        okey_domain::validate_serial(&r.serial).map_err(crate::status::invalid)?;
        let rec = self.store.key_record(&r.serial).map_err(store_status)?;
        let receipt = rec
            .receipts
            .into_iter()
            .rev()
            .find(|x| r.number.is_empty() || x.number == r.number)
            .ok_or_else(|| Status::not_found(format!("key {} has no such receipt", r.serial)))?;
        let own = acting.person.as_deref() == Some(receipt.holder.as_str());
        if !(Okey::reads_all(p) || own || acting.sees_lot(&receipt.lot)) {
            return Err(Status::permission_denied(format!(
                "{} is neither a party to this receipt nor a manager of lot {}",
                p.name, receipt.lot
            )));
        }
        Ok((receipt, rec.key))
    }

    fn check_sees(&self, p: &Principal, acting: &Acting, lot: &str) -> Result<(), Status> {
        if Self::reads_all(p) || acting.sees_lot(lot) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{} does not manage lot {lot}",
                p.name
            )))
        }
    }
}

#[tonic::async_trait]
impl proto::lifecycle_service_server::LifecycleService for Arc<Okey> {
    #[tracing::instrument(skip_all, fields(op = "CreateLot"))]
    async fn create_lot(
        &self,
        request: Request<proto::CreateLotRequest>,
    ) -> Result<Response<proto::Lot>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::CreateLot)
            .await?;
        let r = request.into_inner();
        let lot = LotRow {
            kind: kind_of(r.kind)?,
            id: r.id,
            unit: r.unit,
            name: r.name,
            validity_days: opt_time(u64::from(r.validity_days)).map(|_| r.validity_days),
            created_at: clock::now(),
        };
        let lot = self
            .store
            .create_lot(lot, &actor_of(&p))
            .map_err(store_status)?;
        Ok(Response::new(lot_to_proto(&lot, Vec::new())))
    }

    #[tracing::instrument(skip_all, fields(op = "SetLotDelegate"))]
    async fn set_lot_delegate(
        &self,
        request: Request<proto::SetLotDelegateRequest>,
    ) -> Result<Response<proto::Lot>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::SetLotDelegate)
            .await?;
        let r = request.into_inner();
        self.store
            .set_lot_delegate(&r.lot, &r.person, r.remove, &actor_of(&p), clock::now())
            .map_err(store_status)?;
        let lot = self.store.lot(&r.lot).map_err(store_status)?;
        let delegates = self.store.lot_delegates(&r.lot).map_err(store_status)?;
        Ok(Response::new(lot_to_proto(&lot.lot, delegates)))
    }

    #[tracing::instrument(skip_all, fields(op = "ListLots"))]
    async fn list_lots(
        &self,
        request: Request<proto::ListLotsRequest>,
    ) -> Result<Response<proto::ListLotsResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ListLots)
            .await?;
        let acting = self.acting(&p)?;
        let mut lots = Vec::new();
        for s in self.store.lots().map_err(store_status)? {
            if Okey::reads_all(&p) || acting.sees_lot(&s.lot.id) {
                let d = self.store.lot_delegates(&s.lot.id).map_err(store_status)?;
                lots.push(summary_to_proto(&s, d));
            }
        }
        Ok(Response::new(proto::ListLotsResponse { lots }))
    }

    #[tracing::instrument(skip_all, fields(op = "ShowLot"))]
    async fn show_lot(
        &self,
        request: Request<proto::LotRef>,
    ) -> Result<Response<proto::LotDetail>, Status> {
        let p = self.callers.authorize(&request, Operation::ShowLot).await?;
        let id = request.into_inner().id;
        let acting = self.acting(&p)?;
        let summary = self.store.lot(&id).map_err(store_status)?;
        self.check_sees(&p, &acting, &id)?;
        let keys = self.store.lot_keys(&id).map_err(store_status)?;
        let orders = self.store.orders(Some(&id)).map_err(store_status)?;
        let d = self.store.lot_delegates(&id).map_err(store_status)?;
        Ok(Response::new(proto::LotDetail {
            summary: Some(summary_to_proto(&summary, d)),
            keys: keys.iter().map(key_to_proto).collect(),
            orders: orders.iter().map(order_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "RegisterKeys"))]
    async fn register_keys(
        &self,
        request: Request<proto::RegisterKeysRequest>,
    ) -> Result<Response<proto::KeysResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::RegisterKeys)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        batch(&r.serials, "serials")?;
        let changes = r
            .serials
            .into_iter()
            .map(|s| {
                (
                    s,
                    KeyChange::Register {
                        lot: r.lot.clone(),
                        valid_until: opt_time(r.valid_until),
                    },
                )
            })
            .collect();
        let done = self
            .store
            .change_keys(changes, &acting, clock::now())
            .map_err(store_status)?;
        Ok(Response::new(proto::KeysResponse {
            keys: done.iter().map(|o| key_to_proto(&o.key)).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "MoveKeys"))]
    async fn move_keys(
        &self,
        request: Request<proto::MoveKeysRequest>,
    ) -> Result<Response<proto::KeysResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::MoveKeys)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        batch(&r.serials, "serials")?;
        let changes = r
            .serials
            .into_iter()
            .map(|s| {
                (
                    s,
                    KeyChange::Move {
                        to: r.to_lot.clone(),
                    },
                )
            })
            .collect();
        let done = self
            .store
            .change_keys(changes, &acting, clock::now())
            .map_err(store_status)?;
        Ok(Response::new(proto::KeysResponse {
            keys: done.iter().map(|o| key_to_proto(&o.key)).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "OrderKeys"))]
    async fn order_keys(
        &self,
        request: Request<proto::OrderKeysRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::OrderKeys)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let o = self
            .store
            .order_keys(&r.lot, r.quantity, opt(r.comment), &acting, clock::now())
            .map_err(store_status)?;
        Ok(Response::new(order_to_proto(&o)))
    }

    #[tracing::instrument(skip_all, fields(op = "CloseOrder"))]
    async fn close_order(
        &self,
        request: Request<proto::CloseOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::CloseOrder)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        if r.serials.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "give at most {MAX_BATCH} serials"
            )));
        }
        let o = self
            .store
            .close_order(r.id, r.serials, r.cancel, &acting, clock::now())
            .map_err(store_status)?;
        Ok(Response::new(order_to_proto(&o)))
    }

    #[tracing::instrument(skip_all, fields(op = "ReserveKeys"))]
    async fn reserve_keys(
        &self,
        request: Request<proto::ReserveKeysRequest>,
    ) -> Result<Response<proto::KeysResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ReserveKeys)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        batch(&r.persons, "persons")?;
        let meeting = match (r.meeting_at, opt(r.meeting_place)) {
            (0, None) => None,
            (at, Some(place)) if at > 0 => Some(Meeting { at, place }),
            _ => {
                return Err(Status::invalid_argument(
                    "give the hand-over meeting's date and place together",
                ));
            }
        };
        let keys = self
            .store
            .reserve_keys(&r.lot, r.persons, meeting, &acting, clock::now())
            .map_err(store_status)?;
        Ok(Response::new(proto::KeysResponse {
            keys: keys.iter().map(key_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ShowKey"))]
    async fn show_key(
        &self,
        request: Request<proto::KeyRef>,
    ) -> Result<Response<proto::KeyDetail>, Status> {
        let p = self.callers.authorize(&request, Operation::ShowKey).await?;
        let serial = request.into_inner().serial;
        okey_domain::validate_serial(&serial).map_err(crate::status::invalid)?;
        let acting = self.acting(&p)?;
        let rec = self.store.key_record(&serial).map_err(store_status)?;
        let own = rec.key.holder.is_some() && rec.key.holder == acting.person;
        let in_scope = rec.key.lot.as_deref().is_some_and(|l| acting.sees_lot(l));
        if !(Okey::reads_all(&p) || own || in_scope) {
            return Err(Status::permission_denied(format!(
                "{} neither holds key {serial} nor manages its lot",
                p.name
            )));
        }
        let lots: Vec<Option<LotRow>> = rec
            .receipts
            .iter()
            .map(|r| self.store.lot(&r.lot).ok().map(|s| s.lot))
            .collect();
        Ok(Response::new(proto::KeyDetail {
            key: Some(key_to_proto(&rec.key)),
            history: rec.history.iter().map(event_to_proto).collect(),
            receipts: rec
                .receipts
                .iter()
                .zip(&lots)
                .map(|(r, l)| receipt_to_proto(r, l.as_ref()))
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ChangeKey"))]
    async fn change_key(
        &self,
        request: Request<proto::ChangeKeyRequest>,
    ) -> Result<Response<proto::KeyChangeResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::KeyAction)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        use proto::KeyChangeAction as A;
        let person = || {
            opt(r.person.clone())
                .ok_or_else(|| Status::invalid_argument("this action needs a person (the holder)"))
        };
        let change = match A::try_from(r.action) {
            Ok(A::Lost) => KeyChange::Lost {
                comment: opt(r.comment.clone()),
            },
            Ok(A::Assign) => KeyChange::Assign { holder: person()? },
            Ok(A::Unassign) => KeyChange::Unassign,
            Ok(A::Reserve) => KeyChange::Reserve { person: person()? },
            Ok(A::Unreserve) => KeyChange::Unreserve,
            Ok(A::Deactivate) => KeyChange::Deactivate {
                at: opt_time(r.at),
                comment: opt(r.comment.clone()),
            },
            Ok(A::Expire) => KeyChange::Expire,
            Ok(A::Scrap) => KeyChange::Scrap,
            Ok(A::Recycle) => KeyChange::Recycle,
            Ok(A::Reissue) => KeyChange::Reissue,
            Ok(A::Restock) => KeyChange::Restock,
            Ok(A::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument("an action is required"));
            }
        };
        // A deactivation in the future is a scheduled end of function: the key keeps logging
        // in until then, when the scheduled job puts its return on the lot manager's list.
        let out = self
            .store
            .change_key(&r.serial, change, &acting, clock::now())
            .map_err(store_status)?;
        Ok(Response::new(self.change_response(&out)))
    }

    #[tracing::instrument(skip_all, fields(op = "HandOver"))]
    async fn hand_over(
        &self,
        request: Request<proto::HandOverRequest>,
    ) -> Result<Response<proto::HandOverResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::HandOverKey)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        batch(&r.items, "hand-overs")?;
        let changes = r
            .items
            .into_iter()
            .map(|i| {
                (
                    i.serial,
                    KeyChange::HandOver {
                        to: i.to,
                        place: opt(i.place),
                        until: opt_time(i.until),
                    },
                )
            })
            .collect();
        let done = self
            .store
            .change_keys(changes, &acting, clock::now())
            .map_err(store_status)?;
        Ok(Response::new(proto::HandOverResponse {
            handed_over: done.iter().map(|o| self.change_response(o)).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ReturnKey"))]
    async fn return_key(
        &self,
        request: Request<proto::ReturnKeyRequest>,
    ) -> Result<Response<proto::KeyChangeResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ReturnKey)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let condition = opt(r.condition).unwrap_or_else(|| "good".into());
        let out = self
            .store
            .change_key(
                &r.serial,
                KeyChange::Return {
                    condition: Some(condition),
                    place: opt(r.place),
                },
                &acting,
                clock::now(),
            )
            .map_err(store_status)?;
        Ok(Response::new(self.change_response(&out)))
    }

    #[tracing::instrument(skip_all, fields(op = "FoundKey"))]
    async fn found_key(
        &self,
        request: Request<proto::KeyRef>,
    ) -> Result<Response<proto::FoundKeyResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::FoundKey)
            .await?;
        let acting = self.acting(&p)?;
        let serial = request.into_inner().serial;
        let f = self
            .store
            .found_key(&serial, &acting, clock::now())
            .map_err(store_status)?;
        Ok(Response::new(proto::FoundKeyResponse {
            decision: decision_to_proto(&f.decision) as i32,
            advice: advice(&f.decision, &f.key),
            key: Some(key_to_proto(&f.key)),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ConfirmHandOver"))]
    async fn confirm_hand_over(
        &self,
        request: Request<proto::ConfirmHandOverRequest>,
    ) -> Result<Response<proto::Receipt>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ConfirmHandOver)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        if r.receipt_number.is_empty() || r.receipt_number.len() > 64 {
            return Err(Status::invalid_argument("a receipt number is required"));
        }
        let rec = self
            .store
            .confirm_handover(
                &r.serial,
                &r.receipt_number,
                "receipt",
                &acting,
                clock::now(),
            )
            .map_err(store_status)?;
        let lot = self.store.lot(&rec.lot).ok().map(|s| s.lot);
        Ok(Response::new(receipt_to_proto(&rec, lot.as_ref())))
    }

    #[tracing::instrument(skip_all, fields(op = "ListMyKeys"))]
    async fn list_my_keys(
        &self,
        request: Request<proto::ListMyKeysRequest>,
    ) -> Result<Response<proto::KeysResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ListMyKeys)
            .await?;
        let acting = self.acting(&p)?;
        let Some(person) = acting.person.as_deref() else {
            return Err(Status::failed_precondition(format!(
                "{} acts for nobody: only a person holds keys",
                p.name
            )));
        };
        let keys = self.store.keys_held_by(person).map_err(store_status)?;
        Ok(Response::new(proto::KeysResponse {
            keys: keys.iter().map(key_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ChangeHolderPin"))]
    async fn change_holder_pin(
        &self,
        request: Request<proto::ChangeHolderPinRequest>,
    ) -> Result<Response<proto::Key>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ChangeHolderPin)
            .await?;
        let acting = self.acting(&p)?;
        let mut r = request.into_inner();
        let pin = zeroize::Zeroizing::new(std::mem::take(&mut r.pin));
        let code = zeroize::Zeroizing::new(std::mem::take(&mut r.code));
        okey_domain::validate_serial(&r.serial).map_err(crate::status::invalid)?;
        let Some(holder) = acting.person.clone() else {
            return Err(Status::permission_denied(
                "only a person changes the PIN of the key they hold",
            ));
        };
        self.requests
            .pin_policy()
            .check(&pin)
            .map_err(|e| Status::invalid_argument(format!("pin: {e}")))?;
        let pin =
            okey_otp::Pin::new(&pin).map_err(|e| Status::invalid_argument(format!("pin: {e}")))?;
        if code.is_empty() || code.len() > 10 {
            return Err(Status::invalid_argument(
                "code: type the code the key shows now, without the PIN",
            ));
        }
        let outcome = self
            .store
            .change_pin_as_holder(&r.serial, &holder, &code, &pin, clock::now(), &acting.actor)
            .await
            .map_err(store_status)?;
        if !outcome.accepted {
            return Err(Status::failed_precondition(format!(
                "the code was not accepted ({}): the PIN is unchanged",
                outcome.reason.as_str()
            )));
        }
        let rec = self.store.key_record(&r.serial).map_err(store_status)?;
        Ok(Response::new(key_to_proto(&rec.key)))
    }

    #[tracing::instrument(skip_all, fields(op = "GetReceipt"))]
    async fn get_receipt(
        &self,
        request: Request<proto::GetReceiptRequest>,
    ) -> Result<Response<proto::Receipt>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::KeyReceipt)
            .await?;
        let r = request.into_inner();
        let (receipt, _key) = self.readable_receipt(&p, &r)?;
        let lot = self.store.lot(&receipt.lot).ok().map(|s| s.lot);
        Ok(Response::new(receipt_to_proto(&receipt, lot.as_ref())))
    }

    #[tracing::instrument(skip_all, fields(op = "GetReceiptPdf"))]
    async fn get_receipt_pdf(
        &self,
        request: Request<proto::GetReceiptRequest>,
    ) -> Result<Response<proto::ReceiptPdf>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::KeyReceipt)
            .await?;
        let r = request.into_inner();
        let offset = r.utc_offset_minutes;
        if offset.abs() > receipt_pdf::MAX_UTC_OFFSET_MINUTES {
            return Err(Status::invalid_argument(format!(
                "the offset from UTC must be within ±{} minutes",
                receipt_pdf::MAX_UTC_OFFSET_MINUTES
            )));
        }
        let (receipt, key) = self.readable_receipt(&p, &r)?;
        let lot = self.store.lot(&receipt.lot).ok().map(|s| s.lot);
        let store = self.store.clone();
        let number = receipt.number.clone();
        let pdf = tokio::task::spawn_blocking(move || {
            receipt_pdf::render(&store, &receipt, &key, lot.as_ref(), offset)
        })
        .await
        .map_err(|e| Status::internal(format!("the receipt renderer stopped: {e}")))?
        .map_err(|e| match e {
            receipt_pdf::PrintError::Store(e) => store_status(e),
            e @ receipt_pdf::PrintError::Document { .. } => {
                Status::failed_precondition(e.to_string())
            }
        })?;
        Ok(Response::new(proto::ReceiptPdf { number, pdf }))
    }

    #[tracing::instrument(skip_all, fields(op = "RunScheduledJobs"))]
    async fn run_scheduled_jobs(
        &self,
        request: Request<proto::RunScheduledJobsRequest>,
    ) -> Result<Response<proto::RunScheduledJobsResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::RunScheduledJobs)
            .await?;
        let events = self
            .store
            .run_due(clock::now(), &actor_of(&p))
            .map_err(store_status)?;
        self.store
            .remind_requests(
                self.requests.remind_after_days.clone(),
                &actor_of(&p),
                clock::now(),
            )
            .map_err(store_status)?;
        self.store
            .expire_requests(self.requests.expiry(), &actor_of(&p), clock::now())
            .map_err(store_status)?;
        Ok(Response::new(proto::RunScheduledJobsResponse {
            events: events
                .into_iter()
                .map(|e| proto::DueEvent {
                    serial: e.serial,
                    lot: e.lot.unwrap_or_default(),
                    action: e.action.as_str().to_owned(),
                    holder: e.holder.unwrap_or_default(),
                })
                .collect(),
        }))
    }
}

/// Run the scheduled job every `every` until the store is dropped: keys past their validity
/// end are marked expired, and handed-over keys past their deactivation time go on their lot
/// manager's list (each change audited as `okey-scheduler`); validators are reminded of
/// waiting requests, and requests left too long expire (`[requests]`).
pub(crate) fn spawn_scheduler(
    store: Store,
    every: Duration,
    requests: crate::config::RequestsConfig,
) -> tokio::task::JoinHandle<()> {
    let remind_after_days = requests.remind_after_days.clone();
    let expiry = requests.expiry();
    tokio::spawn(async move {
        let actor = Actor::new("okey-scheduler", "scheduler");
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let s = store.clone();
            let a = actor.clone();
            match tokio::task::spawn_blocking(move || s.run_due(clock::now(), &a)).await {
                Ok(Ok(events)) => {
                    for e in events {
                        tracing::info!(
                            serial = %e.serial,
                            lot = e.lot.as_deref().unwrap_or(""),
                            action = e.action.as_str(),
                            "scheduled key change; the lot manager is to be told"
                        );
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "the scheduled key job failed"),
                Err(e) => tracing::error!(error = %e, "the scheduled key job panicked"),
            }
            let (s, a, days) = (store.clone(), actor.clone(), remind_after_days.clone());
            match tokio::task::spawn_blocking(move || s.remind_requests(days, &a, clock::now()))
                .await
            {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    tracing::info!(reminders = n, "validators reminded of waiting requests")
                }
                Ok(Err(e)) => tracing::error!(error = %e, "the request reminder job failed"),
                Err(e) => tracing::error!(error = %e, "the request reminder job panicked"),
            }
            let (s, a) = (store.clone(), actor.clone());
            match tokio::task::spawn_blocking(move || s.expire_requests(expiry, &a, clock::now()))
                .await
            {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(expired = n, "requests left too long expired"),
                Ok(Err(e)) => tracing::error!(error = %e, "the request expiry job failed"),
                Err(e) => tracing::error!(error = %e, "the request expiry job panicked"),
            }
        }
    })
}
