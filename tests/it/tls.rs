//! TLS and mutual TLS on the gRPC listener, driven through the `okey` command-line client: a
//! client whose certificate the configured CA signed gets in (and still needs its API key);
//! no certificate, a certificate from another CA, plain HTTP/2, or a server the client's CA did
//! not sign are all refused before any RPC runs.

use std::path::{Path, PathBuf};
use std::process::Output;

use okey_e2e::{Server, okey_binary};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

type Ca = CertifiedIssuer<'static, KeyPair>;

fn new_ca(dir: &Path, name: &str) -> (Ca, PathBuf) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().expect("CA key")).expect("CA");
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, ca.pem()).expect("write CA");
    (ca, path)
}

/// A certificate for `names` signed by `issuer`: (certificate, key) files.
fn leaf(dir: &Path, issuer: &Ca, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut p = CertificateParams::new(names).expect("leaf parameters");
    p.distinguished_name.push(DnType::CommonName, stem);
    let key = KeyPair::generate().expect("leaf key");
    let cert = p.signed_by(&key, issuer).expect("sign");
    let (c, k) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.pem()).expect("write certificate");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    (c, k)
}

fn okey(args: &[&str], files: &[(&str, &Path)]) -> Output {
    let mut cmd = std::process::Command::new(okey_binary());
    cmd.args(args);
    for (flag, path) in files {
        cmd.arg(flag).arg(path);
    }
    cmd.env_remove("OKEY_API_KEY")
        .env_remove("OKEY_API_KEY_FILE")
        .env_remove("OKEY_SERVER");
    cmd.output().expect("run okey")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn mutual_tls_admits_only_clients_signed_by_the_configured_ca() {
    let pki = tempfile::tempdir().expect("temp dir");
    let dir = pki.path();
    let (ca, ca_pem) = new_ca(dir, "okey-test-ca");
    let (rogue, rogue_pem) = new_ca(dir, "rogue-ca");
    let (server_cert, server_key) = leaf(dir, &ca, "server", &["127.0.0.1", "localhost"]);
    let (client_cert, client_key) = leaf(dir, &ca, "radius-1", &["radius-1.example"]);
    let (rogue_cert, rogue_key) = leaf(dir, &rogue, "intruder", &["intruder.example"]);

    let server = Server::start_with(&format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        server_cert, server_key, ca_pem
    ));
    let https = format!("https://127.0.0.1:{}", server.addr.port());
    let admin_key = server.data_dir.join("admin.key");
    let list = ["caller", "list", "--server", &https];

    // The right CA, a client certificate it signed and the API key: in.
    let ok = okey(
        &list,
        &[
            ("--ca-cert", &ca_pem),
            ("--client-cert", &client_cert),
            ("--client-key", &client_key),
            ("--api-key-file", &admin_key),
        ],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("admin"),
        "{}",
        text(&ok)
    );

    // mTLS admits the connection; the caller still has to name itself with an API key.
    let no_key = okey(
        &list,
        &[
            ("--ca-cert", &ca_pem),
            ("--client-cert", &client_cert),
            ("--client-key", &client_key),
            ("--api-key", Path::new("not-a-real-key")),
        ],
    );
    assert_eq!(no_key.status.code(), Some(2), "{}", text(&no_key));
    assert!(
        String::from_utf8_lossy(&no_key.stderr).contains("Unauthenticated"),
        "{}",
        text(&no_key)
    );

    let refused = |what: &str, o: Output| {
        assert_eq!(o.status.code(), Some(2), "{what}: {}", text(&o));
        assert!(o.stdout.is_empty(), "{what}: {}", text(&o));
    };
    // No client certificate.
    refused(
        "no client certificate",
        okey(
            &list,
            &[("--ca-cert", &ca_pem), ("--api-key-file", &admin_key)],
        ),
    );
    // A client certificate from another CA.
    refused(
        "certificate from another CA",
        okey(
            &list,
            &[
                ("--ca-cert", &ca_pem),
                ("--client-cert", &rogue_cert),
                ("--client-key", &rogue_key),
                ("--api-key-file", &admin_key),
            ],
        ),
    );
    // A client that trusts another CA does not accept the server, and says why.
    let untrusted = okey(
        &list,
        &[
            ("--ca-cert", &rogue_pem),
            ("--client-cert", &client_cert),
            ("--client-key", &client_key),
            ("--api-key-file", &admin_key),
        ],
    );
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("UnknownIssuer"),
        "{}",
        text(&untrusted)
    );
    refused("server not signed by the trusted CA", untrusted);
    // Plain HTTP/2 to the TLS listener.
    let plain = format!("http://127.0.0.1:{}", server.addr.port());
    refused(
        "plain HTTP/2",
        okey(
            &["caller", "list", "--server", &plain],
            &[("--api-key-file", &admin_key)],
        ),
    );
    // TLS files with a plain address are a usage error, said before connecting.
    let mixed = okey(
        &["caller", "list", "--server", &plain],
        &[("--ca-cert", &ca_pem), ("--api-key-file", &admin_key)],
    );
    assert_eq!(mixed.status.code(), Some(2), "{}", text(&mixed));
    assert!(
        String::from_utf8_lossy(&mixed.stderr).contains("need an https:// server address"),
        "{}",
        text(&mixed)
    );
}

/// `GET path` on the portal at `addr` (HTTP/1.1, as a browser would): status and body.
fn portal_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("portal");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    (status, answer)
}

#[test]
fn the_portal_reaches_the_services_with_or_without_tls_on_the_grpc_listener() {
    let pki = tempfile::tempdir().expect("temp dir");
    let (ca, _) = new_ca(pki.path(), "okey-test-ca");
    let (cert, key) = leaf(pki.path(), &ca, "server", &["127.0.0.1"]);
    for tls in [false, true] {
        let config = if tls {
            format!("[tls]\ncert = {cert:?}\nkey = {key:?}\n")
        } else {
            String::new()
        };
        let mut server = Server::start_with(&config);
        let port = okey_e2e::unused_port();
        let addr = format!("127.0.0.1:{port}");
        server.set_env("OKEY_PORTAL_LISTEN", &addr);
        // Killed and started again: a socket left behind is replaced.
        server.restart();
        let socket = server.data_dir.join("portal.sock");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(std::time::Instant::now() < deadline, "the portal listens");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let (status, body) = portal_get(&addr, "/sante");
        assert_eq!(status, 200, "tls {tls}: {body}");
        assert!(body.contains("joignables"), "{body}");
        if tls {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            let meta = std::fs::metadata(&socket).expect("the portal's socket");
            assert!(meta.file_type().is_socket());
            // The listener speaks only TLS (plain HTTP/2 is refused, see above): the
            // portal's answer came through this socket.
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        } else {
            assert!(!socket.exists(), "no socket without [tls]");
        }
    }
}
