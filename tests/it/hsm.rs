//! The master key in an HSM: SoftHSM2 (Debian's `softhsm2`), with a token the test initialises
//! in its own `SOFTHSM2_CONF`. Start, verify, rotate from a key file to the HSM and back, a
//! wrong PIN, a missing key label, and the HSM going away while the server runs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use okey_e2e::{Server, check, hotp_token, okey_binary, reference_hotp, verify_serial};
use okey_server::proto;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "okey-test";
const KEY: &str = "okey-master";
const PIN: &str = "4711-okey";

/// A SoftHSM2 configuration and one initialised token, all in a temp directory.
struct SoftHsm {
    dir: tempfile::TempDir,
}

impl SoftHsm {
    fn new() -> SoftHsm {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("token dir");
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        let hsm = SoftHsm { dir };
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--so-pin",
                "so-secret-1",
            ])
            .args(["--pin", PIN])
            .env("SOFTHSM2_CONF", hsm.conf())
            .output()
            .expect("softhsm2-util (Debian package softhsm2; scripts/deps/hsm.sh)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        hsm.write_pin("good.pin", PIN);
        hsm.write_pin("wrong.pin", "not-the-pin");
        hsm
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn write_pin(&self, name: &str, pin: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{pin}\n")).expect("pin file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    fn pin(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `pkcs11:` URI of the key `label` with the PIN file `pin`.
    fn uri(&self, label: &str, pin: &str) -> String {
        format!(
            "pkcs11:token={TOKEN};object={label}?module-path={MODULE}&pin-source={}",
            self.pin(pin).display()
        )
    }

    /// The `[master_key]` table for the key `label` and PIN file `pin`.
    fn config(&self, label: &str, pin: &str) -> String {
        format!(
            "[master_key]\nsource = \"pkcs11\"\nmodule = \"{MODULE}\"\ntoken_label = \"{TOKEN}\"\nkey_label = \"{label}\"\npin_file = \"{}\"\n",
            self.pin(pin).display()
        )
    }

    /// Remove the token from the module, as pulling a USB HSM out does.
    fn remove_token(&self) {
        std::fs::remove_dir_all(self.dir.path().join("tokens")).expect("remove the token");
    }
}

/// `okey store ARGS` on `data_dir` with the HSM's configuration in the environment.
fn store_cmd(hsm: &SoftHsm, data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(okey_binary())
        .arg("store")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("SOFTHSM2_CONF", hsm.conf())
        .env_remove("OKEY_MASTER_KEY_FILE")
        .env_remove("OKEY_MASTER_KEY")
        .env("OKEY_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run okey store")
}

/// `okey serve` that is expected not to start: its exit status and stderr.
fn serve_refused(hsm: &SoftHsm, server: &Server) -> (Option<i32>, String) {
    let mut child = Command::new(okey_binary())
        .arg("serve")
        .arg("--config")
        .arg(server.config_path())
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&server.data_dir)
        .env("SOFTHSM2_CONF", hsm.conf())
        .env("OKEY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn okey serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).expect("stderr");
            }
            return (status.code(), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("okey serve started although its HSM is unusable");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SEED_A: &str = "3132333435363738393031323334353637383930";
const SEED_B: &str = "0102030405060708090a0b0c0d0e0f1011121314";

fn code(seed_hex: &str, counter: u64) -> String {
    reference_hotp(&hex::decode(seed_hex).expect("hex"), counter, 6)
}

#[tokio::test]
async fn a_store_moves_into_the_hsm_and_back_and_a_bad_hsm_stops_the_server() {
    let hsm = SoftHsm::new();
    let mut server = Server::start();
    server.set_env("SOFTHSM2_CONF", &hsm.conf().display().to_string());
    {
        let mut c = server.admin().await;
        c.tokens
            .import_tokens(proto::ImportTokensRequest {
                tokens: vec![hotp_token("H1", SEED_A)],
            })
            .await
            .expect("import");
        assert!(check(&mut c, verify_serial("H1", &code(SEED_A, 0))).await.0);
    }
    server.kill9();
    let key_file = server.data_dir.join("master.key");

    // File -> HSM, the key generated on the token by okey.
    let out = ok(&store_cmd(
        &hsm,
        &server.data_dir,
        &[
            "rotate-master",
            "--to",
            &hsm.uri(KEY, "good.pin"),
            "--generate",
        ],
    ));
    assert!(out.contains("now wrapped by the HSM key"), "{out}");
    // The old key file no longer opens the store.
    let out = store_cmd(&hsm, &server.data_dir, &["rotate-data-key"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong master key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The server starts on the HSM and verifies the next code.
    server.write_config(&hsm.config(KEY, "good.pin"));
    server.restart();
    {
        let mut c = server.admin().await;
        assert!(check(&mut c, verify_serial("H1", &code(SEED_A, 1))).await.0);
        assert!(
            !check(&mut c, verify_serial("H1", &code(SEED_A, 1))).await.0,
            "replay"
        );
        c.tokens
            .import_tokens(proto::ImportTokensRequest {
                tokens: vec![hotp_token("H2", SEED_B)],
            })
            .await
            .expect("import under the HSM");
    }
    server.kill9();

    // A wrong PIN, a missing key label: the server refuses to start and says why.
    server.write_config(&hsm.config(KEY, "wrong.pin"));
    let (status, err) = serve_refused(&hsm, &server);
    assert_eq!(status, Some(2), "{err}");
    assert!(err.contains("refused the user PIN"), "{err}");
    assert!(err.contains("never falls back"), "{err}");
    server.write_config(&hsm.config("no-such-key", "good.pin"));
    let (status, err) = serve_refused(&hsm, &server);
    assert_eq!(status, Some(2), "{err}");
    assert!(err.contains("no AES key with this label"), "{err}");
    assert!(err.contains("no-such-key"), "{err}");
    // A configuration with no HSM settings at all does not silently use the old key file.
    assert!(key_file.exists());

    // HSM -> file: a new key file, and the server starts on it without the HSM.
    let back = server.data_dir.join("master-2.key");
    let out = ok(&store_cmd(
        &hsm,
        &server.data_dir,
        &[
            "--master-key",
            &hsm.uri(KEY, "good.pin"),
            "rotate-master",
            "--to",
            &format!("file:{}", back.display()),
        ],
    ));
    assert!(out.contains("now wrapped by the key file"), "{out}");
    server.write_config(&format!("master_key_file = \"{}\"\n", back.display()));
    server.restart();
    let mut c = server.admin().await;
    assert!(check(&mut c, verify_serial("H1", &code(SEED_A, 2))).await.0);
    assert!(check(&mut c, verify_serial("H2", &code(SEED_B, 0))).await.0);
}

#[tokio::test]
async fn with_the_hsm_gone_cached_keys_go_on_verifying_and_nothing_new_is_unsealed() {
    let hsm = SoftHsm::new();
    let mut server = Server::start();
    server.set_env("SOFTHSM2_CONF", &hsm.conf().display().to_string());
    {
        let mut c = server.admin().await;
        c.tokens
            .import_tokens(proto::ImportTokensRequest {
                tokens: vec![hotp_token("G1", SEED_A), hotp_token("G2", SEED_B)],
            })
            .await
            .expect("import");
    }
    server.kill9();
    ok(&store_cmd(
        &hsm,
        &server.data_dir,
        &[
            "rotate-master",
            "--to",
            &hsm.uri(KEY, "good.pin"),
            "--generate",
        ],
    ));
    server.write_config(&hsm.config(KEY, "good.pin"));
    server.restart();
    let mut c = server.admin().await;
    // G1 is unsealed (and cached) while the HSM is there; G2 is not.
    assert!(check(&mut c, verify_serial("G1", &code(SEED_A, 0))).await.0);

    hsm.remove_token();
    // Past the interval in which one answer of the HSM vouches for it.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    assert!(
        check(&mut c, verify_serial("G1", &code(SEED_A, 1))).await.0,
        "a key already in memory goes on verifying"
    );
    let err = c
        .auth
        .verify(verify_serial("G2", &code(SEED_B, 0)))
        .await
        .expect_err("G2 cannot be unsealed without the HSM");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("HSM"), "{}", err.message());
    // Nothing new is sealed either.
    let err = c
        .tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("G3", SEED_B)],
        })
        .await
        .expect_err("no seed is sealed without the HSM");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
}

/// Verify H1's codes from counter `from` on until `stop`, each one accepted; the next counter.
async fn verify_until(
    mut c: okey_e2e::Client,
    from: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let mut counter = from;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let (accepted, _) = check(&mut c, verify_serial("H1", &code(SEED_A, counter))).await;
        assert!(accepted, "the code of counter {counter} was refused");
        counter += 1;
    }
    counter
}

/// `okey store rotate-master --online ARGS` against `server`, off the runtime's workers.
async fn rotate_online(server: &Server, args: &[&str]) -> std::process::Output {
    let mut cmd = server.as_admin(Command::new(okey_binary()));
    cmd.args(["store", "rotate-master", "--online"]).args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run okey store"))
        .await
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_store_moves_into_the_hsm_and_back_while_verifies_go_on() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let hsm = SoftHsm::new();
    let allowed = format!("[master_key]\nallowed_modules = [\"{MODULE}\"]\n");
    let mut server = Server::start_with(&allowed);
    server.set_env("SOFTHSM2_CONF", &hsm.conf().display().to_string());
    server.restart();
    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("H1", SEED_A), hotp_token("H2", SEED_B)],
        })
        .await
        .expect("import");

    // A module the configuration does not name is refused, even as another path to the same
    // library, and nothing changes.
    let out = rotate_online(
        &server,
        &[
            "--to",
            &hsm.uri(KEY, "good.pin").replace(
                "module-path=/usr/lib/softhsm/",
                "module-path=/usr/lib/softhsm/../softhsm/",
            ),
            "--generate",
        ],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allowed_modules"), "{err}");

    // File -> HSM while a front end verifies.
    let stop = Arc::new(AtomicBool::new(false));
    let front = tokio::spawn(verify_until(server.admin().await, 0, stop.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let out = ok(&rotate_online(&server, &["--to", &hsm.uri(KEY, "good.pin"), "--generate"]).await);
    assert!(out.contains("now wrapped by the HSM key"), "{out}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let next = front.await.expect("front end");
    assert!(next > 2, "only {next} verifies went through");
    let rotation = c
        .audit_records(1000)
        .await
        .into_iter()
        .find(|r| r.action == "store.rotate-master-key")
        .expect("the rotation is audited");
    assert_eq!(rotation.actor, "admin", "{rotation:?}");
    // New seals go through the new key at once, and a key not yet unsealed opens.
    assert!(check(&mut c, verify_serial("H2", &code(SEED_B, 0))).await.0);
    c.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("H3", SEED_B)],
        })
        .await
        .expect("import under the HSM");

    // The next start needs the HSM: the old key file opens nothing.
    server.kill9();
    let out = store_cmd(&hsm, &server.data_dir, &["rotate-data-key"]);
    assert_eq!(out.status.code(), Some(2));
    server.write_config(&hsm.config(KEY, "good.pin"));
    server.restart();
    let mut c = server.admin().await;
    assert!(
        check(&mut c, verify_serial("H1", &code(SEED_A, next)))
            .await
            .0
    );

    // And back to a new key file, online again, verifies going on.
    let back = server.data_dir.join("master-2.key");
    let stop = Arc::new(AtomicBool::new(false));
    let front = tokio::spawn(verify_until(server.admin().await, next + 1, stop.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let out = ok(&rotate_online(&server, &["--to", &format!("file:{}", back.display())]).await);
    assert!(out.contains("now wrapped by the key file"), "{out}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let next = front.await.expect("front end");
    assert_eq!(
        std::fs::metadata(&back)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    server.write_config(&format!("master_key_file = \"{}\"\n", back.display()));
    server.restart();
    let mut c = server.admin().await;
    assert!(
        check(&mut c, verify_serial("H1", &code(SEED_A, next)))
            .await
            .0
    );
    assert!(check(&mut c, verify_serial("H3", &code(SEED_B, 0))).await.0);
}
