//! Bad files: each refused with an error that names the package, and nothing imported.

use okey_intake::{
    FileError, ImportError, MacPolicy, PackageErrorKind, Position, PskcOptions, collect_all,
    collect_partial,
};
use zeroize::Zeroizing;

use crate::common::{fixture, read};

fn f6_key() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(hex::decode("12345678901234567890123456789012").unwrap())
}

fn figure6_with(from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture("rfc6030/figure6.pskcxml")).unwrap();
    assert!(text.contains(from), "{from}");
    text.replacen(from, to, 1).into_bytes()
}

/// Nothing is imported, whichever way the caller collects.
fn assert_nothing_imported(data: &[u8], options: &PskcOptions) -> String {
    let refusal = collect_all(read(data, options.clone())).unwrap_err();
    let partial = collect_partial(read(data, options.clone()));
    if refusal.file.is_some() {
        assert!(partial.accepted.is_empty());
        assert!(partial.file.is_some());
    }
    refusal.to_string()
}

#[test]
fn wrong_password() {
    let data = fixture("rfc6030/figure7.pskcxml");
    let opts = PskcOptions::with_password(Zeroizing::new("qwertz".into()));
    let items = read(&data, opts.clone());
    let [Err(ImportError::File(e))] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert!(
        matches!(e, FileError::WrongKey | FileError::Integrity(_)),
        "{e}"
    );
    let msg = assert_nothing_imported(&data, &opts);
    assert!(
        msg.contains("wrong key or password") || msg.contains("MAC"),
        "{msg}"
    );
    assert!(!msg.contains("qwertz"));
}

#[test]
fn wrong_pre_shared_key() {
    let data = fixture("rfc6030/figure6.pskcxml");
    let mut key = f6_key();
    key[0] ^= 1;
    let opts = PskcOptions::with_key(key);
    let items = read(&data, opts.clone());
    let [Err(ImportError::File(e))] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert!(
        matches!(e, FileError::WrongKey | FileError::Integrity(_)),
        "{e}"
    );
    assert_nothing_imported(&data, &opts);
    // A key of the wrong size is named as such.
    let items = read(&data, PskcOptions::with_key(Zeroizing::new(vec![0; 32])));
    let [
        Err(ImportError::File(FileError::KeySize {
            len: 32,
            needed: 16,
            ..
        })),
    ] = items.as_slice()
    else {
        panic!("{items:?}")
    };
}

#[test]
fn bad_mac_refuses_the_file_by_default() {
    let data = figure6_with(
        "Su+NvtQfmvfJzF6bmQiJqoLRExc=",
        "Tu+NvtQfmvfJzF6bmQiJqoLRExc=",
    );
    let opts = PskcOptions::with_key(f6_key());
    let items = read(&data, opts.clone());
    let [Err(ImportError::File(FileError::Integrity(e)))] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert_eq!(e.kind, PackageErrorKind::MacMismatch { field: "Secret" });
    assert_eq!(e.package.serial.as_deref(), Some("987654321"));
    let msg = assert_nothing_imported(&data, &opts);
    assert!(
        msg.contains("key package #1 (serial \"987654321\", key id \"12345678\")"),
        "{msg}"
    );
    assert!(msg.contains("whole file is refused"), "{msg}");

    // The caller may choose to refuse only that package.
    let opts = PskcOptions {
        mac_policy: MacPolicy::RefusePackage,
        ..opts
    };
    let items = read(&data, opts);
    let [Err(ImportError::Package(e))] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert_eq!(e.kind, PackageErrorKind::MacMismatch { field: "Secret" });
}

/// A changed ciphertext byte is caught by the MAC before any decryption.
#[test]
fn altered_ciphertext() {
    let data = figure6_with("AAECAwQFBgcICQoLDA0OD+cI", "AAECAwQFBgcICQoLDA0OD+cJ");
    let items = read(&data, PskcOptions::with_key(f6_key()));
    let [Err(ImportError::File(FileError::Integrity(e)))] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert_eq!(e.package.position, Position::Package(1));
}

/// An encrypted value without MAC is refused: CBC alone cannot tell a wrong seed.
#[test]
fn missing_value_mac() {
    let data = figure6_with(
        "<ValueMAC>Su+NvtQfmvfJzF6bmQiJqoLRExc=\n                    </ValueMAC>",
        "",
    );
    let items = read(&data, PskcOptions::with_key(f6_key()));
    let [Err(ImportError::Package(e))] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert_eq!(e.kind, PackageErrorKind::MissingMac { field: "Secret" });
}

#[test]
fn truncated_base64() {
    // Encrypted value cut short.
    let data = figure6_with("wZqIUqGv", "wZqIUqG");
    let opts = PskcOptions::with_key(f6_key());
    let items = read(&data, opts.clone());
    let [Err(ImportError::Package(e))] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert_eq!(e.kind, PackageErrorKind::InvalidBase64 { field: "Secret" });
    let msg = assert_nothing_imported(&data, &opts);
    assert!(
        msg.contains("key package #1 (serial \"987654321\"")
            && msg.contains("Secret is not valid base64"),
        "{msg}"
    );
    // Plain value without its padding.
    let text = String::from_utf8(fixture("rfc6030/figure3.pskcxml")).unwrap();
    let data = text
        .replace(
            "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=",
            "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA",
        )
        .into_bytes();
    let items = read(&data, PskcOptions::plain());
    let [Err(ImportError::Package(e))] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert_eq!(e.kind, PackageErrorKind::InvalidBase64 { field: "Secret" });
    // A whole block missing: the MAC no longer matches.
    let data = figure6_with(
        "AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DUpxVvOx2lef1VmNPCMl8jwZqIUqGv",
        "AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DUpxVvOx0=",
    );
    let items = read(&data, PskcOptions::with_key(f6_key()));
    assert!(
        matches!(
            items.as_slice(),
            [Err(ImportError::File(FileError::Integrity(_)))]
        ),
        "{items:?}"
    );
}

#[test]
fn unknown_algorithm() {
    let text = String::from_utf8(fixture("rfc6030/figure3.pskcxml")).unwrap();
    let data = text
        .replace("pskc:hotp", "pskc:securid-aes-counter")
        .into_bytes();
    let items = read(&data, PskcOptions::plain());
    let [Err(ImportError::Package(e))] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert_eq!(
        e.kind,
        PackageErrorKind::UnknownAlgorithm(
            "urn:ietf:params:xml:ns:keyprov:pskc:securid-aes-counter".into()
        )
    );
    let msg = assert_nothing_imported(&data, &PskcOptions::plain());
    assert!(
        msg.contains(
            "key package #1 (serial \"987654321\", key id \"12345678\"): unsupported algorithm"
        ),
        "{msg}"
    );
}

#[test]
fn duplicate_serials_name_both_packages() {
    let text = String::from_utf8(fixture("rfc6030/figure3.pskcxml")).unwrap();
    let start = text.find("<KeyPackage>").unwrap();
    let end = text.find("</KeyPackage>").unwrap() + "</KeyPackage>".len();
    let package = &text[start..end];
    let other = package.replace("987654321", "000111");
    let data = text.replacen(package, &format!("{package}\n{other}\n{package}"), 1);
    let items = read(data.as_bytes(), PskcOptions::plain());
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[1].is_ok());
    let Err(ImportError::Package(e)) = &items[2] else {
        panic!("{:?}", items[2])
    };
    assert_eq!(
        e.to_string(),
        "key package #3 (serial \"987654321\", key id \"12345678\"): serial \"987654321\" is also used by key package #1 (serial \"987654321\")"
    );
    assert_nothing_imported(data.as_bytes(), &PskcOptions::plain());
}

/// Package-level defects, each with its reason; the other packages still read.
#[test]
fn package_defects() {
    let text = String::from_utf8(fixture("rfc6030/figure3.pskcxml")).unwrap();
    let check = |from: &str, to: &str, want: PackageErrorKind| {
        assert!(text.contains(from), "{from}");
        let data = text.replace(from, to);
        let items = read(data.as_bytes(), PskcOptions::plain());
        let [Err(ImportError::Package(e))] = items.as_slice() else {
            panic!("{from}: {items:?}")
        };
        assert_eq!(e.kind, want, "{from}");
    };
    let field = |field: &'static str, reason: &str| PackageErrorKind::InvalidField {
        field,
        reason: reason.into(),
    };
    check(
        "<PlainValue>0</PlainValue>",
        "<PlainValue>zero</PlainValue>",
        field("Counter", "\"zero\" is not an integer"),
    );
    check(
        "<PlainValue>0</PlainValue>",
        "<PlainValue>-1</PlainValue>",
        field("Counter", "\"-1\" is not an integer"),
    );
    check(
        "Length=\"8\"",
        "Length=\"4\"",
        field(
            "ResponseFormat",
            "4 DECIMAL digits (HOTP/TOTP need 6 to 10 decimal digits)",
        ),
    );
    check(
        "Encoding=\"DECIMAL\"",
        "Encoding=\"HEXADECIMAL\"",
        field(
            "ResponseFormat",
            "8 HEXADECIMAL digits (HOTP/TOTP need 6 to 10 decimal digits)",
        ),
    );
    check(
        "Encoding=\"DECIMAL\"",
        "Encoding=\"ROMAN\"",
        field("ResponseFormat", "Encoding \"ROMAN\""),
    );
    check(
        " Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:hotp\"",
        "",
        PackageErrorKind::MissingAlgorithm,
    );
    check("Secret>", "Sekret>", PackageErrorKind::MissingSecret);
    check(
        "</Key>",
        "</Key><Key Id=\"2\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:hotp\"/>",
        PackageErrorKind::MultipleKeys,
    );
}

#[test]
fn container_defects() {
    let text = String::from_utf8(fixture("rfc6030/figure3.pskcxml")).unwrap();
    let file_error = |data: &str| -> FileError {
        let mut items = read(data.as_bytes(), PskcOptions::plain());
        match items.pop() {
            Some(Err(ImportError::File(e))) => e,
            other => panic!("{other:?}"),
        }
    };
    assert!(
        matches!(file_error(&text.replace("Version=\"1.0\"", "Version=\"2.0\"")), FileError::Version(v) if v == "2.0")
    );
    assert!(matches!(
        file_error(&text.replace("keyprov:pskc\"", "keyprov:pskc:1.0\"")),
        FileError::NotPskc(_)
    ));
    assert!(matches!(
        file_error("<html><body/></html>"),
        FileError::NotPskc(_)
    ));
    assert!(matches!(file_error(""), FileError::NotPskc(_)));
    assert!(matches!(
        file_error(&text[..text.len() / 2]),
        FileError::Xml { .. }
    ));
    assert!(matches!(
        file_error(&text.replace("</Issuer>", "</Issur>")),
        FileError::Xml { .. }
    ));
    assert!(matches!(
        file_error(&text.replace("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"")),
        FileError::Encoding(_)
    ));
    assert!(matches!(
        file_error(&format!("{text}<KeyContainer/>")),
        FileError::Xml { .. }
    ));
}
