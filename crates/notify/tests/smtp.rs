//! Mail delivered to a real SMTP server (aiosmtpd, scripts/smtp-sink.py) on loopback, read back
//! through Python's own e-mail parser: recipients, subject, body, headers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use okey_notify::config::{SmtpConfig, TlsMode};
use okey_notify::sender::{self, SenderConfig, SenderMetrics};
use okey_notify::{Composer, Retry, SmtpMailer, Templates, context};
use okey_store::outbox::MailState;
use okey_store::{Actor, MasterKeySource, Store, StoreConfig, Zeroizing};

struct Sink {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sink_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/smtp-sink.py")
}

fn start_sink(dir: &Path, args: &[&str]) -> Sink {
    let out = dir.join("received.jsonl");
    let mut child = Command::new("python3")
        .arg(sink_script())
        .arg("--out")
        .arg(&out)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs scripts/smtp-sink.py (aiosmtpd: scripts/deps/notify.sh)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the sink prints its port");
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the SMTP sink did not start: {line:?}"));
    Sink { child, port, out }
}

fn received(sink: &Sink) -> Vec<serde_json::Value> {
    std::fs::read_to_string(&sink.out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// A self-signed certificate for 127.0.0.1 (not a CA, as rustls wants of a server's own).
fn cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("relay.pem"), dir.join("relay.key"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(st.success());
    (c, k)
}

fn store(dir: &Path) -> Store {
    let cfg = StoreConfig {
        master_key: MasterKeySource::Bytes(Zeroizing::new([7u8; 32])),
        ..StoreConfig::in_dir(dir.join("data"))
    };
    Store::open(cfg).expect("store")
}

fn actor() -> Actor {
    Actor::new("admin", "admin")
}

fn smtp(port: u16, tls: TlsMode) -> SmtpConfig {
    SmtpConfig {
        relay: "127.0.0.1".into(),
        port: Some(port),
        tls,
        from: "okey <okey@ac-example.fr>".into(),
        username: None,
        password_file: None,
        ca_cert: None,
        timeout_seconds: Some(10),
        templates: None,
        max_attempts: None,
        retry_initial_seconds: Some(1),
        retry_max_seconds: Some(2),
        poll_seconds: Some(1),
        time_zone: None,
    }
}

fn sender_cfg(retry: Retry) -> SenderConfig {
    SenderConfig::new(retry, Duration::from_secs(1), Duration::from_secs(5))
}

fn test_mail(c: &Composer, to: &[&str]) -> okey_store::outbox::NewMail {
    let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    let id = c.message_id().expect("id");
    c.compose_with_id(
        "test",
        &to,
        context! { requested_by => "Hélène Lefèvre", message_number => id.clone(), queued_at => "3 décembre 2026" },
        id,
    )
    .expect("compose")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_over_starttls_with_auth_and_the_reader_sees_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, k) = cert(dir.path());
    let sink = start_sink(
        dir.path(),
        &[
            "--user",
            "okey-relay",
            "--password",
            "s3cr3t-mot-de-passe",
            "--cert",
            c.to_str().expect("path"),
            "--key",
            k.to_str().expect("path"),
        ],
    );
    let pw = dir.path().join("smtp.pass");
    std::fs::write(&pw, "s3cr3t-mot-de-passe\n").expect("write");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let mut cfg = smtp(sink.port, TlsMode::Starttls);
    cfg.username = Some("okey-relay".into());
    cfg.password_file = Some(pw);
    cfg.ca_cert = Some(c);
    let settings = cfg.resolve().expect("settings");
    assert!(
        !format!("{settings:?}").contains("s3cr3t"),
        "the password is never printed"
    );
    let mailer = SmtpMailer::new(&settings).expect("mailer");
    let composer = Composer::new(
        Templates::embedded().expect("templates"),
        Some(&settings.from),
    );

    let store = store(dir.path());
    let mail = test_mail(
        &composer,
        &[
            "marie.hoarau@ac-example.fr",
            "jean-noel.payet@ac-example.fr",
        ],
    );
    let id = store.enqueue_mail(mail.clone(), &actor()).expect("enqueue");
    let metrics = SenderMetrics::default();
    let n = sender::send_due(&store, &mailer, &sender_cfg(settings.retry), &metrics).await;
    assert_eq!(n, 1);

    let got = received(&sink);
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m["tls"], true);
    assert_eq!(m["auth_login"], "okey-relay");
    assert_eq!(m["mail_from"], "okey@ac-example.fr");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!([
            "marie.hoarau@ac-example.fr",
            "jean-noel.payet@ac-example.fr"
        ])
    );
    assert_eq!(m["subject"], "okey : message d'essai de la messagerie");
    assert_eq!(m["from"], "okey <okey@ac-example.fr>");
    assert_eq!(m["message_id"], mail.message_id.as_str());
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(m["charset"], "utf-8");
    let body = m["body"].as_str().expect("body");
    assert!(
        body.contains("le service de gestion des clés de sécurité OTP"),
        "{body}"
    );
    assert!(body.contains("à la demande de Hélène Lefèvre."), "{body}");
    assert!(
        m["to"]
            .as_str()
            .expect("to")
            .contains("marie.hoarau@ac-example.fr")
    );

    let row = &store.mail_list(&[MailState::Sent], 10).expect("list")[0];
    assert_eq!(row.id, id);
    assert_eq!(row.attempts, 1);
    // The Date header is the enqueueing time, the same on every attempt.
    let date = m["date"].as_str().expect("date");
    let stamp = std::time::UNIX_EPOCH + Duration::from_secs(row.created_at);
    let expected = httpdate_like(stamp);
    assert!(date.ends_with(&expected), "{date} vs {expected}");
    assert_eq!(metrics.sent.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Nothing left to send.
    assert_eq!(
        sender::send_due(&store, &mailer, &sender_cfg(settings.retry), &metrics).await,
        0
    );
    assert_eq!(received(&sink).len(), 1);
}

/// "HH:MM:SS +0000" of a time, to compare with the Date header's tail.
fn httpdate_like(t: std::time::SystemTime) -> String {
    let s = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs()
        % 86_400;
    format!("{:02}:{:02}:{:02} +0000", s / 3600, (s / 60) % 60, s % 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_down_delays_the_mail_and_a_later_attempt_sends_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port where nothing listens yet.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let settings = smtp(port, TlsMode::None).resolve().expect("settings");
    let mailer = SmtpMailer::new(&settings).expect("mailer");
    let composer = Composer::new(
        Templates::embedded().expect("templates"),
        Some(&settings.from),
    );
    let store = store(dir.path());
    let mail = test_mail(&composer, &["support@ac-example.fr"]);
    // Enqueueing does not wait for the relay.
    store.enqueue_mail(mail.clone(), &actor()).expect("enqueue");
    let metrics = Arc::new(SenderMetrics::default());
    let cfg = sender_cfg(settings.retry);
    sender::send_due(&store, &mailer, &cfg, &metrics).await;
    let pending = store.mail_list(&[MailState::Pending], 10).expect("list");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 1);
    assert!(pending[0].last_error.is_some());
    assert!(pending[0].next_attempt_at > pending[0].created_at);
    // Not due again before its back-off.
    assert_eq!(sender::send_due(&store, &mailer, &cfg, &metrics).await, 0);

    let sink = start_sink(dir.path(), &["--port", &port.to_string()]);
    let task = tokio::spawn(sender::run(
        store.clone(),
        mailer,
        cfg,
        metrics.clone(),
        okey_notify::Waker::default(),
    ));
    let mut waited = 0;
    while received(&sink).is_empty() && waited < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    // Let the sender run a few more rounds: the mail must not come twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    task.abort();
    let got = received(&sink);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["message_id"], mail.message_id.as_str());
    assert_eq!(
        got[0]["rcpt_tos"],
        serde_json::json!(["support@ac-example.fr"])
    );
    let sent = store.mail_list(&[MailState::Sent], 10).expect("list");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].attempts, 2);
    let stats = store.mail_stats().expect("stats");
    assert_eq!((stats.pending, stats.sent, stats.failed), (0, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_gives_the_mail_up_without_retrying() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = start_sink(dir.path(), &["--reject", "parti@ac-example.fr"]);
    let settings = smtp(sink.port, TlsMode::None).resolve().expect("settings");
    let mailer = SmtpMailer::new(&settings).expect("mailer");
    let composer = Composer::new(
        Templates::embedded().expect("templates"),
        Some(&settings.from),
    );
    let store = store(dir.path());
    store
        .enqueue_mail(test_mail(&composer, &["parti@ac-example.fr"]), &actor())
        .expect("enqueue");
    let metrics = SenderMetrics::default();
    sender::send_due(&store, &mailer, &sender_cfg(settings.retry), &metrics).await;
    let failed = store.mail_list(&[MailState::Failed], 10).expect("list");
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("550"),
        "{:?}",
        failed[0].last_error
    );
    assert!(received(&sink).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_attempt_gives_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cfg = smtp(port, TlsMode::None);
    cfg.max_attempts = Some(1);
    let settings = cfg.resolve().expect("settings");
    let mailer = SmtpMailer::new(&settings).expect("mailer");
    let composer = Composer::new(
        Templates::embedded().expect("templates"),
        Some(&settings.from),
    );
    let store = store(dir.path());
    store
        .enqueue_mail(test_mail(&composer, &["a@ac-example.fr"]), &actor())
        .expect("enqueue");
    let metrics = SenderMetrics::default();
    sender::send_due(&store, &mailer, &sender_cfg(settings.retry), &metrics).await;
    assert_eq!(
        store
            .mail_list(&[MailState::Failed], 10)
            .expect("list")
            .len(),
        1
    );
    assert_eq!(
        metrics.given_up.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
