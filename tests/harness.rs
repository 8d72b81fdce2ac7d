//! The end-to-end harness: start a real `okey serve` process on a free loopback port with its
//! own data directory, talk to it with the generated gRPC clients, kill and restart it.
//!
//! Codes are computed with the `hmac` crate here, independently of okey's own core.

pub mod pg_cluster;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use okey_server::proto;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Environment variables of the `okey` binary that must not leak in from the test's shell.
pub const OKEY_VARS: &[&str] = &[
    "OKEY_SERVER",
    "OKEY_API_KEY",
    "OKEY_API_KEY_FILE",
    "OKEY_ADMIN_PIN",
    "OKEY_USER_PIN",
    "OKEY_NEW_PIN",
    "OKEY_ACCESS_CODE",
    "OKEY_NEW_ACCESS_CODE",
];

/// The RFC 4226 test secret.
pub const RFC_SECRET_HEX: &str = "3132333435363738393031323334353637383930";

/// HOTP with the `hmac` crate (RFC 4226), independent of okey's core.
pub fn reference_hotp(seed: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(seed).expect("any key length");
    mac.update(&counter.to_be_bytes());
    let out = mac.finalize().into_bytes();
    let offset = usize::from(out[19] & 0x0f);
    let word = u32::from_be_bytes([
        out[offset],
        out[offset + 1],
        out[offset + 2],
        out[offset + 3],
    ]) & 0x7fff_ffff;
    format!(
        "{:0w$}",
        u64::from(word) % 10u64.pow(digits),
        w = digits as usize
    )
}

/// The `okey` binary of this workspace, (re)built once per test process so a test never runs a
/// stale binary (`cargo nextest run -p okey-e2e` alone does not build other packages' binaries).
pub fn okey_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            // target/<profile>/deps/it-xxxx -> target/<profile>/okey
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("profile dir")
                .to_path_buf();
            let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
            let mut build = Command::new(env!("CARGO"));
            build
                .args([
                    "build",
                    "--locked",
                    "--quiet",
                    "-p",
                    "okey",
                    "--bin",
                    "okey",
                    "--target-dir",
                ])
                .arg(&target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("cargo build");
            assert!(status.success(), "building the okey binary failed");
            profile_dir.join("okey")
        })
        .clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running `okey serve`.
pub struct Server {
    child: Option<Child>,
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// Its data directory (inside `dir`).
    pub data_dir: PathBuf,
    config: PathBuf,
    /// The first admin credential.
    pub admin_key: String,
    /// Where the server's log goes, when kept (`start_logging`).
    log: Option<PathBuf>,
    /// Environment variables given to the server at each (re)start.
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Start with the defaults.
    pub fn start() -> Server {
        Server::start_with("")
    }

    /// Start with extra TOML configuration.
    pub fn start_with(config: &str) -> Server {
        Server::start_inner(config, false)
    }

    /// Start with extra TOML configuration, keeping the server's info-level log ([`Server::log`]).
    pub fn start_logging(config: &str) -> Server {
        Server::start_inner(config, true)
    }

    /// The server's log so far (empty unless started with [`Server::start_logging`]).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Start another node of a store that exists already (a shared PostgreSQL database):
    /// `config` points at the store and its master key; the admin credential is the first
    /// node's, since only the first start makes one.
    pub fn start_node(config: &str, admin_key: &str) -> Server {
        let mut s = Server::start_parts(config, false);
        s.admin_key = admin_key.to_owned();
        s
    }

    fn start_inner(config: &str, logging: bool) -> Server {
        let mut server = Server::start_parts(config, logging);
        server.admin_key = std::fs::read_to_string(server.data_dir.join("admin.key"))
            .expect("admin.key written on first start")
            .trim()
            .to_owned();
        server
    }

    fn start_parts(config: &str, logging: bool) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let config_path = dir.path().join("okey.toml");
        std::fs::write(&config_path, config).expect("write config");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut server = Server {
            child: None,
            addr,
            data_dir,
            config: config_path,
            admin_key: String::new(),
            log: None,
            env: Vec::new(),
            _dir: dir,
        };
        if logging {
            server.log = Some(server._dir.path().join("server.log"));
        }
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(okey_binary())
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("OKEY_LOG", if self.log.is_some() { "info" } else { "warn" })
            // Tests run side by side: each portal on a port of its own.
            .env("OKEY_PORTAL_LISTEN", "127.0.0.1:0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(match &self.log {
                Some(path) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map(Stdio::from)
                    .expect("server log file"),
                None => Stdio::null(),
            })
            .spawn()
            .expect("spawn okey serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "okey serve did not start listening on {}",
                self.addr
            );
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("okey serve exited at start: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Give the server `name=value` in its environment from its next (re)start on.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.push((name.to_owned(), value.to_owned()));
    }

    /// Replace the configuration file (read at the next restart).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write config");
    }

    /// The configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// SIGKILL the server: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the server and wait until it has exited: its clean shutdown runs.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let sent = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status()
                .expect("kill (procps)");
            assert!(sent.success(), "kill -TERM failed");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match c.try_wait() {
                    Ok(Some(status)) => {
                        assert!(status.success(), "okey serve stopped with {status}");
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = c.kill();
                        panic!("okey serve did not stop on SIGTERM");
                    }
                }
            }
        }
    }

    /// Start a stopped server again on the same data directory and port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.spawn();
    }

    /// Start the server again on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// `cmd` set up to act as this server's admin: the server's address and the admin
    /// credential in the environment, none of the test's own `OKEY_*` variables, no stdin.
    pub fn as_admin(&self, mut cmd: Command) -> Command {
        for v in OKEY_VARS {
            cmd.env_remove(v);
        }
        cmd.env("OKEY_SERVER", format!("http://{}", self.addr))
            .env("OKEY_API_KEY", &self.admin_key)
            .env("OKEY_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    /// `okey ARGS` as this server's admin ([`Server::as_admin`]), with `env` added.
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        self.as_admin(Command::new(okey_binary()))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run okey")
    }

    /// Run the stock Python gRPC client (`tests/py/stock_client.py`: grpcio, grpcio-reflection,
    /// grpcio-health-checking; nothing generated from okey's sources) against this server with
    /// `args`, `stdin` as its standard input, and parse the one JSON object it prints.
    pub fn stock_client(&self, args: &[&str], stdin: &str) -> serde_json::Value {
        use std::io::Write;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/stock_client.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(self.addr.to_string())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 (scripts/deps/grpc.sh lists what the stock client needs)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write the request");
        let out = child.wait_with_output().expect("stock client");
        assert!(
            out.status.success(),
            "the stock client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the stock client prints JSON")
    }

    /// The `authorization` header of the admin credential, as a stock-client argument.
    pub fn admin_header(&self) -> String {
        format!("authorization=Bearer {}", self.admin_key)
    }

    /// A client with the admin credential.
    pub async fn admin(&self) -> Client {
        self.client(Some(&self.admin_key)).await
    }

    /// A new API key named `name` with one role, made by the admin through the API.
    pub async fn key_with_role(&self, name: &str, role: &str) -> String {
        self.admin()
            .await
            .callers
            .create_api_key(proto::CreateApiKeyRequest {
                name: name.to_owned(),
                roles: vec![role.to_owned()],
                person: String::new(),
            })
            .await
            .expect("create an API key")
            .into_inner()
            .api_key
    }

    /// A new API key named `name` with one role, bound to the directory person `person`.
    pub async fn key_for_person(&self, name: &str, role: &str, person: &str) -> String {
        self.admin()
            .await
            .callers
            .create_api_key(proto::CreateApiKeyRequest {
                name: name.to_owned(),
                roles: vec![role.to_owned()],
                person: person.to_owned(),
            })
            .await
            .expect("create an API key bound to a person")
            .into_inner()
            .api_key
    }

    /// Load `units` and `people` (CSV text with their headers) with `okey directory import`
    /// as the admin; panics if refused.
    pub fn import_directory(&self, units: &str, people: &str) {
        let dir = tempfile::tempdir().expect("dir");
        let (u, p) = (dir.path().join("units.csv"), dir.path().join("people.csv"));
        std::fs::write(&u, units).expect("write units");
        std::fs::write(&p, people).expect("write people");
        let out = self.cli(
            &[
                "directory",
                "import",
                p.to_str().expect("path"),
                u.to_str().expect("path"),
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "directory import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A client with `key` that names `person` in the `okey-acting-person` metadata (as a
    /// portal does).
    pub async fn client_acting(&self, key: &str, person: &str) -> Client {
        self.client_with(Some(key), Some(person)).await
    }

    /// A client of a new caller named `as-ROLE` that has `role` only.
    pub async fn client_as(&self, role: &str) -> Client {
        let key = self.key_with_role(&format!("as-{role}"), role).await;
        self.client(Some(&key)).await
    }

    /// A client with `key` (or none).
    pub async fn client(&self, key: Option<&str>) -> Client {
        self.client_with(key, None).await
    }

    /// A client with `key` (or none) and, if given, the `okey-acting-person` metadata.
    pub async fn client_with(&self, key: Option<&str>, acting: Option<&str>) -> Client {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        let bearer = Bearer(
            key.map(|k| format!("Bearer {k}").parse().expect("ascii key")),
            acting.map(|p| p.parse().expect("ascii person")),
        );
        Client {
            auth: proto::auth_service_client::AuthServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            tokens: proto::token_service_client::TokenServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            audit: proto::audit_service_client::AuditServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            callers: proto::caller_service_client::CallerServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            lifecycle: proto::lifecycle_service_client::LifecycleServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            mail: proto::mail_service_client::MailServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            directory: proto::directory_service_client::DirectoryServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            support: proto::support_service_client::SupportServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            requests: proto::request_service_client::RequestServiceClient::with_interceptor(
                channel, bearer,
            ),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Adds `authorization: Bearer <key>` when a key is set.
#[derive(Clone)]
pub struct Bearer(
    Option<MetadataValue<tonic::metadata::Ascii>>,
    Option<MetadataValue<tonic::metadata::Ascii>>,
);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        if let Some(v) = &self.1 {
            request
                .metadata_mut()
                .insert("okey-acting-person", v.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// Clients of every service.
#[derive(Clone)]
pub struct Client {
    pub auth: proto::auth_service_client::AuthServiceClient<Authed>,
    pub tokens: proto::token_service_client::TokenServiceClient<Authed>,
    pub audit: proto::audit_service_client::AuditServiceClient<Authed>,
    pub callers: proto::caller_service_client::CallerServiceClient<Authed>,
    pub lifecycle: proto::lifecycle_service_client::LifecycleServiceClient<Authed>,
    pub mail: proto::mail_service_client::MailServiceClient<Authed>,
    pub directory: proto::directory_service_client::DirectoryServiceClient<Authed>,
    pub support: proto::support_service_client::SupportServiceClient<Authed>,
    pub requests: proto::request_service_client::RequestServiceClient<Authed>,
}

impl Client {
    /// The serials of the first page of tokens (every token, in the tests' small stores).
    pub async fn serials(&mut self) -> Vec<String> {
        self.tokens
            .list_tokens(proto::ListTokensRequest::default())
            .await
            .expect("list tokens")
            .into_inner()
            .tokens
            .into_iter()
            .map(|t| t.serial)
            .collect()
    }

    /// The newest `limit` audit records, newest first.
    pub async fn audit_records(&mut self, limit: u32) -> Vec<proto::AuditRecord> {
        self.audit
            .list_audit(proto::ListAuditRequest { limit })
            .await
            .expect("list audit")
            .into_inner()
            .records
    }
}

/// A server with its metrics listener on a free loopback port, and `config` added.
pub fn with_metrics_and(config: &str) -> (Server, u16) {
    let port = free_port();
    let server = Server::start_with(&format!("metrics_listen = \"127.0.0.1:{port}\"\n{config}"));
    (server, port)
}

/// A server with its metrics listener on a free loopback port, keeping its info-level log
/// ([`Server::log`]).
pub fn logging_with_metrics() -> (Server, u16) {
    let port = free_port();
    let server = Server::start_logging(&format!("metrics_listen = \"127.0.0.1:{port}\"\n"));
    (server, port)
}

/// A server with its metrics listener on a free loopback port.
pub fn with_metrics() -> (Server, u16) {
    with_metrics_and("")
}

/// The raw HTTP answer of `GET /metrics`.
pub fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    socket.read_to_string(&mut body).expect("response");
    body
}

/// The value of the sample `name` (with its labels, e.g. `x_total{code="a"}`) in a scrape.
pub fn sample(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{name} in {body}"))
}

/// An HOTP SHA-1 6-digit token to import.
pub fn hotp_token(serial: &str, seed_hex: &str) -> proto::ImportedToken {
    proto::ImportedToken {
        serial: serial.to_owned(),
        kind: proto::TokenKind::Hardware as i32,
        otp: Some(proto::OtpParameters {
            r#type: proto::OtpType::Hotp as i32,
            algorithm: proto::HashAlgorithm::Sha1 as i32,
            digits: 6,
            ..Default::default()
        }),
        seed_hex: seed_hex.to_owned(),
        ..Default::default()
    }
}

/// A Verify request for a serial.
pub fn verify_serial(serial: &str, passcode: &str) -> proto::VerifyRequest {
    proto::VerifyRequest {
        subject: Some(proto::Subject {
            kind: Some(proto::subject::Kind::Serial(serial.to_owned())),
        }),
        passcode: passcode.to_owned(),
        ..Default::default()
    }
}

/// A Verify request for a user.
pub fn verify_user(user: &str, passcode: &str) -> proto::VerifyRequest {
    proto::VerifyRequest {
        subject: Some(proto::Subject {
            kind: Some(proto::subject::Kind::User(user.to_owned())),
        }),
        passcode: passcode.to_owned(),
        ..Default::default()
    }
}

/// The result of a verify as `(accepted, reason)`.
pub async fn check(client: &mut Client, req: proto::VerifyRequest) -> (bool, String) {
    let r = client
        .auth
        .verify(req)
        .await
        .expect("verify answered")
        .into_inner();
    (r.result == proto::VerifyResult::Accept as i32, r.reason)
}

/// A real SMTP server (aiosmtpd, `scripts/smtp-sink.py`) on loopback: every message it accepts
/// is one JSON object (envelope, AUTH login, and the message as Python's e-mail parser reads it).
pub struct SmtpSink {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Listen on `port` (0: any free port).
    pub fn start(port: u16) -> SmtpSink {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("received.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/smtp-sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--out")
            .arg(&out)
            .arg("--port")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs scripts/smtp-sink.py (aiosmtpd: scripts/deps/notify.sh)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("the sink prints its port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP sink did not start: {line:?}"));
        SmtpSink {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// Wait up to `within` for at least `n` messages; returns what arrived.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (at the moment of the call).
pub fn unused_port() -> u16 {
    free_port()
}
