//! otpauth:// URIs and their QR codes; the QR codes are decoded back with an independent
//! decoder (`rqrr`).

use okey_intake::{HashAlgorithm, KeyUri, OtpKind, UriError};
use zeroize::Zeroizing;

use crate::common::RFC4226_SECRET;

fn secret() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(RFC4226_SECRET.to_vec())
}

fn check(uri: &KeyUri, expected: &str) {
    assert_eq!(&*uri.to_uri(), expected);
    let back = KeyUri::parse(expected).unwrap();
    assert_eq!(&*back.to_uri(), expected);
    assert_eq!(back.secret(), uri.secret());
}

#[test]
fn uris() {
    // base32 of the RFC 4226 secret, per the vector file: GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ.
    let u = KeyUri::builder("alice@ac-example.fr", secret())
        .issuer("Académie de Lyon")
        .build()
        .unwrap();
    check(
        &u,
        "otpauth://totp/Acad%C3%A9mie%20de%20Lyon:alice%40ac-example.fr?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acad%C3%A9mie%20de%20Lyon&algorithm=SHA1&digits=6&period=30",
    );
    let u = KeyUri::builder("bob", secret())
        .hotp(42)
        .digits(8)
        .algorithm(HashAlgorithm::Sha256)
        .build()
        .unwrap();
    check(
        &u,
        "otpauth://hotp/bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=SHA256&digits=8&counter=42",
    );
    assert_eq!(u.kind(), OtpKind::Hotp { counter: 42 });
    let u = KeyUri::builder("a b&c=d?e/f", Zeroizing::new(vec![0xff; 10]))
        .totp(60)
        .build()
        .unwrap();
    check(
        &u,
        "otpauth://totp/a%20b%26c%3Dd%3Fe%2Ff?secret=7777777777777777&algorithm=SHA1&digits=6&period=60",
    );
    // base32 without padding: 11 bytes would need padding.
    let u = KeyUri::builder("x", Zeroizing::new(vec![0; 11]))
        .build()
        .unwrap();
    assert!(u.to_uri().contains("secret=AAAAAAAAAAAAAAAAAA&"));
}

#[test]
fn builder_refusals() {
    let b = |acct: &str| KeyUri::builder(acct, secret());
    assert_eq!(b("").build().unwrap_err(), UriError::EmptyAccount);
    assert_eq!(
        b("a:b").build().unwrap_err(),
        UriError::Colon("the account")
    );
    assert_eq!(
        b("a").issuer("x:y").build().unwrap_err(),
        UriError::Colon("the issuer")
    );
    assert_eq!(b("a").digits(5).build().unwrap_err(), UriError::Digits(5));
    assert_eq!(b("a").totp(0).build().unwrap_err(), UriError::Period);
    assert_eq!(
        KeyUri::builder("a", Zeroizing::new(vec![1; 9]))
            .build()
            .unwrap_err(),
        UriError::SecretLength(9)
    );
    assert!(matches!(
        KeyUri::parse("https://x"),
        Err(UriError::Malformed(_))
    ));
    assert!(matches!(
        KeyUri::parse("otpauth://totp/a?secret=!!"),
        Err(UriError::Malformed(_))
    ));
    assert!(matches!(
        KeyUri::parse("otpauth://totp/X:a?secret=GEZDGNBVGY3TQOJQ&issuer=Y"),
        Err(UriError::Malformed(_))
    ));
}

const SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn malformed(uri: &str) -> bool {
    matches!(KeyUri::parse(uri), Err(UriError::Malformed(_)))
}

/// A percent escape is `%` and exactly two ASCII hex digits; nothing else decodes.
#[test]
fn percent_escapes_are_two_hex_digits() {
    for escape in [
        "%+A",
        "%-1",
        "%+0",
        "% A",
        "%A",
        "%",
        "%G0",
        "%0G",
        "%\u{661}\u{662}",
    ] {
        let uri = format!("otpauth://totp/a{escape}z?secret={SECRET_B32}");
        assert!(malformed(&uri), "label {escape:?}");
        let uri = format!("otpauth://totp/a?secret={SECRET_B32}&issuer=X{escape}");
        assert!(malformed(&uri), "issuer {escape:?}");
    }
    let uri = KeyUri::parse(&format!(
        "otpauth://totp/I%2bc%3AA%2B%c3%a9?secret={SECRET_B32}"
    ))
    .unwrap();
    assert_eq!(uri.issuer(), Some("I+c"));
    assert_eq!(uri.account(), "A+\u{e9}");
}

/// Control characters (C0, DEL, C1), escaped or raw, are refused in the label and issuer,
/// and the builder refuses them too, so every URI built parses back.
#[test]
fn control_characters_in_label_and_issuer_are_refused() {
    for bad in [
        "%0A", "%0D", "%09", "%00", "%1B", "%7F", "%C2%85", "%C2%9B", "\n", "\u{85}",
    ] {
        let refused = |uri: &str, what: &'static str| {
            assert_eq!(
                KeyUri::parse(uri).unwrap_err(),
                UriError::ControlCharacter(what),
                "{uri:?}"
            );
        };
        refused(
            &format!("otpauth://totp/Issuer:a{bad}b?secret={SECRET_B32}"),
            "the account",
        );
        refused(
            &format!("otpauth://totp/Is{bad}suer:ab?secret={SECRET_B32}"),
            "the issuer",
        );
        refused(
            &format!("otpauth://totp/ab?secret={SECRET_B32}&issuer=Is{bad}suer"),
            "the issuer",
        );
    }
    for c in ['\n', '\u{0}', '\u{7f}', '\u{9b}'] {
        assert_eq!(
            KeyUri::builder(format!("a{c}b"), secret())
                .build()
                .unwrap_err(),
            UriError::ControlCharacter("the account")
        );
        assert_eq!(
            KeyUri::builder("ab", secret())
                .issuer(format!("I{c}"))
                .build()
                .unwrap_err(),
            UriError::ControlCharacter("the issuer")
        );
    }
    // Spaces and non-ASCII letters are fine.
    let uri = KeyUri::parse(&format!(
        "otpauth://totp/Big%20Co:J%C3%BCrgen%20M?secret={SECRET_B32}&issuer=Big%20Co"
    ))
    .unwrap();
    assert_eq!(uri.issuer(), Some("Big Co"));
    assert_eq!(uri.account(), "J\u{fc}rgen M");
}

/// `digits`, `period` and `counter` are plain ASCII decimal digits: no sign, no space.
#[test]
fn numbers_are_plain_ascii_digits() {
    for (kind, param) in [("totp", "digits"), ("totp", "period"), ("hotp", "counter")] {
        for value in [
            "+6", "-6", "+0", " 6", "6 ", "%206", "0x6", "6.0", "", "\u{666}",
        ] {
            let uri = format!("otpauth://{kind}/a?secret={SECRET_B32}&{param}={value}");
            assert!(malformed(&uri), "{param}={value:?}");
        }
    }
    let uri = KeyUri::parse(&format!(
        "otpauth://totp/a?secret={SECRET_B32}&digits=08&period=060"
    ))
    .unwrap();
    assert_eq!(uri.digits(), 8);
    assert_eq!(uri.kind(), OtpKind::Totp { period: 60 });
    let uri = KeyUri::parse(&format!(
        "otpauth://hotp/a?secret={SECRET_B32}&counter=18446744073709551615"
    ))
    .unwrap();
    assert_eq!(uri.kind(), OtpKind::Hotp { counter: u64::MAX });
    assert!(malformed(&format!(
        "otpauth://hotp/a?secret={SECRET_B32}&counter=18446744073709551616"
    )));
}

#[test]
fn debug_never_shows_the_secret() {
    let u = KeyUri::builder("alice", secret()).build().unwrap();
    let d = format!("{u:?}");
    assert!(
        !d.contains("GEZDGNBV") && !d.contains("12345678901234567890") && !d.contains("49, 50"),
        "{d}"
    );
    assert!(d.contains("<redacted>"));
}

fn decode_png(png_bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    let (_, content) = grids[0].decode().unwrap();
    content
}

#[test]
fn qr_png_decodes_to_the_uri() {
    let u = KeyUri::builder("alice@ac-example.fr", secret())
        .issuer("Académie de Lyon")
        .build()
        .unwrap();
    let png = u.qr_png(6).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(decode_png(&png), *u.to_uri());
}

#[test]
fn qr_terminal_decodes_to_the_uri() {
    let u = KeyUri::builder("carol", secret())
        .issuer("okey")
        .build()
        .unwrap();
    for invert in [false, true] {
        let text = u.qr_terminal(invert).unwrap();
        // Rebuild the module grid from the half blocks and decode it.
        let rows: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
        let w = rows[0].len();
        assert!(rows.iter().all(|r| r.len() == w));
        let h = rows.len() * 2;
        let dark = |x: usize, y: usize| -> bool {
            let c = rows[y / 2][x];
            let drawn = match c {
                '█' => true,
                '▀' => y.is_multiple_of(2),
                '▄' => y % 2 == 1,
                ' ' => false,
                other => panic!("{other:?}"),
            };
            drawn != invert
        };
        let scale = 4;
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w * scale, h * scale, |x, y| {
            if dark(x / scale, y / scale) { 0 } else { 255 }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "invert {invert}");
        assert_eq!(grids[0].decode().unwrap().1, *u.to_uri());
    }
}

#[test]
fn qr_svg_decodes_to_the_uri_and_carries_no_style_or_script() {
    let u = KeyUri::builder("dave@ac-example.fr", secret())
        .issuer("okey")
        .build()
        .unwrap();
    let svg = u.qr_svg("QR code <de la clef>").unwrap();
    assert!(svg.starts_with("<svg "), "{}", svg.as_str());
    assert!(svg.contains("aria-label=\"QR code &lt;de la clef&gt;\""));
    assert!(!svg.contains("style") && !svg.contains("script"));
    let side: usize = svg
        .split("viewBox=\"0 0 ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    let d = svg
        .split(" d=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let mut dark = vec![false; side * side];
    for square in d.split('M').filter(|s| !s.is_empty()) {
        let xy = square.strip_suffix("h1v1h-1z").unwrap();
        let (x, y) = xy.split_once(' ').unwrap();
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        dark[y * side + x] = true;
    }
    let scale = 4;
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(side * scale, side * scale, |x, y| {
            if dark[(y / scale) * side + x / scale] {
                0
            } else {
                255
            }
        });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    assert_eq!(grids[0].decode().unwrap().1, *u.to_uri());
}
