//! Sealed seeds and master keys: tampering, moving, wrong or damaged keys are clear errors and
//! nothing is served.

use std::os::unix::fs::PermissionsExt;

use okey_store::*;

use crate::common::*;

const OTHER_SEED: &[u8] = b"abcdefghijklmnopqrst";

fn two_tokens(dir: &std::path::Path) {
    let s = open(dir);
    s.create_token(hotp_token("A"), &actor()).expect("create");
    let mut b = hotp_token("B");
    b.seed = Zeroizing::new(OTHER_SEED.to_vec());
    s.create_token(b, &actor()).expect("create");
}

fn sql(dir: &std::path::Path, sql: &str) {
    let db = rusqlite::Connection::open(dir.join("okey.db")).expect("db");
    db.execute_batch(sql).expect("sql");
}

fn assert_unseal(r: Result<VerifyOutcome, StoreError>, serial: &str) {
    match r {
        Err(StoreError::Unseal { what, subject }) => {
            assert_eq!((what, subject.as_str()), ("seed", serial))
        }
        other => panic!("expected an unseal error, got {other:?}"),
    }
}

async fn try_verify(s: &Store, serial: &str, code: &str) -> Result<VerifyOutcome, StoreError> {
    s.verify(VerifyRequest {
        subject: Subject::Serial(serial),
        passcode: code,
        now: 10,
        actor: &actor(),
        client: "",
    })
    .await
}

#[test]
fn a_seed_moved_to_another_token_does_not_open() {
    let dir = tempfile::tempdir().expect("dir");
    two_tokens(dir.path());
    sql(
        dir.path(),
        "UPDATE tokens SET sealed_seed = (SELECT sealed_seed FROM tokens WHERE serial = 'A') \
         WHERE serial = 'B'",
    );
    let s = open(dir.path());
    rt().block_on(async {
        // With A's seed in B's row, A's code would match if the blob opened: it must not.
        assert_unseal(try_verify(&s, "B", &hotp(SEED, 0, 6)).await, "B");
        assert_unseal(try_verify(&s, "B", &hotp(OTHER_SEED, 0, 6)).await, "B");
        assert_eq!(s.token("B").expect("get").counter, 0, "nothing moved");
        // The untouched token still works.
        assert!(verify(&s, "A", &hotp(SEED, 0, 6), 10).await.accepted);
    });
    assert!(matches!(s.prefetch("B"), Err(StoreError::Unseal { .. })));
    let backup = dir.path().join("b.okb");
    assert!(matches!(
        s.backup(&backup, &Zeroizing::new("a long passphrase".into())),
        Err(StoreError::Unseal { .. })
    ));
    assert!(!backup.exists(), "no partial backup is left behind");
}

#[test]
fn a_flipped_bit_does_not_open() {
    let dir = tempfile::tempdir().expect("dir");
    two_tokens(dir.path());
    // Flip the lowest bit of the 20th byte of A's sealed seed.
    let db = rusqlite::Connection::open(dir.path().join("okey.db")).expect("db");
    let mut blob: Vec<u8> = db
        .query_row(
            "SELECT sealed_seed FROM tokens WHERE serial = 'A'",
            [],
            |r| r.get(0),
        )
        .expect("blob");
    blob[20] ^= 1;
    db.execute(
        "UPDATE tokens SET sealed_seed = ?1 WHERE serial = 'A'",
        [&blob],
    )
    .expect("update");
    drop(db);
    let s = open(dir.path());
    rt().block_on(async {
        assert_unseal(try_verify(&s, "A", &hotp(SEED, 0, 6)).await, "A");
    });
}

#[test]
fn a_wrong_master_key_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    two_tokens(dir.path());
    let r = Store::open(StoreConfig {
        master_key: MasterKeySource::Bytes(key_bytes(8)),
        ..config(dir.path())
    });
    assert!(matches!(r, Err(StoreError::WrongMasterKey)), "{r:?}");
    let r = Store::open(StoreConfig {
        master_key: MasterKeySource::Env("OKEY_TEST_SURELY_UNSET_VARIABLE".into()),
        ..config(dir.path())
    });
    assert!(matches!(r, Err(StoreError::BadKeyEnv(_))), "{r:?}");
}

#[test]
fn the_key_file_is_created_private_and_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let key = data.join("master.key");
    {
        let s = Store::open(StoreConfig::in_dir(&data)).expect("open");
        s.create_token(hotp_token("K1"), &actor()).expect("create");
    }
    let meta = std::fs::metadata(&key).expect("key file");
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // Opens again with the same file.
    Store::open(StoreConfig::in_dir(&data)).expect("reopen");

    // Loose permissions: refused, with the mode in the message.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = Store::open(StoreConfig::in_dir(&data)).expect_err("loose");
    assert!(
        matches!(e, StoreError::LooseKeyPermissions { mode: 0o644, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("chmod 600"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // Truncated: refused.
    let bytes = std::fs::read(&key).expect("read");
    std::fs::write(&key, &bytes[..16]).expect("truncate");
    let e = Store::open(StoreConfig::in_dir(&data)).expect_err("truncated");
    assert!(matches!(e, StoreError::BadKeyFile { len: 16, .. }), "{e}");

    // Missing while the store holds data: refused, not silently replaced.
    std::fs::remove_file(&key).expect("rm");
    let e = Store::open(StoreConfig::in_dir(&data)).expect_err("missing");
    assert!(matches!(e, StoreError::MissingMasterKey(_)), "{e}");
    assert!(!key.exists());

    // Back in place: serves again.
    std::fs::write(&key, &bytes).expect("restore key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let s = Store::open(StoreConfig::in_dir(&data)).expect("reopen");
    rt().block_on(async {
        assert!(verify(&s, "K1", &hotp(SEED, 0, 6), 1).await.accepted);
    });
}

#[test]
fn no_plaintext_seed_or_pin_reaches_the_disk() {
    let dir = tempfile::tempdir().expect("dir");
    let s = open(dir.path());
    let seed: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let mut t = hotp_token("Z1");
    t.seed = Zeroizing::new(seed.clone());
    s.create_token(t, &actor()).expect("create");
    s.set_pin("Z1", Some(&Pin::new("SecretPin42").expect("pin")), &actor())
        .expect("pin");
    drop(s);
    for entry in std::fs::read_dir(dir.path()).expect("ls") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        let found = bytes.windows(seed.len()).any(|w| w == seed.as_slice())
            || bytes.windows(11).any(|w| w == b"SecretPin42");
        assert!(!found, "secret in clear in {}", path.display());
    }
}

#[test]
fn store_files_are_owner_only_and_a_loose_one_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("dir");
    two_tokens(dir.path());
    let s = open(dir.path());
    for name in okey_store::sqlite::STORE_FILES {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
    }
    drop(s);
    for name in okey_store::sqlite::STORE_FILES {
        let path = dir.path().join(name);
        if !path.exists() {
            continue;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        match Store::open(config(dir.path())) {
            Err(e @ StoreError::LooseFilePermissions { .. }) => {
                let text = e.to_string();
                assert!(text.contains(name) && text.contains("0644"), "{text}");
            }
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name} 0644 was accepted"),
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    assert!(Store::open(config(dir.path())).is_ok());
}
