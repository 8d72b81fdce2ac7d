//! Who may do what in the lifecycle, by function and scope: every lifecycle operation × every
//! function of the directory × a lot in the person's scope and one outside it, through a real
//! `okey serve`, by a portal caller acting for directory people (`okey-acting-person`).
//!
//! The expected outcome is written here from the words, not from the server's tables:
//! a head of school (and their deputy and delegate) manages only their school's lot; an IEN or
//! ATICE only their district's lot; the exams office only the Examen lot; the support centre the
//! Rectorat lot and the found-key desk, and with the IT department it forms the Rectorat's
//! central desks, which act on every lot; recycling is the IT department's alone; a school
//! director, an acting director, an ENT correspondent and other staff manage no lot. A lot
//! manager does, on their own lot only: see it and its keys, move keys out of it, order,
//! cancel an order, reserve, assign, hand over, take back, declare lost, read receipts. Keys
//! in no lot are registered and found keys looked up by the central desks only; scrapping is
//! theirs too. The holder signs their own hand-over receipt: a lot manager cannot sign for them.
//! The request operations (show, approve, cancel, offer and list pickup slots) are covered the
//! same way, with the scope written above [`ReqOp`]; support cases at the end.

use okey_e2e::{Client, RFC_SECRET_HEX, Server, hotp_token};
use okey_server::proto;
use tonic::Code;

const UNITS: &str = "id,kind,name,parent,under_contract
RECTORAT,rectorat,Rectorat,,
SUPPORT,support_centre,Centre de support,RECTORAT,
DSI,it_department,DSI,RECTORAT,
DEC,exams_office,Division des examens,RECTORAT,
9740001H,school,Lycée A,RECTORAT,yes
0750654D,school,Lycée B,RECTORAT,yes
CIRC-1,district,Circonscription 1,RECTORAT,
CIRC-2,district,Circonscription 2,RECTORAT,
9740100R,school,École C,CIRC-1,yes
9740200Z,school,École D,CIRC-2,yes
";

/// One person per function, each in the unit where the function is held.
const PEOPLE: &str = "id,name,email,unit,functions
f.head,Head,f.head@ac-example.fr,9740001H,head
f.deputy,Deputy,f.deputy@ac-example.fr,9740001H,deputy
f.delegate,Delegate,f.delegate@ac-example.fr,9740001H,delegate
f.director,Director,f.director@ac-example.fr,9740100R,director
f.acting,Acting director,f.acting@ac-example.fr,9740100R,acting_director
f.ien,Ien,f.ien@ac-example.fr,CIRC-1,ien
f.atice,Atice,f.atice@ac-example.fr,CIRC-1,atice
f.support,Support,f.support@ac-example.fr,SUPPORT,support
f.it,It,f.it@ac-example.fr,DSI,it
f.exams,Exams,f.exams@ac-example.fr,DEC,exams
f.ent,Ent,f.ent@ac-example.fr,9740001H,ent
f.staff,Staff,f.staff@ac-example.fr,9740001H,staff
";

/// (id, kind, unit).
const LOTS: [(&str, i32, &str); 6] = [
    ("2D-A", proto::LotKind::LotKind2d as i32, "9740001H"),
    ("2D-B", proto::LotKind::LotKind2d as i32, "0750654D"),
    ("1D-C1", proto::LotKind::LotKind1d as i32, "CIRC-1"),
    ("1D-C2", proto::LotKind::LotKind1d as i32, "CIRC-2"),
    ("RECT", proto::LotKind::Rectorat as i32, "RECTORAT"),
    ("EXAM", proto::LotKind::Examen as i32, "DEC"),
];

/// What a function is, in the words.
#[derive(Clone, Copy, PartialEq)]
enum Desk {
    /// Manages the one lot given (their school's, their district's, the Examen lot).
    Manager,
    /// The support centre: the Rectorat lot, the found-key desk, every lot as a central desk.
    Support,
    /// The IT department: as the support centre, and recycling.
    It,
    /// Manages nothing.
    Nothing,
}

/// (person, desk, the lot in their scope, a lot outside it). For those who manage nothing,
/// the first lot is the one of their own unit's keys.
const FUNCTIONS: [(&str, Desk, &str, &str); 12] = [
    ("f.head", Desk::Manager, "2D-A", "2D-B"),
    ("f.deputy", Desk::Manager, "2D-A", "2D-B"),
    ("f.delegate", Desk::Manager, "2D-A", "2D-B"),
    ("f.director", Desk::Nothing, "1D-C1", "1D-C2"),
    ("f.acting", Desk::Nothing, "1D-C1", "1D-C2"),
    ("f.ien", Desk::Manager, "1D-C1", "1D-C2"),
    ("f.atice", Desk::Manager, "1D-C1", "1D-C2"),
    ("f.support", Desk::Support, "RECT", "2D-B"),
    ("f.it", Desk::It, "RECT", "2D-B"),
    ("f.exams", Desk::Manager, "EXAM", "RECT"),
    ("f.ent", Desk::Nothing, "2D-A", "2D-B"),
    ("f.staff", Desk::Nothing, "2D-A", "2D-B"),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    ListLots,
    ShowLot,
    ShowKey,
    Register,
    Move,
    Order,
    CancelOrder,
    Reserve,
    Assign,
    HandOver,
    Return,
    Lost,
    Found,
    Scrap,
    Recycle,
    Confirm,
    Receipt,
}

const OPS: [Op; 17] = [
    Op::ListLots,
    Op::ShowLot,
    Op::ShowKey,
    Op::Register,
    Op::Move,
    Op::Order,
    Op::CancelOrder,
    Op::Reserve,
    Op::Assign,
    Op::HandOver,
    Op::Return,
    Op::Lost,
    Op::Found,
    Op::Scrap,
    Op::Recycle,
    Op::Confirm,
    Op::Receipt,
];

/// The expected outcome, from the module's words.
fn allowed(desk: Desk, in_scope: bool, op: Op) -> bool {
    let manager_ops = matches!(
        op,
        Op::ListLots
            | Op::ShowLot
            | Op::ShowKey
            | Op::Move
            | Op::Order
            | Op::CancelOrder
            | Op::Reserve
            | Op::Assign
            | Op::HandOver
            | Op::Return
            | Op::Lost
            | Op::Receipt
    );
    let central_ops =
        manager_ops || matches!(op, Op::Register | Op::Found | Op::Scrap | Op::Confirm);
    match desk {
        Desk::Nothing => false,
        Desk::Manager => in_scope && manager_ops,
        Desk::Support => central_ops,
        Desk::It => central_ops || op == Op::Recycle,
    }
}

/// The holder of every key handed over here.
const HOLDER: &str = "h.holder";

struct Bench {
    server: Server,
    admin: Client,
    next: u32,
}

impl Bench {
    fn serial(&mut self) -> String {
        self.next += 1;
        format!("S{:04}", self.next)
    }

    /// A key registered into `lot` by the admin (the central desks), delivered.
    async fn delivered(&mut self, lot: &str) -> String {
        let s = self.serial();
        self.admin
            .lifecycle
            .register_keys(proto::RegisterKeysRequest {
                lot: lot.into(),
                serials: vec![s.clone()],
                valid_until: 0,
            })
            .await
            .expect("register");
        s
    }

    /// A key of `lot` handed over to [`HOLDER`]; its receipt number.
    async fn handed_over(&mut self, lot: &str) -> (String, String) {
        let s = self.delivered(lot).await;
        let r = self
            .admin
            .lifecycle
            .hand_over(proto::HandOverRequest {
                items: vec![proto::HandOverItem {
                    serial: s.clone(),
                    to: HOLDER.into(),
                    place: String::new(),
                    until: 0,
                }],
            })
            .await
            .expect("hand over")
            .into_inner();
        let number = r.handed_over[0]
            .receipt
            .as_ref()
            .expect("receipt")
            .number
            .clone();
        (s, number)
    }

    async fn change(&mut self, serial: &str, action: proto::KeyChangeAction) {
        self.admin
            .lifecycle
            .change_key(proto::ChangeKeyRequest {
                serial: serial.into(),
                action: action as i32,
                ..Default::default()
            })
            .await
            .expect("admin change");
    }

    /// Prepare what `op` acts on in `lot`, then run it as `c`: Ok(true) done, Ok(false)
    /// refused with PERMISSION_DENIED, Err(status) anything else.
    async fn run(&mut self, c: &mut Client, op: Op, lot: &str) -> Result<bool, tonic::Status> {
        let elsewhere = if lot == "RECT" { "EXAM" } else { "RECT" };
        let l = &mut c.lifecycle;
        let r: Result<(), tonic::Status> = match op {
            Op::ListLots => {
                let lots = l
                    .list_lots(proto::ListLotsRequest::default())
                    .await?
                    .into_inner()
                    .lots;
                return Ok(lots
                    .iter()
                    .any(|s| s.lot.as_ref().is_some_and(|x| x.id == lot)));
            }
            Op::ShowLot => l.show_lot(proto::LotRef { id: lot.into() }).await.map(drop),
            Op::ShowKey => {
                let s = self.delivered(lot).await;
                c.lifecycle
                    .show_key(proto::KeyRef { serial: s })
                    .await
                    .map(drop)
            }
            Op::Register => {
                let s = self.serial();
                c.lifecycle
                    .register_keys(proto::RegisterKeysRequest {
                        lot: lot.into(),
                        serials: vec![s],
                        valid_until: 0,
                    })
                    .await
                    .map(drop)
            }
            Op::Move => {
                let s = self.delivered(lot).await;
                c.lifecycle
                    .move_keys(proto::MoveKeysRequest {
                        to_lot: elsewhere.into(),
                        serials: vec![s],
                    })
                    .await
                    .map(drop)
            }
            Op::Order => l
                .order_keys(proto::OrderKeysRequest {
                    lot: lot.into(),
                    quantity: 2,
                    comment: String::new(),
                })
                .await
                .map(drop),
            Op::CancelOrder => {
                let id = self
                    .admin
                    .lifecycle
                    .order_keys(proto::OrderKeysRequest {
                        lot: lot.into(),
                        quantity: 1,
                        comment: String::new(),
                    })
                    .await
                    .expect("order")
                    .into_inner()
                    .id;
                c.lifecycle
                    .close_order(proto::CloseOrderRequest {
                        id,
                        serials: Vec::new(),
                        cancel: true,
                    })
                    .await
                    .map(drop)
            }
            Op::Reserve => {
                self.delivered(lot).await;
                c.lifecycle
                    .reserve_keys(proto::ReserveKeysRequest {
                        lot: lot.into(),
                        persons: vec!["n.nouveau".into()],
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }
            Op::Assign => {
                let s = self.delivered(lot).await;
                c.lifecycle
                    .change_key(proto::ChangeKeyRequest {
                        serial: s,
                        action: proto::KeyChangeAction::Assign as i32,
                        person: HOLDER.into(),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }
            Op::HandOver => {
                let s = self.delivered(lot).await;
                c.lifecycle
                    .hand_over(proto::HandOverRequest {
                        items: vec![proto::HandOverItem {
                            serial: s,
                            to: HOLDER.into(),
                            place: String::new(),
                            until: 0,
                        }],
                    })
                    .await
                    .map(drop)
            }
            Op::Return => {
                let (s, _) = self.handed_over(lot).await;
                c.lifecycle
                    .return_key(proto::ReturnKeyRequest {
                        serial: s,
                        condition: String::new(),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }
            Op::Lost => {
                let (s, _) = self.handed_over(lot).await;
                c.lifecycle
                    .change_key(proto::ChangeKeyRequest {
                        serial: s,
                        action: proto::KeyChangeAction::Lost as i32,
                        comment: "perdue".into(),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }
            Op::Found => {
                let (s, _) = self.handed_over(lot).await;
                self.change(&s, proto::KeyChangeAction::Lost).await;
                c.lifecycle
                    .found_key(proto::KeyRef { serial: s })
                    .await
                    .map(drop)
            }
            Op::Scrap | Op::Recycle => {
                let s = self.delivered(lot).await;
                let action = if op == Op::Scrap {
                    proto::KeyChangeAction::Scrap
                } else {
                    proto::KeyChangeAction::Recycle
                };
                c.lifecycle
                    .change_key(proto::ChangeKeyRequest {
                        serial: s,
                        action: action as i32,
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }
            Op::Confirm => {
                let (s, number) = self.handed_over(lot).await;
                c.lifecycle
                    .confirm_hand_over(proto::ConfirmHandOverRequest {
                        serial: s,
                        receipt_number: number,
                    })
                    .await
                    .map(drop)
            }
            Op::Receipt => {
                let (s, _) = self.handed_over(lot).await;
                c.lifecycle
                    .get_receipt(proto::GetReceiptRequest {
                        serial: s,
                        number: String::new(),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }
        };
        match r {
            Ok(()) => Ok(true),
            Err(s) if s.code() == Code::PermissionDenied => Ok(false),
            Err(s) => Err(s),
        }
    }
}

#[tokio::test]
async fn every_lifecycle_operation_by_every_function_in_and_out_of_scope() {
    let server = Server::start();
    server.import_directory(UNITS, PEOPLE);
    let mut admin = server.admin().await;
    for (id, kind, unit) in LOTS {
        admin
            .lifecycle
            .create_lot(proto::CreateLotRequest {
                id: id.into(),
                kind,
                unit: unit.into(),
                name: id.into(),
                validity_days: 0,
            })
            .await
            .expect("create lot");
    }
    let cases = FUNCTIONS.len() * 2 * OPS.len();
    admin
        .tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: (1..=cases as u32 * 2)
                .map(|n| hotp_token(&format!("S{n:04}"), RFC_SECRET_HEX))
                .collect(),
        })
        .await
        .expect("import tokens");
    let portal = server.key_with_role("portal-1", "portal").await;
    let mut bench = Bench {
        admin,
        server,
        next: 0,
    };
    let mut failures = Vec::new();
    let mut count = 0;
    for (person, desk, mine, other) in FUNCTIONS {
        let mut c = bench.server.client_acting(&portal, person).await;
        for (lot, in_scope) in [(mine, true), (other, false)] {
            for op in OPS {
                count += 1;
                let expected = allowed(desk, in_scope, op);
                match bench.run(&mut c, op, lot).await {
                    Ok(got) if got == expected => {}
                    Ok(got) => failures.push(format!(
                        "{person} {op:?} on {lot}: {}, expected {}",
                        if got { "done" } else { "refused" },
                        if expected { "done" } else { "refused" }
                    )),
                    Err(s) => failures.push(format!(
                        "{person} {op:?} on {lot}: {:?} {} (expected {})",
                        s.code(),
                        s.message(),
                        if expected { "done" } else { "refused" }
                    )),
                }
            }
        }
    }
    assert_eq!(count, cases);
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A minimal, complete case form (seed 004's fields and a PNG screenshot).
fn case_request() -> proto::OpenCaseRequest {
    proto::OpenCaseRequest {
        kind: "other".into(),
        priority: proto::CasePriority::Minor as i32,
        name: "Nom Prénom".into(),
        function: "Fonction".into(),
        phone: "0262 00 00 00".into(),
        unit_town: "Saint-Denis".into(),
        subject: "Objet".into(),
        population: "enseignant".into(),
        description: "Description précise.".into(),
        location: "Accueil > Applications".into(),
        attachments: vec![proto::CaseAttachment {
            name: "capture.png".into(),
            media_type: "image/png".into(),
            content: b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec(),
        }],
        ..Default::default()
    }
}

/// Seed 004: the direction team of a secondary school (head, deputy) and the ENT correspondents
/// open support cases, and seed 003 adds primary school directors (and their acting director);
/// every other function is refused. A case is read and answered by its declarant and the desk,
/// not by another school's head; the desk's operations stay the desk's.
#[tokio::test]
async fn a_support_case_is_opened_by_the_functions_seed_004_names_and_read_by_its_declarant() {
    let server = Server::start();
    server.import_directory(UNITS, PEOPLE);
    let portal = server.key_with_role("portal-1", "portal").await;
    let may_open = ["f.head", "f.deputy", "f.director", "f.acting", "f.ent"];
    let mut failures = Vec::new();
    let mut opened = Vec::new();
    for (person, _, _, _) in FUNCTIONS {
        let mut c = server.client_acting(&portal, person).await;
        let got = c.support.open_case(case_request()).await;
        let expected = may_open.contains(&person);
        match (got, expected) {
            (Ok(case), true) => opened.push((person, case.into_inner().number)),
            (Err(s), false) if s.code() == Code::PermissionDenied => {}
            (Ok(_), false) => failures.push(format!("{person} opened a case")),
            (Err(s), _) => failures.push(format!(
                "{person}: {:?} {} (expected {})",
                s.code(),
                s.message(),
                if expected {
                    "opened"
                } else {
                    "PERMISSION_DENIED"
                }
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Each declarant reads and answers their own case; the head of school does not read the
    // director's, and nobody acting through the portal assigns, resolves or diagnoses.
    let director_case = &opened
        .iter()
        .find(|(p, _)| *p == "f.director")
        .expect("the director's case")
        .1;
    let mut head = server.client_acting(&portal, "f.head").await;
    let e = head
        .support
        .show_case(proto::ShowCaseRequest {
            number: director_case.clone(),
        })
        .await
        .expect_err("another declarant's case");
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = head
        .support
        .reply_case(proto::ReplyCaseRequest {
            number: director_case.clone(),
            body: "réponse".into(),
            internal: false,
        })
        .await
        .expect_err("another declarant's case");
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut director = server.client_acting(&portal, "f.director").await;
    director
        .support
        .reply_case(proto::ReplyCaseRequest {
            number: director_case.clone(),
            body: "précision".into(),
            internal: false,
        })
        .await
        .expect("the declarant answers on their case");
    let listed = director
        .support
        .list_cases(proto::ListCasesRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.cases.len(), 1, "their own case only");
    let e = director
        .support
        .resolve_case(proto::ResolveCaseRequest {
            number: director_case.clone(),
            resolution: "fait".into(),
        })
        .await
        .expect_err("the desk resolves");
    assert_eq!(e.code(), Code::PermissionDenied);
}

/// The request operations, by every function, with the scope the issue gives them: a request
/// (filed by a member of staff of Lycée A, from its lot 2D-A) is seen by its parties only: its
/// requester, the validator named on it (their N+1, the head of school) and their N+2, the
/// managers of its lot, the support centre; approved by the N+1 or the N+2 alone; withdrawn by
/// its requester or the support centre (the IT department is a central desk for lots and keys,
/// not a party to people's requests). Pickup slots belong to a lot: offered by its managers and
/// the central desks (support centre, IT department), listed by them and by the people the lot
/// serves (their own unit's lot), nobody else.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ReqOp {
    Show,
    Approve,
    Cancel,
    OfferSlotMine,
    OfferSlotOther,
    ListSlotsMine,
    ListSlotsOther,
}

const REQ_OPS: [ReqOp; 7] = [
    ReqOp::Show,
    ReqOp::Approve,
    ReqOp::Cancel,
    ReqOp::OfferSlotMine,
    ReqOp::OfferSlotOther,
    ReqOp::ListSlotsMine,
    ReqOp::ListSlotsOther,
];

const REQUESTER: &str = "f.staff";

fn request_allowed(person: &str, desk: Desk, n2: &str, op: ReqOp) -> bool {
    let n1 = person == "f.head";
    let lot_manager = matches!(person, "f.head" | "f.deputy" | "f.delegate");
    let central = matches!(desk, Desk::Support | Desk::It);
    let support_centre = desk == Desk::Support;
    match op {
        ReqOp::Show => person == REQUESTER || n1 || person == n2 || lot_manager || support_centre,
        ReqOp::Approve => n1 || person == n2,
        ReqOp::Cancel => person == REQUESTER || support_centre,
        ReqOp::OfferSlotMine => desk == Desk::Manager || central,
        ReqOp::OfferSlotOther => central,
        ReqOp::ListSlotsMine => true,
        ReqOp::ListSlotsOther => central,
    }
}

fn justificatif() -> proto::RequestAttachment {
    proto::RequestAttachment {
        name: "arrete.pdf".into(),
        media_type: "application/pdf".into(),
        content: b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n".to_vec(),
    }
}

#[tokio::test]
async fn every_request_operation_by_every_function_in_and_out_of_scope() {
    let server = Server::start();
    server.import_directory(UNITS, PEOPLE);
    let mut admin = server.admin().await;
    for (id, kind, unit) in LOTS {
        admin
            .lifecycle
            .create_lot(proto::CreateLotRequest {
                id: id.into(),
                kind,
                unit: unit.into(),
                name: id.into(),
                validity_days: 0,
            })
            .await
            .expect("create lot");
    }
    let portal = server.key_with_role("portal-1", "portal").await;
    let mut requester = server.client_acting(&portal, REQUESTER).await;
    let at = okey_server::clock::now() + 7 * 86_400;
    let mut failures = Vec::new();
    let mut count = 0;
    for (person, desk, mine, other) in FUNCTIONS {
        let mut c = server.client_acting(&portal, person).await;
        for op in REQ_OPS {
            count += 1;
            let filed = requester
                .requests
                .file_request(proto::FileRequestRequest {
                    key_type: "hardware".into(),
                    reason: "accès aux applications".into(),
                    attachments: vec![justificatif()],
                    submit: true,
                    ..Default::default()
                })
                .await
                .expect("file")
                .into_inner()
                .request
                .expect("request");
            assert_eq!(filed.validator, "f.head", "{filed:?}");
            assert_eq!(filed.lot, "2D-A", "{filed:?}");
            let id = filed.id;
            let expected = request_allowed(person, desk, &filed.second_validator, op);
            let r = &mut c.requests;
            let got: Result<(), tonic::Status> = match op {
                ReqOp::Show => r.show_request(proto::RequestRef { id }).await.map(drop),
                ReqOp::Approve => r
                    .decide_request(proto::DecideRequestRequest {
                        id,
                        approve: true,
                        reason: String::new(),
                    })
                    .await
                    .map(drop),
                ReqOp::Cancel => r.cancel_request(proto::RequestRef { id }).await.map(drop),
                ReqOp::OfferSlotMine | ReqOp::OfferSlotOther => r
                    .offer_pickup_slot(proto::OfferPickupSlotRequest {
                        lot: if op == ReqOp::OfferSlotMine {
                            mine
                        } else {
                            other
                        }
                        .into(),
                        starts_at: at,
                        place: "Accueil".into(),
                    })
                    .await
                    .map(drop),
                ReqOp::ListSlotsMine | ReqOp::ListSlotsOther => r
                    .list_pickup_slots(proto::ListPickupSlotsRequest {
                        lot: if op == ReqOp::ListSlotsMine {
                            mine
                        } else {
                            other
                        }
                        .into(),
                    })
                    .await
                    .map(drop),
            };
            let got = match got {
                Ok(()) => Ok(true),
                Err(s) if s.code() == Code::PermissionDenied => Ok(false),
                Err(s) => Err(s),
            };
            match got {
                Ok(g) if g == expected => {}
                Ok(g) => failures.push(format!(
                    "{person} {op:?}: {}, expected {}",
                    if g { "done" } else { "refused" },
                    if expected { "done" } else { "refused" }
                )),
                Err(s) => failures.push(format!(
                    "{person} {op:?}: {:?} {} (expected {})",
                    s.code(),
                    s.message(),
                    if expected { "done" } else { "refused" }
                )),
            }
            // Withdraw it, so that the next one may be filed (one open request per need).
            let state = requester
                .requests
                .show_request(proto::RequestRef { id })
                .await
                .expect("show")
                .into_inner()
                .request
                .expect("request")
                .state;
            if state != "cancelled" {
                requester
                    .requests
                    .cancel_request(proto::RequestRef { id })
                    .await
                    .expect("the requester withdraws it");
            }
        }
    }
    assert_eq!(count, FUNCTIONS.len() * REQ_OPS.len());
    assert!(
        failures.is_empty(),
        "{} of {count} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
