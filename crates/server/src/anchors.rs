//! Publishing the audit chain's signed head outside the database: one line per anchor appended
//! to the anchors file (opened `O_APPEND`, created 0600, fsync'd), the same line to syslog, and
//! the latest anchor on the metrics endpoint. `okey audit verify --anchors` reads the file back.
//!
//! An anchor is published at start, then every `anchor_interval_seconds` when the head moved,
//! and at a clean shutdown. A failing sink does not stop the service (the others still get the
//! anchor); a failure is logged when it starts and when it ends, not at every anchor.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use okey_store::{SignedAnchor, Store};

use crate::config::ServeConfig;

/// Why anchors cannot be published at all.
#[derive(Debug, thiserror::Error)]
pub enum AnchorSetupError {
    /// The anchors file cannot be opened for appending.
    #[error("cannot open the audit anchors file {path} for appending: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The anchors file exists but others than its owner (and its group, read-only) may use it.
    #[error(
        "the audit anchors file {path} has mode {mode:o}: it must be 0600 or 0640 (chmod 600 {path})"
    )]
    Mode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The latest published anchor, for the metrics endpoint.
#[derive(Default)]
pub struct Latest(Mutex<Option<SignedAnchor>>);

impl Latest {
    /// The anchor last published, if any.
    pub fn get(&self) -> Option<SignedAnchor> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, a: SignedAnchor) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(a);
    }
}

/// The host name, reduced to what a node name may hold; `okey` when there is none.
pub fn default_node() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(okey_store::anchor::MAX_NODE_LEN)
        .collect();
    if name.is_empty() {
        "okey".to_owned()
    } else {
        name
    }
}

/// Open `path` for appending, creating it 0600; an existing file must not be writable by its
/// group or readable by others.
pub fn open_anchors_file(path: &Path) -> Result<File, AnchorSetupError> {
    let open_err = |source| AnchorSetupError::Open {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(open_err)?;
    let mode = f.metadata().map_err(open_err)?.permissions().mode() & 0o777;
    if mode & 0o137 != 0 {
        return Err(AnchorSetupError::Mode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(f)
}

/// Whether a sink is currently failing (so a failure is logged once, and its end too).
#[derive(Default)]
struct Health {
    failing: bool,
}

impl Health {
    fn ok(&mut self, sink: &str) {
        if std::mem::take(&mut self.failing) {
            tracing::info!(sink, "audit anchors reach this sink again");
        }
    }

    fn failed(&mut self, sink: &str, why: &dyn std::fmt::Display) {
        if !self.failing {
            self.failing = true;
            tracing::warn!(sink, error = %why, "audit anchors cannot be published here (logged once until it works again)");
        }
    }
}

struct Sinks {
    file: File,
    file_path: PathBuf,
    file_health: Health,
    syslog: Option<(UnixDatagram, PathBuf)>,
    syslog_health: Health,
    /// The sequence number last published.
    last: Option<u64>,
}

/// Signs and publishes anchors.
pub struct Publisher {
    store: Store,
    node: String,
    sinks: Mutex<Sinks>,
    latest: Arc<Latest>,
}

impl Publisher {
    /// Open the sinks `config` names. The anchors file must open; syslog may be absent.
    pub fn new(
        store: Store,
        config: &ServeConfig,
        latest: Arc<Latest>,
    ) -> Result<Publisher, AnchorSetupError> {
        let file_path = config.anchors_file();
        let file = open_anchors_file(&file_path)?;
        let mut syslog_health = Health::default();
        let syslog = if config.audit.syslog {
            match UnixDatagram::unbound().and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                Ok(s) => Some((s, config.audit.syslog_socket.clone())),
                Err(e) => {
                    syslog_health.failed("syslog", &e);
                    None
                }
            }
        } else {
            None
        };
        Ok(Publisher {
            store,
            node: config.audit.node.clone().unwrap_or_else(default_node),
            sinks: Mutex::new(Sinks {
                file,
                file_path,
                file_health: Health::default(),
                syslog,
                syslog_health,
                last: None,
            }),
            latest,
        })
    }

    /// Sign the head and publish it, unless it is the one last published (or the chain is
    /// empty). Blocking: file writes and an fsync.
    pub fn publish(&self) -> Option<SignedAnchor> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        let anchor = match self.store.sign_anchor(&self.node, crate::clock::now()) {
            Ok(Some(a)) if sinks.last != Some(a.seq) => a,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign the audit chain head");
                return None;
            }
        };
        let line = anchor.to_line();
        let Sinks {
            file,
            file_path,
            file_health,
            syslog,
            syslog_health,
            last,
        } = &mut *sinks;
        let mut text = line.clone();
        text.push('\n');
        // One write of the whole line: with O_APPEND it lands after whatever is there.
        match file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
        {
            Ok(()) => file_health.ok("file"),
            Err(e) => file_health.failed("file", &format!("{}: {e}", file_path.display())),
        }
        if let Some((socket, path)) = syslog {
            // LOG_AUTHPRIV | LOG_NOTICE, RFC 3164 style without a timestamp (the daemon adds it).
            let msg = format!("<85>okey[{}]: audit anchor {line}", std::process::id());
            match socket.send_to(msg.as_bytes(), &*path) {
                Ok(_) => syslog_health.ok("syslog"),
                Err(e) => syslog_health.failed("syslog", &format!("{}: {e}", path.display())),
            }
        }
        *last = Some(anchor.seq);
        tracing::info!(
            sequence = anchor.seq,
            hash = %hex::encode(anchor.head),
            node = %anchor.node,
            "audit chain anchor published"
        );
        self.latest.set(anchor.clone());
        Some(anchor)
    }

    /// Publish now, off the async runtime's workers.
    pub async fn publish_async(self: &Arc<Self>) {
        let p = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || p.publish()).await {
            tracing::warn!(error = %e, "the audit anchor task failed");
        }
    }
}

/// Publish at start, then every `every`.
pub async fn run(publisher: Arc<Publisher>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        publisher.publish_async().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_open_to_others_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("anchors.log");
        let f = open_anchors_file(&path).expect("created");
        assert_eq!(
            f.metadata().expect("meta").permissions().mode() & 0o777,
            0o600
        );
        drop(f);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(open_anchors_file(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = open_anchors_file(&path).expect_err("world-readable");
        assert!(err.to_string().contains("0600 or 0640"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).expect("chmod");
        assert!(open_anchors_file(&path).is_err());
    }

    #[test]
    fn the_default_node_is_a_valid_node_name() {
        assert!(okey_store::anchor::check_node(&default_node()).is_ok());
    }
}
