//! Round trips: containers written in every protection variant (plain, AES-128/192/256-CBC
//! under a pre-shared key, PBKDF2 password; HMAC-SHA1 and HMAC-SHA256 MACs) are read back,
//! and every imported seed reproduces the RFC 4226 / RFC 6238 codes.

use data_encoding::BASE64;
use okey_intake::{
    Algorithm, Cipher, Encoding, ExportProtection, HashAlgorithm, KeyPackage, MacAlgorithm,
    PinPolicy, PinUsageMode, Prf, PskcOptions, PskcWriter, ResponseFormat, export,
};
use zeroize::Zeroizing;

use crate::common::{RFC4226_SECRET, check_hotp_vectors, check_totp_vectors, read_ok, totp_seed};

/// The stock to move: one HOTP token with the RFC 4226 seed and three TOTP tokens with
/// the RFC 6238 seeds, serials with leading zeros.
fn stock() -> Vec<KeyPackage> {
    let mut out = Vec::new();
    let mut h = KeyPackage::new(Algorithm::Hotp, Zeroizing::new(RFC4226_SECRET.to_vec()));
    h.serial = Some("0000123".into());
    h.key_id = Some("K-0000123".into());
    h.manufacturer = Some("Acme & Sons <EU>".into());
    h.model = Some("H1".into());
    h.issuer = Some("Académie".into());
    h.response = Some(ResponseFormat {
        length: 6,
        encoding: Encoding::Decimal,
        check_digit: false,
    });
    h.counter = Some(0);
    h.start_date = Some(1_146_441_600);
    h.expiry_date = Some(4_102_444_800);
    h.pin_policy = Some(PinPolicy {
        pin_key_id: None,
        usage_mode: Some(PinUsageMode::Prepend),
        max_failed_attempts: Some(10),
        min_length: Some(4),
        max_length: Some(8),
        encoding: Some(Encoding::Decimal),
    });
    out.push(h);
    for (i, hash) in [
        HashAlgorithm::Sha1,
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha512,
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = KeyPackage::new(Algorithm::Totp, Zeroizing::new(totp_seed(hash)));
        t.serial = Some(format!("00{i}"));
        t.hash = hash;
        t.response = Some(ResponseFormat {
            length: 8,
            encoding: Encoding::Decimal,
            check_digit: false,
        });
        t.time = Some(0);
        t.time_interval = Some(30);
        t.time_drift = Some(-2);
        out.push(t);
    }
    out
}

fn check_read_back(read: &[KeyPackage], written: &[KeyPackage]) {
    assert_eq!(read.len(), written.len());
    for (r, w) in read.iter().zip(written) {
        assert_eq!(r.serial, w.serial);
        assert_eq!(r.manufacturer, w.manufacturer);
        assert_eq!(r.model, w.model);
        assert_eq!(r.issuer, w.issuer);
        assert_eq!(r.algorithm, w.algorithm);
        assert_eq!(r.hash, w.hash);
        assert_eq!(r.response, w.response);
        assert_eq!(r.counter, w.counter);
        assert_eq!(r.time, w.time);
        assert_eq!(r.time_interval, w.time_interval);
        assert_eq!(r.time_drift, w.time_drift);
        assert_eq!(r.start_date, w.start_date);
        assert_eq!(r.expiry_date, w.expiry_date);
        assert_eq!(r.pin_policy, w.pin_policy);
        assert_eq!(&*r.secret, &*w.secret);
        match r.algorithm {
            Algorithm::Hotp => check_hotp_vectors(r),
            Algorithm::Totp => check_totp_vectors(r),
            _ => unreachable!(),
        }
    }
}

fn write(protection: ExportProtection, packages: &[KeyPackage]) -> Vec<u8> {
    let (out, n) = export(Vec::new(), protection, packages).unwrap();
    assert_eq!(n, packages.len());
    out
}

#[test]
fn pre_shared_key_every_cipher_and_mac() {
    let stock = stock();
    for cipher in [Cipher::Aes128Cbc, Cipher::Aes192Cbc, Cipher::Aes256Cbc] {
        for mac in [MacAlgorithm::HmacSha1, MacAlgorithm::HmacSha256] {
            let key: Vec<u8> = (0..cipher.key_len()).map(|i| (i * 7 + 3) as u8).collect();
            let protection =
                ExportProtection::pre_shared_key(Zeroizing::new(key.clone()), "transport-2026")
                    .with_cipher(cipher)
                    .with_mac(mac);
            let xml = write(protection, &stock);
            let text = String::from_utf8(xml.clone()).unwrap();
            assert!(
                text.contains(cipher.uri()) && text.contains(mac.uri()),
                "{cipher:?} {mac:?}"
            );
            assert!(
                !text.contains(&BASE64.encode(RFC4226_SECRET)),
                "seed in the clear"
            );
            assert!(!text.contains("PlainValue>MTIz"), "seed in the clear");
            let read = read_ok(&xml, PskcOptions::with_key(Zeroizing::new(key)));
            check_read_back(&read, &stock);
        }
    }
}

#[test]
fn password_every_cipher_mac_and_prf() {
    let stock = stock();
    for (cipher, mac, prf) in [
        (Cipher::Aes128Cbc, MacAlgorithm::HmacSha1, Prf::HmacSha1),
        (Cipher::Aes192Cbc, MacAlgorithm::HmacSha256, Prf::HmacSha1),
        (Cipher::Aes256Cbc, MacAlgorithm::HmacSha1, Prf::HmacSha256),
        (Cipher::Aes256Cbc, MacAlgorithm::HmacSha256, Prf::HmacSha256),
    ] {
        let protection = ExportProtection::password(Zeroizing::new("correct horse battery".into()))
            .with_cipher(cipher)
            .with_mac(mac)
            .with_kdf(1000, prf);
        let xml = write(protection, &stock);
        let read = read_ok(
            &xml,
            PskcOptions::with_password(Zeroizing::new("correct horse battery".into())),
        );
        check_read_back(&read, &stock);
    }
}

/// The default export: AES-256-CBC, HMAC-SHA256, PBKDF2-HMAC-SHA256 with 600,000
/// iterations. The round trip runs with a lower count so the debug-build test stays fast;
/// the defaults themselves are checked by value.
#[test]
fn default_password_export() {
    let default = ExportProtection::password(Zeroizing::new("s3cret pass".into()));
    assert!(matches!(
        default,
        ExportProtection::Password {
            iterations: 600_000,
            prf: Prf::HmacSha256,
            cipher: Cipher::Aes256Cbc,
            mac: MacAlgorithm::HmacSha256,
            ..
        }
    ));
    let stock = stock();
    let xml = write(default.with_kdf(2000, Prf::HmacSha256), &stock);
    let text = String::from_utf8(xml.clone()).unwrap();
    assert!(
        text.contains("<IterationCount>2000</IterationCount>")
            && text.contains("<KeyLength>32</KeyLength>")
    );
    assert!(
        text.contains(Cipher::Aes256Cbc.uri()) && text.contains(MacAlgorithm::HmacSha256.uri())
    );
    assert!(text.contains(Prf::HmacSha256.uri()));
    let read = read_ok(
        &xml,
        PskcOptions::with_password(Zeroizing::new("s3cret pass".into())),
    );
    check_read_back(&read, &stock);
}

/// Two exports of the same stock differ everywhere (fresh IVs, salt and MAC key).
#[test]
fn exports_are_randomised() {
    let stock = stock();
    let key = || Zeroizing::new(vec![9u8; 32]);
    let a = write(ExportProtection::pre_shared_key(key(), "k"), &stock);
    let b = write(ExportProtection::pre_shared_key(key(), "k"), &stock);
    assert_ne!(a, b);
    let values = |x: &[u8]| -> Vec<String> {
        String::from_utf8(x.to_vec())
            .unwrap()
            .split("<xenc:CipherValue>")
            .skip(1)
            .map(|s| s.split('<').next().unwrap().to_owned())
            .collect()
    };
    let (va, vb) = (values(&a), values(&b));
    assert_eq!(va.len(), 1 + stock.len());
    for v in &va {
        assert!(!vb.contains(v));
    }
}

/// Plain containers (written here by hand, since okey never exports in the clear).
#[test]
fn plain_container() {
    let stock = stock();
    let mut xml = String::from(
        "<?xml version=\"1.0\"?>\n<KeyContainer Version=\"1.0\" xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\">\n",
    );
    for p in &stock {
        let suite = if p.hash == HashAlgorithm::Sha1 {
            String::new()
        } else {
            format!("<Suite>HMAC-{}</Suite>", p.hash.name())
        };
        let data = match p.algorithm {
            Algorithm::Hotp => "<Counter><PlainValue>0</PlainValue></Counter>".to_owned(),
            _ => "<Time><PlainValue>0</PlainValue></Time><TimeInterval><PlainValue>30</PlainValue></TimeInterval><TimeDrift><PlainValue>-2</PlainValue></TimeDrift>".to_owned(),
        };
        let policy = match p.algorithm {
            Algorithm::Hotp => {
                "<Policy><StartDate>2006-05-01T00:00:00Z</StartDate><ExpiryDate>2100-01-01T00:00:00Z</ExpiryDate><PINPolicy PINUsageMode=\"Prepend\" MaxFailedAttempts=\"10\" MinLength=\"4\" MaxLength=\"8\" PINEncoding=\"DECIMAL\"/></Policy>"
            }
            _ => "",
        };
        xml.push_str(&format!(
            "<KeyPackage><DeviceInfo>{man}<SerialNo>{serial}</SerialNo>{model}</DeviceInfo><Key Id=\"x\" Algorithm=\"{alg}\">{issuer}<AlgorithmParameters>{suite}<ResponseFormat Length=\"{len}\" Encoding=\"DECIMAL\"/></AlgorithmParameters><Data><Secret><PlainValue>{secret}</PlainValue></Secret>{data}</Data>{policy}</Key></KeyPackage>\n",
            man = p.manufacturer.as_deref().map(|m| format!("<Manufacturer>{}</Manufacturer>", m.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&#62;"))).unwrap_or_default(),
            serial = p.serial.as_deref().unwrap(),
            model = p.model.as_deref().map(|m| format!("<Model>{m}</Model>")).unwrap_or_default(),
            alg = p.algorithm.uri(),
            issuer = p.issuer.as_deref().map(|m| format!("<Issuer><![CDATA[{m}]]></Issuer>")).unwrap_or_default(),
            len = p.response.unwrap().length,
            secret = BASE64.encode(&p.secret),
        ));
    }
    xml.push_str("</KeyContainer>\n");
    let read = read_ok(xml.as_bytes(), PskcOptions::plain());
    check_read_back(&read, &stock);
}

/// The writer streams: packages written one by one read back the same.
#[test]
fn writer_streams_packages() {
    let stock = stock();
    let key = Zeroizing::new(vec![1u8; 32]);
    let mut w = PskcWriter::new(
        Vec::new(),
        ExportProtection::pre_shared_key(key.clone(), "k"),
    )
    .unwrap();
    for p in &stock {
        w.write_package(p).unwrap();
    }
    let xml = w.finish().unwrap();
    check_read_back(&read_ok(&xml, PskcOptions::with_key(key)), &stock);
}

#[test]
fn writer_refuses_bad_protection() {
    let stock = stock();
    let short = ExportProtection::pre_shared_key(Zeroizing::new(vec![0; 16]), "k");
    assert!(matches!(
        export(Vec::new(), short, &stock),
        Err(okey_intake::ExportError::KeySize {
            len: 16,
            needed: 32,
            ..
        })
    ));
    let weak =
        ExportProtection::password(Zeroizing::new("pw".into())).with_kdf(10, Prf::HmacSha256);
    assert!(matches!(
        export(Vec::new(), weak, &stock),
        Err(okey_intake::ExportError::WeakPassword(_))
    ));
    let empty = ExportProtection::password(Zeroizing::new(String::new()));
    assert!(matches!(
        export(Vec::new(), empty, &stock),
        Err(okey_intake::ExportError::WeakPassword(_))
    ));
    let dbg = format!(
        "{:?}",
        ExportProtection::password(Zeroizing::new("hunter2".into()))
    );
    assert!(!dbg.contains("hunter2"), "{dbg}");
}
