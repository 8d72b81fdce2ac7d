//! What counts toward a holder's lockout: guesses do; replays of recently used codes and staff
//! mistakes (resynchronisation, bench read-back) do not.

use okey_e2e::{
    RFC_SECRET_HEX, Server, check, hotp_token, reference_hotp, verify_serial, verify_user,
};
use okey_server::proto;

/// A server with its metrics listener on a free loopback port, and that port.
fn with_metrics() -> (Server, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let server = Server::start_with(&format!("metrics_listen = \"127.0.0.1:{port}\"\n"));
    (server, port)
}

/// The raw HTTP answer of `GET /metrics`.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    socket.read_to_string(&mut body).expect("response");
    body
}

fn rfc_seed() -> Vec<u8> {
    hex::decode(RFC_SECRET_HEX).expect("hex")
}

async fn failures(c: &mut okey_e2e::Client, serial: &str) -> u32 {
    c.tokens
        .get_token(proto::GetTokenRequest {
            serial: serial.into(),
        })
        .await
        .expect("get")
        .into_inner()
        .failures
}

/// Codes far behind the counter (further than the look-ahead window) are replays of codes the
/// token already showed: reported `replay`, not counted, and the holder still logs in.
#[tokio::test]
async fn old_hotp_codes_are_replays_and_do_not_lock() {
    let server = Server::start();
    let mut t = hotp_token("R-1", RFC_SECRET_HEX);
    t.holder = "rita".into();
    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest { tokens: vec![t] })
        .await
        .expect("import");
    let seed = rfc_seed();
    // Move the counter to 30, three windows of 10 past the first codes.
    for counter in [9, 19, 29] {
        let (ok, reason) = check(
            &mut c,
            verify_serial("R-1", &reference_hotp(&seed, counter, 6)),
        )
        .await;
        assert!(ok, "counter {counter}: {reason}");
    }
    // Codes of counters 0, 1 and 2 (30 behind; the default soft lock is at 3 failures).
    for counter in 0..3 {
        let code = reference_hotp(&seed, counter, 6);
        assert_eq!(
            check(&mut c, verify_user("rita", &code)).await,
            (false, "replay".to_owned()),
            "counter {counter}"
        );
    }
    // The last accepted code, once more, is a replay too.
    assert_eq!(
        check(&mut c, verify_serial("R-1", &reference_hotp(&seed, 29, 6))).await,
        (false, "replay".to_owned())
    );
    assert_eq!(failures(&mut c, "R-1").await, 0);
    assert_eq!(
        check(&mut c, verify_user("rita", &reference_hotp(&seed, 30, 6))).await,
        (true, "accepted".to_owned())
    );
    // A guess is still a guess: it counts.
    let guess = if reference_hotp(&seed, 31, 6) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (ok, reason) = check(&mut c, verify_serial("R-1", guess)).await;
    assert!(!ok);
    assert_eq!(reason, "wrong_code");
    assert_eq!(failures(&mut c, "R-1").await, 1);
}

/// TOTP: a code of a step long before the last accepted one (outside the skew) is a replay.
#[tokio::test]
async fn old_totp_codes_are_replays_and_do_not_lock() {
    let server = Server::start();
    // A 1-hour step keeps the test independent of the clock's position inside a step...
    let step = 3600u64;
    // ...and t0 puts the current step at a known distance from step 0 (t0 <= now).
    // The test is a client of a server that reads the wall clock: it needs the same clock.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let t0 = now - 100 * step - now % step;
    let mut t = hotp_token("T-1", RFC_SECRET_HEX);
    t.otp = Some(proto::OtpParameters {
        r#type: proto::OtpType::Totp as i32,
        algorithm: proto::HashAlgorithm::Sha1 as i32,
        digits: 6,
        step: step as u32,
        t0,
        ..Default::default()
    });
    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest { tokens: vec![t] })
        .await
        .expect("import");
    let seed = rfc_seed();
    let current = (now - t0) / step;
    // Accept step current - 1 and then current.
    for s in [current - 1, current] {
        let (ok, reason) = check(&mut c, verify_serial("T-1", &reference_hotp(&seed, s, 6))).await;
        assert!(ok, "step {s}: {reason}");
    }
    // Steps 5, 6, 7 behind the last accepted one: outside the skew of 1.
    for back in 5..8 {
        let code = reference_hotp(&seed, current - back, 6);
        assert_eq!(
            check(&mut c, verify_serial("T-1", &code)).await,
            (false, "replay".to_owned()),
            "{back} steps back"
        );
    }
    assert_eq!(failures(&mut c, "T-1").await, 0);
}

/// A support agent typing wrong codes into a resynchronisation, or a bench reading back a wrong
/// code, never soft-locks the holder.
#[tokio::test]
async fn staff_mistakes_do_not_lock_the_holder() {
    let (server, metrics_port) = with_metrics();
    let mut t = hotp_token("S-1", RFC_SECRET_HEX);
    t.holder = "sam".into();
    let mut c = server.admin().await;
    c.tokens
        .import_tokens(proto::ImportTokensRequest { tokens: vec![t] })
        .await
        .expect("import");
    let seed = rfc_seed();
    for _ in 0..4 {
        let err = c
            .tokens
            .resync_token(proto::ResyncTokenRequest {
                serial: "S-1".into(),
                first_code: reference_hotp(&seed, 500, 6),
                second_code: reference_hotp(&seed, 502, 6),
            })
            .await
            .expect_err("not consecutive");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    }
    assert_eq!(failures(&mut c, "S-1").await, 0);
    assert_eq!(
        check(&mut c, verify_user("sam", &reference_hotp(&seed, 0, 6))).await,
        (true, "accepted".to_owned())
    );

    // A bench read-back: wrong codes leave the token initialising with no failure counted, and
    // the right one still activates it.
    let begun = c
        .tokens
        .begin_initialisation(proto::BeginInitialisationRequest {
            serial: "NK-1".into(),
            ..Default::default()
        })
        .await
        .expect("begin")
        .into_inner();
    let right = reference_hotp(&begun.seed, 0, 6);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..4 {
        let err = c
            .tokens
            .complete_initialisation(proto::CompleteInitialisationRequest {
                serial: "NK-1".into(),
                code: wrong.into(),
            })
            .await
            .expect_err("wrong read-back");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    }
    assert_eq!(failures(&mut c, "NK-1").await, 0);
    let t = c
        .tokens
        .complete_initialisation(proto::CompleteInitialisationRequest {
            serial: "NK-1".into(),
            code: right,
        })
        .await
        .expect("the right read-back activates")
        .into_inner();
    assert_eq!(t.status, proto::TokenStatus::Active as i32);

    // The staff failures are counted apart, in the metrics.
    let metrics = scrape(metrics_port);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("okey_staff_code_failures_total "))
        .unwrap_or_else(|| panic!("no staff failure counter in\n{metrics}"));
    assert_eq!(line, "okey_staff_code_failures_total 8");
}
