//! Starting and stopping the service: open the store, create the first admin credential, bind,
//! and serve gRPC (with health and reflection) and optionally metrics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use okey_store::{Actor, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use okey_domain::Role;
use zeroize::Zeroizing;

use crate::callers::{generate_key, hash_key};
use crate::config::ServeConfig;
use crate::metrics::{Metrics, serve_metrics};
use crate::proto;
use crate::service::Okey;

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is not usable.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The master key in the HSM could not be used: okey does not start, and never falls back.
    #[error("okey does not start without its master key, and never falls back to a key file: {0}")]
    MasterKey(okey_store::StoreError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] okey_store::StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS files could not be read.
    #[error("TLS: {0}")]
    Tls(String),
    /// The first admin credential could not be written.
    #[error("cannot write the admin credential {path}: {source}")]
    Credential {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The runtime failed (random generator, signal handler, a start-up task).
    #[error("{0}")]
    Runtime(String),
    /// The RADIUS front end could not be configured or bound.
    #[error("{0}")]
    Radius(String),
    /// The `[smtp]` table or a mail template is not usable.
    #[error("mail: {0}")]
    Mail(String),
    /// The audit anchors file cannot be used.
    #[error("audit anchors: {0}")]
    Anchors(#[from] crate::anchors::AnchorSetupError),
    /// Reflection could not be built from the descriptor set.
    #[error("reflection: {0}")]
    Reflection(String),
}

/// A running service.
pub struct RunningServer {
    /// The gRPC address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The metrics address actually bound, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// The RADIUS (UDP) address actually bound, if the front end is on.
    pub radius_addr: Option<SocketAddr>,
    /// The file holding the admin credential created at this start, if one was created.
    pub created_admin_key: Option<PathBuf>,
    /// The store, shared with the service.
    pub store: Store,
    /// The in-memory API key (role `portal`) the staff portal calls the services with, when
    /// `[portal]` is enabled.
    pub portal_key: Option<Zeroizing<String>>,
    /// Where the portal reaches the services, when `[portal]` is enabled.
    pub portal_link: Option<PortalLink>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    metrics_task: Option<JoinHandle<()>>,
    audit_head_task: Option<JoinHandle<()>>,
    anchors: Option<(Arc<crate::anchors::Publisher>, JoinHandle<()>)>,
    key_job_task: Option<JoinHandle<()>>,
    radius: Option<okey_radius::Running>,
    mail_task: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Stop accepting, finish in-flight requests, and wait.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(PortalLink::Unix {
            path,
            shutdown,
            task,
        }) = &mut self.portal_link
        {
            if let Some(tx) = shutdown.take() {
                let _ = tx.send(());
            }
            if let Some(t) = task.take() {
                let _ = t.await;
            }
            let _ = std::fs::remove_file(path);
        }
        if let Some(m) = self.metrics_task.take() {
            m.abort();
        }
        if let Some(k) = self.key_job_task.take() {
            k.abort();
        }
        if let Some(r) = self.radius.take() {
            r.stop();
        }
        if let Some(m) = self.mail_task.take() {
            m.abort();
        }
        let logging_heads = self.audit_head_task.take().map(|t| t.abort()).is_some();
        let stopped = match (&mut self.task).await {
            Ok(result) => result.map_err(ServeError::from),
            Err(_) => Ok(()),
        };
        if logging_heads {
            // The last word: the head as the server leaves it.
            log_audit_head(&self.store, &mut None).await;
        }
        if let Some((publisher, task)) = self.anchors.take() {
            task.abort();
            // The head as the server leaves it, signed.
            publisher.publish_async().await;
        }
        stopped
    }

    /// Wait until the server stops by itself (it does not, unless the transport fails).
    pub async fn wait(mut self) -> Result<(), ServeError> {
        match (&mut self.task).await {
            Ok(result) => result.map_err(ServeError::from),
            Err(_) => Ok(()),
        }
    }
}

/// The principal name of the staff portal's in-memory key, as the audit chain records it
/// ("okey-portal for PERSON").
pub const PORTAL_CALLER: &str = "okey-portal";

/// The path of the first admin credential.
pub fn admin_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.key")
}

/// Create an admin API key on first start (when no caller exists yet) and write it, mode 0600,
/// to `<data_dir>/admin.key`.
fn bootstrap_admin(store: &Store, data_dir: &Path) -> Result<Option<PathBuf>, ServeError> {
    if !store.list_api_keys()?.is_empty() {
        return Ok(None);
    }
    let key = generate_key().map_err(|e| ServeError::Runtime(format!("random generator: {e}")))?;
    let path = admin_key_path(data_dir);
    write_secret_file(&path, format!("{}\n", key.as_str()).as_bytes()).map_err(|source| {
        ServeError::Credential {
            path: path.clone(),
            source,
        }
    })?;
    let actor = Actor {
        name: "okey-serve".to_owned(),
        role: "system".to_owned(),
    };
    store.add_api_key("admin", hash_key(&key), &["admin".to_owned()], &actor)?;
    Ok(Some(path))
}

fn write_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

fn tls_config(tls: &crate::config::TlsConfig) -> Result<ServerTlsConfig, ServeError> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| ServeError::Tls(format!("{}: {e}", p.display())));
    let mut config =
        ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

/// Listen on `addr`; also returns the address actually bound (the port, when `addr` asks for 0).
pub(crate) async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok((listener, bound))
}

/// The Unix socket, in the data directory, on which the portal reaches the services when the
/// gRPC listener has `[tls]`.
pub const PORTAL_SOCKET: &str = "portal.sock";

/// How the portal reaches okey's gRPC services.
#[derive(Debug)]
pub enum PortalLink {
    /// The gRPC listener itself, in plain HTTP/2 (it has no `[tls]`).
    Tcp(SocketAddr),
    /// A Unix socket readable by this user only, serving the same services without TLS.
    Unix {
        /// The socket's path.
        path: PathBuf,
        shutdown: Option<oneshot::Sender<()>>,
        task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    },
}

impl PortalLink {
    /// Where to connect: the listener's address, or the socket's path.
    pub fn target(&self) -> PortalTarget {
        match self {
            PortalLink::Tcp(a) => PortalTarget::Tcp(*a),
            PortalLink::Unix { path, .. } => PortalTarget::Unix(path.clone()),
        }
    }
}

/// Where the portal connects.
#[derive(Clone, Debug)]
pub enum PortalTarget {
    /// A TCP address (plain HTTP/2).
    Tcp(SocketAddr),
    /// A Unix socket.
    Unix(PathBuf),
}

/// Bind the portal's Unix socket at `path` (a stale one left by a killed server is replaced),
/// mode 0600 inside the 0700 data directory.
fn bind_portal_socket(
    path: &Path,
) -> Result<tokio_stream::wrappers::UnixListenerStream, ServeError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let io = |source: std::io::Error| {
        ServeError::Runtime(format!(
            "portal socket {}: {source} (with [tls], the portal reaches gRPC through it; or set [portal] enabled = false)",
            path.display()
        ))
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io(std::io::Error::other("exists and is not a socket")));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(tokio_stream::wrappers::UnixListenerStream::new(listener))
}

/// The transport settings every okey gRPC listener uses (the bench's transport floor too).
pub(crate) fn server_builder() -> Server {
    Server::builder().tcp_nodelay(true)
}

/// Every gRPC service the listener serves, by its full name: each is reported `SERVING` by
/// `grpc.health.v1.Health` and listed by reflection. A service added to the router is added here.
pub const SERVED: [&str; 12] = [
    proto::auth_service_server::SERVICE_NAME,
    proto::token_service_server::SERVICE_NAME,
    proto::audit_service_server::SERVICE_NAME,
    proto::lifecycle_service_server::SERVICE_NAME,
    proto::caller_service_server::SERVICE_NAME,
    proto::mail_service_server::SERVICE_NAME,
    proto::directory_service_server::SERVICE_NAME,
    proto::support_service_server::SERVICE_NAME,
    tonic_health::pb::health_server::SERVICE_NAME,
    tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
    proto::request_service_server::SERVICE_NAME,
];

/// Open the store and start serving; returns once the listeners are bound.
pub async fn start(config: ServeConfig) -> Result<RunningServer, ServeError> {
    config.validate()?;
    okey_store::create_private_dir(&config.data_dir)?;
    let store_config = config.store_config()?;
    let in_hsm = matches!(
        store_config.master_key,
        okey_store::MasterKeySource::Pkcs11(_)
    );
    let store = tokio::task::spawn_blocking(move || Store::open(store_config))
        .await
        .map_err(|e| ServeError::Runtime(format!("store open task: {e}")))?
        .map_err(|e| {
            if in_hsm {
                ServeError::MasterKey(e)
            } else {
                ServeError::Store(e)
            }
        })?;
    let created_admin_key = bootstrap_admin(&store, &config.data_dir)?;

    let metrics = Arc::new(Metrics::default());
    let anchor_publisher = if config.audit.anchor_interval_seconds > 0 {
        Some(Arc::new(crate::anchors::Publisher::new(
            store.clone(),
            &config,
            metrics.anchor.clone(),
        )?))
    } else {
        None
    };
    let (mail, mail_task) = match &config.smtp {
        Some(smtp) => {
            let (ctx, task) = crate::mail::start(&store, smtp, config.portal.mail_url())?;
            let _ = metrics.mail_sender.set(ctx.metrics.clone());
            store.set_lifecycle_mailer(Arc::new(crate::mail::LifecycleMails(ctx.clone())));
            (Some(ctx), Some(task))
        }
        None => (None, None),
    };
    let okey = Arc::new(Okey::new(store.clone(), &config, metrics.clone(), mail));
    // The portal calls the gRPC listener in plain HTTP/2 on loopback, or with [tls] on it, the
    // same services on a Unix socket of the data directory (`PORTAL_SOCKET`).
    let portal_key = if config.portal.enabled {
        Some(
            okey.callers
                .add_builtin(PORTAL_CALLER, vec![Role::Portal])
                .map_err(|e| ServeError::Runtime(format!("random generator: {e}")))?,
        )
    } else {
        None
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    for name in SERVED {
        health_reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    // Reflection in both versions: v1, and v1alpha that many generic clients still ask for
    // (grpcio-reflection, older grpcurl and Postman builds).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;

    let (listener, addr) = bind(config.listen).await?;

    let (metrics_addr, metrics_task) = match config.metrics_listen {
        Some(m) => {
            let (l, bound) = bind(m).await?;
            (
                Some(bound),
                Some(tokio::spawn(serve_metrics(
                    l,
                    metrics.clone(),
                    store.clone(),
                ))),
            )
        }
        None => (None, None),
    };

    let radius = match &config.radius {
        Some(r) => {
            let resolved = r.resolve().map_err(|e| ServeError::Radius(e.to_string()))?;
            let verifier = Arc::new(crate::radius::RadiusVerifier::new(okey.clone()));
            let listen = resolved.listen;
            Some(
                okey_radius::start(resolved, verifier, metrics.radius.clone())
                    .await
                    .map_err(|source| ServeError::Bind {
                        addr: listen,
                        source,
                    })?,
            )
        }
        None => None,
    };
    let radius_addr = radius.as_ref().map(|r| r.addr);

    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(proto::auth_service_server::AuthServiceServer::new(
            okey.clone(),
        ))
        .add_service(proto::token_service_server::TokenServiceServer::new(
            okey.clone(),
        ))
        .add_service(proto::audit_service_server::AuditServiceServer::new(
            okey.clone(),
        ))
        .add_service(proto::lifecycle_service_server::LifecycleServiceServer::new(okey.clone()))
        .add_service(proto::mail_service_server::MailServiceServer::new(
            okey.clone(),
        ))
        .add_service(proto::directory_service_server::DirectoryServiceServer::new(okey.clone()))
        .add_service(
            proto::request_service_server::RequestServiceServer::new(okey.clone())
                .max_decoding_message_size(crate::MAX_REQUEST_MESSAGE_BYTES),
        )
        .add_service(proto::support_service_server::SupportServiceServer::new(
            okey.clone(),
        ))
        .add_service(proto::caller_service_server::CallerServiceServer::new(okey));
    let routes = routes.routes();
    // With [tls], the portal reaches the same services on a Unix socket only this user opens.
    let portal_link = match (&portal_key, &config.tls) {
        (None, _) => None,
        (Some(_), None) => Some(PortalLink::Tcp(addr)),
        (Some(_), Some(_)) => {
            let path = config.data_dir.join(PORTAL_SOCKET);
            let incoming = bind_portal_socket(&path)?;
            let (tx, rx) = oneshot::channel::<()>();
            let task = tokio::spawn(
                server_builder()
                    .add_routes(routes.clone())
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = rx.await;
                    }),
            );
            Some(PortalLink::Unix {
                path,
                shutdown: Some(tx),
                task: Some(task),
            })
        }
    };
    let mut builder = server_builder();
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(tls_config(tls)?)?;
    }
    let router = builder.add_routes(routes);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(router.serve_with_incoming_shutdown(
        TcpListenerStream::new(listener),
        async {
            let _ = rx.await;
        },
    ));
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "okey serving");
    let audit_head_task = (config.audit_head_log_seconds > 0).then(|| {
        let every = Duration::from_secs(config.audit_head_log_seconds);
        tokio::spawn(log_audit_heads(store.clone(), every))
    });
    let anchors = anchor_publisher.map(|p| {
        let every = Duration::from_secs(config.audit.anchor_interval_seconds);
        (p.clone(), tokio::spawn(crate::anchors::run(p, every)))
    });
    let key_job_task = (config.key_job_seconds > 0).then(|| {
        crate::lifecycle::spawn_scheduler(
            store.clone(),
            Duration::from_secs(config.key_job_seconds),
            config.requests.clone(),
        )
    });
    Ok(RunningServer {
        addr,
        metrics_addr,
        radius_addr,
        created_admin_key,
        store,
        portal_key,
        portal_link,
        shutdown: Some(tx),
        task,
        metrics_task,
        audit_head_task,
        anchors,
        key_job_task,
        radius,
        mail_task,
    })
}

/// Log the audit chain's head every `every`, when it moved: the log pipeline keeps it off this
/// machine, where deleting the newest audit entries cannot reach it.
async fn log_audit_heads(store: Store, every: Duration) {
    let mut last = None;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        log_audit_head(&store, &mut last).await;
    }
}

/// Log the head if its sequence differs from `last` (and remember it).
async fn log_audit_head(store: &Store, last: &mut Option<u64>) {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.audit_head()).await {
        Ok(Ok(Some(head))) if *last != Some(head.seq) => {
            *last = Some(head.seq);
            tracing::info!(
                sequence = head.seq,
                hash = %hex::encode(head.mac),
                "audit chain head"
            );
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the audit chain head"),
        Err(e) => tracing::warn!(error = %e, "the audit head task failed"),
    }
}

/// Serve until SIGINT or SIGTERM, then shut down gracefully.
pub async fn run(config: ServeConfig) -> Result<(), ServeError> {
    let server = start(config).await?;
    announce(&server);
    wait_for_signal().await?;
    eprintln!("okey: shutting down");
    server.stop().await
}

/// Say on stderr where the service listens (and where the first admin credential went).
pub fn announce(server: &RunningServer) {
    if let Some(path) = &server.created_admin_key {
        eprintln!(
            "okey: created the first admin credential in {} (mode 0600); use it with --api-key-file or OKEY_API_KEY",
            path.display()
        );
    }
    eprintln!("okey: listening on {}", server.addr);
    if let Some(m) = server.metrics_addr {
        eprintln!("okey: metrics on http://{m}/metrics");
    }
    if let Some(r) = server.radius_addr {
        eprintln!("okey: RADIUS on udp {r}");
    }
}

/// Wait for SIGINT or SIGTERM.
pub async fn wait_for_signal() -> Result<(), ServeError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ServeError::Runtime(format!("signal handler: {e}")))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    Ok(())
}
