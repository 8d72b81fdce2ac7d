//! Two `okey serve` processes on one PostgreSQL database (a throwaway cluster the test starts):
//! the same code sent to both at once is accepted once, a revocation on one is refused on the
//! other at once, and a node killed with SIGKILL under load loses no acknowledged verify and
//! lets no replay through the other; a challenge issued by one is answered once through the
//! other; each mail of the shared outbox is sent once, by one of the two (a real SMTP server).

use std::time::Duration;

use okey_e2e::pg_cluster::Cluster;
use okey_e2e::{Server, check, hotp_token, reference_hotp, verify_serial};
use okey_server::proto;

const SEED_HEX: &str = "3132333435363738393031323334353637383930";

/// Two nodes on one fresh database; None (after saying why) without PostgreSQL.
fn two_nodes() -> Option<(Server, Server)> {
    two_nodes_with("")
}

/// Two nodes on one fresh database, both with the `tables` (TOML tables after `[store]`).
fn two_nodes_with(tables: &str) -> Option<(Server, Server)> {
    let Some(cluster) = Cluster::shared() else {
        eprintln!("skipped: the PostgreSQL server binaries are not installed");
        return None;
    };
    let store = format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{}\"\n{tables}",
        cluster.fresh_db()
    );
    let a = Server::start_with(&store);
    // The second node shares the first's master key and store; it makes no admin key of its
    // own (the store has callers already).
    let b = Server::start_node(
        &format!(
            "master_key_file = \"{}\"\n{store}",
            a.data_dir.join("master.key").display()
        ),
        &a.admin_key,
    );
    assert!(
        !b.data_dir.join("admin.key").exists(),
        "the second node found the store already set up"
    );
    Some((a, b))
}

fn seed() -> Vec<u8> {
    hex::decode(SEED_HEX).expect("hex")
}

#[tokio::test]
async fn the_same_code_at_both_nodes_is_accepted_once_and_a_revocation_holds_at_once() {
    let Some((a, b)) = two_nodes() else {
        return;
    };
    let mut ca = a.admin().await;
    let mut cb = b.admin().await;
    ca.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("N1", SEED_HEX), hotp_token("N2", SEED_HEX)],
        })
        .await
        .expect("import on A");
    // Imported on A, visible on B.
    assert!(cb.serials().await.contains(&"N1".to_owned()));
    for round in 0..30u64 {
        let code = reference_hotp(&seed(), round, 6);
        let mut tasks = Vec::new();
        for c in [&ca, &cb, &ca, &cb] {
            let mut c = c.clone();
            let code = code.clone();
            tasks.push(tokio::spawn(async move {
                check(&mut c, verify_serial("N1", &code)).await
            }));
        }
        let mut accepted = 0;
        for t in tasks {
            let (ok, reason) = t.await.expect("task");
            accepted += usize::from(ok);
            assert!(ok || reason == "replay", "round {round}: {reason}");
        }
        assert_eq!(accepted, 1, "round {round}: one accept across two nodes");
    }
    // B verifies N2 (and caches it); A revokes it; B refuses the next valid code at once.
    assert!(
        check(&mut cb, verify_serial("N2", &reference_hotp(&seed(), 0, 6)))
            .await
            .0
    );
    ca.tokens
        .revoke_token(proto::TokenRef {
            serial: "N2".into(),
        })
        .await
        .expect("revoke on A");
    let (ok, reason) = check(&mut cb, verify_serial("N2", &reference_hotp(&seed(), 1, 6))).await;
    assert!(!ok, "a revoked token verified on the other node: {reason}");
    // Both nodes read one audit chain, whole.
    for c in [&mut ca, &mut cb] {
        let r = c
            .audit
            .verify_audit_chain(proto::VerifyAuditChainRequest::default())
            .await
            .expect("audit verify")
            .into_inner();
        assert!(r.intact, "{r:?}");
    }
}

#[tokio::test]
async fn a_node_killed_under_load_loses_nothing_it_acknowledged() {
    let Some((mut a, b)) = two_nodes() else {
        return;
    };
    let mut cb = b.admin().await;
    let serials: Vec<String> = (0..6).map(|i| format!("K{i}")).collect();
    cb.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: serials.iter().map(|s| hotp_token(s, SEED_HEX)).collect(),
        })
        .await
        .expect("import");
    let ca = a.admin().await;
    // Load on A: each token walks its counter; every ACCEPT A answers is recorded.
    let mut tasks = Vec::new();
    for serial in serials.clone() {
        let mut c = ca.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for counter in 0..2000u64 {
                let code = reference_hotp(&seed(), counter, 6);
                match c.auth.verify(verify_serial(&serial, &code)).await {
                    Ok(r) if r.get_ref().result == proto::VerifyResult::Accept as i32 => {
                        accepted.push((serial.clone(), counter));
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            accepted
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.kill9();
    let mut accepted = Vec::new();
    for t in tasks {
        accepted.extend(t.await.expect("task"));
    }
    assert!(
        !accepted.is_empty(),
        "A acknowledged some verifies before it died"
    );
    // Every code A acknowledged is refused by B: the commit was durable before the answer.
    for (serial, counter) in &accepted {
        let (ok, reason) = check(
            &mut cb,
            verify_serial(serial, &reference_hotp(&seed(), *counter, 6)),
        )
        .await;
        assert!(!ok, "{serial} code {counter} replayed through B: {reason}");
    }
    // A restarts on the same database and agrees.
    a.restart();
    let mut ca = a.admin().await;
    for serial in &serials {
        let last = accepted
            .iter()
            .filter(|(s, _)| s == serial)
            .map(|(_, c)| *c)
            .max();
        if let Some(last) = last {
            let (ok, _) = check(
                &mut ca,
                verify_serial(serial, &reference_hotp(&seed(), last, 6)),
            )
            .await;
            assert!(
                !ok,
                "{serial} code {last} replayed through A after its restart"
            );
        }
    }
}

const OCRA_SUITE: &str = "OCRA-1:HOTP-SHA1-6:QN08";

fn ocra_response(question: &str) -> String {
    use okey_otp::{OcraInput, OcraSuite, OtpKey, ocra};
    let suite: OcraSuite = OCRA_SUITE.parse().expect("suite");
    let key = OtpKey::new(suite.algorithm(), &seed()).expect("key");
    ocra(
        &key,
        &suite,
        &OcraInput {
            question,
            ..OcraInput::default()
        },
    )
    .expect("ocra")
    .as_str()
    .to_owned()
}

async fn answer(c: &mut okey_e2e::Client, serial: &str, tx: &str, resp: &str) -> (bool, String) {
    let r = c
        .auth
        .verify(proto::VerifyRequest {
            transaction_id: tx.to_owned(),
            ..verify_serial(serial, resp)
        })
        .await
        .expect("verify")
        .into_inner();
    (r.result == proto::VerifyResult::Accept as i32, r.reason)
}

#[tokio::test]
async fn a_challenge_issued_by_one_node_is_answered_once_through_the_other() {
    let Some((a, b)) = two_nodes() else {
        return;
    };
    let mut ca = a.admin().await;
    let mut cb = b.admin().await;
    ca.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![proto::ImportedToken {
                serial: "CR-N".into(),
                kind: proto::TokenKind::Hardware as i32,
                otp: Some(proto::OtpParameters {
                    r#type: proto::OtpType::Ocra as i32,
                    ocra_suite: OCRA_SUITE.into(),
                    ..Default::default()
                }),
                seed_hex: SEED_HEX.into(),
                ..Default::default()
            }],
        })
        .await
        .expect("import");
    let subject = || {
        Some(proto::Subject {
            kind: Some(proto::subject::Kind::Serial("CR-N".into())),
        })
    };
    for round in 0..5 {
        // Issued by A, answered by B and A at once with the right response: one accept.
        let t = ca
            .auth
            .trigger_challenge(proto::TriggerChallengeRequest {
                subject: subject(),
                client: None,
            })
            .await
            .expect("trigger on A")
            .into_inner();
        let good = ocra_response(&t.challenge);
        let mut tasks = Vec::new();
        for c in [&cb, &ca, &cb] {
            let (mut c, tx, good) = (c.clone(), t.transaction_id.clone(), good.clone());
            tasks.push(tokio::spawn(async move {
                answer(&mut c, "CR-N", &tx, &good).await
            }));
        }
        let mut accepted = 0;
        for task in tasks {
            let (ok, reason) = task.await.expect("task");
            accepted += usize::from(ok);
            assert!(ok || reason == "challenge_used", "round {round}: {reason}");
        }
        assert_eq!(accepted, 1, "round {round}: one accept across two nodes");
    }
    // Issued through B by an empty passcode, answered through A; then spent on both.
    let r = cb
        .auth
        .verify(proto::VerifyRequest {
            subject: subject(),
            ..Default::default()
        })
        .await
        .expect("ask B")
        .into_inner();
    assert_eq!(r.result, proto::VerifyResult::Challenge as i32);
    let good = ocra_response(&r.challenge);
    assert_eq!(
        answer(&mut ca, "CR-N", &r.transaction_id, &good).await,
        (true, "accepted".to_owned())
    );
    for c in [&mut cb, &mut ca] {
        let (ok, reason) = answer(c, "CR-N", &r.transaction_id, &good).await;
        assert!(!ok);
        assert_eq!(reason, "challenge_used");
    }
}

#[test]
fn each_mail_of_the_shared_outbox_goes_out_once() {
    let sink = okey_e2e::SmtpSink::start(0);
    let smtp = format!(
        "[smtp]\nrelay = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"okey <okey@ac-example.fr>\"\nretry_initial_seconds = 1\n\
         retry_max_seconds = 1\npoll_seconds = 1\ntimeout_seconds = 5\n",
        sink.port
    );
    let Some((a, b)) = two_nodes_with(&smtp) else {
        return;
    };
    // Mails enqueued through both nodes, while both senders run.
    let n = 24;
    let mut ids = Vec::new();
    for i in 0..n {
        let node = if i % 2 == 0 { &a } else { &b };
        let out = node.cli(
            &["mail", "test", "--to", &format!("agent{i}@ac-example.fr")],
            &[],
        );
        assert!(
            out.status.success(),
            "okey mail test: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        ids.push(
            printed
                .split_whitespace()
                .find(|w| w.starts_with("<okey.") && w.ends_with('>'))
                .unwrap_or_else(|| panic!("no Message-ID in {printed:?}"))
                .to_owned(),
        );
    }
    let got = sink.wait_for(n, Duration::from_secs(60));
    assert_eq!(got.len(), n, "not every mail arrived");
    // A few more rounds of both senders: nothing comes twice.
    std::thread::sleep(Duration::from_secs(3));
    let mut received: Vec<String> = sink
        .received()
        .iter()
        .map(|m| m["message_id"].as_str().expect("message id").to_owned())
        .collect();
    received.sort();
    ids.sort();
    assert_eq!(received, ids, "each mail exactly once");
    // Both nodes see every mail sent.
    for node in [&a, &b] {
        let out = node.cli(&["mail", "queue", "--all", "--json"], &[]);
        let q: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(q["pending"], 0, "{q}");
        assert_eq!(q["sent"], n as u64, "{q}");
    }
}

/// A node dies while sending a mail (its relay never answers): the mail stays leased to it, no
/// other node sends it before the lease runs out, and the second node sends it once after.
#[test]
fn a_mail_leased_by_a_node_killed_mid_send_goes_out_once_through_the_other_after_the_lease() {
    let Some(cluster) = Cluster::shared() else {
        eprintln!("skipped: the PostgreSQL server binaries are not installed");
        return;
    };
    let store = format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{}\"\n",
        cluster.fresh_db()
    );
    let smtp = |port: u16| {
        format!(
            "[smtp]\nrelay = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             from = \"okey <okey@ac-example.fr>\"\nretry_initial_seconds = 1\n\
             retry_max_seconds = 1\npoll_seconds = 1\ntimeout_seconds = 5\n"
        )
    };
    // A's relay accepts the connection and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let (accepted_tx, accepted_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            held.push(conn);
            let _ = accepted_tx.send(());
        }
    });
    let mut a = Server::start_with(&format!("{store}{}", smtp(silent_port)));
    let out = a.cli(&["mail", "test", "--to", "marie.hoarau@ac-example.fr"], &[]);
    assert!(
        out.status.success(),
        "okey mail test: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A leased the mail and is in the middle of sending it: killed there.
    accepted_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("A's sender reached its relay");
    let killed = std::time::Instant::now();
    a.kill9();
    let sink = okey_e2e::SmtpSink::start(0);
    let _b = Server::start_node(
        &format!(
            "master_key_file = \"{}\"\n{store}{}",
            a.data_dir.join("master.key").display(),
            smtp(sink.port)
        ),
        &a.admin_key,
    );
    // The lease is four SMTP timeouts, at least a minute: B leaves the mail alone until then.
    let early = sink.wait_for(1, Duration::from_secs(50).saturating_sub(killed.elapsed()));
    assert!(early.is_empty(), "sent during A's lease: {early:?}");
    let got = sink.wait_for(1, Duration::from_secs(40));
    assert_eq!(got.len(), 1, "B never took the mail over");
    assert!(
        killed.elapsed() >= Duration::from_secs(55),
        "{:?}",
        killed.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.received().len(), 1, "sent more than once");
}
