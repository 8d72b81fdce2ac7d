//! E-mail through a real `okey serve` and a real SMTP server (aiosmtpd) on loopback: a mail is
//! durable from the moment its change commits, survives a SIGKILL before it was sent, goes out
//! exactly once after the restart, and a relay that is down blocks nothing.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use okey_e2e::{Server, SmtpSink, okey_binary, unused_port};

fn smtp_config(port: u16, metrics_port: u16) -> String {
    format!(
        "metrics_listen = \"127.0.0.1:{metrics_port}\"\n\
         [smtp]\n\
         relay = \"127.0.0.1\"\n\
         port = {port}\n\
         tls = \"none\"\n\
         from = \"okey <okey@ac-example.fr>\"\n\
         retry_initial_seconds = 1\n\
         retry_max_seconds = 1\n\
         poll_seconds = 1\n\
         timeout_seconds = 5\n"
    )
}

fn queue(server: &Server) -> serde_json::Value {
    let out = server.cli(&["mail", "queue", "--all", "--json"], &[]);
    assert!(
        out.status.success(),
        "okey mail queue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    text
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

#[test]
fn a_mail_killed_before_its_send_goes_out_exactly_once_after_restart() {
    // The relay is down at first: nothing listens on its port.
    let relay_port = unused_port();
    let metrics_port = unused_port();
    let mut server = Server::start_with(&smtp_config(relay_port, metrics_port));

    // The change that causes the mail (here `okey mail test` itself) commits the mail durably
    // and answers at once, relay or not.
    let out = server.cli(&["mail", "test", "--to", "marie.hoarau@ac-example.fr"], &[]);
    assert!(
        out.status.success(),
        "okey mail test: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let message_id = printed
        .split_whitespace()
        .find(|w| w.starts_with("<okey.") && w.ends_with('>'))
        .unwrap_or_else(|| panic!("no Message-ID in {printed:?}"))
        .to_owned();

    // Nothing blocks while the relay is down: other work goes on.
    let out = server.cli(&["caller", "list"], &[]);
    assert!(out.status.success());

    // Let the sender fail at least once against the dead relay (polled for up to 30 s: a
    // loaded machine may take a while to run the first attempt).
    let mut q = queue(&server);
    for _ in 0..300 {
        if q["mails"][0]["attempts"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        q = queue(&server);
    }
    assert_eq!(q["pending"], 1, "{q}");
    assert_eq!(q["mails"][0]["message_id"], message_id.as_str());
    assert!(q["mails"][0]["attempts"].as_u64().unwrap_or(0) >= 1, "{q}");
    assert_ne!(q["mails"][0]["last_error"], "", "{q}");
    let m = metrics(metrics_port);
    assert_eq!(metric(&m, "okey_mail_queued"), 1.0);
    assert_eq!(metric(&m, "okey_mail_sent"), 0.0);

    // Killed between the change and the send.
    server.kill9();
    let sink = SmtpSink::start(relay_port);
    server.restart();

    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "the mail never arrived");
    // A few more rounds of the sender: it must not come again.
    std::thread::sleep(Duration::from_secs(3));
    let got = sink.received();
    assert_eq!(got.len(), 1, "sent more than once: {got:?}");
    let mail = &got[0];
    assert_eq!(mail["message_id"], message_id.as_str());
    assert_eq!(mail["mail_from"], "okey@ac-example.fr");
    assert_eq!(
        mail["rcpt_tos"],
        serde_json::json!(["marie.hoarau@ac-example.fr"])
    );
    assert_eq!(mail["from"], "okey <okey@ac-example.fr>");
    assert_eq!(mail["subject"], "okey : message d'essai de la messagerie");
    assert_eq!(mail["charset"], "utf-8");
    let body = mail["body"].as_str().expect("body");
    assert!(
        body.contains("le service de gestion des clés de sécurité OTP"),
        "{body}"
    );
    assert!(body.contains("à la demande de admin."), "{body}");
    assert!(body.contains(&format!("Message n° {message_id}")), "{body}");

    let q = queue(&server);
    assert_eq!(
        (q["pending"].as_u64(), q["sent"].as_u64()),
        (Some(0), Some(1)),
        "{q}"
    );
    assert_eq!(q["mails"][0]["state"], "sent");
    let m = metrics(metrics_port);
    assert_eq!(metric(&m, "okey_mail_queued"), 0.0);
    assert_eq!(metric(&m, "okey_mail_sent"), 1.0);
    assert_eq!(metric(&m, "okey_mail_oldest_pending_age_seconds"), 0.0);
}

#[test]
fn a_bad_address_is_refused_and_nothing_is_queued() {
    let server = Server::start_with(&smtp_config(unused_port(), unused_port()));
    let out = server.cli(&["mail", "test", "--to", "pas une adresse"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a mail address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(queue(&server)["mails"], serde_json::json!([]));
}

#[test]
fn without_a_relay_the_test_mail_is_refused_with_a_reason() {
    let server = Server::start();
    let out = server.cli(&["mail", "test", "--to", "a@ac-example.fr"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no mail relay is configured"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn serve_refuses(config: &str, extra: impl FnOnce(&std::path::Path)) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    extra(dir.path());
    let path = dir.path().join("okey.toml");
    std::fs::write(
        &path,
        config.replace("DIR", &dir.path().display().to_string()),
    )
    .expect("config");
    let out = Command::new(okey_binary())
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", unused_port()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("OKEY_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run okey serve");
    assert!(!out.status.success(), "okey serve started");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_broken_operator_template_refuses_the_start_with_its_file_and_line() {
    let config = "[smtp]\nrelay = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"okey@ac-example.fr\"\ntemplates = \"DIR/mail\"\n";
    let err = serve_refuses(config, |d| {
        std::fs::create_dir(d.join("mail")).expect("dir");
        std::fs::write(
            d.join("mail/test.txt"),
            "{% block subject %}Essai{% endblock %}\n{% block body %}\nBonjour {{ nom_inconnu }}\n{% endblock %}\n",
        )
        .expect("template");
    });
    assert!(err.contains("mail/test.txt:3"), "{err}");
}

#[test]
fn a_password_file_readable_by_others_or_plain_text_auth_refuses_the_start() {
    let config = "[smtp]\nrelay = \"smtp.ac-example.fr\"\nfrom = \"okey@ac-example.fr\"\nusername = \"okey\"\npassword_file = \"DIR/pass\"\n";
    let err = serve_refuses(config, |d| {
        std::fs::write(d.join("pass"), "secret-du-relais\n").expect("pass");
        std::fs::set_permissions(
            d.join("pass"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .expect("chmod");
    });
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains("secret-du-relais"), "{err}");
    let err = serve_refuses(
        "[smtp]\nrelay = \"smtp.ac-example.fr\"\ntls = \"none\"\nfrom = \"okey@ac-example.fr\"\n",
        |_| {},
    );
    assert!(err.contains("loopback"), "{err}");
    let err = serve_refuses(
        "[smtp]\nrelay = \"127.0.0.1\"\nfrom = \"okey@ac-example.fr\"\nport = 25\nrelais = \"x\"\n",
        |_| {},
    );
    assert!(err.contains("relais"), "{err}");
}
