//! Lots and custody: the table enforced in the store's compare-and-set, the verify gate
//! following the custody state, scope by lot, the scheduled job, concurrency.

use okey_domain::{KeyState, Party};
use okey_store::*;

use crate::common::*;

const NOW: u64 = 1_800_000_000;

fn lot(id: &str, kind: &str) -> LotRow {
    LotRow {
        id: id.into(),
        kind: kind.parse().expect("kind"),
        unit: format!("U-{id}"),
        name: format!("lot {id}"),
        validity_days: None,
        created_at: NOW,
    }
}

fn support() -> Acting {
    Acting {
        actor: Actor::new("support-desk", "support"),
        person: Some("p.support".into()),
        central: vec![Party::SupportCentre],
        manages: vec![],
    }
}

fn it_dept() -> Acting {
    Acting {
        actor: Actor::new("dsi", "support"),
        person: Some("p.dsi".into()),
        central: vec![Party::ItDepartment],
        manages: vec![],
    }
}

fn manager(person: &str, lot: &str) -> Acting {
    Acting {
        actor: Actor::new(person, "support"),
        person: Some(person.into()),
        central: vec![],
        manages: vec![lot.into()],
    }
}

/// A store with lots A (2D), B (2D) and R (Rectorat) and key `K1` registered into A.
fn setup(db: &Db) -> Store {
    let s = db.open();
    for (id, kind) in [("A", "2d"), ("B", "2d"), ("R", "rectorat")] {
        s.create_lot(lot(id, kind), &actor()).expect("lot");
    }
    s.create_token(hotp_token("K1"), &actor()).expect("token");
    s.change_key(
        "K1",
        KeyChange::Register {
            lot: "A".into(),
            valid_until: None,
        },
        &support(),
        NOW,
    )
    .expect("register");
    s
}

fn handover(to: &str) -> KeyChange {
    KeyChange::HandOver {
        to: to.into(),
        place: Some("école".into()),
        until: None,
    }
}

fn only_a_handed_over_key_logs_in_and_a_lost_one_stops_at_once(db: &Db) {
    let s = setup(db);
    let rt = rt();
    // Delivered, in stock: no login.
    let o = rt.block_on(verify(&s, "K1", &hotp(SEED, 0, 6), NOW));
    assert_eq!((o.accepted, o.reason), (false, Reason::NotActive));
    let out = s
        .change_key("K1", handover("p.dir"), &manager("p.head", "A"), NOW)
        .expect("handover");
    assert_eq!(out.key.custody, Some(KeyState::HandedOver));
    assert_eq!(out.key.holder.as_deref(), Some("p.dir"));
    let r = out.receipt.expect("receipt");
    assert_eq!((r.holder.as_str(), r.staff.as_str()), ("p.dir", "p.head"));
    let o = rt.block_on(verify(&s, "K1", &hotp(SEED, 0, 6), NOW));
    assert!(o.accepted, "{o:?}");
    // The key (and its row) is in the cache now; declaring it lost must still stop it.
    s.change_key(
        "K1",
        KeyChange::Lost {
            comment: Some("perdue en sortie scolaire".into()),
        },
        &manager("p.head", "A"),
        NOW,
    )
    .expect("lost");
    let o = rt.block_on(verify(&s, "K1", &hotp(SEED, 1, 6), NOW));
    assert_eq!((o.accepted, o.reason), (false, Reason::NotActive));
    let rec = s.key_record("K1").expect("record");
    assert_eq!(rec.key.holder, None, "a lost key is unassigned");
    let actions: Vec<&str> = rec.history.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["register", "handover", "lost"]);
    assert_eq!(
        rec.history[2].comment.as_deref(),
        Some("perdue en sortie scolaire")
    );
}

fn lost_then_found_goes_back_to_its_origin_lot_delivered_and_needs_a_new_hand_over(db: &Db) {
    let s = setup(db);
    let rt = rt();
    s.change_key("K1", KeyChange::Move { to: "B".into() }, &support(), NOW)
        .expect("move");
    s.change_key("K1", handover("p.x"), &manager("p.headB", "B"), NOW)
        .expect("handover");
    s.change_key("K1", KeyChange::Lost { comment: None }, &support(), NOW)
        .expect("lost");
    let f = s.found_key("K1", &support(), NOW).expect("found");
    assert_eq!(f.decision, okey_domain::FoundDecision::BackToOriginLot);
    assert_eq!(f.key.custody, Some(KeyState::Delivered));
    assert_eq!(f.key.lot.as_deref(), Some("A"), "back in its origin lot");
    let o = rt.block_on(verify(&s, "K1", &hotp(SEED, 0, 6), NOW));
    assert!(
        !o.accepted,
        "a found key does not log in before a new hand-over"
    );
    s.change_key("K1", handover("p.y"), &manager("p.head", "A"), NOW)
        .expect("new handover");
    let o = rt.block_on(verify(&s, "K1", &hotp(SEED, 0, 6), NOW));
    assert!(o.accepted, "{o:?}");
}

fn refused_transitions_name_the_state_and_the_action_and_write_nothing(db: &Db) {
    let s = setup(db);
    s.change_key("K1", KeyChange::Lost { comment: None }, &support(), NOW)
        .expect("lost");
    let before = (
        s.token("K1").expect("token"),
        s.key_record("K1").expect("record"),
        s.audit_tail(1000).expect("audit").len(),
    );
    let e = s
        .change_key("K1", handover("p.x"), &manager("p.head", "A"), NOW)
        .expect_err("refused");
    assert!(matches!(e, StoreError::Precondition(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "key K1: a key that is lost cannot be handed over"
    );
    let e = s
        .change_key("K1", KeyChange::Recycle, &support(), NOW)
        .expect_err("refused");
    assert_eq!(
        e.to_string(),
        "key K1: a key that is lost cannot be recycled"
    );
    let after = (
        s.token("K1").expect("token"),
        s.key_record("K1").expect("record"),
        s.audit_tail(1000).expect("audit").len(),
    );
    assert_eq!(before, after);
}

fn a_lot_manager_acts_only_on_their_own_lot_and_moves_only_out_of_it(db: &Db) {
    let s = setup(db);
    let head_b = manager("p.headB", "B");
    let e = s
        .change_key("K1", handover("p.x"), &head_b, NOW)
        .expect_err("not their lot");
    assert!(matches!(e, StoreError::Forbidden(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "p.headB does not manage lot A, where key K1 is, and may not act on it"
    );
    // Pulling a key into their own lot from another is moving it out of someone else's.
    let e = s
        .change_key("K1", KeyChange::Move { to: "B".into() }, &head_b, NOW)
        .expect_err("not their lot");
    assert!(matches!(e, StoreError::Forbidden(_)), "{e:?}");
    // The manager of A may move it out of A.
    let out = s
        .change_key(
            "K1",
            KeyChange::Move { to: "B".into() },
            &manager("p.head", "A"),
            NOW,
        )
        .expect("move");
    assert_eq!(
        (out.key.lot.as_deref(), out.key.origin_lot.as_deref()),
        (Some("B"), Some("A"))
    );
    // Recycling is the IT department's, not the lot manager's nor the support centre's.
    let e = s
        .change_key("K1", KeyChange::Recycle, &head_b, NOW)
        .expect_err("IT only");
    assert_eq!(
        e.to_string(),
        "key K1: a key that is delivered can be recycled only by the IT department, not by the lot manager"
    );
    s.change_key("K1", KeyChange::Recycle, &it_dept(), NOW)
        .expect("recycle");
}

fn expiry_and_deactivation_stop_logins_at_their_time_and_the_job_tells_the_lot(db: &Db) {
    let s = setup(db);
    let rt = rt();
    s.create_token(hotp_token("K2"), &actor()).expect("token");
    s.change_key(
        "K2",
        KeyChange::Register {
            lot: "B".into(),
            valid_until: Some(NOW + 100),
        },
        &support(),
        NOW,
    )
    .expect("register");
    s.change_key("K2", handover("p.b"), &support(), NOW)
        .expect("handover");
    // A deputy for a period: K1 until NOW + 50.
    s.change_key(
        "K1",
        KeyChange::HandOver {
            to: "p.deputy".into(),
            place: None,
            until: Some(NOW + 50),
        },
        &manager("p.ien", "A"),
        NOW,
    )
    .expect("deputy");
    assert!(
        rt.block_on(verify(&s, "K1", &hotp(SEED, 0, 6), NOW + 49))
            .accepted
    );
    assert!(
        rt.block_on(verify(&s, "K2", &hotp(SEED, 0, 6), NOW + 49))
            .accepted
    );
    assert!(
        !rt.block_on(verify(&s, "K1", &hotp(SEED, 1, 6), NOW + 50))
            .accepted
    );
    assert!(
        rt.block_on(verify(&s, "K2", &hotp(SEED, 1, 6), NOW + 99))
            .accepted
    );
    assert!(
        !rt.block_on(verify(&s, "K2", &hotp(SEED, 2, 6), NOW + 100))
            .accepted
    );
    // Nothing due before the job's time; then both, each once.
    assert!(s.run_due(NOW + 10, &actor()).expect("job").is_empty());
    let mut due = s.run_due(NOW + 100, &actor()).expect("job");
    due.sort_by(|a, b| a.serial.cmp(&b.serial));
    assert_eq!(
        due,
        vec![
            DueEvent {
                serial: "K1".into(),
                lot: Some("A".into()),
                action: okey_domain::KeyAction::Deactivate,
                holder: Some("p.deputy".into()),
            },
            DueEvent {
                serial: "K2".into(),
                lot: Some("B".into()),
                action: okey_domain::KeyAction::Expire,
                holder: Some("p.b".into()),
            },
        ]
    );
    assert!(s.run_due(NOW + 200, &actor()).expect("job").is_empty());
    let k1 = s.key_record("K1").expect("k1").key;
    assert_eq!(k1.return_due, Some(NOW + 100), "on the lot manager's list");
    let k2 = s.key_record("K2").expect("k2").key;
    assert_eq!(k2.custody, Some(KeyState::Expired));
    // An expired key found: scrap it.
    let f = s.found_key("K2", &support(), NOW + 300).expect("found");
    assert_eq!(f.decision, okey_domain::FoundDecision::Scrap);
    // The deputy gives the key back with a return receipt.
    let out = s
        .change_key(
            "K1",
            KeyChange::Return {
                condition: Some("good".into()),
                place: Some("bureau de l'IEN".into()),
            },
            &manager("p.ien", "A"),
            NOW + 400,
        )
        .expect("return");
    let r = out.receipt.expect("receipt");
    assert_eq!(r.kind, ReceiptKind::Return);
    assert_eq!(r.holder, "p.deputy");
    assert_eq!(r.place.as_deref(), Some("bureau de l'IEN"));
    assert_eq!(out.key.custody, Some(KeyState::Returned));
    assert_eq!(out.key.return_due, None);
}

fn two_managers_on_one_key_at_once_exactly_one_succeeds(db: &Db) {
    let s = setup(db);
    for round in 0..20 {
        let serial = format!("C{round}");
        s.create_token(hotp_token(&serial), &actor())
            .expect("token");
        s.change_key(
            &serial,
            KeyChange::Register {
                lot: "A".into(),
                valid_until: None,
            },
            &support(),
            NOW,
        )
        .expect("register");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = ["p.head", "p.deputyhead"]
            .into_iter()
            .map(|m| {
                let (s, serial, barrier) = (s.clone(), serial.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    s.change_key(
                        &serial,
                        handover(&format!("holder-of-{m}")),
                        &manager(m, "A"),
                        NOW,
                    )
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        let refused = results.iter().find_map(|r| r.as_ref().err()).expect("one");
        assert_eq!(
            refused.to_string(),
            format!("key {serial}: a key that is handed over cannot be handed over")
        );
        let rec = s.key_record(&serial).expect("record");
        assert_eq!(rec.receipts.len(), 1);
    }
}

fn orders_are_tracked_and_fulfilling_moves_keys_in(db: &Db) {
    let s = setup(db);
    let head_b = manager("p.headB", "B");
    let e = s
        .order_keys("A", 2, None, &head_b, NOW)
        .expect_err("not their lot");
    assert!(matches!(e, StoreError::Forbidden(_)));
    let o = s
        .order_keys("B", 2, Some("rentrée".into()), &head_b, NOW)
        .expect("order");
    assert_eq!((o.state, o.quantity), (OrderState::Open, 2));
    assert_eq!(s.lot("B").expect("lot").open_orders, 1);
    let e = s
        .close_order(o.id, vec!["K1".into()], false, &head_b, NOW)
        .expect_err("support fulfils");
    assert!(matches!(e, StoreError::Forbidden(_)));
    s.create_token(hotp_token("N1"), &actor()).expect("token");
    let done = s
        .close_order(o.id, vec!["K1".into(), "N1".into()], false, &support(), NOW)
        .expect("fulfil");
    assert_eq!(done.state, OrderState::Fulfilled);
    assert_eq!(done.serials, ["K1", "N1"]);
    let keys = s.lot_keys("B").expect("keys");
    let serials: Vec<&str> = keys.iter().map(|k| k.serial.as_str()).collect();
    assert_eq!(serials, ["K1", "N1"]);
    assert_eq!(
        keys[1].origin_lot.as_deref(),
        Some("B"),
        "registered by the order"
    );
    assert_eq!(
        s.lot("B").expect("lot").counts,
        vec![(KeyState::Delivered, 2)]
    );
    let e = s
        .close_order(o.id, vec![], true, &head_b, NOW)
        .expect_err("closed");
    assert_eq!(
        e.to_string(),
        format!("order {} is fulfilled and cannot be changed", o.id)
    );
}

fn a_hand_over_is_signed_once_by_its_receipt_number(db: &Db) {
    let s = setup(db);
    let out = s
        .change_key("K1", handover("p.dir"), &support(), NOW)
        .expect("handover");
    let number = out.receipt.expect("receipt").number;
    let holder = Acting {
        actor: Actor::new("p.dir", "support"),
        person: Some("p.dir".into()),
        central: vec![],
        manages: vec![],
    };
    assert!(
        s.confirm_handover("K1", "RM-0000-0000", "receipt", &holder, NOW)
            .is_err()
    );
    let typed = number.to_lowercase().replace('-', " ");
    let r = s
        .confirm_handover("K1", &typed, "receipt", &holder, NOW + 5)
        .expect("signed");
    assert_eq!(
        (r.confirmed_at, r.confirmed_how.as_deref()),
        (Some(NOW + 5), Some("receipt"))
    );
    assert!(
        s.confirm_handover("K1", &number, "receipt", &holder, NOW + 6)
            .is_err(),
        "signed once"
    );
}

#[test]
fn a_restored_key_keeps_its_custody_so_a_lost_key_does_not_log_in_again() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("b.okb");
    {
        let src = Db::new(Kind::Sqlite).expect("sqlite");
        let s = setup(&src);
        s.create_token(hotp_token("K2"), &actor()).expect("token");
        s.change_key(
            "K2",
            KeyChange::Register {
                lot: "A".into(),
                valid_until: Some(NOW + 1000),
            },
            &support(),
            NOW,
        )
        .expect("register");
        s.change_key("K2", handover("p.b"), &support(), NOW)
            .expect("handover");
        s.change_key("K1", handover("p.a"), &support(), NOW)
            .expect("handover");
        s.change_key("K1", KeyChange::Lost { comment: None }, &support(), NOW)
            .expect("lost");
        s.backup(&file, &Zeroizing::new("correct horse battery".into()))
            .expect("backup");
    }
    let target = StoreConfig {
        master_key: MasterKeySource::Bytes(key_bytes(42)),
        ..StoreConfig::in_dir(dir.path().join("dst"))
    };
    Store::restore(
        target.clone(),
        &file,
        &Zeroizing::new("correct horse battery".into()),
    )
    .expect("restore");
    let s = Store::open(target).expect("open");
    let rt = rt();
    let o = rt.block_on(verify(&s, "K1", &hotp(SEED, 0, 6), NOW));
    assert_eq!((o.accepted, o.reason), (false, Reason::NotActive));
    assert!(
        rt.block_on(verify(&s, "K2", &hotp(SEED, 0, 6), NOW))
            .accepted
    );
    let o = rt.block_on(verify(&s, "K2", &hotp(SEED, 1, 6), NOW + 1000));
    assert!(!o.accepted, "the validity end survives the restore");
}

/// Every custody operation × every function of the directory × a key in / out of the person's
/// scope: allowed exactly as written here (independently of the domain's table).
#[test]
fn every_operation_by_every_function_in_and_out_of_scope() {
    use okey_domain::org::{Function, OrgTree, Person, Uai, Unit, UnitKind};
    let school = |uai: &str| UnitKind::School {
        uai: Uai::parse(uai).expect("uai"),
        under_contract: true,
    };
    let tree = OrgTree::new([
        Unit::new("RECTORAT", "Rectorat", UnitKind::Rectorat, None).expect("u"),
        Unit::new(
            "SUPPORT",
            "Support",
            UnitKind::SupportCentre,
            Some("RECTORAT"),
        )
        .expect("u"),
        Unit::new("DSI", "DSI", UnitKind::ItDepartment, Some("RECTORAT")).expect("u"),
        Unit::new("DEC", "DEC", UnitKind::ExamsOffice, Some("RECTORAT")).expect("u"),
        Unit::new("0750654D", "Lycée A", school("0750654D"), Some("RECTORAT")).expect("u"),
        Unit::new("9740001H", "Lycée B", school("9740001H"), Some("RECTORAT")).expect("u"),
        Unit::new(
            "CIRC-1",
            "Circonscription",
            UnitKind::District,
            Some("RECTORAT"),
        )
        .expect("u"),
    ])
    .expect("tree");
    let dir = tempfile::tempdir().expect("dir");
    let s = open(dir.path());
    let lots = [
        ("2D-A", "2d", "0750654D"),
        ("2D-B", "2d", "9740001H"),
        ("1D-1", "1d", "CIRC-1"),
        ("R", "rectorat", "RECTORAT"),
        ("E", "examen", "DEC"),
    ]
    .map(|(id, kind, unit)| LotRow {
        unit: unit.into(),
        ..lot(id, kind)
    });
    for l in &lots {
        s.create_lot(l.clone(), &actor()).expect("lot");
    }
    // Where each function works, and the lot it manages there (none: it manages no lot).
    let home = |f: Function| -> (&str, Option<&str>) {
        use Function::*;
        match f {
            HeadOfSchool | DeputyHead | Delegate => ("0750654D", Some("2D-A")),
            DistrictInspector | DistrictIctAdviser => ("CIRC-1", Some("1D-1")),
            SupportAgent => ("SUPPORT", Some("R")),
            ItAgent => ("DSI", Some("R")),
            ExamsOfficeAgent => ("DEC", Some("E")),
            SchoolDirector | ActingDirector | EntCorrespondent | Staff => ("0750654D", None),
        }
    };
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Register,
        HandOver,
        Lost,
        Return,
        Move,
        Scrap,
        Recycle,
    }
    // Who may, by what they are for the key: (lot manager, support centre, IT department).
    let may = |op: Op| -> (bool, bool, bool) {
        match op {
            Op::Register | Op::Scrap => (false, true, true),
            Op::Recycle => (false, false, true),
            Op::HandOver | Op::Lost | Op::Return | Op::Move => (true, true, true),
        }
    };
    let admin = Acting {
        actor: actor(),
        person: Some("p.admin".into()),
        central: vec![Party::SupportCentre, Party::ItDepartment],
        manages: vec![],
    };
    let mut n = 0;
    let mut failures = Vec::new();
    for f in Function::ALL {
        let (unit, managed) = home(f);
        let person = Person::new(
            &format!("p.{}", f.name()),
            "Agent",
            "agent@ac-example.fr",
            unit,
            &[f],
            None,
        )
        .expect("person");
        let by = Acting::from_scope(
            Actor::new(person.id.as_str(), "manager"),
            person.id.as_str(),
            &tree.scope(&person),
            &lots,
        );
        for op in [
            Op::Register,
            Op::HandOver,
            Op::Lost,
            Op::Return,
            Op::Move,
            Op::Scrap,
            Op::Recycle,
        ] {
            // In scope: a key of the lot this function manages (or of 2D-A when it manages
            // none); out of scope: a key of 2D-B, which none of them manages.
            for (scope, lot_id) in [("in", managed.unwrap_or("2D-A")), ("out", "2D-B")] {
                n += 1;
                let serial = format!("T{n}");
                s.create_token(hotp_token(&serial), &actor())
                    .expect("token");
                let register = KeyChange::Register {
                    lot: lot_id.into(),
                    valid_until: None,
                };
                if !matches!(op, Op::Register) {
                    s.change_key(&serial, register.clone(), &admin, NOW)
                        .expect("setup");
                }
                if matches!(op, Op::Lost | Op::Return) {
                    s.change_key(&serial, handover("p.holder"), &admin, NOW)
                        .expect("setup");
                }
                let change = match op {
                    Op::Register => register,
                    Op::HandOver => handover("p.someone"),
                    Op::Lost => KeyChange::Lost { comment: None },
                    Op::Return => KeyChange::Return {
                        condition: None,
                        place: None,
                    },
                    Op::Move => KeyChange::Move {
                        to: if lot_id == "E" { "R" } else { "E" }.into(),
                    },
                    Op::Scrap => KeyChange::Scrap,
                    Op::Recycle => KeyChange::Recycle,
                };
                let (lm, sc, it) = may(op);
                // Registering: the key is in no lot yet, so nobody is its lot manager.
                let manager_here = managed == Some(lot_id) && !matches!(op, Op::Register);
                let expected = (lm && manager_here)
                    || (sc && f == Function::SupportAgent)
                    || (it && f == Function::ItAgent);
                let got = s.change_key(&serial, change, &by, NOW);
                if got.is_ok() != expected {
                    failures.push(format!(
                        "{f:?} {op:?} {scope} of scope ({lot_id}): expected {}, got {got:?}",
                        if expected { "allowed" } else { "refused" }
                    ));
                }
                if let Err(e) = got
                    && !expected
                    && !matches!(e, StoreError::Forbidden(_) | StoreError::Precondition(_))
                {
                    failures.push(format!("{f:?} {op:?} {scope}: unexpected error {e:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(n, Function::ALL.len() * 7 * 2);
}

both!(
    only_a_handed_over_key_logs_in_and_a_lost_one_stops_at_once,
    lost_then_found_goes_back_to_its_origin_lot_delivered_and_needs_a_new_hand_over,
    refused_transitions_name_the_state_and_the_action_and_write_nothing,
    a_lot_manager_acts_only_on_their_own_lot_and_moves_only_out_of_it,
    expiry_and_deactivation_stop_logins_at_their_time_and_the_job_tells_the_lot,
    two_managers_on_one_key_at_once_exactly_one_succeeds,
    orders_are_tracked_and_fulfilling_moves_keys_in,
    a_hand_over_is_signed_once_by_its_receipt_number,
    the_holders_first_valid_code_signs_the_hand_over_receipt,
);
/// "A confirmation by the holder's first valid code": the first accepted code of a handed-over,
/// unsigned key signs its hand-over receipt in the verify's own commit; a wrong code, a staff
/// resynchronisation and later codes sign nothing; a new hand-over waits for a new signature.
fn the_holders_first_valid_code_signs_the_hand_over_receipt(db: &Db) {
    let s = setup(db);
    let rt = rt();
    let head = manager("p.head", "A");
    let number = s
        .change_key("K1", handover("p.dir"), &head, NOW)
        .expect("handover")
        .receipt
        .expect("receipt")
        .number;
    let latest = |s: &Store| {
        let r = s.key_record("K1").expect("record").receipts;
        r.into_iter()
            .rev()
            .find(|r| r.kind == ReceiptKind::HandOver)
            .expect("a hand-over receipt")
    };
    // Put the row in the cache before anything, as a busy verify path has it.
    let o = rt.block_on(verify(&s, "K1", "000000", NOW + 1));
    assert!(!o.accepted);
    assert_eq!(latest(&s).confirmed_at, None, "a wrong code signs nothing");
    // A staff resynchronisation with the holder's codes is not the holder's signature.
    let o = rt
        .block_on(s.resync(
            "K1",
            &hotp(SEED, 0, 6),
            &hotp(SEED, 1, 6),
            NOW + 2,
            &actor(),
        ))
        .expect("resync");
    assert!(o.accepted, "{o:?}");
    assert_eq!(latest(&s).confirmed_at, None, "a resync signs nothing");
    let o = rt.block_on(verify(&s, "K1", &hotp(SEED, 2, 6), NOW + 3));
    assert!(o.accepted, "{o:?}");
    let r = latest(&s);
    assert_eq!(r.number, number);
    assert_eq!(r.confirmed_at, Some(NOW + 3));
    assert_eq!(r.confirmed_how.as_deref(), Some("code"));
    // Signed once: the next code leaves it as it is, and the receipt number cannot sign again.
    assert!(
        rt.block_on(verify(&s, "K1", &hotp(SEED, 3, 6), NOW + 4))
            .accepted
    );
    assert_eq!(latest(&s).confirmed_at, Some(NOW + 3));
    let holder = manager("p.dir", "none");
    assert!(
        s.confirm_handover("K1", &number, "receipt", &holder, NOW + 5)
            .is_err()
    );
    // Back in stock and handed over again: unsigned until the new holder's first code, which
    // is found by a verify by user name as well.
    s.change_key(
        "K1",
        KeyChange::Return {
            condition: None,
            place: None,
        },
        &head,
        NOW + 6,
    )
    .expect("return");
    let second = s
        .change_key("K1", handover("p.other"), &head, NOW + 7)
        .expect("handover")
        .receipt
        .expect("receipt")
        .number;
    assert_ne!(second, number);
    assert_eq!(latest(&s).confirmed_at, None);
    let o = rt.block_on(verify_user(&s, "p.other", &hotp(SEED, 4, 6), NOW + 8));
    assert!(o.accepted, "{o:?}");
    let r = latest(&s);
    assert_eq!(
        (r.number.as_str(), r.confirmed_how.as_deref()),
        (second.as_str(), Some("code"))
    );
    // The receipt number typed back still works when the code did not come first.
    s.change_key(
        "K1",
        KeyChange::Return {
            condition: None,
            place: None,
        },
        &head,
        NOW + 9,
    )
    .expect("return");
    let third = s
        .change_key("K1", handover("p.third"), &head, NOW + 10)
        .expect("handover")
        .receipt
        .expect("receipt")
        .number;
    s.confirm_handover(
        "K1",
        &third,
        "receipt",
        &manager("p.third", "none"),
        NOW + 11,
    )
    .expect("typed back");
    assert!(
        rt.block_on(verify(&s, "K1", &hotp(SEED, 5, 6), NOW + 12))
            .accepted
    );
    let r = latest(&s);
    assert_eq!(
        (r.confirmed_at, r.confirmed_how.as_deref()),
        (Some(NOW + 11), Some("receipt")),
        "the code after a typed-back number changes nothing"
    );
}

/// Every table a store holds rows in: `(columns, rows as text)`, read with SQL around okey.
fn sqlite_tables(path: &std::path::Path) -> std::collections::BTreeMap<String, Vec<Vec<String>>> {
    let c = rusqlite::Connection::open(path.join("okey.db")).expect("db");
    let names: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .expect("tables")
        .query_map([], |r| r.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("tables");
    let mut out = std::collections::BTreeMap::new();
    for t in names {
        let mut stmt = c
            .prepare(&format!("SELECT * FROM \"{t}\""))
            .expect("select");
        let n = stmt.column_count();
        let cols: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let mut rows: Vec<Vec<String>> = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => "NULL".to_string(),
                            rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                            rusqlite::types::ValueRef::Real(v) => v.to_string(),
                            rusqlite::types::ValueRef::Text(v) => {
                                String::from_utf8_lossy(v).into_owned()
                            }
                            rusqlite::types::ValueRef::Blob(v) => format!("{v:?}"),
                        })
                    })
                    .collect()
            })
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        rows.sort();
        let mut all = vec![cols];
        all.extend(rows);
        out.insert(t, all);
    }
    out
}

/// A store with something in every table of the lifecycle: the directory, an API key bound to a
/// person, lots and a delegate, keys registered, handed over (receipt, history, a hand-over not
/// yet signed), a holder-bound PIN, an order, a queued mail.
fn fill_every_table(db: &Db) -> Store {
    use okey_domain::org::Function;
    let s = setup(db);
    s.import_directory(
        crate::directory::units(),
        vec![
            crate::directory::person(2, "head", "0750654D", &[Function::HeadOfSchool]),
            crate::directory::person(3, "teacher", "0750654D", &[Function::Staff]),
        ],
        &actor(),
    )
    .expect("import");
    s.add_api_key_for(
        "marie",
        [7; 32],
        &["manager".to_string()],
        &crate::directory::pid("head"),
        &actor(),
    )
    .expect("bound key");
    s.set_lot_delegate("A", "p.delegate", false, &actor(), NOW)
        .expect("delegate");
    s.create_token(hotp_token("K2"), &actor()).expect("token");
    s.change_key(
        "K2",
        KeyChange::Register {
            lot: "A".into(),
            valid_until: Some(NOW + 86_400),
        },
        &support(),
        NOW,
    )
    .expect("register");
    s.change_key("K2", handover("p.b"), &support(), NOW)
        .expect("handover");
    s.set_pin("K2", Some(&Pin::new("4711").expect("pin")), &actor())
        .expect("pin");
    s.order_keys(
        "B",
        2,
        Some("rentrée".into()),
        &manager("p.headB", "B"),
        NOW,
    )
    .expect("order");
    s.enqueue_mail(
        okey_store::outbox::NewMail {
            message_id: "<okey.backup@example.org>".into(),
            template: "test".into(),
            to: vec!["marie.hoarau@ac-example.fr".into()],
            cc: Vec::new(),
            subject: "Clé prête".into(),
            body: "Bonjour.\n".into(),
        },
        &actor(),
    )
    .expect("mail");
    // A key request with its attachment, charter signature, PIN and booked pickup slot.
    s.create_lot(
        LotRow {
            unit: "0750654D".into(),
            ..lot("S", "2d")
        },
        &actor(),
    )
    .expect("school lot");
    s.create_token(hotp_token("K3"), &actor()).expect("token");
    s.change_key(
        "K3",
        KeyChange::Register {
            lot: "S".into(),
            valid_until: None,
        },
        &support(),
        NOW,
    )
    .expect("register");
    s.publish_charter(
        "CH-2026",
        "Charte",
        b"%PDF-1.7 charte".to_vec(),
        &actor(),
        NOW,
    )
    .expect("charter");
    let teacher = Acting {
        actor: Actor::new("teacher-key", "manager"),
        person: Some("teacher".into()),
        central: vec![],
        manages: vec![],
    };
    let head = Acting {
        actor: Actor::new("marie", "manager"),
        person: Some("head".into()),
        central: vec![],
        manages: vec!["S".into()],
    };
    let r = s
        .file_request(
            NewRequest {
                need: okey_domain::request::Need::NewKey,
                key: okey_domain::request::RequestedKey::Hardware,
                reason: "accès aux applications".into(),
                validator: None,
                attachments: vec![NewAttachment {
                    name: "arrete.pdf".into(),
                    declared: Some("application/pdf".into()),
                    content: b"%PDF-1.7 arrete de nomination".to_vec(),
                }],
                submit: true,
            },
            &teacher,
            NOW,
        )
        .expect("request");
    assert_eq!(r.row.state, "submitted");
    let id = r.row.id;
    s.decide_request(id, true, None, &head, NOW)
        .expect("approve");
    s.sign_charter(id, "ch-2026", true, &teacher, NOW)
        .expect("charter");
    let r = s
        .set_request_pin(
            id,
            &Pin::new("2580").expect("pin"),
            &okey_domain::request::PinPolicy::default(),
            &teacher,
            NOW,
        )
        .expect("pin");
    assert_eq!(r.row.state, "ready_for_pickup");
    assert_eq!(r.row.serial.as_deref(), Some("K3"));
    let slot = s
        .offer_slot("S", NOW + 86_400, "secrétariat", &head, NOW)
        .expect("slot");
    s.book_slot(id, slot.id, &teacher, NOW).expect("book");
    crate::support::fill(&s);
    s
}

/// A backup carries every table: restored into another store under another master key, every
/// table that is copied as it is holds the same rows, keys keep their custody, PIN scheme and
/// unsigned hand-over, and the restored key logs in with its holder's PIN (so what was re-sealed
/// opens). A table added to the schema later is compared here without being named.
#[test]
fn a_backup_carries_every_table_and_the_restored_store_works() {
    let src = Db::new(Kind::Sqlite).expect("sqlite");
    let s = fill_every_table(&src);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("b.okb");
    let pass = Zeroizing::new("correct horse battery".to_string());
    s.backup(&file, &pass).expect("backup");
    drop(s);
    let target = StoreConfig {
        master_key: MasterKeySource::Bytes(key_bytes(42)),
        ..StoreConfig::in_dir(dir.path().join("dst"))
    };
    Store::restore(target.clone(), &file, &pass).expect("restore");
    let before = sqlite_tables(src.path());
    let after = sqlite_tables(&dir.path().join("dst"));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    // Columns a restore rewrites on purpose: re-sealed under the new keys, or the row version.
    let rewritten = [
        "key_version",
        "sealed_seed",
        "sealed_pin_hash",
        "version",
        "wrapped",
        "sealed",
        "sealed_content",
    ];
    let mut compared = 0;
    for (table, rows) in &before {
        let restored = &after[table];
        match table.as_str() {
            "data_keys" => continue,
            "audit" => {
                assert_eq!(restored.len(), rows.len() + 1, "the restore's own record");
                continue;
            }
            _ => {}
        }
        let cols = &rows[0];
        assert_eq!(cols, &restored[0], "{table}: columns");
        let keep: Vec<usize> = (0..cols.len())
            .filter(|i| !rewritten.contains(&cols[*i].as_str()))
            .collect();
        let project = |rs: &[Vec<String>]| -> Vec<Vec<String>> {
            rs.iter()
                .map(|r| keep.iter().map(|i| r[*i].clone()).collect())
                .collect()
        };
        assert_eq!(
            project(&rows[1..]),
            project(&restored[1..]),
            "table {table}"
        );
        assert!(
            rows.len() > 1,
            "table {table} holds a row before the backup"
        );
        compared += 1;
    }
    assert!(compared >= 12, "{compared} tables compared");
    let s = Store::open(target).expect("open");
    let k2 = s.key_record("K2").expect("record");
    assert_eq!(k2.key.lot.as_deref(), Some("A"));
    assert_eq!(k2.key.custody, Some(KeyState::HandedOver));
    assert_eq!(k2.receipts.len(), 1);
    let rt = rt();
    let o = rt.block_on(verify(&s, "K2", &format!("4711{}", hotp(SEED, 0, 6)), NOW));
    assert!(o.accepted, "{o:?}");
    assert!(s.audit_verify().expect("audit").ok());
}

/// From PostgreSQL too: the backup of a store shared by nodes restores into an embedded one with
/// as many rows in every table.
#[test]
fn a_postgres_backup_carries_every_table() {
    let Some(src) = Db::new(Kind::Postgres) else {
        eprintln!("skipped: the PostgreSQL server binaries are not installed");
        return;
    };
    let s = fill_every_table(&src);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("b.okb");
    let pass = Zeroizing::new("correct horse battery".to_string());
    s.backup(&file, &pass).expect("backup");
    drop(s);
    let target = StoreConfig {
        master_key: MasterKeySource::Bytes(key_bytes(42)),
        ..StoreConfig::in_dir(dir.path().join("dst"))
    };
    Store::restore(target.clone(), &file, &pass).expect("restore");
    let url = src.url().expect("url").to_owned();
    let after = sqlite_tables(&dir.path().join("dst"));
    let counts: Vec<(String, i64)> = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        let tables: Vec<String> = c
            .query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                 AND table_name <> 'okey_schema'",
                &[],
            )
            .expect("tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        tables
            .into_iter()
            .map(|t| {
                let n: i64 = c
                    .query_one(&format!("SELECT count(*) FROM \"{t}\""), &[])
                    .expect("count")
                    .get(0);
                (t, n)
            })
            .collect()
    })
    .join()
    .expect("pg thread");
    for (t, n) in counts {
        let restored = after.get(&t).map_or(0, |r| r.len() as i64 - 1);
        match t.as_str() {
            "data_keys" => {}
            "audit" => assert_eq!(restored, n + 1, "{t}"),
            _ => assert_eq!(restored, n, "{t}"),
        }
    }
    let s = Store::open(target).expect("open");
    let o = rt().block_on(verify(&s, "K2", &format!("4711{}", hotp(SEED, 0, 6)), NOW));
    assert!(o.accepted, "{o:?}");
}
