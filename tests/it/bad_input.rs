//! Bad input gets a clear status and writes nothing.

use okey_e2e::{RFC_SECRET_HEX, Server, check, hotp_token, verify_serial};
use okey_server::proto;
use tonic::Code;

#[tokio::test]
async fn bad_requests_are_refused_and_change_nothing() {
    // No soft lock, so the malformed passcodes below cannot lock the token either way.
    let server = Server::start_with("[lockout]\nsoft_after = 0\n");
    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("0100", RFC_SECRET_HEX)],
        })
        .await
        .expect("import");

    // A batch with one bad token imports nothing, and says which one.
    let mut bad_seed = hotp_token("0101", "zz");
    bad_seed.seed_hex = "not hex".into();
    let err = c
        .tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![hotp_token("0102", RFC_SECRET_HEX), bad_seed],
        })
        .await
        .expect_err("bad seed");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("0101"), "{}", err.message());
    // A duplicate serial refuses the batch.
    let err = c
        .tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![
                hotp_token("0103", RFC_SECRET_HEX),
                hotp_token("0100", RFC_SECRET_HEX),
            ],
        })
        .await
        .expect_err("duplicate");
    assert_eq!(err.code(), Code::AlreadyExists, "{}", err.message());
    assert_eq!(c.serials().await, ["0100"]);

    // A seed shorter than RFC 4226's 128 bits is refused at the edge, saying so.
    let short = hotp_token("0105", "313233343536373839303132");
    let err = c
        .tokens
        .import_tokens(proto::ImportTokensRequest {
            tokens: vec![short],
        })
        .await
        .expect_err("a 12-byte seed");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("16 to 1024 bytes"),
        "{}",
        err.message()
    );

    // Malformed identifiers and parameters.
    for (serial, digits, code) in [
        ("a b", 6, Code::InvalidArgument),
        ("0104", 5, Code::InvalidArgument),
        ("0104", 11, Code::InvalidArgument),
    ] {
        let mut t = hotp_token(serial, RFC_SECRET_HEX);
        if let Some(o) = t.otp.as_mut() {
            o.digits = digits;
        }
        let err = c
            .tokens
            .import_tokens(proto::ImportTokensRequest { tokens: vec![t] })
            .await
            .expect_err("refused");
        assert_eq!(err.code(), code, "{serial} {digits}: {}", err.message());
    }
    let err = c
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: "nope".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .tokens
        .set_pin(proto::SetPinRequest {
            serial: "0100".into(),
            pin: "12".into(),
        })
        .await
        .expect_err("short PIN");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        !err.message().contains("12"),
        "the PIN must not be echoed: {}",
        err.message()
    );

    // Malformed passcodes are rejected without moving the counter.
    for passcode in ["75522", "7552244", "75522x", "７５５２２４"] {
        let (ok, _) = check(&mut c, verify_serial("0100", passcode)).await;
        assert!(!ok, "{passcode}");
    }
    let t = c
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: "0100".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(t.counter, 0);
    assert!(!t.has_pin);
    assert!(check(&mut c, verify_serial("0100", "755224")).await.0);
}
