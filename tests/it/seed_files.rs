//! Vendor seed files through the API: an encrypted PSKC container and an OATH CSV file are
//! imported, and the imported tokens accept the RFC 4226 codes of the RFC secret.

use okey_e2e::{RFC_SECRET_HEX, Server, check, okey_binary, verify_serial};
use okey_intake::{Algorithm, ExportProtection, KeyPackage, Prf, export};
use okey_server::proto;
use zeroize::Zeroizing;

fn package(serial: &str) -> KeyPackage {
    let mut p = KeyPackage::new(
        Algorithm::Hotp,
        Zeroizing::new(hex::decode(RFC_SECRET_HEX).expect("hex")),
    );
    p.serial = Some(serial.to_owned());
    p.manufacturer = Some("Nitrokey".into());
    p
}

fn container(serials: &[&str], password: &str) -> Vec<u8> {
    let packages: Vec<KeyPackage> = serials.iter().map(|s| package(s)).collect();
    let protection = ExportProtection::password(Zeroizing::new(password.to_owned()))
        .with_kdf(1000, Prf::HmacSha256);
    export(Vec::new(), protection, &packages).expect("export").0
}

async fn import(
    c: &mut okey_e2e::Client,
    file: Vec<u8>,
    format: proto::SeedFileFormat,
    password: &str,
    partial: bool,
) -> Result<proto::ImportSeedFileResponse, tonic::Status> {
    let mut chunks = vec![proto::SeedFileChunk {
        options: Some(proto::SeedFileOptions {
            format: format as i32,
            password: password.to_owned(),
            partial,
            ..Default::default()
        }),
        ..Default::default()
    }];
    // Small chunks, so the file really arrives in pieces.
    chunks.extend(file.chunks(700).map(|c| proto::SeedFileChunk {
        data: c.to_vec(),
        ..Default::default()
    }));
    chunks.push(proto::SeedFileChunk {
        end: true,
        ..Default::default()
    });
    c.tokens
        .import_seed_file(tokio_stream::iter(chunks))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn encrypted_pskc_imports_all_or_nothing() {
    let server = Server::start();
    let mut c = server.admin().await;
    let file = container(&["000123", "000124"], "correct horse battery");

    let err = import(
        &mut c,
        file.clone(),
        proto::SeedFileFormat::Pskc,
        "wrong password",
        false,
    )
    .await
    .expect_err("wrong password");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        !err.message().contains("correct horse"),
        "{}",
        err.message()
    );
    assert!(c.serials().await.is_empty(), "nothing imported");

    let r = import(
        &mut c,
        file.clone(),
        proto::SeedFileFormat::Pskc,
        "correct horse battery",
        false,
    )
    .await
    .expect("import");
    assert_eq!(r.imported, 2);
    // RFC 4226 Appendix D codes, and the serial's leading zeros kept.
    assert!(check(&mut c, verify_serial("000123", "755224")).await.0);
    assert!(check(&mut c, verify_serial("000124", "755224")).await.0);
    assert!(check(&mut c, verify_serial("000124", "287082")).await.0);
    let t = c
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: "000123".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(t.description, "Nitrokey");

    // The same file again: every serial exists; all or nothing refuses it, partial reports each.
    let err = import(
        &mut c,
        file.clone(),
        proto::SeedFileFormat::Pskc,
        "correct horse battery",
        false,
    )
    .await
    .expect_err("duplicates");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{}", err.message());
    let err = import(
        &mut c,
        file,
        proto::SeedFileFormat::Pskc,
        "correct horse battery",
        true,
    )
    .await
    .expect_err("nothing left to import");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn oath_csv_partial_import_reports_the_bad_lines() {
    let server = Server::start();
    let mut c = server.admin().await;
    let csv = format!(
        "# serial, seed, type, digits, step\n0500, {RFC_SECRET_HEX}, hotp, 6, 0\n0501, nothex, hotp, 6, 0\n0502, {RFC_SECRET_HEX}, hotp, 6, 0\n"
    );
    let err = import(
        &mut c,
        csv.clone().into_bytes(),
        proto::SeedFileFormat::OathCsv,
        "",
        false,
    )
    .await
    .expect_err("a bad line refuses the file");
    assert!(err.message().contains("line 3"), "{}", err.message());
    let r = import(
        &mut c,
        csv.into_bytes(),
        proto::SeedFileFormat::OathCsv,
        "",
        true,
    )
    .await
    .expect("partial import");
    assert_eq!(r.imported, 2);
    assert_eq!(r.refused.len(), 1);
    assert!(r.refused[0].package.contains('3'), "{:?}", r.refused[0]);
    assert!(check(&mut c, verify_serial("0502", "755224")).await.0);

    // A CSV file is plaintext: a password given with it is refused, not ignored.
    let csv = format!("0503, {RFC_SECRET_HEX}, hotp, 6, 0\n");
    let err = import(
        &mut c,
        csv.into_bytes(),
        proto::SeedFileFormat::OathCsv,
        "a password for nothing",
        false,
    )
    .await
    .expect_err("a password with a CSV file");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("not encrypted"), "{}", err.message());
    assert!(!c.serials().await.contains(&"0503".to_owned()));
}

/// A client that could not read its file to the end stops its upload without the `end` mark:
/// even in partial mode, the lines that did arrive are not imported.
#[tokio::test]
async fn an_upload_without_its_end_imports_nothing() {
    let server = Server::start();
    let mut c = server.admin().await;
    let csv = format!("0600, {RFC_SECRET_HEX}, hotp, 6, 0\n0601, {RFC_SECRET_HEX}, hotp, 6, 0\n");
    let chunks = vec![
        proto::SeedFileChunk {
            options: Some(proto::SeedFileOptions {
                format: proto::SeedFileFormat::OathCsv as i32,
                partial: true,
                ..Default::default()
            }),
            ..Default::default()
        },
        proto::SeedFileChunk {
            data: csv.into_bytes(),
            ..Default::default()
        },
    ];
    let err = c
        .tokens
        .import_seed_file(tokio_stream::iter(chunks))
        .await
        .expect_err("no end mark");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("nothing imported"),
        "{}",
        err.message()
    );
    let serials = c.serials().await;
    assert!(serials.is_empty(), "{serials:?}");
}

#[test]
fn the_cli_streams_a_pskc_file() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("stock.pskc");
    std::fs::write(&path, container(&["0777"], "a long enough password")).expect("write");
    let out = std::process::Command::new(okey_binary())
        .args(["token", "import-file"])
        .arg(&path)
        .args(["--password-env", "STOCK_PASSWORD", "--server"])
        .arg(format!("http://{}", server.addr))
        .env("STOCK_PASSWORD", "a long enough password")
        .env("OKEY_API_KEY", &server.admin_key)
        .output()
        .expect("run okey");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "imported 1");
}

async fn status_of(c: &mut okey_e2e::Client, serial: &str) -> proto::TokenStatus {
    let t = c
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: serial.into(),
        })
        .await
        .expect("get")
        .into_inner();
    proto::TokenStatus::try_from(t.status).expect("a known status")
}

#[tokio::test]
async fn stock_moves_between_sites_in_an_encrypted_file() {
    let site_a = Server::start();
    let site_b = Server::start();
    let mut a = site_a.admin().await;
    let mut assigned = okey_e2e::hotp_token("0900", RFC_SECRET_HEX);
    assigned.holder = "someone".into();
    a.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![okey_e2e::hotp_token("0901", RFC_SECRET_HEX), assigned],
        })
        .await
        .expect("import");
    // Use counter 0 at site A: the export carries the counter, so site B starts after it.
    assert!(check(&mut a, verify_serial("0901", "755224")).await.0);

    let err = a
        .tokens
        .export_stock(proto::ExportStockRequest {
            serials: vec!["0900".into()],
            password: "a long enough password".into(),
            ..Default::default()
        })
        .await
        .expect_err("assigned tokens are not stock");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // The server alone changes nothing: a client that takes the stream and goes away leaves
    // the stock as it was.
    let stream = a
        .tokens
        .export_stock(proto::ExportStockRequest {
            password: "a long enough password".into(),
            ..Default::default()
        })
        .await
        .expect("export")
        .into_inner();
    drop(stream);
    assert_eq!(status_of(&mut a, "0901").await, proto::TokenStatus::Active);
    // Even so, the seed that may have left is on record: the audit entry is written before
    // the first byte of the file is sent.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let records = a.audit_records(20).await;
        if records
            .iter()
            .any(|r| r.action == "stock.export" && r.serial == "0901")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no stock.export entry: {records:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A move whose file cannot be written in full (the client dies at its file size limit)
    // revokes nothing.
    let dir = tempfile::tempdir().expect("dir");
    let cut = dir.path().join("cut.pskc");
    let okey = okey_e2e::okey_binary();
    let died = site_a
        .as_admin(std::process::Command::new("sh"))
        .arg("-c")
        .arg("ulimit -f 1; exec \"$0\" token export-stock \"$1\" --password-env P --revoke")
        .arg(&okey)
        .arg(&cut)
        .env("P", "a long enough password")
        .output()
        .expect("run okey under sh");
    assert!(!died.status.success(), "the export cannot fit in 1 block");
    assert_eq!(status_of(&mut a, "0901").await, proto::TokenStatus::Active);

    // The move: written, flushed, read back, and only then revoked here.
    let path = dir.path().join("moved.pskc");
    let moved = site_a.cli(
        &[
            "token",
            "export-stock",
            path.to_str().expect("utf-8 path"),
            "--password-env",
            "P",
            "--revoke",
        ],
        &[("P", "a long enough password")],
    );
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    let stdout = String::from_utf8_lossy(&moved.stdout);
    assert!(
        stdout.contains("(1 tokens) and revoked them here"),
        "{stdout}"
    );
    let file = std::fs::read(&path).expect("the moved stock file");
    let text = String::from_utf8_lossy(&file);
    assert!(text.contains("EncryptedValue"), "the seed is encrypted");
    assert!(!text.contains(RFC_SECRET_HEX) && !text.contains("MTIzNDU2Nzg5MDEyMzQ1Njc4OTA"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the stock file is its owner's only");

    // Moved: revoked at site A, not the assigned one.
    assert_eq!(status_of(&mut a, "0901").await, proto::TokenStatus::Revoked);
    assert!(!check(&mut a, verify_serial("0901", "287082")).await.0);
    assert_eq!(status_of(&mut a, "0900").await, proto::TokenStatus::Active);

    let mut b = site_b.admin().await;
    let r = import(
        &mut b,
        file,
        proto::SeedFileFormat::Pskc,
        "a long enough password",
        false,
    )
    .await
    .expect("import at site B");
    assert_eq!(r.imported, 1);
    assert!(
        !check(&mut b, verify_serial("0901", "755224")).await.0,
        "counter 0 was used at site A"
    );
    assert!(check(&mut b, verify_serial("0901", "287082")).await.0);
}
