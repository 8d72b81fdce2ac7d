//! The staff web portal: French, server-rendered pages for lot managers and the support centre.
//!
//! **The portal adds no rule of its own.** It authenticates people through the administration's
//! OpenID Connect provider ([`oidc`]), then does everything through okey's own gRPC services as
//! a caller with the role `portal`, naming the logged-in person in the `okey-acting-person`
//! metadata of every request: which lots, keys and actions a person reaches is decided by the
//! server's operation table and the person's functions and scope, exactly as for the CLI. A page
//! the server refuses is a refusal page here.
//!
//! Templates are [maud] macros: the HTML is checked when the crate compiles, every interpolated
//! value is escaped, and no template file is read at run time. The pages work without
//! JavaScript (sorting and filtering are plain GET forms and links), use headings, landmarks,
//! labelled fields and a skip link, and no inline style or script, so the Content-Security-Policy
//! can forbid both.
//!
//! Sessions live in this process's memory ([`session`]): a session is a short-lived login
//! (an hour by default) that the provider renews in a click, so keeping none across restarts
//! loses nothing, and no session secret is ever written to disk. A node behind a load balancer
//! needs sticky sessions.

#![forbid(unsafe_code)]

mod cases;
pub mod oidc;
mod pages;
mod request_pages;
mod requests;
pub mod session;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use okey_server::config::PortalConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

/// Why the portal could not start.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// The listener could not be bound.
    #[error("the portal cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The `[portal]` settings are not usable.
    #[error("[portal] {0}")]
    Config(String),
}

/// A running portal.
pub struct Portal {
    /// The address actually bound.
    pub addr: SocketAddr,
    /// The address browsers use.
    pub public_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Portal {
    /// Stop serving and wait for the requests in flight.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Start the portal of `config`, calling okey's gRPC services at `grpc` with the in-memory
/// portal key `key`.
pub async fn start(
    config: &PortalConfig,
    grpc: okey_server::serve::PortalTarget,
    key: Zeroizing<String>,
    zone: okey_server::Zone,
) -> Result<Portal, PortalError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| PortalError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| PortalError::Bind {
        addr: config.listen,
        source,
    })?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_owned();
    let secret = config
        .client_secret()
        .map_err(|e| PortalError::Config(e.to_string()))?;
    let oidc = match (&config.issuer, &config.client_id) {
        (Some(issuer), Some(client_id)) => Some(
            oidc::Oidc::new(
                issuer,
                client_id,
                secret,
                &format!("{public_url}{}", web::CALLBACK),
                &config.person_claim,
            )
            .map_err(PortalError::Config)?,
        ),
        _ => None,
    };
    let grpc = web::Grpc::new(grpc, key).map_err(PortalError::Config)?;
    let app = Arc::new(web::App {
        grpc,
        oidc,
        sessions: session::Sessions::new(
            std::time::Duration::from_secs(config.session_minutes * 60),
            zone.clone(),
        ),
        zone,
        secure: public_url.starts_with("https://"),
        public_url: public_url.clone(),
        utc_offset_minutes: config.utc_offset_minutes,
    });
    let router = web::router(app);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the portal stopped");
        }
    });
    tracing::info!(%addr, %public_url, "portal serving");
    Ok(Portal {
        addr,
        public_url,
        shutdown: Some(tx),
        task,
    })
}
