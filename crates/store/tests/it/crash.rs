//! Crash test: a child process commits verifies in a loop and prints each acknowledged one; it
//! is killed with SIGKILL at random moments. After each kill the store must hold every
//! acknowledged commit, no counter may have moved backwards, and SQLite's integrity check and
//! the audit chain must pass.
//!
//! The child is this test binary itself, re-run on the ignored `crash_child` test with the data
//! directory in an environment variable.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng;

use crate::common::*;

const DIR_VAR: &str = "OKEY_CRASH_CHILD_DIR";
const TOKENS: usize = 4;

fn serial(i: usize) -> String {
    format!("K{i}")
}

/// The child: verify the next code of each token forever, printing `ACK serial counter` once
/// the store has acknowledged it. Only runs when started by the parent.
#[test]
#[ignore = "started by crash::sigkill_at_random_moments_loses_nothing"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let s = open(std::path::Path::new(&dir));
    rt().block_on(async {
        let mut handles = Vec::new();
        for i in 0..TOKENS {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                let serial = serial(i);
                let mut counter = s.token(&serial).expect("token").counter;
                loop {
                    let o = verify(&s, &serial, &hotp(SEED, counter, 6), 1).await;
                    assert!(o.accepted, "{serial} at {counter}: {o:?}");
                    counter += 1;
                    println!("ACK {serial} {counter}");
                }
            }));
        }
        for h in handles {
            let _ = h.await;
        }
    });
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let s = open(dir.path());
        let batch = (0..TOKENS).map(|i| hotp_token(&serial(i))).collect();
        s.import_tokens(batch, &actor()).expect("import");
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = rand::rng();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut total_acks = 0usize;
    let rounds = 50;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args(["crash::crash_child", "--exact", "--ignored", "--nocapture"])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut acks: BTreeMap<String, u64> = BTreeMap::new();
            let mut n = 0usize;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split(' ');
                if let (Some("ACK"), Some(s), Some(c)) = (parts.next(), parts.next(), parts.next())
                    && let Ok(c) = c.parse::<u64>()
                {
                    let e = acks.entry(s.to_owned()).or_default();
                    *e = (*e).max(c);
                    n += 1;
                }
            }
            (acks, n)
        });
        // Kill at a random moment: sometimes before it opened the store, mostly mid-stream.
        let delay = if round % 10 == 0 {
            rng.random_range(0..40)
        } else {
            rng.random_range(80..400)
        };
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let (acks, n) = reader.join().expect("reader");
        total_acks += n;

        let s = open(dir.path());
        assert_eq!(s.integrity_check().expect("check"), "ok", "round {round}");
        for i in 0..TOKENS {
            let serial = serial(i);
            let stored = s.token(&serial).expect("token").counter;
            let acked = acks.get(&serial).copied().unwrap_or(0);
            assert!(
                stored >= acked,
                "round {round}: {serial} acknowledged {acked} but stored {stored}"
            );
            let before = last.get(&serial).copied().unwrap_or(0);
            assert!(
                stored >= before,
                "round {round}: {serial} went back from {before} to {stored}"
            );
            last.insert(serial, stored);
        }
        let report = s.audit_verify().expect("audit");
        assert!(report.ok(), "round {round}: {report:?}");
    }
    assert!(
        total_acks > rounds,
        "the child made progress ({total_acks} acknowledged commits)"
    );
    eprintln!("crash test: {rounds} kills, {total_acks} acknowledged commits checked");
}
