//! Signed anchors of the audit chain, end to end: a real `okey serve` publishes them to its
//! anchors file, a syslog socket and the metrics endpoint; `okey audit verify --anchors` (the
//! real CLI) finds a cut tail, a rewritten entry and an older database put back, each at its
//! entry number, and refuses a forged anchor line.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use okey_e2e::{
    RFC_SECRET_HEX, Server, check, hotp_token, reference_hotp, sample, scrape, verify_serial,
    with_metrics_and,
};
use okey_server::proto;

const SEED: &[u8] = b"12345678901234567890";
const DB_FILES: [&str; 3] = ["okey.db", "okey.db-wal", "okey.db-shm"];

fn copy_db(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for name in DB_FILES {
        let (src, dst) = (from.join(name), to.join(name));
        if src.exists() {
            std::fs::copy(&src, &dst).expect("copy");
        } else if dst.exists() {
            std::fs::remove_file(&dst).expect("remove");
        }
    }
}

fn anchor_seqs(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(1)?.strip_prefix("seq=")?.parse().ok())
        .collect()
}

/// The chain's head as the server reports it.
async fn head(server: &Server) -> u64 {
    let mut c = server.admin().await;
    let r = c
        .audit
        .verify_audit_chain(proto::VerifyAuditChainRequest::default())
        .await
        .expect("verify")
        .into_inner();
    assert!(r.intact, "{r:?}");
    r.head_sequence
}

/// `n` accepted codes from HOTP counter `from` on.
async fn verifies(server: &Server, from: u64, n: u64) {
    let mut c = server.admin().await;
    for counter in from..from + n {
        let code = reference_hotp(SEED, counter, 6);
        assert!(check(&mut c, verify_serial("H1", &code)).await.0);
    }
}

struct Run {
    out: String,
    code: Option<i32>,
}

fn verify_cli(server: &Server, anchors: &Path, public_key: &Path) -> Run {
    let o = server.cli(
        &[
            "audit",
            "verify",
            "--anchors",
            &anchors.display().to_string(),
            "--public-key",
            &public_key.display().to_string(),
        ],
        &[],
    );
    Run {
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        code: o.status.code(),
    }
}

fn broken_at(run: &Run, seq: u64, why: &str) {
    assert_eq!(run.code, Some(1), "{}", run.out);
    assert!(
        run.out.contains(&format!("broken at entry {seq}:")) && run.out.contains(why),
        "expected a break at {seq} ({why}): {}",
        run.out
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_tail_a_rewritten_entry_and_an_old_database_are_found_by_the_cli() {
    let mut server = Server::start_with("[audit]\nanchor_interval_seconds = 1\nsyslog = false\n");
    let keep = tempfile::tempdir().expect("dir");
    let anchors = server.data_dir.join("audit-anchors.log");
    // The public key, kept away from the server.
    let out = server.cli(&["audit", "public-key"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let public_key = keep.path().join("anchor.pub");
    std::fs::write(&public_key, &out.stdout).expect("write key");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("okey-anchor-key/v1 ed25519 "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("H1", RFC_SECRET_HEX)],
        })
        .await
        .expect("import");
    verifies(&server, 0, 3).await;
    server.stop();
    let old_head = {
        server.start_again();
        let h = head(&server).await;
        server.stop();
        h
    };
    // The database as it was then, and the anchor its clean shutdown published.
    let old_copy = keep.path().join("old");
    copy_db(&server.data_dir, &old_copy);
    assert_eq!(
        anchor_seqs(&std::fs::read_to_string(&anchors).expect("anchors")).last(),
        Some(&old_head)
    );

    server.start_again();
    verifies(&server, 3, 4).await;
    let head_now = head(&server).await;
    assert!(head_now >= old_head + 4, "{old_head} {head_now}");
    server.stop();
    let text = std::fs::read_to_string(&anchors).expect("anchors");
    let seqs = anchor_seqs(&text);
    assert_eq!(seqs.last(), Some(&head_now), "{text}");
    assert_eq!(
        std::fs::metadata(&anchors)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // The anchors as published, kept elsewhere; the database as it is.
    let kept = keep.path().join("anchors.log");
    std::fs::write(&kept, &text).expect("keep");
    let pristine = keep.path().join("pristine");
    copy_db(&server.data_dir, &pristine);

    // Untouched: intact.
    server.start_again();
    let run = verify_cli(&server, &kept, &public_key);
    assert_eq!(run.code, Some(0), "{}", run.out);
    assert!(run.out.contains("intact"), "{}", run.out);
    assert!(
        run.out
            .contains(&format!("{} signed anchors checked", seqs.len())),
        "{}",
        run.out
    );
    server.stop();

    let db_path = server.data_dir.join("okey.db");
    let sql = |q: &str| {
        let db = rusqlite::Connection::open(&db_path).expect("db");
        db.execute_batch(q).expect("tamper");
    };

    // The last two entries deleted.
    sql(&format!("DELETE FROM audit WHERE seq > {}", head_now - 2));
    server.start_again();
    broken_at(
        &verify_cli(&server, &kept, &public_key),
        head_now - 1,
        "were removed",
    );
    server.stop();
    copy_db(&pristine, &server.data_dir);

    // One entry in the middle rewritten.
    let middle = old_head + 1;
    sql(&format!(
        "UPDATE audit SET result = 'reject', reason = 'wrong_code' WHERE seq = {middle}"
    ));
    server.start_again();
    broken_at(&verify_cli(&server, &kept, &public_key), middle, "altered");
    server.stop();

    // The old database put back: the anchors after it say entries are missing...
    let before_restore = std::fs::read_to_string(&anchors).expect("anchors");
    copy_db(&old_copy, &server.data_dir);
    server.start_again();
    broken_at(
        &verify_cli(&server, &kept, &public_key),
        old_head + 1,
        "were removed",
    );
    // ...and once the server has written past the anchored head again, the anchored entry is
    // not the one there (checked against the live file, which now holds anchors of both
    // histories). The new history starts with a refused code: replaying the same accepted codes
    // within the same second would write records identical to the ones they replace.
    {
        let mut c = server.admin().await;
        assert!(!check(&mut c, verify_serial("H1", "000000")).await.0);
    }
    verifies(&server, 3, 6).await;
    assert!(head(&server).await > head_now);
    server.stop();
    server.start_again();
    // The first anchor published before the restore past the restored head is where the two
    // histories part (the tampered stores above published some too: the cut one, at the
    // entry it was cut to).
    let parted = anchor_seqs(&before_restore)
        .iter()
        .copied()
        .filter(|s| *s > old_head)
        .min()
        .expect("anchors past the old head");
    let run = verify_cli(&server, &anchors, &public_key);
    broken_at(&run, parted, "not the one seen before");
    assert!(
        run.out
            .contains(&format!("rewritten after record {old_head}, which matches")),
        "{}",
        run.out
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_anchor_line_is_refused() {
    let mut server = Server::start_with("[audit]\nanchor_interval_seconds = 1\nsyslog = false\n");
    verifies_after_import(&server).await;
    server.stop();
    server.start_again();
    let keep = tempfile::tempdir().expect("dir");
    let public_key = keep.path().join("anchor.pub");
    let out = server.cli(&["audit", "public-key"], &[]);
    std::fs::write(&public_key, &out.stdout).expect("key");
    let anchors = server.data_dir.join("audit-anchors.log");
    let text = std::fs::read_to_string(&anchors).expect("anchors");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "{text}");
    // The first anchor moved one entry on, its signature kept.
    let seq = anchor_seqs(lines[0])[0];
    let forged_line = lines[0].replacen(&format!("seq={seq} "), &format!("seq={} ", seq + 1), 1);
    let forged = keep.path().join("forged.log");
    std::fs::write(
        &forged,
        format!("{forged_line}\n{}\n", lines[1..].join("\n")),
    )
    .expect("w");
    let run = verify_cli(&server, &forged, &public_key);
    assert_eq!(run.code, Some(1), "{}", run.out);
    assert!(
        run.out.contains("refused") && run.out.contains("line 1: the signature"),
        "{}",
        run.out
    );
    // The genuine file passes with the key, and with the key asked of the server.
    assert_eq!(verify_cli(&server, &anchors, &public_key).code, Some(0));
    let o = server.cli(
        &[
            "audit",
            "verify",
            "--anchors",
            &anchors.display().to_string(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0));
    // A key that is not the server's refuses every line.
    let other = Server::start_with("[audit]\nsyslog = false\n");
    let other_key = keep.path().join("other.pub");
    std::fs::write(&other_key, other.cli(&["audit", "public-key"], &[]).stdout).expect("key");
    let run = verify_cli(&server, &anchors, &other_key);
    assert_eq!(run.code, Some(1), "{}", run.out);
    assert!(run.out.contains("line 1: the signature"), "{}", run.out);
}

async fn verifies_after_import(server: &Server) {
    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("H1", RFC_SECRET_HEX)],
        })
        .await
        .expect("import");
    verifies(server, 0, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchors_reach_syslog_and_the_metrics_endpoint() {
    let sock_dir = tempfile::tempdir().expect("dir");
    let sock_path: PathBuf = sock_dir.path().join("log");
    let syslog = UnixDatagram::bind(&sock_path).expect("bind a syslog socket");
    syslog
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let (server, port) = with_metrics_and(&format!(
        "[audit]\nanchor_interval_seconds = 1\nnode = \"otp-test-1\"\nsyslog_socket = \"{}\"\n",
        sock_path.display()
    ));
    verifies_after_import(&server).await;
    let head = head(&server).await;
    // Within a few intervals the head is anchored everywhere.
    let anchors = server.data_dir.join("audit-anchors.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let text = std::fs::read_to_string(&anchors).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(&format!(" seq={head} "))) {
            break l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "head {head} not anchored: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(line.contains(" node=otp-test-1 "), "{line}");
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.iter().any(|m: &String| m.ends_with(&line)) {
        let n = syslog.recv(&mut buf).expect("a syslog datagram");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let msg = got.last().expect("one");
    assert!(msg.starts_with("<85>okey["), "{msg}");
    let body = scrape(port);
    assert_eq!(sample(&body, "okey_audit_anchor_sequence"), head);
    let hash = line
        .split(' ')
        .find_map(|f| f.strip_prefix("head="))
        .expect("head field");
    assert!(
        body.contains(&format!(
            "okey_audit_anchor_info{{sequence=\"{head}\",head=\"{hash}\",node=\"otp-test-1\"}} 1"
        )),
        "{body}"
    );
}

#[test]
fn an_anchors_file_open_to_others_stops_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("dir");
    let anchors = dir.path().join("anchors.log");
    std::fs::write(&anchors, "").expect("file");
    std::fs::set_permissions(&anchors, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let o = std::process::Command::new(okey_e2e::okey_binary())
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&data)
        .arg("--audit-anchors-file")
        .arg(&anchors)
        .env("OKEY_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run okey serve");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("must be 0600 or 0640"), "{err}");
}
