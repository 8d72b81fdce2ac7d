//! Connections to PostgreSQL: the driver's own runtime, waiting on it from synchronous code, the
//! connection string (with okey's reading of `sslmode`) and a statement cache per connection.
//!
//! # Why the async client on a runtime of its own
//! The store's read side ([`crate::backend::Backend`]) is synchronous and is called from inside
//! the server's tokio workers (a verify reads a token on a cache miss). The `postgres` crate's
//! synchronous client drives its connection with a runtime of its own through `block_on`, which
//! panics inside another runtime; `deadpool`/`r2d2` pools bring nothing the store needs (it uses
//! a fixed handful of connections, all opened at start). So okey uses `tokio-postgres` directly:
//! each connection's I/O task runs on one small runtime thread owned by the backend, and callers
//! wait for their query's answer by parking their own thread ([`wait`]). A `tokio_postgres`
//! client pipelines concurrent queries from several threads over one connection, so the read
//! pool is a few shared clients picked in turn, with no lock held across a query.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio_postgres::{Client, Statement};

use crate::StoreError;

/// Wakes a parked thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Run `f` to completion on the calling thread, parking it between polls. The client's futures
/// only exchange messages with the connection task (on the backend's runtime), so this works on
/// any thread, a tokio worker included (which it blocks for the round trip, as a SQLite read
/// blocks it for the page reads).
pub(crate) fn wait<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// The runtime that drives the connections' I/O: one thread, stopped when the last handle goes.
pub(crate) struct Driver {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Driver {
    pub(crate) fn start() -> Result<Arc<Driver>, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::io("cannot start the PostgreSQL driver", "", e))?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("okey-pg-io".into())
            .spawn(move || {
                // Ends when the driver is dropped (or its sender is): the runtime, and every
                // connection task on it, is dropped on this thread.
                let _ = rt.block_on(stopped);
            })
            .map_err(|e| StoreError::io("cannot start the PostgreSQL driver", "", e))?;
        Ok(Arc::new(Driver {
            handle,
            stop: Some(stop),
        }))
    }

    /// Open one connection and hand its I/O task to the driver.
    pub(crate) fn connect(&self, target: &Target) -> Result<Conn, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let config = target.config.clone();
        let tls = target.tls.clone();
        self.handle.spawn(async move {
            let r = match tls {
                None => match config.connect(tokio_postgres::NoTls).await {
                    Ok((client, conn)) => {
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::warn!(error = %e, "PostgreSQL connection ended");
                            }
                        });
                        Ok(client)
                    }
                    Err(e) => Err(e),
                },
                Some(tls) => match config.connect(tls).await {
                    Ok((client, conn)) => {
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::warn!(error = %e, "PostgreSQL connection ended");
                            }
                        });
                        Ok(client)
                    }
                    Err(e) => Err(e),
                },
            };
            let _ = tx.send(r);
        });
        let client = rx
            .recv()
            .map_err(|_| StoreError::Corrupt("the PostgreSQL driver stopped".into()))??;
        Ok(Conn {
            client,
            statements: Mutex::new(HashMap::new()),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// One connection and the statements prepared on it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: Mutex<HashMap<&'static str, Statement>>,
}

impl Conn {
    /// The prepared statement for `sql`, preparing it on first use.
    pub(crate) fn prepare(&self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self
            .statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
        {
            return Ok(s.clone());
        }
        let s = wait(self.client.prepare(sql))?;
        self.statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sql, s.clone());
        Ok(s)
    }

    pub(crate) fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let s = self.prepare(sql)?;
        Ok(wait(self.client.query(&s, params))?)
    }

    pub(crate) fn query_opt(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        let s = self.prepare(sql)?;
        Ok(wait(self.client.query_opt(&s, params))?)
    }

    pub(crate) fn query_one(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, StoreError> {
        let s = self.prepare(sql)?;
        Ok(wait(self.client.query_one(&s, params))?)
    }

    pub(crate) fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let s = self.prepare(sql)?;
        Ok(wait(self.client.execute(&s, params))?)
    }

    /// Run statements without parameters (transaction control, `SET`).
    pub(crate) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(wait(self.client.batch_execute(sql))?)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// Where to connect and how: the parsed connection string.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: Option<crate::pg::tls::MakeRustls>,
}

/// How the connection string asks for TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SslRequest {
    /// `sslmode` absent, `disable`, `allow` or `prefer`: plain TCP (or a Unix socket).
    Plain,
    /// `sslmode=require` or `verify-full`: TLS, the server's certificate checked against
    /// `sslrootcert` (or the web's public roots when absent) and the host name.
    Verify(Option<PathBuf>),
}

/// Read a connection string (`postgres://user:pw@host:port/db?sslmode=verify-full` or
/// `host=... user=... sslmode=require`), taking out `sslmode` and `sslrootcert`, which okey
/// handles itself: the driver knows only `disable`, `prefer` and `require`, and `require` there
/// means "encrypted, server unchecked". okey never talks TLS to an unchecked server: `require`
/// and `verify-full` both check the certificate chain and the host name. `verify-ca` (chain
/// without host name) is refused rather than silently strengthened or weakened.
pub(crate) fn parse_target(url: &str) -> Result<Target, StoreError> {
    let (rest, mode, root) = split_ssl(url)?;
    let request = match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => SslRequest::Plain,
        Some("require" | "verify-full") => SslRequest::Verify(root.map(PathBuf::from)),
        Some("verify-ca") => {
            return Err(StoreError::invalid(
                "store url",
                "sslmode=verify-ca is not supported: use verify-full (the host name is checked too)",
            ));
        }
        Some(_) => {
            return Err(StoreError::invalid(
                "store url",
                "sslmode must be disable, prefer, require or verify-full",
            ));
        }
    };
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        // The driver's message names the option, never its value (so never the password).
        StoreError::invalid("store url", e.to_string())
    })?;
    config.application_name("okey");
    config.connect_timeout(std::time::Duration::from_secs(10));
    config.keepalives(true);
    let tls = match request {
        SslRequest::Plain => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            None
        }
        SslRequest::Verify(root) => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            Some(crate::pg::tls::MakeRustls::new(root.as_deref())?)
        }
    };
    Ok(Target { config, tls })
}

/// Split `sslmode` and `sslrootcert` out of a connection string in either form.
pub(crate) fn split_ssl(url: &str) -> Result<(String, Option<String>, Option<String>), StoreError> {
    let mut mode = None;
    let mut root = None;
    let trimmed = url.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let Some((base, query)) = trimmed.split_once('?') else {
            return Ok((trimmed.to_owned(), None, None));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sslmode" => mode = Some(percent_decode(v)?),
                "sslrootcert" => root = Some(percent_decode(v)?),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, mode, root));
    }
    // key=value pairs, values possibly single-quoted with backslash escapes: keep every other
    // pair exactly as written.
    let mut kept: Vec<&str> = Vec::new();
    let bytes = trimmed.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &trimmed[start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            return Err(StoreError::invalid(
                "store url",
                format!("expected key=value in the connection string near {key:?}"),
            ));
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let vstart = i;
        let value = if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            let mut v = Vec::new();
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(StoreError::invalid(
                            "store url",
                            "unterminated quoted value in the connection string",
                        ));
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        if let Some(c) = bytes.get(i + 1) {
                            v.push(*c);
                        }
                        i += 2;
                    }
                    Some(c) => {
                        v.push(*c);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&v).into_owned()
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            trimmed[vstart..i].to_owned()
        };
        match key {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => kept.push(&trimmed[start..i]),
        }
    }
    Ok((kept.join(" "), mode, root))
}

fn percent_decode(s: &str) -> Result<String, StoreError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| StoreError::invalid("store url", "bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| StoreError::invalid("store url", "not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_options_are_taken_out_of_both_forms() {
        let (rest, mode, root) =
            split_ssl("postgres://okey:pw@db:5432/okey?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3")
                .expect("url");
        assert_eq!(rest, "postgres://okey:pw@db:5432/okey?connect_timeout=3");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));

        let (rest, mode, root) =
            split_ssl("host=db password='a b\\'c' sslmode = require dbname=okey").expect("kv");
        assert_eq!(rest, "host=db password='a b\\'c' dbname=okey");
        assert_eq!(mode.as_deref(), Some("require"));
        assert_eq!(root, None);
        let cfg: tokio_postgres::Config = rest.parse().expect("driver parses what is left");
        assert_eq!(cfg.get_password(), Some(&b"a b'c"[..]));
    }

    #[test]
    fn unsupported_or_broken_ssl_modes_are_refused() {
        for bad in [
            "host=db sslmode=verify-ca",
            "host=db sslmode=sometimes",
            "host=db password='open",
            "host",
        ] {
            assert!(
                matches!(parse_target(bad), Err(StoreError::Invalid { .. })),
                "{bad}"
            );
        }
        let t = parse_target("host=db user=okey").expect("plain");
        assert!(t.tls.is_none());
        let t = parse_target("postgresql://okey@db/okey?sslmode=require").expect("tls");
        assert!(t.tls.is_some());
    }
}
