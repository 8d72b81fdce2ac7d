//! Many tasks verifying the same valid code at once: exactly one is accepted.

use std::sync::Arc;

use okey_store::*;

use crate::common::*;

fn race(db: &Db, durability: Durability, tasks: usize, rounds: u64) {
    let s = Store::open(StoreConfig {
        durability,
        ..db.config()
    })
    .expect("open");
    s.create_token(hotp_token("C1"), &actor()).expect("create");
    let mut t = totp_token("C2");
    t.holder = Some("carol".into());
    s.create_token(t, &actor()).expect("create");
    rt().block_on(async {
        for round in 0..rounds {
            let code = Arc::new(hotp(SEED, round, 6));
            let now = 1_700_000_000 + round * 30;
            let tcode = Arc::new(totp(SEED, now, 30, 6));
            let mut handles = Vec::new();
            for i in 0..tasks {
                let (s, code, tcode) = (s.clone(), code.clone(), tcode.clone());
                handles.push(tokio::spawn(async move {
                    let a = actor();
                    // Half go by serial, half by user for the TOTP token.
                    let h = verify(&s, "C1", &code, now).await;
                    let req = VerifyRequest {
                        subject: if i % 2 == 0 {
                            Subject::Serial("C2")
                        } else {
                            Subject::User("carol")
                        },
                        passcode: &tcode,
                        now,
                        actor: &a,
                        client: "race",
                    };
                    let t = s.verify(req).await.expect("verify");
                    (h, t)
                }));
            }
            let mut hotp_ok = 0;
            let mut totp_ok = 0;
            for h in handles {
                let (a, b) = h.await.expect("task");
                hotp_ok += usize::from(a.accepted);
                totp_ok += usize::from(b.accepted);
                for o in [&a, &b] {
                    assert!(
                        matches!(o.reason, Reason::Accepted | Reason::Replay),
                        "losers see a replay, not a failure: {o:?}"
                    );
                }
            }
            assert_eq!(hotp_ok, 1, "round {round}: exactly one HOTP accept");
            assert_eq!(totp_ok, 1, "round {round}: exactly one TOTP accept");
        }
    });
    let t = s.token("C1").expect("get");
    assert_eq!((t.counter, t.failures), (rounds, 0));
    // Every outcome was audited: the chain holds all of them and checks out.
    let report = s.audit_verify().expect("audit");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 2 + 2 * tasks as u64 * rounds);
}

fn one_accept_among_many_with_group_commit(db: &Db) {
    race(db, Durability::GroupCommit, 64, 5);
}

fn one_accept_among_many_with_per_commit(db: &Db) {
    race(db, Durability::PerCommit, 16, 3);
}

fn group_commit_batches_concurrent_requests(db: &Db) {
    let s = db.open();
    let batch: Vec<_> = (0..200).map(|i| hotp_token(&format!("G{i:03}"))).collect();
    s.import_tokens(batch, &actor()).expect("import");
    rt().block_on(async {
        let mut handles = Vec::new();
        for i in 0..200 {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                verify(&s, &format!("G{i:03}"), &hotp(SEED, 0, 6), 5).await
            }));
        }
        for h in handles {
            assert!(h.await.expect("task").accepted);
        }
    });
    let st = s.stats();
    assert!(st.commits >= 201);
    assert!(
        st.batches < st.commits,
        "some commits shared a transaction: {st:?}"
    );
    assert_eq!(st.cache_entries, 200);
    // Every transaction's commit was timed, once, into one bucket of its histogram.
    let timed: u64 = st.commit_times_us.iter().map(|(_, n)| n).sum();
    assert_eq!(timed, st.batches, "{st:?}");
    assert_eq!(st.commit_times_us.last().map(|b| b.0), Some(u64::MAX));
    assert!(st.commit_micros > 0, "fsync'd commits take time: {st:?}");
}

/// Another writer (another okey node on a shared database) changes rows behind this store's
/// cache: every answer still follows the database.
fn a_stale_cache_costs_a_retry_never_a_wrong_answer(db: &Db) {
    let s = db.open();
    s.create_token(hotp_token("N1"), &actor()).expect("create");
    let elsewhere = |sql: &str| {
        db.exec(&format!(
            "UPDATE token_state SET {sql}, version = version + 1 WHERE serial = 'N1'"
        ))
    };
    rt().block_on(async {
        assert!(verify(&s, "N1", &hotp(SEED, 0, 6), 1).await.accepted);
        // Another node accepted codes up to counter 4: code 2 looks fine to the cache only.
        elsewhere("counter = 5");
        let o = verify(&s, "N1", &hotp(SEED, 2, 6), 2).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::Replay));
        assert!(verify(&s, "N1", &hotp(SEED, 5, 6), 3).await.accepted);
        // Disabled elsewhere: the cached "active" does not let a valid code through.
        elsewhere("status = 'disabled'");
        let o = verify(&s, "N1", &hotp(SEED, 6, 6), 4).await;
        assert_eq!(o.reason, Reason::NotActive);
        assert_eq!(s.token("N1").expect("get").counter, 6);
        // Re-enabled and locked elsewhere, then unlocked elsewhere: the cache's view of the
        // lock is never the final word.
        elsewhere("status = 'active', locked = 1");
        let o = verify(&s, "N1", &hotp(SEED, 6, 6), 5).await;
        assert_eq!(o.reason, Reason::Locked);
        elsewhere("locked = 0");
        let o = verify(&s, "N1", &hotp(SEED, 6, 6), 6).await;
        assert!(o.accepted, "{o:?}");
    });
    assert!(s.stats().conflicts >= 2);
}

/// Verifies committed in one group-commit batch: one whose new state the database cannot hold
/// (a time past 2^63) is refused on its own, and every other caller's verify still commits. A
/// token at the end of its counter range refuses the code whose successor could not be stored.
fn an_unstorable_state_fails_only_its_own_verify(db: &Db) {
    let s = db.open();
    let max = i64::MAX as u64;
    let mut big = hotp_token("BIG");
    big.counter = max - 1;
    s.create_token(big, &actor()).expect("create");
    let n = 400;
    let good: Vec<_> = (0..n).map(|i| hotp_token(&format!("N{i:04}"))).collect();
    s.import_tokens(good, &actor()).expect("import");
    let bad: Vec<_> = (0..10).map(|i| hotp_token(&format!("X{i:02}"))).collect();
    s.import_tokens(bad, &actor()).expect("import");
    let code = Arc::new(hotp(SEED, 0, 6));
    rt().block_on(async {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for i in 0..n {
            let (s2, mine) = (s.clone(), Arc::clone(&code));
            good.push(tokio::spawn(async move {
                let serial = format!("N{i:04}");
                s2.verify(VerifyRequest {
                    subject: Subject::Serial(&serial),
                    passcode: &mine,
                    now: 1_700_000_000,
                    actor: &actor(),
                    client: "",
                })
                .await
            }));
            if i % 40 == 20 {
                let (s2, code) = (s.clone(), Arc::clone(&code));
                bad.push(tokio::spawn(async move {
                    let serial = format!("X{:02}", i / 40);
                    s2.verify(VerifyRequest {
                        subject: Subject::Serial(&serial),
                        passcode: &code,
                        now: u64::MAX,
                        actor: &actor(),
                        client: "",
                    })
                    .await
                }));
            }
            // Twice only: more wrong codes would soft-lock it.
            if i % 200 == 100 {
                let s2 = s.clone();
                bad.push(tokio::spawn(async move {
                    s2.verify(VerifyRequest {
                        subject: Subject::Serial("BIG"),
                        passcode: &hotp(SEED, max, 6),
                        now: 1_700_000_000,
                        actor: &actor(),
                        client: "",
                    })
                    .await
                }));
            }
        }
        for (i, h) in good.into_iter().enumerate() {
            let o = h
                .await
                .expect("task")
                .expect("a good verify is not failed by others");
            assert!(o.accepted, "N{i:04}: {o:?}");
        }
        for h in bad {
            match h.await.expect("task") {
                Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "time"),
                Ok(o) => {
                    assert_eq!(o.serial.as_deref(), Some("BIG"));
                    assert_eq!((o.accepted, o.reason), (false, Reason::WrongCode));
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    });
    assert_eq!(s.token("BIG").expect("get").counter, max - 1);
    assert_eq!(s.token("X00").expect("get").counter, 0);
    // The last storable counter still verifies, leaving the counter at its maximum.
    let o = rt().block_on(verify(&s, "BIG", &hotp(SEED, max - 1, 6), 1_700_000_000));
    assert!(o.accepted, "{o:?}");
    assert_eq!(s.token("BIG").expect("get").counter, max);
}

both!(
    one_accept_among_many_with_group_commit,
    one_accept_among_many_with_per_commit,
    group_commit_batches_concurrent_requests,
    a_stale_cache_costs_a_retry_never_a_wrong_answer,
    an_unstorable_state_fails_only_its_own_verify,
);
