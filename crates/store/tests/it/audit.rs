//! The audit chain detects a changed, removed or reordered record.

use okey_store::*;

use crate::common::*;

/// A store with some history, closed; returns where it is.
fn history(kind: Kind) -> Db {
    let db = Db::new(kind).expect("a database");
    let s = db.open();
    s.create_token(hotp_token("A1"), &actor()).expect("create");
    rt().block_on(async {
        for c in 0..3 {
            assert!(verify(&s, "A1", &hotp(SEED, c, 6), 10 + c).await.accepted);
        }
        verify(&s, "A1", "000000", 20).await;
        s.audit(AuditEntry {
            actor: "server".into(),
            action: "login".into(),
            subject: "alice".into(),
            serial: None,
            result: "ok".into(),
            reason: "".into(),
            at: 30,
        })
        .await
        .expect("audit");
    });
    let report = s.audit_verify().expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 6);
    let tail = s.audit_tail(2).expect("tail");
    assert_eq!(tail[0].seq, 6);
    assert_eq!(tail[0].entry.action, "login");
    assert_eq!(tail[1].entry.reason, "wrong_code");
    assert_eq!(tail[0].prev, tail[1].mac);
    db
}

fn tamper(kind: Kind, sql: &str) -> AuditReport {
    let db = history(kind);
    db.exec(sql);
    db.open().audit_verify().expect("verify")
}

fn a_changed_record_is_found(db: &Db) {
    let k = db.kind;
    let r = tamper(k, "UPDATE audit SET reason = 'accepted' WHERE seq = 5");
    assert_eq!(r.first_bad, Some(5), "{r:?}");
    assert_eq!(r.records, 4);
    let r = tamper(k, "UPDATE audit SET at = at + 1 WHERE seq = 2");
    assert_eq!(r.first_bad, Some(2), "{r:?}");
}

fn a_removed_record_is_found(db: &Db) {
    let k = db.kind;
    let r = tamper(k, "DELETE FROM audit WHERE seq = 3");
    assert_eq!(r.first_bad, Some(3), "{r:?}");
    assert!(r.problem.expect("why").contains("missing"));
    // Renumbering to hide the gap breaks the links instead.
    let r = tamper(
        k,
        "DELETE FROM audit WHERE seq = 3; UPDATE audit SET seq = seq - 1 WHERE seq > 3;",
    );
    assert_eq!(r.first_bad, Some(3), "{r:?}");
}

#[test]
fn reordered_records_are_found() {
    let r = tamper(
        Kind::Sqlite,
        "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (2, 4);
         UPDATE audit SET at = (SELECT at FROM t WHERE seq = 4), actor = (SELECT actor FROM t WHERE seq = 4),
           action = (SELECT action FROM t WHERE seq = 4), subject = (SELECT subject FROM t WHERE seq = 4),
           serial = (SELECT serial FROM t WHERE seq = 4), result = (SELECT result FROM t WHERE seq = 4),
           reason = (SELECT reason FROM t WHERE seq = 4), prev = (SELECT prev FROM t WHERE seq = 4),
           mac = (SELECT mac FROM t WHERE seq = 4) WHERE seq = 2;
         UPDATE audit SET at = (SELECT at FROM t WHERE seq = 2), actor = (SELECT actor FROM t WHERE seq = 2),
           action = (SELECT action FROM t WHERE seq = 2), subject = (SELECT subject FROM t WHERE seq = 2),
           serial = (SELECT serial FROM t WHERE seq = 2), result = (SELECT result FROM t WHERE seq = 2),
           reason = (SELECT reason FROM t WHERE seq = 2), prev = (SELECT prev FROM t WHERE seq = 2),
           mac = (SELECT mac FROM t WHERE seq = 2) WHERE seq = 4;",
    );
    assert_eq!(r.first_bad, Some(2), "{r:?}");
}

fn a_recomputed_plain_hash_does_not_pass(db: &Db) {
    // Someone without the audit key edits a record and "fixes" its MAC with a plain SHA-256.
    let zeros = match db.kind {
        Kind::Sqlite => "zeroblob(32)",
        Kind::Postgres => "decode(repeat('00', 32), 'hex')",
    };
    let r = tamper(
        db.kind,
        &format!("UPDATE audit SET reason = 'accepted', mac = {zeros} WHERE seq = 6"),
    );
    assert_eq!(r.first_bad, Some(6), "{r:?}");
}

/// The head a check reports, and a later check given it as the anchor.
fn anchored(kind: Kind, sql: &str) -> (AuditReport, AuditReport) {
    let db = history(kind);
    let before = db.open().audit_verify().expect("verify");
    let head = before.head.expect("a head");
    assert_eq!(head.seq, 6);
    db.exec(sql);
    let s = db.open();
    (
        s.audit_verify().expect("verify"),
        s.audit_verify_anchored(Some(head)).expect("verify"),
    )
}

fn a_removed_tail_is_found_against_an_earlier_head(db: &Db) {
    // The chain alone cannot tell that its newest records were deleted...
    let (plain, with_anchor) = anchored(db.kind, "DELETE FROM audit WHERE seq >= 5");
    assert!(plain.ok(), "{plain:?}");
    assert_eq!(plain.head.map(|h| h.seq), Some(4));
    // ...the head seen before can.
    assert_eq!(with_anchor.first_bad, Some(5), "{with_anchor:?}");
    assert!(
        with_anchor
            .problem
            .expect("why")
            .contains("records 5 to 6 were removed")
    );
    // Everything removed.
    let (plain, with_anchor) = anchored(db.kind, "DELETE FROM audit");
    assert!(plain.ok() && plain.head.is_none(), "{plain:?}");
    assert_eq!(with_anchor.first_bad, Some(1), "{with_anchor:?}");
}

fn a_removed_tail_hidden_by_newer_records_is_found_against_an_earlier_head(db: &Db) {
    // The newest records are deleted, then the server goes on appending: the chain is intact
    // again and as long as before, but its record 6 is not the one seen before.
    let db = history(db.kind);
    let head = db.open().audit_head().expect("head").expect("some");
    db.exec("DELETE FROM audit WHERE seq >= 5");
    let s = db.open();
    rt().block_on(async {
        for c in 3..6 {
            assert!(verify(&s, "A1", &hotp(SEED, c, 6), 40 + c).await.accepted);
        }
    });
    let plain = s.audit_verify().expect("verify");
    assert!(plain.ok(), "{plain:?}");
    assert_eq!(plain.head.map(|h| h.seq), Some(7));
    let r = s.audit_verify_anchored(Some(head)).expect("verify");
    assert_eq!(r.first_bad, Some(6), "{r:?}");
    assert!(r.problem.expect("why").contains("not the one seen before"));
}

#[test]
fn an_anchor_that_differs_from_an_intact_chain_is_reported() {
    let db = history(Kind::Sqlite);
    let s = db.open();
    let head = s.audit_head().expect("head").expect("some");
    assert_eq!(s.audit_verify().expect("verify").head, Some(head));
    // The right record: fine, at the head and below it.
    assert!(s.audit_verify_anchored(Some(head)).expect("verify").ok());
    let mut other = head;
    other.mac[0] ^= 1;
    let r = s.audit_verify_anchored(Some(other)).expect("verify");
    assert_eq!(r.first_bad, Some(6), "{r:?}");
    assert!(r.problem.expect("why").contains("not the one seen before"));
    // An anchor from a record further back must match that record.
    let tail = s.audit_tail(3).expect("tail");
    let third = AuditAnchor {
        seq: tail[2].seq,
        mac: tail[2].mac,
    };
    assert!(s.audit_verify_anchored(Some(third)).expect("verify").ok());
    let wrong = AuditAnchor {
        seq: 4,
        mac: tail[0].mac,
    };
    assert_eq!(
        s.audit_verify_anchored(Some(wrong))
            .expect("verify")
            .first_bad,
        Some(4)
    );
}

/// A store whose head was signed three times (at records 1, 4 and 6, closed in between);
/// the anchors file text and the public key. With `old_copy`, the SQLite database as it was
/// at record 4 is copied there.
fn anchored_history(db: &Db, old_copy: Option<&std::path::Path>) -> (String, AnchorPublicKey) {
    let mut anchors = String::new();
    let key;
    {
        let s = db.open();
        key = s.anchor_public_key();
        assert_eq!(s.sign_anchor("node-1", 1).expect("sign"), None);
        s.create_token(hotp_token("A1"), &actor()).expect("create");
        sign(&s, 100, &mut anchors);
        rt().block_on(async {
            for c in 0..3 {
                assert!(verify(&s, "A1", &hotp(SEED, c, 6), 10 + c).await.accepted);
            }
        });
        sign(&s, 200, &mut anchors);
    }
    if let Some(to) = old_copy {
        copy_db(db.path(), to);
    }
    {
        let s = db.open();
        rt().block_on(async {
            verify(&s, "A1", "000000", 20).await;
            assert!(verify(&s, "A1", &hotp(SEED, 3, 6), 21).await.accepted);
        });
        sign(&s, 300, &mut anchors);
        assert_eq!(s.audit_head().expect("head").map(|h| h.seq), Some(6));
        // The same key on every open.
        assert_eq!(s.anchor_public_key(), key);
    }
    (anchors, key)
}

fn sign(s: &Store, at: u64, text: &mut String) {
    let a = s.sign_anchor("node-1", at).expect("sign").expect("a head");
    text.push_str(&a.to_line());
    text.push('\n');
}

fn copy_db(from: &std::path::Path, to: &std::path::Path) {
    for name in ["okey.db", "okey.db-wal", "okey.db-shm"] {
        let (src, dst) = (from.join(name), to.join(name));
        if src.exists() {
            std::fs::copy(&src, &dst).expect("copy");
        } else if dst.exists() {
            std::fs::remove_file(&dst).expect("remove");
        }
    }
}

/// The store checked against the anchors (whose signatures must verify).
fn check_anchors(s: &Store, anchors: &str, key: &AnchorPublicKey) -> AuditReport {
    let anchors = read_anchors(anchors, key).expect("signed anchors");
    assert_eq!(
        anchors.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![1, 4, 6]
    );
    s.audit_verify_anchors(anchors.iter().map(SignedAnchor::anchor).collect())
        .expect("verify")
}

fn an_untouched_store_matches_its_signed_anchors(db: &Db) {
    let (anchors, key) = anchored_history(db, None);
    let r = check_anchors(&db.open(), &anchors, &key);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.records, 6);
}

fn a_cut_tail_is_found_against_signed_anchors(db: &Db) {
    for (n, first_bad) in [(1, 6), (2, 5), (6, 1)] {
        let db = Db::new(db.kind).expect("a database");
        let (anchors, key) = anchored_history(&db, None);
        db.exec(&format!("DELETE FROM audit WHERE seq > {}", 6 - n));
        let s = db.open();
        // The chain alone is fine...
        assert!(s.audit_verify().expect("verify").ok());
        // ...the anchors are not.
        let r = check_anchors(&s, &anchors, &key);
        assert_eq!(r.first_bad, Some(first_bad), "{n} removed: {r:?}");
        assert!(
            r.problem
                .expect("why")
                .contains(&format!("records {first_bad} to 6 were removed"))
        );
    }
}

fn a_rewritten_record_in_the_middle_is_found_against_signed_anchors(db: &Db) {
    let (anchors, key) = anchored_history(db, None);
    db.exec("UPDATE audit SET result = 'ok', reason = '' WHERE seq = 5");
    let r = check_anchors(&db.open(), &anchors, &key);
    assert_eq!(r.first_bad, Some(5), "{r:?}");
    assert!(r.problem.expect("why").contains("altered"));
}

fn a_tampered_anchor_line_is_refused(db: &Db) {
    let (anchors, key) = anchored_history(db, None);
    let lines: Vec<&str> = anchors.lines().collect();
    // Move the second anchor to record 3 and keep its signature.
    let forged = lines[1].replacen("seq=4 ", "seq=3 ", 1);
    assert_ne!(forged, lines[1]);
    let text = format!("{}\n{}\n{}\n", lines[0], forged, lines[2]);
    assert_eq!(
        read_anchors(&text, &key),
        Err(AnchorError::BadSignature { line: 2, seq: 3 })
    );
    // A line signed by another store's key.
    let other = Db::new(db.kind).expect("a database");
    let (other_anchors, _) = anchored_history(&other, None);
    assert!(matches!(
        read_anchors(&other_anchors, &key),
        Err(AnchorError::BadSignature { line: 1, .. })
    ));
    // An anchor naming record 0 is refused by the check itself.
    assert!(matches!(
        db.open().audit_verify_anchors(vec![AuditAnchor {
            seq: 0,
            mac: [0; 32]
        }]),
        Err(StoreError::Invalid { .. })
    ));
}

#[test]
fn an_old_database_put_back_is_found_against_signed_anchors() {
    let db = Db::new(Kind::Sqlite).expect("sqlite");
    let old_copy = tempfile::tempdir().expect("dir");
    let (anchors, key) = anchored_history(&db, Some(old_copy.path()));
    copy_db(old_copy.path(), db.path());
    let r = check_anchors(&db.open(), &anchors, &key);
    assert_eq!(r.first_bad, Some(5), "{r:?}");
    assert!(
        r.problem
            .expect("why")
            .contains("records 5 to 6 were removed")
    );
    // The server then goes on: the chain grows past record 6 again, intact, but record 6 is
    // not the one anchored, and record 4 (anchored too) still is.
    {
        let s = db.open();
        rt().block_on(async {
            for c in 3..6 {
                assert!(verify(&s, "A1", &hotp(SEED, c, 6), 50 + c).await.accepted);
            }
        });
        assert!(s.audit_verify().expect("verify").ok());
    }
    let r = check_anchors(&db.open(), &anchors, &key);
    assert_eq!(r.first_bad, Some(6), "{r:?}");
    assert!(
        r.problem
            .expect("why")
            .contains("rewritten after record 4, which matches"),
    );
}

#[test]
fn a_replaced_chain_is_found_against_signed_anchors() {
    // Another store of the same length: its records chain under its own audit key, but none is
    // the one anchored.
    let db = Db::new(Kind::Sqlite).expect("sqlite");
    let other = Db::new(Kind::Sqlite).expect("sqlite");
    let (anchors, key) = anchored_history(&db, None);
    anchored_history(&other, None);
    copy_db(other.path(), db.path());
    let s = db.open();
    assert!(s.audit_verify().expect("verify").ok());
    assert_ne!(s.anchor_public_key(), key);
    let r = check_anchors(&s, &anchors, &key);
    assert_eq!(r.first_bad, Some(1), "{r:?}");
    assert!(r.problem.expect("why").contains("not the one seen before"));
}

both!(
    a_changed_record_is_found,
    a_removed_record_is_found,
    a_recomputed_plain_hash_does_not_pass,
    a_removed_tail_is_found_against_an_earlier_head,
    a_removed_tail_hidden_by_newer_records_is_found_against_an_earlier_head,
    an_untouched_store_matches_its_signed_anchors,
    a_cut_tail_is_found_against_signed_anchors,
    a_rewritten_record_in_the_middle_is_found_against_signed_anchors,
    a_tampered_anchor_line_is_refused,
);
