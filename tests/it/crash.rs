//! Crash safety at the service level: verify load, `kill -9` at random moments, restart. Every
//! code that was answered ACCEPT is rejected when replayed; counters never move backwards; lock
//! states survive. Heavy: run with `--run-ignored only` (CI does).

use std::collections::HashMap;
use std::time::Duration;

use okey_e2e::{Server, check, hotp_token, reference_hotp, verify_serial};
use okey_server::proto;
use rand::{Rng, SeedableRng};

const TOKENS: usize = 16;
const ROUNDS: usize = 20;

#[tokio::test]
#[ignore = "heavy: kills and restarts the server repeatedly"]
async fn kill_nine_never_lets_an_accepted_code_through_again() {
    let mut server = Server::start_with("[lockout]\nhard_after = 3\nsoft_after = 0\n");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let seeds: Vec<Vec<u8>> = (0..TOKENS)
        .map(|_| (0..20).map(|_| rng.random()).collect())
        .collect();
    {
        let mut c = server.admin().await;
        let tokens = seeds
            .iter()
            .enumerate()
            .map(|(i, s)| hotp_token(&format!("C{i:03}"), &hex::encode(s)))
            .collect();
        c.tokens
            .import_tokens(proto::ImportTokensRequest { tokens })
            .await
            .expect("import");
        // One token locked before any crash.
        for _ in 0..3 {
            assert!(!check(&mut c, verify_serial("C000", "000000")).await.0);
        }
    }
    let mut accepted: Vec<(String, String)> = Vec::new();
    let mut counters: HashMap<String, u64> = HashMap::new();
    for round in 0..ROUNDS {
        let c = server.admin().await;
        let mut tasks = Vec::new();
        for (i, seed) in seeds.iter().enumerate().skip(1) {
            let serial = format!("C{i:03}");
            let start = counters.get(&serial).copied().unwrap_or(0);
            let seed = seed.clone();
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut ok = Vec::new();
                let mut counter = start;
                loop {
                    let code = reference_hotp(&seed, counter, 6);
                    match c.auth.verify(verify_serial(&serial, &code)).await {
                        Ok(r) if r.get_ref().result == proto::VerifyResult::Accept as i32 => {
                            ok.push((serial.clone(), code, counter));
                            counter += 1;
                        }
                        Ok(_) => counter += 1,
                        Err(_) => break,
                    }
                }
                ok
            }));
        }
        let wait = rand::rngs::StdRng::seed_from_u64(round as u64).random_range(50..400);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.kill9();
        for t in tasks {
            for (serial, code, counter) in t.await.expect("task") {
                let next = counters.entry(serial.clone()).or_insert(0);
                *next = (*next).max(counter + 1);
                accepted.push((serial, code));
            }
        }
        server.restart();
    }
    assert!(
        accepted.len() > 50,
        "the load was too small to mean anything: {}",
        accepted.len()
    );
    let mut c = server.admin().await;
    // Every accepted code's counter lies below the stored counter, so none can match again...
    for (serial, next) in &counters {
        let t = c
            .tokens
            .get_token(proto::GetTokenRequest {
                serial: serial.clone(),
            })
            .await
            .expect("get")
            .into_inner();
        assert!(
            t.counter >= *next,
            "{serial}: counter {} went back below {next}",
            t.counter
        );
    }
    // ...and replaying them through Verify says so. Unlock between replays so that the lockout
    // (three failures here) cannot be what rejects them.
    let mut last_per_token: HashMap<&str, Vec<&str>> = HashMap::new();
    for (serial, code) in &accepted {
        last_per_token
            .entry(serial.as_str())
            .or_default()
            .push(code.as_str());
    }
    for (serial, codes) in &last_per_token {
        for code in codes.iter().rev().take(4) {
            c.tokens
                .unlock_token(proto::TokenRef {
                    serial: (*serial).to_owned(),
                })
                .await
                .expect("unlock");
            let (ok, reason) = check(&mut c, verify_serial(serial, code)).await;
            assert!(
                !ok,
                "{serial}: an accepted code was accepted again after a crash"
            );
            assert_ne!(reason, "locked");
        }
    }
    let locked = c
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: "C000".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(locked.locked, "the lock did not survive the crashes");
    assert!(
        !check(
            &mut c,
            verify_serial("C000", &reference_hotp(&seeds[0], 0, 6))
        )
        .await
        .0
    );
}
