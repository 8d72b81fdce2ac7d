//! `okey bench`: the load benchmark. Creates tokens with known seeds through the API, then sends
//! Verify requests with fresh valid codes, plus a fraction of wrong codes and replays, at a
//! given concurrency, and reports throughput, latency and — the figure that must stay zero —
//! replays accepted.
//!
//! Without `--server` it starts its own `okey serve` in this process on a loopback port with a
//! throw-away data directory, so it runs on a fresh machine; `--baseline` runs the same load a
//! second time with one fsync'd transaction per verify and prints the ratio; `--floor` runs it
//! against the transport floor (the same gRPC stack answering Verify with no work at all) and
//! prints how much of the transport's ceiling on this machine okey keeps; `--radius` runs the same
//! load a second time over RADIUS (PAP over UDP, every request signed with a
//! Message-Authenticator) against the same server, side by side with the gRPC run, and prints the
//! ratio. With `--radius` both runs name the token by its holder (RADIUS has only a User-Name),
//! so they go through the same lookup.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use okey_otp::{Algorithm, Digits, OtpKey, hotp};
use okey_server::config::{Durability, ServeConfig};
use okey_server::proto;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::client::{Bearer, ClientArgs, Clients, TlsArgs, endpoint};
use crate::verify_client::VerifyClient;

/// Load-test Verify.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Tokens to create.
    #[arg(long, default_value_t = 10_000)]
    tokens: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to send load, in seconds (ignored with --count).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Send exactly this many verifies instead.
    #[arg(long)]
    count: Option<u64>,
    /// Fraction of requests that carry a wrong code.
    #[arg(long, default_value_t = 0.01)]
    wrong: f64,
    /// Fraction of requests that replay a code accepted before.
    #[arg(long, default_value_t = 0.01)]
    replay: f64,
    /// Durability of the in-process server: group or per-commit.
    #[arg(long, default_value = "group")]
    durability: Durability,
    /// Also run the same load with per-commit durability and print the ratio.
    #[arg(long)]
    baseline: bool,
    /// Also run the same load against the transport floor (okey's gRPC stack answering Verify
    /// with no work: no caller check, no store, no commit) and print okey's share of it.
    #[arg(long)]
    floor: bool,
    /// Also run the same load over RADIUS against the same in-process server (its RADIUS front
    /// end on a loopback UDP port), and print RADIUS verifies/s as a ratio to gRPC's.
    #[arg(long)]
    radius: bool,
    /// Also run the same load on PostgreSQL, side by side with the SQLite run: one in-process
    /// okey node on the database, then a second node beside it on the same database with the
    /// load spread over both. The file holds the connection string of an empty database (one
    /// line, mode 0600: a password is never on the command line).
    #[arg(long, value_name = "FILE")]
    postgres_url_file: Option<std::path::PathBuf>,
    /// gRPC connections to spread the load over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Client that sends the load: the bench's own minimal HTTP/2 gRPC client (light, so the
    /// server gets the CPU it shares with the load), or tonic's full client (also does TLS).
    #[arg(long, value_enum, default_value_t = LoadClient::Lean)]
    client: LoadClient,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// No progress display.
    #[arg(long)]
    quiet: bool,
    /// Bench a running server instead (needs an admin credential: tokens are imported).
    #[arg(long)]
    server: Option<String>,
    /// API key for --server (prefer OKEY_API_KEY or --api-key-file).
    #[arg(long, env = "OKEY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// File holding the API key for --server.
    #[arg(long, env = "OKEY_API_KEY_FILE")]
    api_key_file: Option<std::path::PathBuf>,
    /// TLS towards an https:// --server (tonic client only).
    #[command(flatten)]
    tls: TlsArgs,
}

/// Which gRPC client sends the Verify load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadClient {
    /// [`VerifyClient`]: one h2 stream per call, no queueing tasks.
    Lean,
    /// tonic's generated client over a tonic channel.
    Tonic,
}

/// A connection the load goes through.
#[derive(Clone)]
enum Verifier {
    Lean(VerifyClient),
    Tonic(proto::auth_service_client::AuthServiceClient<crate::client::Authed>),
    Radius(RadiusLoad),
}

/// A RADIUS client for the load: one UDP socket per worker, one request in flight on it.
struct RadiusLoad {
    server: std::net::SocketAddr,
    secret: Arc<zeroize::Zeroizing<Vec<u8>>>,
    socket: Option<tokio::net::UdpSocket>,
    identifier: u8,
}

impl Clone for RadiusLoad {
    /// A clone gets its own socket (bound on first use), so workers never share replies.
    fn clone(&self) -> Self {
        RadiusLoad {
            server: self.server,
            secret: self.secret.clone(),
            socket: None,
            identifier: 0,
        }
    }
}

impl RadiusLoad {
    async fn verify(
        &mut self,
        request: &proto::VerifyRequest,
    ) -> anyhow::Result<proto::VerifyResponse> {
        use okey_radius::packet::{Builder, Packet, attr, code, hide_password};
        let Some(proto::subject::Kind::User(user)) =
            request.subject.as_ref().and_then(|s| s.kind.as_ref())
        else {
            bail!("RADIUS names users only");
        };
        if self.socket.is_none() {
            let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            s.connect(self.server).await?;
            self.socket = Some(s);
        }
        let socket = self.socket.as_ref().context("no socket")?;
        self.identifier = self.identifier.wrapping_add(1);
        let authenticator: [u8; 16] = rand::rng().random();
        let secret = self.secret.as_slice();
        let mut b = Builder::new(code::ACCESS_REQUEST, self.identifier);
        b.message_authenticator()?;
        b.push(attr::USER_NAME, user.as_bytes())?;
        b.push(
            attr::USER_PASSWORD,
            &hide_password(request.passcode.as_bytes(), secret, &authenticator)?,
        )?;
        let datagram = b.finish_request(&authenticator, secret);
        socket.send(&datagram).await?;
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
                .await
                .context("no RADIUS reply within 5 s")??;
            let reply = Packet::parse(buf.get(..n).unwrap_or(&[]))?;
            // A late reply to an earlier request is skipped.
            if reply.identifier != self.identifier {
                continue;
            }
            if !reply.is_response_to(&authenticator, secret) {
                bail!("a RADIUS reply with a wrong Response Authenticator");
            }
            let result = match reply.code {
                code::ACCESS_ACCEPT => proto::VerifyResult::Accept,
                code::ACCESS_REJECT => proto::VerifyResult::Reject,
                other => bail!("unexpected RADIUS reply code {other}"),
            };
            return Ok(proto::VerifyResponse {
                result: result as i32,
                ..Default::default()
            });
        }
    }
}

impl Verifier {
    async fn verify(
        &mut self,
        request: proto::VerifyRequest,
    ) -> anyhow::Result<proto::VerifyResponse> {
        match self {
            Verifier::Lean(c) => c.verify(&request).await,
            Verifier::Tonic(c) => Ok(c.verify(request).await?.into_inner()),
            Verifier::Radius(c) => c.verify(&request).await,
        }
    }
}

/// What one run measured.
#[derive(Debug, Serialize, Clone)]
pub struct BenchReport {
    /// `okey`, `okey-radius` for the RADIUS run of `--radius`, or `transport-floor` for the
    /// no-work server of `--floor`.
    pub server: &'static str,
    pub durability: String,
    pub client: LoadClient,
    pub tokens: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub verifies: u64,
    pub verifies_per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub accepted: u64,
    pub rejected: u64,
    pub valid_rejected: u64,
    pub wrong_accepted: u64,
    pub replays_sent: u64,
    pub replays_accepted: u64,
    pub errors: u64,
    /// Durable transactions the store committed during the load (okey in this process only).
    pub transactions: Option<u64>,
    /// Verifies sharing one fsync'd transaction, on average (group commit's batch size).
    pub verifies_per_transaction: Option<f64>,
    /// Mean time the store took to commit one transaction during the load: writing it and
    /// waiting for the disk to flush it (okey in this process only).
    pub commit_ms: Option<f64>,
    /// Mean time the store's writer spent running one transaction's requests before its commit.
    pub requests_ms_per_transaction: Option<f64>,
    /// Mean time the store's writer waited for more requests before one transaction (it waits
    /// under load for the requests in flight, so they share one flush).
    pub linger_ms_per_transaction: Option<f64>,
    /// The data directory's own flush latency, measured before the load with nothing else
    /// writing: median time to write 4 KiB and `fdatasync` it.
    pub disk_flush_ms: Option<f64>,
}

struct TokenLoad {
    serial: String,
    key: OtpKey,
    counter: u64,
    last_accepted: Option<String>,
    previous_was_bad: bool,
}

#[derive(Default)]
struct Tally {
    accepted: AtomicU64,
    rejected: AtomicU64,
    valid_rejected: AtomicU64,
    wrong_accepted: AtomicU64,
    replays_sent: AtomicU64,
    replays_accepted: AtomicU64,
    errors: AtomicU64,
    sent: AtomicU64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.tokens == 0 || args.concurrency == 0 || args.connections == 0 {
        bail!("--tokens, --concurrency and --connections must be at least 1");
    }
    if !(0.0..=0.5).contains(&args.wrong) || !(0.0..=0.5).contains(&args.replay) {
        bail!("--wrong and --replay are fractions from 0 to 0.5");
    }
    if args.radius && args.server.is_some() {
        bail!("--radius runs against the in-process server; it cannot be combined with --server");
    }
    if args.floor && args.server.is_some() {
        bail!(
            "--floor runs the transport floor in this process beside an okey server of its own; it cannot be combined with --server"
        );
    }
    if args.postgres_url_file.is_some() && args.server.is_some() {
        bail!(
            "--postgres-url-file runs okey nodes in this process on that database; it cannot be combined with --server"
        );
    }
    let mut reports = Vec::new();
    if let Some(server) = &args.server {
        let client = ClientArgs {
            server: server.clone(),
            api_key: args.api_key.clone(),
            api_key_file: args.api_key_file.clone(),
            tls: args.tls.clone(),
        };
        let admin = client.connect().await?;
        let key = client.key()?;
        let verifiers = connect_verifiers(&client, &key, args.connections, args.client).await?;
        reports.push(
            load(
                &args,
                Target::Okey(Box::new(admin)),
                verifiers,
                "external".into(),
                None,
                false,
            )
            .await?,
        );
    } else {
        let mut modes = vec![args.durability];
        if args.baseline && args.durability != Durability::PerCommit {
            modes.push(Durability::PerCommit);
        }
        for mode in modes {
            reports.extend(in_process(&args, mode).await?);
        }
        if let Some(url_file) = &args.postgres_url_file {
            reports.extend(postgres(&args, url_file).await?);
        }
        if args.floor {
            reports.push(floor(&args).await?);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            print_report(r);
        }
        let find = |server: &str, durability: &str| {
            reports
                .iter()
                .find(|r| r.server == server && r.durability == durability)
        };
        if let (Some(group), Some(per_commit)) =
            (find("okey", "group-commit"), find("okey", "per-commit"))
        {
            println!(
                "group commit vs one transaction per verify: {:.1}x the throughput ({:.0} vs {:.0} verifies/s)",
                group.verifies_per_second / per_commit.verifies_per_second.max(1e-9),
                group.verifies_per_second,
                per_commit.verifies_per_second
            );
        }
        if let (Some(grpc), Some(radius)) = (
            reports.first(),
            find(
                "okey-radius",
                &reports
                    .first()
                    .map(|r| r.durability.clone())
                    .unwrap_or_default(),
            ),
        ) {
            println!(
                "RADIUS vs gRPC ({}): {:.2}x the throughput ({:.0} vs {:.0} verifies/s), p99 {:.3} vs {:.3} ms",
                grpc.durability,
                radius.verifies_per_second / grpc.verifies_per_second.max(1e-9),
                radius.verifies_per_second,
                grpc.verifies_per_second,
                radius.p99_ms,
                grpc.p99_ms
            );
            if let Some(floor) = find("transport-floor", "none") {
                println!(
                    "RADIUS vs the gRPC transport floor: {:.0}% of its throughput ({:.0} vs {:.0} verifies/s)",
                    100.0 * radius.verifies_per_second / floor.verifies_per_second.max(1e-9),
                    radius.verifies_per_second,
                    floor.verifies_per_second
                );
            }
        }
        let sqlite = reports.first().filter(|r| r.server == "okey");
        for pg in reports
            .iter()
            .filter(|r| r.server.starts_with("okey-postgres"))
        {
            if let Some(sqlite) = sqlite {
                println!(
                    "{} vs SQLite ({}): {:.2}x the throughput ({:.0} vs {:.0} verifies/s), p99 {:.3} vs {:.3} ms",
                    pg.server,
                    pg.durability,
                    pg.verifies_per_second / sqlite.verifies_per_second.max(1e-9),
                    pg.verifies_per_second,
                    sqlite.verifies_per_second,
                    pg.p99_ms,
                    sqlite.p99_ms
                );
            }
        }
        if let (Some(one), Some(two)) = (
            reports.iter().find(|r| r.server == PG_ONE),
            reports.iter().find(|r| r.server == PG_TWO),
        ) {
            println!(
                "PostgreSQL, two nodes vs one: {:.2}x the throughput ({:.0} vs {:.0} verifies/s)",
                two.verifies_per_second / one.verifies_per_second.max(1e-9),
                two.verifies_per_second,
                one.verifies_per_second
            );
        }
        if let (Some(okey), Some(floor)) = (reports.first(), find("transport-floor", "none")) {
            println!(
                "okey ({}) vs the transport floor: {:.0}% of its throughput ({:.0} vs {:.0} verifies/s), p99 {:.3} vs {:.3} ms",
                okey.durability,
                100.0 * okey.verifies_per_second / floor.verifies_per_second.max(1e-9),
                okey.verifies_per_second,
                floor.verifies_per_second,
                okey.p99_ms,
                floor.p99_ms
            );
        }
    }
    let mut failed = false;
    for r in &reports {
        let problems = problems(r);
        if !problems.is_empty() {
            failed = true;
            eprintln!(
                "okey bench: the {} ({}) run failed: {}",
                r.server,
                r.durability,
                problems.join(", ")
            );
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What makes a run a failure, whatever its speed: a code accepted that must not be, a valid
/// code refused, or a request that got no answer.
fn problems(r: &BenchReport) -> Vec<String> {
    [
        (r.replays_accepted, "replays accepted"),
        (r.wrong_accepted, "wrong codes accepted"),
        (r.valid_rejected, "valid codes rejected"),
        (r.errors, "requests failed"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect()
}

async fn in_process(args: &BenchArgs, durability: Durability) -> anyhow::Result<Vec<BenchReport>> {
    let dir = tempfile::tempdir().context("cannot create a temporary data directory")?;
    let radius_secret = if args.radius {
        let mut raw = [0u8; 24];
        rand::rng().fill(&mut raw);
        let secret = zeroize::Zeroizing::new(hex::encode(raw).into_bytes());
        let path = dir.path().join("radius.secret");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            f.write_all(&secret)?;
        }
        Some((path, secret))
    } else {
        None
    };
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().join("data"),
        durability,
        radius: radius_secret
            .as_ref()
            .map(|(path, _)| okey_radius::RadiusConfig {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                client: vec![okey_radius::config::ClientConfig {
                    name: "bench".into(),
                    address: "127.0.0.1".into(),
                    secret_file: path.clone(),
                    require_message_authenticator: true,
                }],
                ..okey_radius::RadiusConfig::default()
            }),
        ..ServeConfig::default()
    };
    let server = okey_server::start(config).await?;
    let key_file = server
        .created_admin_key
        .clone()
        .context("the fresh server made no admin credential")?;
    let client = ClientArgs {
        server: format!("http://{}", server.addr),
        api_key: None,
        api_key_file: Some(key_file),
        tls: TlsArgs::default(),
    };
    let admin = client.connect().await?;
    let key = client.key()?;
    let verifiers = connect_verifiers(&client, &key, args.connections, args.client).await?;
    let name = match durability {
        Durability::Group => "group-commit",
        Durability::PerCommit => "per-commit",
    };
    let probe_dir = dir.path().to_owned();
    let flush = tokio::task::spawn_blocking(move || disk_flush_ms(&probe_dir))
        .await
        .context("the disk flush probe failed")??;
    let by_user = args.radius;
    let mut reports = vec![
        load(
            args,
            Target::Okey(Box::new(admin)),
            verifiers,
            name.into(),
            Some(&server.store),
            by_user,
        )
        .await
        .map(|r| BenchReport {
            disk_flush_ms: Some(flush),
            ..r
        })?,
    ];
    if let (Some((_, secret)), Some(addr)) = (radius_secret, server.radius_addr) {
        let radius = Verifier::Radius(RadiusLoad {
            server: addr,
            secret: Arc::new(secret),
            socket: None,
            identifier: 0,
        });
        let admin = client.connect().await?;
        let mut report = load(
            args,
            Target::Okey(Box::new(admin)),
            vec![radius],
            name.into(),
            Some(&server.store),
            true,
        )
        .await?;
        report.server = "okey-radius";
        report.disk_flush_ms = Some(flush);
        reports.push(report);
    }
    server.stop().await?;
    Ok(reports)
}

/// The report names of the PostgreSQL runs.
const PG_ONE: &str = "okey-postgres-1-node";
const PG_TWO: &str = "okey-postgres-2-nodes";

/// The same load on PostgreSQL: one okey node in this process, then a second one on the same
/// database (sharing the first's master key, as a second machine would) with the connections
/// and workers spread over both. Each run imports its own tokens.
async fn postgres(
    args: &BenchArgs,
    url_file: &std::path::Path,
) -> anyhow::Result<Vec<BenchReport>> {
    use okey_server::config::{StoreKind, StoreTable};
    let dir = tempfile::tempdir().context("cannot create a temporary data directory")?;
    let store = StoreTable {
        backend: StoreKind::Postgres,
        url: None,
        url_file: Some(url_file.to_owned()),
    };
    let node = |name: &str, master: Option<std::path::PathBuf>| ServeConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().join(name),
        durability: args.durability,
        store: store.clone(),
        master_key_file: master,
        ..ServeConfig::default()
    };
    let name = match args.durability {
        Durability::Group => "group-commit",
        Durability::PerCommit => "per-commit",
    };
    let a = okey_server::start(node("a", None)).await?;
    let key_file = a.created_admin_key.clone().context(
        "the PostgreSQL database already holds an okey store: --postgres-url-file needs an empty database",
    )?;
    let client = |addr: std::net::SocketAddr| ClientArgs {
        server: format!("http://{addr}"),
        api_key: None,
        api_key_file: Some(key_file.clone()),
        tls: TlsArgs::default(),
    };
    let client_a = client(a.addr);
    let key = client_a.key()?;
    let on_a = connect_verifiers(&client_a, &key, args.connections, args.client).await?;
    let mut one = load(
        args,
        Target::Okey(Box::new(client_a.connect().await?)),
        on_a.clone(),
        name.into(),
        Some(&a.store),
        false,
    )
    .await?;
    one.server = PG_ONE;

    let b = okey_server::start(node("b", Some(dir.path().join("a").join("master.key")))).await?;
    let on_b = connect_verifiers(&client(b.addr), &key, args.connections, args.client).await?;
    // Alternate the nodes' connections: worker w uses connection w mod 2n, half on each node.
    let both: Vec<Verifier> = on_a
        .into_iter()
        .zip(on_b)
        .flat_map(|(x, y)| [x, y])
        .collect();
    // Each node's store counts only its own transactions: no per-transaction figures here.
    let mut two = load(
        args,
        Target::Okey(Box::new(client_a.connect().await?)),
        both,
        name.into(),
        None,
        false,
    )
    .await?;
    two.server = PG_TWO;
    b.stop().await?;
    a.stop().await?;
    Ok(vec![one, two])
}

/// Median time to write 4 KiB to a file in `dir` and flush it to the disk (`fdatasync`), over
/// 200 rounds on a file written in full first, so the flushes move data and no file size.
fn disk_flush_ms(dir: &std::path::Path) -> anyhow::Result<f64> {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4096;
    const ROUNDS: usize = 200;
    let path = dir.join("disk-flush-probe");
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let result = (|| -> std::io::Result<f64> {
        file.write_all_at(&vec![0u8; BLOCK * ROUNDS], 0)?;
        file.sync_all()?;
        let block = [0x5a_u8; BLOCK];
        let mut times = Vec::with_capacity(ROUNDS);
        for offset in (0..ROUNDS).map(|i| (i * BLOCK) as u64) {
            let t = Instant::now();
            file.write_all_at(&block, offset)?;
            file.sync_data()?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Ok(times.get(ROUNDS / 2).copied().unwrap_or(0.0))
    })();
    drop(file);
    let _ = std::fs::remove_file(&path);
    result.with_context(|| format!("the disk flush probe in {} failed", dir.display()))
}

/// The same load against the transport floor, in this process.
async fn floor(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let server = okey_server::floor::FloorServer::start().await?;
    // The floor checks no credential; the load still carries one, as it does to okey.
    let key = zeroize::Zeroizing::new("okey-bench-transport-floor".to_owned());
    let client = ClientArgs {
        server: format!("http://{}", server.addr),
        api_key: None,
        api_key_file: None,
        tls: TlsArgs::default(),
    };
    let verifiers = connect_verifiers(&client, &key, args.connections, args.client).await?;
    let report = load(args, Target::Floor, verifiers, "none".into(), None, false).await;
    server.stop().await?;
    report
}

/// `n` connections for the load.
async fn connect_verifiers(
    client: &ClientArgs,
    key: &str,
    n: usize,
    kind: LoadClient,
) -> anyhow::Result<Vec<Verifier>> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        all.push(match kind {
            LoadClient::Lean => Verifier::Lean(VerifyClient::connect(&client.server, key).await?),
            LoadClient::Tonic => {
                let channel = endpoint(&client.server, &client.tls)?.connect().await?;
                Verifier::Tonic(Clients::new(channel, Bearer::new(key)?).auth)
            }
        });
    }
    Ok(all)
}

/// Where the load goes.
enum Target {
    /// okey: the tokens are imported through this administration client first.
    Okey(Box<Clients>),
    /// The transport floor: nothing to import, and it accepts any code, so every request
    /// carries a good one (the correctness tallies then hold trivially; only the timing counts).
    Floor,
}

async fn load(
    args: &BenchArgs,
    mut target: Target,
    verifiers: Vec<Verifier>,
    durability: String,
    store: Option<&okey_store::Store>,
    by_user: bool,
) -> anyhow::Result<BenchReport> {
    let (server, wrong, replay) = match target {
        Target::Okey(_) => ("okey", args.wrong, args.replay),
        Target::Floor => ("transport-floor", 0.0, 0.0),
    };
    // Known seeds, made here from a seeded generator so a run is repeatable.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x006b_6579);
    let run_tag: u32 = rand::rng().random();
    let mut tokens = Vec::with_capacity(args.tokens);
    let mut batch = Vec::new();
    if !args.quiet {
        match target {
            Target::Okey(_) => eprintln!("[{durability}] importing {} tokens", args.tokens),
            Target::Floor => eprintln!("[transport floor] {} tokens, none imported", args.tokens),
        }
    }
    for i in 0..args.tokens {
        let mut seed = [0u8; 20];
        rng.fill(&mut seed);
        let serial = format!("B{run_tag:08x}{i:07}");
        tokens.push(TokenLoad {
            serial: serial.clone(),
            key: OtpKey::new(Algorithm::Sha1, &seed)?,
            counter: 0,
            last_accepted: None,
            previous_was_bad: false,
        });
        let Target::Okey(admin) = &mut target else {
            continue;
        };
        let holder = if by_user {
            holder_of(&serial)
        } else {
            String::new()
        };
        batch.push(proto::ImportedToken {
            serial,
            kind: proto::TokenKind::Hardware as i32,
            otp: Some(proto::OtpParameters {
                r#type: proto::OtpType::Hotp as i32,
                algorithm: proto::HashAlgorithm::Sha1 as i32,
                digits: 6,
                ..Default::default()
            }),
            seed_hex: hex::encode(seed),
            holder: holder.clone(),
            ..Default::default()
        });
        if batch.len() == 5000 || i + 1 == args.tokens {
            admin
                .tokens
                .import_tokens(proto::ImportTokensRequest {
                    tokens: std::mem::take(&mut batch),
                })
                .await
                .context("importing the bench tokens")?;
        }
    }

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let budget = args.count.map(|c| Arc::new(AtomicU64::new(c)));
    // Partition tokens over workers: no two workers share a token, so each knows its counters.
    let mut shares: Vec<Vec<TokenLoad>> = (0..args.concurrency).map(|_| Vec::new()).collect();
    for (i, t) in tokens.into_iter().enumerate() {
        if let Some(s) = shares.get_mut(i % args.concurrency) {
            s.push(t);
        }
    }
    let before = store.map(okey_store::Store::stats);
    let started = Instant::now();
    let mut handles = Vec::new();
    for (w, share) in shares.into_iter().enumerate() {
        if share.is_empty() {
            continue;
        }
        let client = verifiers
            .get(w % verifiers.len())
            .cloned()
            .context("no connection")?;
        let tally = tally.clone();
        let stop = stop.clone();
        let budget = budget.clone();
        handles.push(tokio::spawn(async move {
            worker(
                client, share, tally, stop, budget, wrong, replay, w as u64, by_user,
            )
            .await
        }));
    }
    let progress = (!args.quiet).then(|| {
        let bar = indicatif::ProgressBar::new(args.count.unwrap_or(args.duration));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:40} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let deadline = started + Duration::from_secs(args.duration);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let sent = tally.sent.load(Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        if let Some(bar) = &progress {
            bar.set_position(match args.count {
                Some(_) => sent,
                None => elapsed as u64,
            });
            bar.set_message(format!("{:.0} verifies/s", sent as f64 / elapsed.max(1e-9)));
        }
        let done = match &budget {
            Some(b) => b.load(Ordering::Relaxed) == 0,
            None => Instant::now() >= deadline,
        };
        if done {
            stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.context("a load worker failed")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    let verifies = latencies.len() as u64;
    let writer = match (store, before) {
        (Some(store), Some(before)) => {
            let after = store.stats();
            let transactions = after.batches.saturating_sub(before.batches);
            let per_transaction =
                |a: u64, b: u64| a.saturating_sub(b) as f64 / transactions.max(1) as f64;
            Some(WriterFigures {
                transactions,
                verifies_per_transaction: per_transaction(after.commits, before.commits),
                commit_ms: per_transaction(after.commit_micros, before.commit_micros) / 1e3,
                requests_ms: per_transaction(after.run_micros, before.run_micros) / 1e3,
                linger_ms: per_transaction(after.linger_micros, before.linger_micros) / 1e3,
            })
        }
        _ => None,
    };
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Ok(BenchReport {
        server,
        durability,
        client: args.client,
        tokens: args.tokens,
        concurrency: args.concurrency,
        seconds,
        verifies,
        verifies_per_second: verifies as f64 / seconds.max(1e-9),
        p50_ms: pct(0.50),
        p95_ms: pct(0.95),
        p99_ms: pct(0.99),
        max_ms: latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        accepted: get(&tally.accepted),
        rejected: get(&tally.rejected),
        valid_rejected: get(&tally.valid_rejected),
        wrong_accepted: get(&tally.wrong_accepted),
        replays_sent: get(&tally.replays_sent),
        replays_accepted: get(&tally.replays_accepted),
        errors: get(&tally.errors),
        transactions: writer.as_ref().map(|w| w.transactions),
        verifies_per_transaction: writer.as_ref().map(|w| w.verifies_per_transaction),
        commit_ms: writer.as_ref().map(|w| w.commit_ms),
        requests_ms_per_transaction: writer.as_ref().map(|w| w.requests_ms),
        linger_ms_per_transaction: writer.as_ref().map(|w| w.linger_ms),
        disk_flush_ms: None,
    })
}

/// What the store's writer did during one load.
struct WriterFigures {
    transactions: u64,
    verifies_per_transaction: f64,
    commit_ms: f64,
    requests_ms: f64,
    linger_ms: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Attempt {
    Valid,
    Wrong,
    Replay,
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    mut client: Verifier,
    mut tokens: Vec<TokenLoad>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    budget: Option<Arc<AtomicU64>>,
    wrong: f64,
    replay: f64,
    worker_id: u64,
    by_user: bool,
) -> Vec<u32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(worker_id);
    let mut latencies = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if let Some(b) = &budget
            && b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
        {
            break;
        }
        let n = tokens.len();
        let Some(t) = tokens.get_mut(i % n) else {
            break;
        };
        i += 1;
        // A bad attempt only ever follows a good one, so no token reaches a lock.
        let roll: f64 = rng.random();
        let attempt = if t.previous_was_bad {
            Attempt::Valid
        } else if roll < wrong {
            Attempt::Wrong
        } else if roll < wrong + replay && t.last_accepted.is_some() {
            Attempt::Replay
        } else {
            Attempt::Valid
        };
        let code = match attempt {
            Attempt::Valid => hotp(&t.key, t.counter, Digits::SIX).to_text(),
            Attempt::Replay => t.last_accepted.clone().unwrap_or_default(),
            Attempt::Wrong => wrong_code(&t.key, t.counter, &mut rng),
        };
        let request = proto::VerifyRequest {
            subject: Some(proto::Subject {
                kind: Some(if by_user {
                    proto::subject::Kind::User(holder_of(&t.serial))
                } else {
                    proto::subject::Kind::Serial(t.serial.clone())
                }),
            }),
            passcode: code.clone(),
            transaction_id: String::new(),
            client: None,
        };
        let started = Instant::now();
        let result = client.verify(request).await;
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        tally.sent.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(r) => {
                // Only answered verifies are timed: a refused call is fast and proves nothing.
                latencies.push(micros);
                let accepted = r.result == proto::VerifyResult::Accept as i32;
                if accepted {
                    tally.accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.rejected.fetch_add(1, Ordering::Relaxed);
                }
                match (attempt, accepted) {
                    (Attempt::Valid, true) => {
                        t.counter += 1;
                        t.last_accepted = Some(code);
                    }
                    (Attempt::Valid, false) => {
                        tally.valid_rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    (Attempt::Wrong, true) => {
                        tally.wrong_accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    (Attempt::Replay, accepted) => {
                        tally.replays_sent.fetch_add(1, Ordering::Relaxed);
                        if accepted {
                            tally.replays_accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    (Attempt::Wrong, false) => {}
                }
            }
            Err(_) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        t.previous_was_bad = attempt != Attempt::Valid;
    }
    latencies
}

/// The holder a bench token is assigned to when the load names users.
fn holder_of(serial: &str) -> String {
    format!("u{serial}")
}

/// A six-digit code that is none of the codes in the token's look-ahead window.
fn wrong_code(key: &OtpKey, counter: u64, rng: &mut impl Rng) -> String {
    let window: Vec<String> = (counter..counter + u64::from(okey_otp::DEFAULT_HOTP_WINDOW))
        .map(|c| hotp(key, c, Digits::SIX).to_text())
        .collect();
    loop {
        let candidate = format!("{:06}", rng.random_range(0..1_000_000u32));
        if !window.contains(&candidate) {
            return candidate;
        }
    }
}

fn print_report(r: &BenchReport) {
    println!(
        "== {} {} ({} tokens, concurrency {}, {} client)",
        r.server,
        r.durability,
        r.tokens,
        r.concurrency,
        match r.client {
            LoadClient::Lean => "lean",
            LoadClient::Tonic => "tonic",
        }
    );
    println!("verifies:          {} in {:.2} s", r.verifies, r.seconds);
    println!("verifies/s:        {:.0}", r.verifies_per_second);
    println!(
        "latency ms:        p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}",
        r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms
    );
    println!("accepted:          {}", r.accepted);
    println!("rejected:          {}", r.rejected);
    println!("valid rejected:    {}", r.valid_rejected);
    println!("wrong accepted:    {}", r.wrong_accepted);
    println!(
        "replays accepted:  {} of {}",
        r.replays_accepted, r.replays_sent
    );
    println!("errors:            {}", r.errors);
    if let (Some(t), Some(v)) = (r.transactions, r.verifies_per_transaction) {
        println!("transactions:      {t} fsync'd, {v:.1} verifies each on average");
    }
    if let (Some(c), Some(q)) = (r.commit_ms, r.requests_ms_per_transaction) {
        println!(
            "per transaction:   {c:.3} ms to commit (write and flush), {q:.3} ms to run its requests"
        );
    }
    if let Some(l) = r.linger_ms_per_transaction {
        println!("writer waited:     {l:.3} ms per transaction for the requests in flight");
    }
    if let Some(f) = r.disk_flush_ms {
        println!(
            "disk flush:        {f:.3} ms for 4 KiB when idle (median, measured before the load)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> BenchReport {
        BenchReport {
            server: "okey",
            durability: "group-commit".into(),
            client: LoadClient::Lean,
            tokens: 10,
            concurrency: 2,
            seconds: 1.0,
            verifies: 100,
            verifies_per_second: 100.0,
            p50_ms: 1.0,
            p95_ms: 2.0,
            p99_ms: 3.0,
            max_ms: 4.0,
            accepted: 99,
            rejected: 1,
            valid_rejected: 0,
            wrong_accepted: 0,
            replays_sent: 1,
            replays_accepted: 0,
            errors: 0,
            transactions: None,
            verifies_per_transaction: None,
            commit_ms: None,
            requests_ms_per_transaction: None,
            linger_ms_per_transaction: None,
            disk_flush_ms: None,
        }
    }

    /// A run fails on anything but speed: failed requests and refused valid codes count as
    /// much as accepted replays (a bench whose every call was refused used to pass).
    #[test]
    fn a_run_fails_on_errors_refusals_and_acceptances() {
        assert!(problems(&clean()).is_empty());
        for (report, expected) in [
            (
                BenchReport {
                    errors: 7,
                    ..clean()
                },
                "7 requests failed",
            ),
            (
                BenchReport {
                    valid_rejected: 2,
                    ..clean()
                },
                "2 valid codes rejected",
            ),
            (
                BenchReport {
                    replays_accepted: 1,
                    ..clean()
                },
                "1 replays accepted",
            ),
            (
                BenchReport {
                    wrong_accepted: 3,
                    ..clean()
                },
                "3 wrong codes accepted",
            ),
        ] {
            assert_eq!(problems(&report), [expected]);
        }
    }
}
