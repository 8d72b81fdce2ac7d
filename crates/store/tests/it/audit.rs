//! The audit chain detects a changed, removed or reordered record.

use okey_store::*;

use crate::common::*;

/// A store with some history, closed; returns its directory.
fn history() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    let s = open(dir.path());
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
    dir
}

fn tamper(sql: &str) -> AuditReport {
    let dir = history();
    let db = rusqlite::Connection::open(dir.path().join("okey.db")).expect("db");
    db.execute_batch(sql).expect("tamper");
    drop(db);
    open(dir.path()).audit_verify().expect("verify")
}

#[test]
fn a_changed_record_is_found() {
    let r = tamper("UPDATE audit SET reason = 'accepted' WHERE seq = 5");
    assert_eq!(r.first_bad, Some(5), "{r:?}");
    assert_eq!(r.records, 4);
    let r = tamper("UPDATE audit SET at = at + 1 WHERE seq = 2");
    assert_eq!(r.first_bad, Some(2), "{r:?}");
}

#[test]
fn a_removed_record_is_found() {
    let r = tamper("DELETE FROM audit WHERE seq = 3");
    assert_eq!(r.first_bad, Some(3), "{r:?}");
    assert!(r.problem.expect("why").contains("missing"));
    // Renumbering to hide the gap breaks the links instead.
    let r =
        tamper("DELETE FROM audit WHERE seq = 3; UPDATE audit SET seq = seq - 1 WHERE seq > 3;");
    assert_eq!(r.first_bad, Some(3), "{r:?}");
}

#[test]
fn reordered_records_are_found() {
    let r = tamper(
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

#[test]
fn a_recomputed_plain_hash_does_not_pass() {
    // Someone without the audit key edits a record and "fixes" its MAC with a plain SHA-256.
    let r = tamper("UPDATE audit SET reason = 'accepted', mac = zeroblob(32) WHERE seq = 6");
    assert_eq!(r.first_bad, Some(6), "{r:?}");
}
