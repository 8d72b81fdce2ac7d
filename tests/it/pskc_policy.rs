//! What a PSKC file says beyond its keys, imported through `okey token import-file` against a
//! real `okey serve`: ExpiryDate is the key's validity end and a key past it imports expired;
//! what okey does not act on (a ds:Signature it does not check, a password for a file that
//! encrypts nothing, a UserId not mapped, a StartDate, an Issuer) is reported; UserId may be
//! mapped to the holder; a partial import of nothing still says why, package by package.

use std::path::Path;
use std::process::Output;

use okey_e2e::{Server, check, reference_hotp, verify_serial};

/// The RFC 4226 secret, base64.
const SECRET_B64: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=";

fn package(serial: &str, extra_key: &str, policy: &str) -> String {
    format!(
        "<KeyPackage><DeviceInfo><Manufacturer>Nitrokey</Manufacturer>\
         <SerialNo>{serial}</SerialNo></DeviceInfo>\
         <Key Id=\"{serial}\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:hotp\">\
         <AlgorithmParameters><ResponseFormat Length=\"6\" Encoding=\"DECIMAL\"/>\
         </AlgorithmParameters>\
         <Data><Secret><PlainValue>{SECRET_B64}</PlainValue></Secret>\
         <Counter><PlainValue>0</PlainValue></Counter></Data>\
         {extra_key}{policy}</Key></KeyPackage>"
    )
}

fn container(packages: &[String], signature: bool) -> String {
    let sig = if signature {
        "<ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod \
         Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/><ds:SignatureMethod \
         Algorithm=\"http://www.w3.org/2000/09/xmldsig#rsa-sha1\"/><ds:Reference URI=\"#Device\">\
         <ds:DigestMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#sha1\"/>\
         <ds:DigestValue>j6lwx3rvEPO0vKtMup4NbeVu8nk=</ds:DigestValue></ds:Reference>\
         </ds:SignedInfo><ds:SignatureValue>j6lwx3rvEPO0vKtMup4NbeVu8nk=</ds:SignatureValue>\
         </ds:Signature>"
    } else {
        ""
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<KeyContainer Version=\"1.0\" \
         xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\" \
         xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">{}{sig}</KeyContainer>\n",
        packages.concat()
    )
}

fn import(server: &Server, dir: &Path, xml: &str, args: &[&str]) -> Output {
    let path = dir.join("keys.pskcxml");
    std::fs::write(&path, xml).expect("write the file");
    let mut all = vec!["token", "import-file", path.to_str().expect("path")];
    all.extend_from_slice(args);
    server.cli(
        &all,
        &[("OKEY_TEST_PSKC_PASSWORD", "un mot de passe inutile")],
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn key(server: &Server, serial: &str) -> serde_json::Value {
    let o = server.cli(&["key", "show", serial, "--json"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON")
}

async fn logs_in(server: &Server, serial: &str, counter: u64) -> bool {
    let mut c = server.admin().await;
    let code = reference_hotp(b"12345678901234567890", counter, 6);
    check(&mut c, verify_serial(serial, &code)).await.0
}

/// Issue 19 item 10: "a key whose ExpiryDate has passed imports as active and logs in".
#[tokio::test]
async fn expiry_date_is_the_validity_end_and_a_passed_one_imports_expired() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let xml = container(
        &[
            package(
                "EXP-PAST",
                "",
                "<Policy><ExpiryDate>2006-05-31T00:00:00Z</ExpiryDate></Policy>",
            ),
            package(
                "EXP-LATER",
                "",
                "<Policy><ExpiryDate>2099-12-31T00:00:00Z</ExpiryDate></Policy>",
            ),
        ],
        false,
    );
    let o = import(&server, dir.path(), &xml, &[]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("imported 2"), "{o:?}");
    let past = key(&server, "EXP-PAST");
    assert_eq!(past["key"]["state"], "expired", "{past}");
    assert_eq!(past["key"]["valid_until"], 1_149_033_600u64, "{past}");
    assert!(
        !logs_in(&server, "EXP-PAST", 0).await,
        "an expired key logs in"
    );
    let later = key(&server, "EXP-LATER");
    assert_eq!(later["key"]["valid_until"], 4_102_358_400u64, "{later}");
    assert_ne!(later["key"]["state"], "expired", "{later}");
}

/// "A ds:Signature is neither checked nor reported; a password given for a plaintext file is
/// silently ignored": both are reported, with every other element okey does not act on.
#[tokio::test]
async fn every_ignored_element_is_reported_in_the_summary() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let xml = container(
        &[package(
            "IGN-1",
            "<UserId>Jean.Dupont</UserId>",
            "<Policy><StartDate>2006-05-01T00:00:00Z</StartDate></Policy>",
        )],
        true,
    );
    let o = import(
        &server,
        dir.path(),
        &xml,
        &["--password-env", "OKEY_TEST_PSKC_PASSWORD"],
    );
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(out.contains("imported 1"), "{out}");
    let ignored: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("ignored: "))
        .collect();
    assert!(ignored.iter().any(|l| l.contains("ds:Signature")), "{out}");
    assert!(
        ignored
            .iter()
            .any(|l| l.contains("a password was given but the file encrypts nothing")),
        "{out}"
    );
    assert!(
        ignored
            .iter()
            .any(|l| l.contains("IGN-1") && l.contains("UserId was not used")),
        "{out}"
    );
    assert!(
        ignored
            .iter()
            .any(|l| l.contains("IGN-1") && l.contains("StartDate is not enforced")),
        "{out}"
    );
    assert_eq!(key(&server, "IGN-1")["key"]["holder"], "");
}

/// "`UserId` is not mapped to a holder (offer it)".
#[tokio::test]
async fn user_id_becomes_the_holder_on_request() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let xml = container(
        &[package("UID-1", "<UserId>Jean.Dupont</UserId>", "")],
        false,
    );
    let o = import(&server, dir.path(), &xml, &["--holder-from-user-id"]);
    assert!(o.status.success(), "{o:?}");
    assert!(!stdout(&o).contains("UserId was not used"), "{o:?}");
    assert_eq!(key(&server, "UID-1")["key"]["holder"], "jean.dupont");
    // A UserId that is no user name refuses its package, with the reason.
    let bad = container(
        &[package("UID-2", "<UserId>jean dupont</UserId>", "")],
        false,
    );
    let o = import(&server, dir.path(), &bad, &["--holder-from-user-id"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("UserId"), "{err}");
}

/// "With `--partial` and nothing importable, the per-package reasons are lost."
#[tokio::test]
async fn a_partial_import_of_nothing_still_gives_each_packages_reason() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let xml = container(&[package("BAD 1", "", ""), package("", "", "")], false);
    let o = import(&server, dir.path(), &xml, &["--partial"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("2 package(s) refused"), "{err}");
    assert!(err.contains("BAD 1"), "{err}");
    assert!(err.contains("key package #2"), "{err}");
    assert!(
        server.admin().await.serials().await.is_empty(),
        "nothing imported"
    );
}
