//! The examples of RFC 6030 itself, read with the values the RFC documents.

use okey_intake::{
    Algorithm, Encoding, FileError, ImportError, KeyMaterial, Limits, PackageErrorKind,
    PinUsageMode, Position, PskcOptions, ResponseFormat,
};
use zeroize::Zeroizing;

use crate::common::{RFC4226_SECRET, check_hotp_vectors, fixture, read, read_ok};

fn lenient() -> PskcOptions {
    PskcOptions {
        limits: Limits {
            min_secret_len: 1,
            ..Limits::default()
        },
        ..PskcOptions::default()
    }
}

/// Figure 2: a 4-byte secret. Read as documented with the length floor lowered, and
/// refused by default (RFC 4226 wants at least 128 bits).
#[test]
fn figure2_basic_container() {
    let data = fixture("rfc6030/figure2.pskcxml");
    let p = read_ok(&data, lenient()).pop().unwrap();
    assert_eq!(&*p.secret, b"1234");
    assert_eq!(p.key_id.as_deref(), Some("12345678"));
    assert_eq!(p.issuer.as_deref(), Some("Issuer-A"));
    assert_eq!(p.algorithm, Algorithm::Hotp);
    assert_eq!(p.serial, None);

    let items = read(&data, PskcOptions::default());
    let [Err(ImportError::Package(e))] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert_eq!(
        e.kind,
        PackageErrorKind::SecretLength {
            len: 4,
            min: 16,
            max: 128
        }
    );
    assert_eq!(e.package.position, Position::Package(1));
    assert_eq!(
        e.to_string(),
        "key package #1 (key id \"12345678\"): secret is 4 bytes; accepted are 16 to 128"
    );
}

/// Figure 3: supplementary data; the secret is the RFC 4226 one.
#[test]
fn figure3_supplementary_data() {
    let p = read_ok(&fixture("rfc6030/figure3.pskcxml"), PskcOptions::plain())
        .pop()
        .unwrap();
    assert_eq!(p.serial.as_deref(), Some("987654321"));
    assert_eq!(p.manufacturer.as_deref(), Some("Manufacturer"));
    assert_eq!(p.issuer.as_deref(), Some("Issuer"));
    assert_eq!(p.counter, Some(0));
    assert_eq!(
        p.response,
        Some(ResponseFormat {
            length: 8,
            encoding: Encoding::Decimal,
            check_digit: false
        })
    );
    assert_eq!(p.digits(), Some(8));
    assert_eq!(&*p.secret, RFC4226_SECRET);
    check_hotp_vectors(&p);
}

/// Figure 5: PIN policy and the PIN key package it points to (same serial: a PIN key is
/// not a second token, so it is no duplicate).
#[test]
fn figure5_pin_policy() {
    let ps = read_ok(&fixture("rfc6030/figure5.pskcxml"), PskcOptions::plain());
    assert_eq!(ps.len(), 2);
    let pol = ps[0].pin_policy.clone().unwrap();
    assert_eq!(pol.pin_key_id.as_deref(), Some("123456781"));
    assert_eq!(pol.min_length, Some(4));
    assert_eq!(pol.max_length, Some(4));
    assert_eq!(pol.usage_mode, Some(PinUsageMode::Local));
    assert_eq!(pol.encoding, Some(Encoding::Decimal));
    check_hotp_vectors(&ps[0]);
    assert_eq!(ps[1].algorithm, Algorithm::Pin);
    assert_eq!(ps[1].key_id.as_deref(), Some("123456781"));
    assert_eq!(&*ps[1].secret, b"1234");
}

/// Figure 6: AES-128-CBC under the pre-shared key the RFC gives, HMAC-SHA1 value MAC.
#[test]
fn figure6_pre_shared_key() {
    let key = Zeroizing::new(hex::decode("12345678901234567890123456789012").unwrap());
    let p = read_ok(
        &fixture("rfc6030/figure6.pskcxml"),
        PskcOptions::with_key(key),
    )
    .pop()
    .unwrap();
    assert_eq!(p.serial.as_deref(), Some("987654321"));
    assert_eq!(p.key_id.as_deref(), Some("12345678"));
    assert_eq!(p.digits(), Some(8));
    check_hotp_vectors(&p);
}

/// Figure 7: key derived from the password "qwerty" with PBKDF2 (default PRF HMAC-SHA1).
#[test]
fn figure7_password() {
    let opts = PskcOptions::with_password(Zeroizing::new("qwerty".into()));
    let p = read_ok(&fixture("rfc6030/figure7.pskcxml"), opts)
        .pop()
        .unwrap();
    assert_eq!(p.serial.as_deref(), Some("987654321"));
    assert_eq!(p.manufacturer.as_deref(), Some("TokenVendorAcme"));
    assert_eq!(p.issuer.as_deref(), Some("Example-Issuer"));
    assert_eq!(p.key_id.as_deref(), Some("123456"));
    check_hotp_vectors(&p);
}

/// Figure 10: bulk provisioning. Packages 3 and 4 are two keys of device 9999999 for two
/// months; okey holds one key per serial, so the second is refused naming the first.
#[test]
fn figure10_bulk_and_duplicate_serial() {
    let items = read(&fixture("rfc6030/figure10.pskcxml"), PskcOptions::plain());
    assert_eq!(items.len(), 4);
    let p1 = items[0].as_ref().unwrap();
    assert_eq!(p1.serial.as_deref(), Some("654321"));
    assert_eq!(p1.start_date, Some(1_146_441_600)); // 2006-05-01T00:00:00Z
    assert_eq!(p1.expiry_date, Some(1_149_033_600)); // 2006-05-31T00:00:00Z
    assert!(items[1].is_ok() && items[2].is_ok());
    let Err(ImportError::Package(e)) = &items[3] else {
        panic!("{:?}", items[3])
    };
    let msg = e.to_string();
    assert!(
        matches!(&e.kind, PackageErrorKind::DuplicateSerial { serial, first }
        if serial == "9999999" && first.position == Position::Package(3)),
        "{msg}"
    );
    assert!(
        msg.contains("key package #4") && msg.contains("key package #3"),
        "{msg}"
    );
    // All-or-nothing: nothing is imported.
    let refusal = okey_intake::collect_all(read(
        &fixture("rfc6030/figure10.pskcxml"),
        PskcOptions::plain(),
    ))
    .unwrap_err();
    assert_eq!(refusal.packages.len(), 1);
    assert_eq!(refusal.valid, 3);
    // Partial: three imported, one refused.
    let report = okey_intake::collect_partial(read(
        &fixture("rfc6030/figure10.pskcxml"),
        PskcOptions::plain(),
    ));
    assert_eq!(report.accepted.len(), 3);
    assert_eq!(report.refused.len(), 1);
    assert!(report.file.is_none());
}

#[test]
fn encrypted_figures_need_the_right_kind_of_key() {
    let f6 = fixture("rfc6030/figure6.pskcxml");
    let f7 = fixture("rfc6030/figure7.pskcxml");
    let pw = || KeyMaterial::Password(Zeroizing::new("qwerty".into()));
    let psk = || KeyMaterial::PreSharedKey(Zeroizing::new(vec![0x12; 16]));
    for (data, key, want) in [
        (&f6, KeyMaterial::None, "KeyRequired"),
        (&f7, KeyMaterial::None, "KeyRequired"),
        (&f6, pw(), "WrongKeyKind"),
        (&f7, psk(), "WrongKeyKind"),
    ] {
        let items = read(
            data,
            PskcOptions {
                key,
                ..PskcOptions::default()
            },
        );
        let [Err(ImportError::File(e))] = items.as_slice() else {
            panic!("{items:?}")
        };
        let got = match e {
            FileError::KeyRequired => "KeyRequired",
            FileError::WrongKeyKind { .. } => "WrongKeyKind",
            other => panic!("{other}"),
        };
        assert_eq!(got, want);
    }
}
