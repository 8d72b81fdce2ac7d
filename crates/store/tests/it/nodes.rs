//! Two okey nodes (two `Store`s, each with its own writer, cache and connections) on one
//! PostgreSQL database: what one accepts or changes, the other never contradicts.

use std::sync::Arc;

use okey_store::*;

use crate::common::*;

/// Two nodes on one fresh database; None (after saying why) without PostgreSQL.
fn two_nodes(lockout: LockoutPolicy) -> Option<(Db, Store, Store)> {
    let Some(db) = Db::new(Kind::Postgres) else {
        eprintln!("skipped: the PostgreSQL server binaries are not installed");
        return None;
    };
    let open = || {
        Store::open(StoreConfig {
            lockout,
            ..db.config()
        })
        .expect("open a node")
    };
    let a = open();
    let b = open();
    Some((db, a, b))
}

#[test]
fn the_same_code_sent_to_both_nodes_at_once_is_accepted_exactly_once() {
    let Some((_db, a, b)) = two_nodes(LockoutPolicy::default()) else {
        return;
    };
    a.create_token(hotp_token("X1"), &actor()).expect("create");
    let mut t = totp_token("X2");
    t.holder = Some("xavier".into());
    a.create_token(t, &actor()).expect("create");
    // Both nodes have the rows cached before the race starts.
    a.prefetch("X1").expect("prefetch");
    b.prefetch("X1").expect("prefetch");
    let rounds = 40u64;
    let per_node = 3;
    rt().block_on(async {
        for round in 0..rounds {
            let code = Arc::new(hotp(SEED, round, 6));
            let now = 1_700_000_000 + round * 30;
            let tcode = Arc::new(totp(SEED, now, 30, 6));
            let mut tasks = Vec::new();
            for node in [&a, &b] {
                for _ in 0..per_node {
                    let (s, code, tcode) = (node.clone(), code.clone(), tcode.clone());
                    tasks.push(tokio::spawn(async move {
                        let h = verify(&s, "X1", &code, now).await;
                        let t = verify_user(&s, "xavier", &tcode, now).await;
                        (h, t)
                    }));
                }
            }
            let (mut hotp_ok, mut totp_ok) = (0, 0);
            for t in tasks {
                let (h, t) = t.await.expect("task");
                hotp_ok += usize::from(h.accepted);
                totp_ok += usize::from(t.accepted);
                for o in [&h, &t] {
                    assert!(
                        matches!(o.reason, Reason::Accepted | Reason::Replay),
                        "round {round}: losers see a replay: {o:?}"
                    );
                }
            }
            assert_eq!(
                hotp_ok, 1,
                "round {round}: one HOTP accept across both nodes"
            );
            assert_eq!(
                totp_ok, 1,
                "round {round}: one TOTP accept across both nodes"
            );
            // Whichever node committed, both now read the counter past this code.
            for node in [&a, &b] {
                assert_eq!(node.token("X1").expect("get").counter, round + 1);
            }
        }
    });
    let t = b.token("X1").expect("get");
    assert_eq!((t.counter, t.failures), (rounds, 0));
    // Both nodes appended to one chain: every outcome is in it, in one unbroken sequence.
    let expected = 2 + 2 * 2 * per_node as u64 * rounds;
    for node in [&a, &b] {
        let r = node.audit_verify().expect("audit");
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.records, expected);
    }
    assert!(
        a.stats().conflicts + b.stats().conflicts > 0,
        "the nodes did race"
    );
}

#[test]
fn a_counter_never_moves_backwards_whichever_node_commits() {
    let Some((_db, a, b)) = two_nodes(LockoutPolicy::default()) else {
        return;
    };
    a.create_token(hotp_token("M1"), &actor()).expect("create");
    rt().block_on(async {
        // Node B caches the row at counter 0.
        assert!(verify(&b, "M1", &hotp(SEED, 0, 6), 1).await.accepted);
        // Node A jumps ahead (a code further in the look-ahead window).
        assert!(verify(&a, "M1", &hotp(SEED, 6, 6), 2).await.accepted);
        // Node B's cache still says counter 1: codes 1 to 6 look fresh to it, never to the
        // database.
        for c in 1..=6 {
            let o = verify(&b, "M1", &hotp(SEED, c, 6), 3 + c).await;
            assert!(
                !o.accepted,
                "code {c} accepted again on the other node: {o:?}"
            );
        }
        assert_eq!(a.token("M1").expect("get").counter, 7);
        assert!(verify(&b, "M1", &hotp(SEED, 7, 6), 20).await.accepted);
        assert_eq!(a.token("M1").expect("get").counter, 8);
    });
}

#[test]
fn lockout_counts_failures_from_both_nodes() {
    let Some((_db, a, b)) = two_nodes(LockoutPolicy {
        hard_after: 4,
        soft_after: None,
        soft_lock_seconds: 0,
    }) else {
        return;
    };
    a.create_token(hotp_token("F1"), &actor()).expect("create");
    rt().block_on(async {
        for (i, node) in [&a, &b, &a, &b].into_iter().enumerate() {
            let o = verify(node, "F1", "000000", 10 + i as u64).await;
            assert_eq!(o.reason, Reason::WrongCode, "attempt {i}");
        }
        let t = b.token("F1").expect("get");
        assert_eq!((t.failures, t.locked), (4, true));
        // Locked for both, whichever cached what.
        for node in [&a, &b] {
            let o = verify(node, "F1", &hotp(SEED, 0, 6), 100).await;
            assert_eq!((o.accepted, o.reason), (false, Reason::Locked));
        }
        // Unlocked on A: B lets the right code through at once.
        a.unlock("F1", &actor()).expect("unlock");
        assert!(verify(&b, "F1", &hotp(SEED, 0, 6), 101).await.accepted);
    });
}

#[test]
fn a_revocation_on_one_node_is_refused_on_the_other_at_once() {
    let Some((_db, a, b)) = two_nodes(LockoutPolicy::default()) else {
        return;
    };
    a.create_token(hotp_token("R1"), &actor()).expect("create");
    a.create_token(hotp_token("R2"), &actor()).expect("create");
    rt().block_on(async {
        // B has R1 cached as active.
        assert!(verify(&b, "R1", &hotp(SEED, 0, 6), 1).await.accepted);
        a.set_status("R1", TokenStatus::Revoked, &actor())
            .expect("revoke on A");
        let o = verify(&b, "R1", &hotp(SEED, 1, 6), 2).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::NotActive));
        // Disabled on B, refused on A, which had it cached too.
        assert!(verify(&a, "R2", &hotp(SEED, 0, 6), 3).await.accepted);
        b.set_status("R2", TokenStatus::Disabled, &actor())
            .expect("disable on B");
        let o = verify(&a, "R2", &hotp(SEED, 1, 6), 4).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::NotActive));
        // A key given a new seed on A (the bench's second attempt), then confirmed there:
        // B, which holds the first seed unsealed, takes no code of the old seed.
        let mut t = hotp_token("R3");
        t.status = TokenStatus::Initialising;
        a.create_token(t.clone(), &actor()).expect("create");
        b.prefetch("R3").expect("B unseals the first seed");
        let new_seed = b"another seed, twenty".to_vec();
        t.seed = Zeroizing::new(new_seed.clone());
        a.reinitialise(t, &actor()).expect("reinitialise");
        let o = a
            .confirm_initialisation("R3", &hotp(&new_seed, 0, 6), 5, &actor())
            .await
            .expect("confirm");
        assert!(o.accepted, "{o:?}");
        let o = verify(&b, "R3", &hotp(SEED, 1, 6), 6).await;
        assert!(!o.accepted, "the first seed's code after a new seed: {o:?}");
        let o = verify(&b, "R3", &hotp(&new_seed, 1, 6), 7).await;
        assert!(o.accepted, "the new seed's code on the other node: {o:?}");
    });
    for node in [&a, &b] {
        assert!(node.audit_verify().expect("audit").ok());
    }
}

#[test]
fn nodes_starting_at_once_on_an_empty_database_set_it_up_once() {
    let Some(db) = Db::new(Kind::Postgres) else {
        eprintln!("skipped: the PostgreSQL server binaries are not installed");
        return;
    };
    let barrier = std::sync::Barrier::new(3);
    let stores: Vec<Store> = std::thread::scope(|t| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                t.spawn(|| {
                    barrier.wait();
                    db.open()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a node opened"))
            .collect()
    });
    stores[0]
        .create_token(hotp_token("S1"), &actor())
        .expect("create");
    rt().block_on(async {
        for (i, s) in stores.iter().enumerate() {
            let o = verify(s, "S1", &hotp(SEED, i as u64, 6), 1 + i as u64).await;
            assert!(
                o.accepted,
                "node {i} opens the seed another node sealed: {o:?}"
            );
        }
    });
    assert!(stores[2].audit_verify().expect("audit").ok());
}

/// A challenge issued through one node is answered through either, exactly once, when both
/// take it at the same moment.
#[test]
fn a_challenge_issued_on_one_node_is_taken_once_across_both() {
    let Some((_db, a, b)) = two_nodes(LockoutPolicy::default()) else {
        return;
    };
    let now = 1_800_000_000;
    rt().block_on(async {
        for round in 0..30u64 {
            let tx = format!("{round:032x}");
            let issuer = if round % 2 == 0 { &a } else { &b };
            issuer
                .issue_challenge(tx.clone(), "C1".into(), format!("{round:08}"), now, 120)
                .await
                .expect("issue")
                .expect("issued");
            let mut tasks = Vec::new();
            for node in [&a, &b, &a, &b] {
                let (s, tx) = (node.clone(), tx.clone());
                tasks.push(tokio::spawn(
                    async move { s.take_challenge(&tx, now + 1).await },
                ));
            }
            let mut taken = 0;
            for t in tasks {
                match t.await.expect("task").expect("take") {
                    Ok(c) => {
                        assert_eq!(c.question, format!("{round:08}"));
                        taken += 1;
                    }
                    Err(e) => assert_eq!(e, challenge::ChallengeRefusal::Used, "round {round}"),
                }
            }
            assert_eq!(taken, 1, "round {round}: one taker across two nodes");
        }
    });
}

/// Two nodes leasing the outbox at once: every mail is leased by exactly one of them.
#[test]
fn two_nodes_leasing_the_outbox_at_once_lease_each_mail_once() {
    let Some((_db, a, b)) = two_nodes(LockoutPolicy::default()) else {
        return;
    };
    let mut ids = Vec::new();
    for n in 0..60 {
        let node = if n % 2 == 0 { &a } else { &b };
        ids.push(
            node.enqueue_mail(
                outbox::NewMail {
                    message_id: format!("<okey.n{n}@example.org>"),
                    template: "test".into(),
                    to: vec!["marie.hoarau@ac-example.fr".into()],
                    cc: vec![],
                    subject: "Clé prête".into(),
                    body: "Bonjour.\n".into(),
                },
                &actor(),
            )
            .expect("enqueue"),
        );
    }
    let now = u64::MAX / 4;
    let leased: Vec<u64> = rt().block_on(async {
        let mut tasks = Vec::new();
        for (i, node) in [&a, &b, &a, &b].into_iter().enumerate() {
            let s = node.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = s
                        .claim_mail(now, 300, &format!("sender-{i}"), 3)
                        .await
                        .expect("claim");
                    if batch.is_empty() {
                        break got;
                    }
                    got.extend(batch.into_iter().map(|m| m.id));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all
    });
    let mut sorted = leased.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ids, "each mail leased exactly once: {leased:?}");
}

/// A data key rotated on one node: the other opens seeds sealed under the new key, seals its
/// own new keys under it, and its old ones keep working on both.
#[test]
fn a_data_key_rotated_on_one_node_is_followed_by_the_other() {
    let Some((_db, a, b)) = two_nodes(LockoutPolicy::default()) else {
        return;
    };
    a.create_token(hotp_token("D1"), &actor()).expect("create");
    rt().block_on(async {
        assert!(verify(&b, "D1", &hotp(SEED, 0, 6), 1).await.accepted);
    });
    let report = a.rotate_data_key().expect("rotate on A");
    assert_eq!(report.new_version, 2);
    // Created on A under key 2, verified on B, which has never seen key 2.
    a.create_token(hotp_token("D2"), &actor()).expect("create");
    // Created on B, whose active key (1) A has retired: B follows and seals under 2.
    b.create_token(hotp_token("D3"), &actor())
        .expect("create on B");
    rt().block_on(async {
        assert!(verify(&b, "D2", &hotp(SEED, 0, 6), 2).await.accepted);
        assert!(verify(&a, "D3", &hotp(SEED, 0, 6), 3).await.accepted);
        assert!(verify(&b, "D1", &hotp(SEED, 1, 6), 4).await.accepted);
        assert!(verify(&a, "D1", &hotp(SEED, 2, 6), 5).await.accepted);
    });
    // B rotates next: it numbers its key after A's, never over it.
    let report = b.rotate_data_key().expect("rotate on B");
    assert_eq!(report.new_version, 3);
    rt().block_on(async {
        assert!(verify(&a, "D2", &hotp(SEED, 1, 6), 6).await.accepted);
    });
    for node in [&a, &b] {
        assert!(node.audit_verify().expect("audit").ok());
    }
}
