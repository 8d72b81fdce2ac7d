//! The RADIUS front end against clients okey did not write: `radtest`/`radclient` (FreeRADIUS)
//! and Python's `pyrad` (driven by `radius_client.py`).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use okey_e2e::{RFC_SECRET_HEX, Server, hotp_token, reference_hotp};
use okey_otp::{OcraInput, OcraSuite, OtpKey, ocra};
use okey_server::proto;
use serde_json::Value;

const SECRET: &str = "a-radius-secret-of-32-characters";
const SUITE: &str = "OCRA-1:HOTP-SHA1-6:QN08";

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

/// A server with the RADIUS front end on, its one client the loopback address `127.0.0.1`,
/// and a relaxed client `127.0.0.3` that may omit the Message-Authenticator.
struct Radius {
    server: Server,
    addr: String,
    metrics_port: u16,
    _secrets: tempfile::TempDir,
}

fn secret_file(dir: &Path, secret: &str) -> PathBuf {
    let p = dir.join("radius.secret");
    std::fs::write(&p, format!("{secret}\n")).expect("secret");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p
}

fn start() -> Radius {
    let secrets = tempfile::tempdir().expect("dir");
    let file = secret_file(secrets.path(), SECRET);
    let port = free_port();
    let metrics_port = free_tcp_port();
    let config = format!(
        r#"metrics_listen = "127.0.0.1:{metrics_port}"
[radius]
listen = "127.0.0.1:{port}"
[radius.messages]
accept = "Welcome"
[radius.groups]
staff = ["dave"]
[[radius.client]]
name = "vpn-test"
address = "127.0.0.1"
secret_file = "{file}"
[[radius.client]]
name = "old-nas"
address = "127.0.0.3"
secret_file = "{file}"
require_message_authenticator = false
[[radius.reply]]
group = "staff"
class = "staff-class"
session_timeout = 3600
"#,
        file = file.display()
    );
    let server = Server::start_logging(&config);
    Radius {
        server,
        addr: format!("127.0.0.1:{port}"),
        metrics_port,
        _secrets: secrets,
    }
}

impl Radius {
    /// Tokens: alice (HOTP), bob (HOTP with PIN 4321), carol (OCRA), dave (HOTP, group staff).
    /// The gRPC calls also prove the server finished starting, RADIUS listener included.
    async fn tokens(&self) {
        let mut c = self.server.admin().await;
        let held = |serial: &str, holder: &str| proto::ImportedToken {
            holder: holder.into(),
            ..hotp_token(serial, RFC_SECRET_HEX)
        };
        c.tokens
            .import_tokens(proto::ImportTokensRequest {
                tokens: vec![
                    held("RA-1", "alice"),
                    held("RB-1", "bob"),
                    held("RD-1", "dave"),
                    proto::ImportedToken {
                        serial: "RC-1".into(),
                        kind: proto::TokenKind::Hardware as i32,
                        otp: Some(proto::OtpParameters {
                            r#type: proto::OtpType::Ocra as i32,
                            ocra_suite: SUITE.into(),
                            ..Default::default()
                        }),
                        seed_hex: RFC_SECRET_HEX.into(),
                        holder: "carol".into(),
                        ..Default::default()
                    },
                ],
            })
            .await
            .expect("import");
        c.tokens
            .set_pin(proto::SetPinRequest {
                serial: "RB-1".into(),
                pin: "4321".into(),
            })
            .await
            .expect("pin");
    }

    async fn counter(&self, serial: &str) -> u64 {
        self.server
            .admin()
            .await
            .tokens
            .get_token(proto::GetTokenRequest {
                serial: serial.into(),
            })
            .await
            .expect("token")
            .into_inner()
            .counter
    }

    fn metric(&self, line: &str) -> u64 {
        let mut socket =
            std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("metrics");
        socket
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .expect("request");
        let mut body = String::new();
        socket.read_to_string(&mut body).expect("response");
        body.lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {line} in {body}"))
    }

    /// `radtest USER PASSWORD SERVER 0 SECRET`: its output.
    fn radtest(&self, user: &str, password: &str) -> String {
        let out = Command::new("radtest")
            .args([user, password, &self.addr, "0", SECRET])
            .stdin(Stdio::null())
            .output()
            .expect("radtest (freeradius-utils) is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `radclient` with the attribute lines `attrs`, one try, a 1 s timeout.
    fn radclient(&self, attrs: &str, secret: &str) -> String {
        let mut child = Command::new("radclient")
            .args(["-x", "-r", "1", "-t", "1", &self.addr, "auth", secret])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("radclient (freeradius-utils) is installed");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(attrs.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("radclient");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `radius_client.py` (pyrad): one JSON answer per copy sent.
    fn pyrad(&self, user: &str, password: &str, extra: &[&str]) -> Vec<Value> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("it/radius_client.py");
        let out = Command::new("python3")
            .arg(script)
            .args([&self.addr, SECRET, user, password])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "pyrad client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    }

    fn pyrad_one(&self, user: &str, password: &str, extra: &[&str]) -> Value {
        let mut v = self.pyrad(user, password, extra);
        assert_eq!(v.len(), 1);
        v.remove(0)
    }
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

fn ocra_response(question: &str) -> String {
    let suite: OcraSuite = SUITE.parse().expect("suite");
    let key = OtpKey::new(
        suite.algorithm(),
        &hex::decode(RFC_SECRET_HEX).expect("hex"),
    )
    .expect("key");
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

#[tokio::test]
async fn freeradius_clients_pap_accept_reject_replay_pin_and_drops() {
    let r = start();
    r.tokens().await;
    let seed = hex::decode(RFC_SECRET_HEX).expect("hex");
    let code0 = reference_hotp(&seed, 0, 6);

    let out = r.radtest("alice", &code0);
    assert!(out.contains("Received Access-Accept"), "{out}");
    let out = r.radtest("alice", &code0);
    assert!(
        out.contains("Received Access-Reject"),
        "a replayed code is rejected: {out}"
    );
    assert!(
        !out.contains("replay"),
        "the reason stays off the wire: {out}"
    );
    let out = r.radtest("alice", "000000");
    assert!(out.contains("Received Access-Reject"), "{out}");
    assert_eq!(r.counter("RA-1").await, 1);

    // PIN ‖ OTP with radclient, Message-Authenticator included.
    let bob = |password: &str| {
        format!("User-Name = bob\nUser-Password = \"{password}\"\nMessage-Authenticator = 0x00\n")
    };
    let out = r.radclient(&bob(&code0), SECRET);
    assert!(
        out.contains("Received Access-Reject"),
        "no PIN is a reject: {out}"
    );
    let out = r.radclient(&bob(&format!("4321{code0}")), SECRET);
    assert!(out.contains("Received Access-Accept"), "{out}");

    // No Message-Authenticator: dropped. A wrong shared secret: dropped.
    let code1 = reference_hotp(&seed, 1, 6);
    let out = r.radclient(
        &format!("User-Name = alice\nUser-Password = \"{code1}\"\n"),
        SECRET,
    );
    assert!(out.contains("No reply from server"), "{out}");
    let out = r.radclient(
        &format!("User-Name = alice\nUser-Password = \"{code1}\"\nMessage-Authenticator = 0x00\n"),
        "another-secret-of-32-characters!",
    );
    assert!(out.contains("No reply from server"), "{out}");
    assert_eq!(
        r.counter("RA-1").await,
        1,
        "a dropped request verifies nothing"
    );
    assert_eq!(
        r.metric("okey_radius_dropped_total{cause=\"missing_message_authenticator\"}"),
        1
    );
    assert_eq!(
        r.metric("okey_radius_dropped_total{cause=\"bad_message_authenticator\"}"),
        1
    );
    assert_eq!(r.metric("okey_radius_requests_total{result=\"accept\"}"), 2);
    assert_eq!(r.metric("okey_radius_requests_total{result=\"reject\"}"), 3);

    // The audit names the RADIUS client.
    let records = r.server.admin().await.audit_records(50).await;
    let radius: Vec<_> = records
        .iter()
        .filter(|a| a.actor.starts_with("radius:vpn-test@"))
        .collect();
    assert!(
        radius
            .iter()
            .any(|a| a.subject == "alice" && a.reason == "replay"),
        "{records:?}"
    );
    assert!(
        radius
            .iter()
            .any(|a| a.serial == "RB-1" && a.reason == "accepted")
    );
    assert!(
        !r.server.log().contains(SECRET),
        "the secret is never logged"
    );
}

#[tokio::test]
async fn pyrad_challenge_retransmission_reply_attributes_and_drops() {
    let r = start();
    r.tokens().await;
    let seed = hex::decode(RFC_SECRET_HEX).expect("hex");

    // Challenge-response: an empty password, and a PIN-only password, get an Access-Challenge
    // whose State is okey's transaction id; answering it with the right response is accepted
    // once.
    for first in ["", "1234"] {
        let ch = r.pyrad_one("carol", first, &[]);
        assert_eq!(code(&ch), "challenge", "{ch}");
        assert_eq!(ch["authentic"], true, "{ch}");
        let state = ch["state"][0].as_str().expect("state").to_owned();
        assert_eq!(state.len(), 32);
        let text = ch["reply_message"][0].as_str().expect("message").to_owned();
        let question: String = text
            .trim_start_matches("Challenge ")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert_eq!(question.len(), 8, "{text}");
        let good = ocra_response(&question);
        let ok = r.pyrad_one("carol", &good, &["--state", &state]);
        assert_eq!(code(&ok), "accept", "{ok}");
        let again = r.pyrad_one("carol", &good, &["--state", &state]);
        assert_eq!(code(&again), "reject", "a challenge is single-use: {again}");
    }
    let ch = r.pyrad_one("carol", "", &[]);
    let state = ch["state"][0].as_str().expect("state").to_owned();
    let wrong = r.pyrad_one("carol", "000000", &["--state", &state]);
    assert_eq!(code(&wrong), "reject");

    // A retransmission (same port, identifier, authenticator) is answered from the cache: the
    // same reply, and the counter moves once.
    let code0 = reference_hotp(&seed, 0, 6);
    let copies = r.pyrad("dave", &code0, &["--copies", "3", "--proxy-state", "hop-1"]);
    assert_eq!(copies.len(), 3);
    for c in &copies {
        assert_eq!(code(c), "accept", "{c}");
        assert_eq!(c["authentic"], true);
        assert_eq!(c["message_authenticator_first"], true);
        assert_eq!(c["raw"], copies[0]["raw"]);
        assert_eq!(c["reply_message"][0], "Welcome");
        assert_eq!(c["class"][0], "staff-class");
        assert_eq!(c["session_timeout"][0], 3600);
        assert_eq!(c["proxy_state"][0], "hop-1");
    }
    assert_eq!(r.counter("RD-1").await, 1);
    assert_eq!(r.metric("okey_radius_retransmissions_total"), 2);
    // A new request with the same code is a replay.
    let replay = r.pyrad_one("dave", &code0, &[]);
    assert_eq!(code(&replay), "reject");
    assert!(replay["class"].as_array().is_some_and(Vec::is_empty));

    // Drops: no Message-Authenticator, a wrong one, the wrong shared secret, an unknown client.
    let code1 = reference_hotp(&seed, 1, 6);
    for extra in [
        &["--no-message-authenticator"][..],
        &["--bad-message-authenticator"],
        &["--sign-with", "another-secret-of-32-characters!"],
        &["--source", "127.0.0.2"],
    ] {
        let v = r.pyrad_one("dave", &code1, extra);
        assert_eq!(code(&v), "timeout", "{extra:?}: {v}");
    }
    assert_eq!(r.counter("RD-1").await, 1);
    assert_eq!(
        r.metric("okey_radius_dropped_total{cause=\"missing_message_authenticator\"}"),
        1
    );
    assert_eq!(
        r.metric("okey_radius_dropped_total{cause=\"bad_message_authenticator\"}"),
        2
    );
    assert_eq!(
        r.metric("okey_radius_dropped_total{cause=\"unknown_client\"}"),
        1
    );

    // The relaxed client is answered without a Message-Authenticator, and that is logged.
    let v = r.pyrad_one(
        "dave",
        &code1,
        &["--source", "127.0.0.3", "--no-message-authenticator"],
    );
    assert_eq!(code(&v), "accept", "{v}");
    assert_eq!(r.counter("RD-1").await, 2);
    assert_eq!(r.metric("okey_radius_unauthenticated_requests_total"), 1);
    let log = r.server.log();
    assert!(log.contains("BlastRADIUS"), "{log}");
    assert!(log.contains("old-nas"), "{log}");
    assert!(!log.contains(SECRET));
}
