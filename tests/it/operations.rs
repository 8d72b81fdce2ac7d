//! What operators and generic tools see: health, reflection, metrics.

use okey_e2e::{RFC_SECRET_HEX, Server, check, hotp_token, scrape, verify_serial, with_metrics};
use okey_server::proto;

#[tokio::test]
async fn health_and_metrics() {
    let (server, metrics_port) = with_metrics();

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "okey.v1.AuthService".into(),
        })
        .await
        .expect("health answers without a credential")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("M1", RFC_SECRET_HEX)],
        })
        .await
        .expect("import");
    assert!(check(&mut c, verify_serial("M1", "755224")).await.0);
    assert!(!check(&mut c, verify_serial("M1", "755224")).await.0);

    let body = scrape(metrics_port);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("okey_verify_total{result=\"accept\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("okey_verify_total{result=\"reject\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("okey_verify_latency_seconds_count 2"),
        "{body}"
    );
    assert!(body.contains("okey_commit_batch_size_bucket"), "{body}");
    // Every fsync'd transaction is timed: as many commit durations as batches.
    let count = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in {body}"))
    };
    let batches = count("okey_commit_batch_size_count");
    assert!(batches >= 2, "{body}");
    assert_eq!(
        count("okey_commit_duration_seconds_count"),
        batches,
        "{body}"
    );
    assert!(
        body.contains("okey_commit_duration_seconds_bucket{le=\"0.00025\"}"),
        "{body}"
    );
}

/// Run `okey bench ARGS --json --quiet`, which must succeed, and return its reports.
fn bench(args: &[&str]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(okey_e2e::okey_binary())
        .arg("bench")
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("run okey bench");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("JSON report") {
        serde_json::Value::Array(reports) => reports,
        other => panic!("not a list of reports: {other}"),
    }
}

/// `okey bench` against a running server, with its own HTTP/2 client and with tonic's: every
/// verify it sends arrives (the server's own counters agree), and its replay and wrong-code
/// checks hold against the real service.
#[tokio::test]
async fn bench_drives_a_running_server_with_either_client() {
    let (server, metrics_port) = with_metrics();
    let mut sent = 0u64;
    for client in ["lean", "tonic"] {
        let key_file = server.data_dir.join("admin.key");
        let reports = bench(&[
            "--server",
            &format!("http://{}", server.addr),
            "--api-key-file",
            &key_file.to_string_lossy(),
            "--tokens",
            "50",
            "--concurrency",
            "8",
            "--connections",
            "2",
            "--count",
            "1500",
            "--wrong",
            "0.1",
            "--replay",
            "0.1",
            "--client",
            client,
        ]);
        let r = &reports[0];
        let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
        assert_eq!(r["client"], client, "{r}");
        assert_eq!(n("verifies"), 1500, "{r}");
        assert_eq!(n("errors"), 0, "{r}");
        assert_eq!(n("accepted") + n("rejected"), 1500, "{r}");
        assert_eq!(n("valid_rejected"), 0, "{r}");
        assert_eq!(n("wrong_accepted"), 0, "{r}");
        assert_eq!(n("replays_accepted"), 0, "{r}");
        assert!(
            n("replays_sent") > 0 && n("rejected") > n("replays_sent"),
            "{r}"
        );
        sent += n("verifies");
    }
    let body = scrape(metrics_port);
    assert!(
        body.contains(&format!("okey_verify_latency_seconds_count {sent}\n")),
        "{body}"
    );
}

/// `okey bench --floor`: the same load goes to okey and to the transport floor (okey's gRPC stack
/// answering Verify with no work), both in this process; every request arrives, and okey's
/// correctness checks still hold. `--floor` with `--server` is refused before anything runs.
#[test]
fn bench_floor_measures_the_transport_beside_okey() {
    let reports = bench(&[
        "--floor",
        "--tokens",
        "40",
        "--concurrency",
        "8",
        "--connections",
        "2",
        "--count",
        "600",
    ]);
    assert_eq!(reports.len(), 2, "{reports:?}");
    let (okey, floor) = (&reports[0], &reports[1]);
    let n = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert_eq!(okey["server"], "okey", "{okey}");
    assert_eq!(okey["durability"], "group-commit", "{okey}");
    assert_eq!(n(okey, "verifies"), 600, "{okey}");
    assert_eq!(n(okey, "errors"), 0, "{okey}");
    assert_eq!(n(okey, "valid_rejected"), 0, "{okey}");
    assert_eq!(
        n(okey, "wrong_accepted") + n(okey, "replays_accepted"),
        0,
        "{okey}"
    );
    // Every verify is committed, in fewer fsync'd transactions than verifies (group commit).
    let transactions = n(okey, "transactions");
    assert!((1..=600).contains(&transactions), "{okey}");
    let shared = okey["verifies_per_transaction"]
        .as_f64()
        .expect("a mean batch");
    assert!(shared >= 1.0, "{okey}");
    // The store's timings and the disk probe are reported for okey in this process, and make
    // sense: a durable commit cannot be faster than nothing, and the probe flushed something.
    let ms = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert!(ms(okey, "commit_ms") > 0.0, "{okey}");
    assert!(ms(okey, "requests_ms_per_transaction") >= 0.0, "{okey}");
    // The writer's wait for the requests in flight is reported too.
    assert!(ms(okey, "linger_ms_per_transaction") >= 0.0, "{okey}");
    assert!(ms(okey, "disk_flush_ms") > 0.0, "{okey}");
    assert_eq!(floor["server"], "transport-floor", "{floor}");
    for k in [
        "transactions",
        "commit_ms",
        "requests_ms_per_transaction",
        "linger_ms_per_transaction",
        "disk_flush_ms",
    ] {
        assert!(floor[k].is_null(), "{k}: {floor}");
    }
    assert_eq!(floor["durability"], "none", "{floor}");
    assert_eq!(n(floor, "verifies"), 600, "{floor}");
    assert_eq!(n(floor, "accepted"), 600, "{floor}");
    assert_eq!(n(floor, "errors"), 0, "{floor}");
    assert!(
        floor["verifies_per_second"]
            .as_f64()
            .is_some_and(|v| v > 0.0),
        "{floor}"
    );

    let refused = std::process::Command::new(okey_e2e::okey_binary())
        .args(["bench", "--floor", "--server", "http://127.0.0.1:9"])
        .output()
        .expect("run okey bench");
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("cannot be combined with --server"), "{err}");
}

/// The server logs the audit chain's head; `VerifyAuditChain` reports it and checks an anchor
/// against the chain (the store's tests cover a deleted tail; here the service's contract).
#[tokio::test]
async fn the_audit_head_is_logged_reported_and_checked_as_an_anchor() {
    let server = Server::start_logging("audit_head_log_seconds = 1\n");
    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("H1", RFC_SECRET_HEX)],
        })
        .await
        .expect("import");
    assert!(check(&mut c, verify_serial("H1", "755224")).await.0);
    let report = c
        .audit
        .verify_audit_chain(proto::VerifyAuditChainRequest::default())
        .await
        .expect("verify")
        .into_inner();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.head_sequence, report.entries);
    assert_eq!(report.head_hash.len(), 64);
    // The newest entry is the one ListAudit shows first.
    let newest = c.audit_records(1).await;
    assert_eq!(newest[0].sequence, report.head_sequence);
    assert_eq!(newest[0].hash, report.head_hash);

    // Within a couple of intervals the log carries the same head.
    let line = format!(
        "sequence={} hash={}",
        report.head_sequence, report.head_hash
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !server.log().contains(&line) {
        assert!(
            std::time::Instant::now() < deadline,
            "no head logged as {line}: {}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let anchored = |seq: u64, hash: &str| proto::VerifyAuditChainRequest {
        anchor_sequence: seq,
        anchor_hash: hash.to_owned(),
        ..Default::default()
    };
    // The logged head, as an anchor: intact (and still after more entries are appended).
    assert!(check(&mut c, verify_serial("H1", "287082")).await.0);
    let r = c
        .audit
        .verify_audit_chain(anchored(report.head_sequence, &report.head_hash))
        .await
        .expect("verify")
        .into_inner();
    assert!(r.intact, "{r:?}");
    assert!(r.head_sequence > report.head_sequence);
    // A head from beyond the chain's end: entries were removed.
    let r = c
        .audit
        .verify_audit_chain(anchored(r.head_sequence + 5, &report.head_hash))
        .await
        .expect("verify")
        .into_inner();
    assert!(!r.intact, "{r:?}");
    assert!(r.detail.contains("were removed"), "{r:?}");
    // A different hash at a present entry: rewritten.
    let mut other = report.head_hash.clone().into_bytes();
    other[0] = if other[0] == b'0' { b'1' } else { b'0' };
    let other = String::from_utf8(other).expect("ascii");
    let r = c
        .audit
        .verify_audit_chain(anchored(report.head_sequence, &other))
        .await
        .expect("verify")
        .into_inner();
    assert!(
        !r.intact && r.first_bad_sequence == report.head_sequence,
        "{r:?}"
    );
    // Half an anchor, or a malformed hash, is bad input.
    for bad in [
        anchored(3, ""),
        anchored(0, &report.head_hash),
        anchored(3, "xyz"),
        anchored(3, &report.head_hash[..62]),
    ] {
        let e = c.audit.verify_audit_chain(bad).await.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    }
}

/// A secret the command line does not carry is asked for; from a pipe (a script), it is read as
/// one line of standard input: the seed of `okey token import`, the passcode of `okey verify`.
#[test]
fn secrets_left_off_the_command_line_are_read_from_a_pipe() {
    use std::io::Write;
    let server = Server::start();
    let run = |args: &[&str], input: &str| {
        let mut child = server
            .as_admin(std::process::Command::new(okey_e2e::okey_binary()))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run okey");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("okey output")
    };
    let out = run(
        &["token", "import", "--serial", "P-1"],
        &format!("{}\n", okey_e2e::RFC_SECRET_HEX),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["verify", "--serial", "P-1"], "755224\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("accept P-1"));
    let out = run(&["verify", "--serial", "P-1"], "755224\n");
    assert_eq!(out.status.code(), Some(1), "a replay is rejected");
}

/// `okey serve` on `data_dir` and `listen`, expected to refuse to start: its stderr.
fn serve_refused(data_dir: &std::path::Path, listen: &str) -> String {
    let out = std::process::Command::new(okey_e2e::okey_binary())
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .env("OKEY_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run okey serve");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn store_files_are_created_owner_only_and_a_loose_database_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::start();
    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("F1", RFC_SECRET_HEX)],
        })
        .await
        .expect("import");
    for name in [
        "okey.db",
        "okey.db-wal",
        "okey.db-shm",
        "okey.lock",
        "master.key",
    ] {
        let mode = std::fs::metadata(server.data_dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
    }
    server.kill9();
    let db = server.data_dir.join("okey.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let said = serve_refused(&server.data_dir, "127.0.0.1:0");
    assert!(said.contains("okey.db has mode 0644"), "{said}");
    assert!(said.contains("chmod 600"), "{said}");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let key = server.data_dir.join("master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let said = serve_refused(&server.data_dir, "127.0.0.1:0");
    assert!(said.contains("master.key has mode 0640"), "{said}");
}

#[tokio::test]
async fn a_start_that_cannot_happen_says_its_cause_once() {
    let server = Server::start();
    let in_use = "is in use by another okey process";
    let said = serve_refused(&server.data_dir, "127.0.0.1:0");
    assert_eq!(said.matches(in_use).count(), 1, "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");

    let other = tempfile::tempdir().expect("dir");
    let said = serve_refused(&other.path().join("data"), &server.addr.to_string());
    assert_eq!(said.matches("Address already in use").count(), 1, "{said}");
    assert!(
        said.contains(&format!("cannot listen on {}", server.addr)),
        "{said}"
    );
}
