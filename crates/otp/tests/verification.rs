//! Verification behaviour: replay, window edges, resynchronisation, drift tracking, OCRA
//! counters. Expected codes come from `hotp()`, itself pinned to the RFC vectors and to the
//! `hmac` crate by the other test files.

use okey_otp::{
    Algorithm, Code, Digits, MAX_COUNTER, Method, OcraInput, OcraSuite, OtpKey, OtpState,
    TotpParams, hotp, resync_hotp, resync_totp, totp, verify_hotp, verify_ocra, verify_totp,
};

const RFC_SECRET: &[u8] = b"12345678901234567890";

fn key() -> OtpKey {
    OtpKey::new(Algorithm::Sha1, RFC_SECRET).expect("key")
}

fn code(text: &str) -> Code {
    Code::parse(text, Digits::SIX).expect("code")
}

fn at(counter: u64) -> OtpState {
    OtpState {
        counter,
        ..OtpState::default()
    }
}

/// `check_hotp(stored counter, presented counter's code, window, expected match)`.
fn check_hotp(stored: u64, presented_counter: u64, window: u32, expected: Option<u64>) {
    let k = key();
    let presented = hotp(&k, presented_counter, Digits::SIX);
    let got = verify_hotp(&k, Digits::SIX, &at(stored), window, &presented);
    assert_eq!(
        got.as_ref().map(|p| p.matched()),
        expected,
        "stored {stored}, code of {presented_counter}, window {window}"
    );
    if let Some(p) = got {
        assert_eq!(p.before(), at(stored));
        assert_eq!(p.after().counter, p.matched() + 1);
        assert_eq!(p.method(), Method::Login);
    }
}

#[test]
fn hotp_window_edges() {
    check_hotp(0, 0, 10, Some(0)); // first candidate
    check_hotp(0, 9, 10, Some(9)); // last candidate
    check_hotp(0, 10, 10, None); // one past
    check_hotp(5, 4, 10, None); // below the counter: replay
    check_hotp(5, 5, 1, Some(5)); // a window of one is exact
    check_hotp(5, 6, 1, None);
    check_hotp(5, 5, 0, None); // no candidates, no match
    check_hotp(u64::MAX - 1, u64::MAX - 1, 10, None); // no overflow near the top
}

#[test]
fn hotp_never_matches_a_counter_whose_successor_cannot_be_stored() {
    // The last counter that may match is MAX_COUNTER - 1 (the new counter is then MAX_COUNTER).
    check_hotp(MAX_COUNTER - 1, MAX_COUNTER - 1, 10, Some(MAX_COUNTER - 1));
    check_hotp(MAX_COUNTER - 1, MAX_COUNTER, 10, None);
    check_hotp(MAX_COUNTER - 5, MAX_COUNTER, 10, None);
    check_hotp(MAX_COUNTER, MAX_COUNTER, 10, None);
    check_hotp(MAX_COUNTER - 5, MAX_COUNTER - 2, 10, Some(MAX_COUNTER - 2));
    // Resync: the second code's counter must be below MAX_COUNTER too.
    let k = key();
    let c = |n| hotp(&k, n, Digits::SIX);
    let state = at(MAX_COUNTER - 10);
    let last = resync_hotp(
        &k,
        Digits::SIX,
        &state,
        1000,
        &c(MAX_COUNTER - 2),
        &c(MAX_COUNTER - 1),
    )
    .expect("the last storable pair");
    assert_eq!(last.after().counter, MAX_COUNTER);
    assert!(
        resync_hotp(
            &k,
            Digits::SIX,
            &state,
            1000,
            &c(MAX_COUNTER - 1),
            &c(MAX_COUNTER)
        )
        .is_none()
    );
}

#[test]
fn ocra_never_matches_a_counter_whose_successor_cannot_be_stored() {
    let suite: OcraSuite = "OCRA-1:HOTP-SHA1-6:C-QN08".parse().expect("suite");
    let k = key();
    let input = |counter| OcraInput {
        counter: Some(counter),
        question: "12345678",
        ..OcraInput::default()
    };
    let response = |counter| {
        okey_otp::ocra(&k, &suite, &input(counter))
            .expect("response")
            .as_str()
            .to_owned()
    };
    let plain = OcraInput {
        question: "12345678",
        ..OcraInput::default()
    };
    let state = at(MAX_COUNTER - 3);
    let ok = verify_ocra(
        &k,
        &suite,
        &state,
        &plain,
        10,
        0,
        &response(MAX_COUNTER - 1),
    )
    .expect("well-formed")
    .expect("the last storable counter");
    assert_eq!(ok.after().counter, MAX_COUNTER);
    let refused = verify_ocra(&k, &suite, &state, &plain, 10, 0, &response(MAX_COUNTER))
        .expect("well-formed");
    assert!(refused.is_none());
}

#[test]
fn hotp_rfc_codes_and_replay() {
    // RFC 4226 Appendix D: 755224 is counter 0, 287082 counter 1, 359152 counter 2.
    let k = key();
    let first = verify_hotp(&k, Digits::SIX, &at(0), 10, &code("287082")).expect("accepted");
    assert_eq!(first.after().counter, 2);
    // The same code again against the committed state: replay.
    assert!(verify_hotp(&k, Digits::SIX, &first.after(), 10, &code("287082")).is_none());
    // An older code: also rejected.
    assert!(verify_hotp(&k, Digits::SIX, &first.after(), 10, &code("755224")).is_none());
    // The next one is fine.
    assert!(verify_hotp(&k, Digits::SIX, &first.after(), 10, &code("359152")).is_some());
    // A wrong code and a code of the wrong digit count are rejected.
    assert!(verify_hotp(&k, Digits::SIX, &at(0), 10, &code("000000")).is_none());
    let eight = Code::parse("84755224", Digits::EIGHT).expect("code");
    assert!(verify_hotp(&k, Digits::SIX, &at(0), 10, &eight).is_none());
}

#[test]
fn hotp_lowest_match_wins() {
    // Find two counters within a window that share a code, then check the lower is chosen.
    let k = key();
    let codes: Vec<(u64, String)> = (0..20_000)
        .map(|c| (c, hotp(&k, c, Digits::SIX).to_text()))
        .collect();
    let mut seen = std::collections::HashMap::new();
    let pair = codes
        .iter()
        .find_map(|(c, t)| match seen.insert(t.clone(), *c) {
            Some(prev) if c - prev < 5000 => Some((prev, *c)),
            _ => None,
        });
    let (low, high) = pair.expect("a collision within 20,000 six-digit codes");
    let presented = hotp(&k, high, Digits::SIX);
    let window = u32::try_from(high - low + 1).expect("small");
    let got = verify_hotp(&k, Digits::SIX, &at(low), window, &presented).expect("accepted");
    assert_eq!(got.matched(), low);
}

#[test]
fn hotp_resync_needs_two_consecutive_codes() {
    let k = key();
    let c = |n| hotp(&k, n, Digits::SIX);
    let state = at(100);
    let proof = resync_hotp(&k, Digits::SIX, &state, 1000, &c(700), &c(701)).expect("resynced");
    assert_eq!(proof.method(), Method::Resync);
    assert_eq!(proof.after().counter, 702);
    // Not consecutive.
    assert!(resync_hotp(&k, Digits::SIX, &state, 1000, &c(700), &c(702)).is_none());
    // Reversed.
    assert!(resync_hotp(&k, Digits::SIX, &state, 1000, &c(701), &c(700)).is_none());
    // Outside the resync window (first code at stored + window).
    assert!(resync_hotp(&k, Digits::SIX, &state, 1000, &c(1100), &c(1101)).is_none());
    // Last possible pair inside it.
    assert!(resync_hotp(&k, Digits::SIX, &state, 1000, &c(1099), &c(1100)).is_some());
    // Behind the stored counter: never.
    assert!(resync_hotp(&k, Digits::SIX, &state, 1000, &c(98), &c(99)).is_none());
}

fn totp_params() -> TotpParams {
    TotpParams::new(Digits::SIX, 30, 0).expect("params")
}

#[test]
fn totp_skew_replay_and_drift_tracking() {
    let k = key();
    let p = totp_params();
    let now = 1_700_000_000u64;
    let step = now / 30;
    let code_at = |s: u64| hotp(&k, s, Digits::SIX);

    // One step either side is accepted, two is not.
    let mut state = OtpState::default();
    for (offset, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
        let s = step.checked_add_signed(offset).expect("step");
        let got = verify_totp(&k, &p, &state, now, 1, &code_at(s));
        assert_eq!(got.is_some(), ok, "offset {offset}");
    }
    // Accept the current code; then the same and an earlier step are replays.
    let proof = verify_totp(&k, &p, &state, now, 1, &code_at(step)).expect("accepted");
    assert_eq!(proof.after().last_step, Some(step));
    assert_eq!(proof.after().drift, 0);
    state = proof.after();
    assert!(verify_totp(&k, &p, &state, now, 1, &code_at(step)).is_none());
    assert!(verify_totp(&k, &p, &state, now + 30, 1, &code_at(step - 1)).is_none());

    // A token whose clock runs fast by one step more every login is followed: the drift is
    // learnt from each match, so after 20 logins it is 20 steps ahead and still accepted.
    let mut state = OtpState::default();
    for login in 1..=20u64 {
        let now = 1_700_000_000 + login * 3600;
        let server_step = now / 30;
        let token_step = server_step + login;
        let proof =
            verify_totp(&k, &p, &state, now, 1, &code_at(token_step)).expect("drift followed");
        assert_eq!(proof.after().drift, login as i64);
        state = proof.after();
    }
    // Without the learnt drift, the same code would be rejected.
    let now = 1_700_000_000 + 21 * 3600;
    let far = code_at(now / 30 + 21);
    assert!(verify_totp(&k, &p, &OtpState::default(), now, 1, &far).is_none());
    assert!(verify_totp(&k, &p, &state, now, 1, &far).is_some());
}

#[test]
fn totp_rfc_vector_and_time_before_t0() {
    let k = key();
    let p = TotpParams::new(Digits::EIGHT, 30, 0).expect("params");
    let presented = Code::parse("94287082", Digits::EIGHT).expect("code");
    let proof =
        verify_totp(&k, &p, &OtpState::default(), 59, 1, &presented).expect("RFC 6238 t=59");
    assert_eq!(proof.matched(), 1);
    let late = TotpParams::new(Digits::EIGHT, 30, 100).expect("params");
    assert!(verify_totp(&k, &late, &OtpState::default(), 59, 1, &presented).is_none());
    assert!(totp(&k, &late, 59).is_err());
}

#[test]
fn totp_resync_finds_a_far_clock() {
    let k = key();
    let p = totp_params();
    let now = 1_700_000_000u64;
    let server = now / 30;
    let token = server + 2000; // about 16.7 hours ahead
    let c = |s| hotp(&k, s, Digits::SIX);
    let state = OtpState::default();
    assert!(verify_totp(&k, &p, &state, now, 1, &c(token)).is_none());
    let proof =
        resync_totp(&k, &p, &state, now, 24 * 3600, &c(token), &c(token + 1)).expect("resynced");
    assert_eq!(proof.after().drift, 2001);
    assert_eq!(proof.after().last_step, Some(token + 1));
    // Later logins use the learnt drift.
    assert!(verify_totp(&k, &p, &proof.after(), now + 60, 1, &c(token + 2)).is_some());
    // One code alone, or codes beyond 24 h, never resync.
    assert!(resync_totp(&k, &p, &state, now, 24 * 3600, &c(token), &c(token + 5)).is_none());
    let beyond = server + 2881;
    assert!(resync_totp(&k, &p, &state, now, 24 * 3600, &c(beyond), &c(beyond + 1)).is_none());
    // Behind the last accepted step: never.
    let used = OtpState {
        last_step: Some(token + 1),
        ..state
    };
    assert!(resync_totp(&k, &p, &used, now, 24 * 3600, &c(token), &c(token + 1)).is_none());
}

#[test]
fn ocra_counter_advances_and_replays_fail() {
    let suite: OcraSuite = "OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1".parse().expect("suite");
    let k = OtpKey::new(Algorithm::Sha256, b"12345678901234567890123456789012").expect("key");
    let pin_hash = okey_otp::digest(Algorithm::Sha1, b"1234");
    let input = OcraInput {
        question: "12345678",
        pin_hash: Some(pin_hash.as_bytes()),
        ..OcraInput::default()
    };
    // RFC 6287 C.1: counter 3 gives 71565254 for this suite.
    let state = OtpState {
        counter: 1,
        ..OtpState::default()
    };
    let proof = verify_ocra(&k, &suite, &state, &input, 5, 0, "71565254")
        .expect("well-formed")
        .expect("accepted within the counter window");
    assert_eq!(proof.matched(), 3);
    assert_eq!(proof.after().counter, 4);
    assert!(
        verify_ocra(&k, &suite, &proof.after(), &input, 5, 0, "71565254")
            .expect("well-formed")
            .is_none()
    );
    // A wrong PIN hash gives a different response.
    let wrong_pin = okey_otp::digest(Algorithm::Sha1, b"9999");
    let wrong = OcraInput {
        pin_hash: Some(wrong_pin.as_bytes()),
        ..input
    };
    assert!(
        verify_ocra(&k, &suite, &state, &wrong, 5, 0, "71565254")
            .expect("well-formed")
            .is_none()
    );
    // Malformed responses are errors, not rejections.
    assert!(verify_ocra(&k, &suite, &state, &input, 5, 0, "7156525").is_err());
    assert!(verify_ocra(&k, &suite, &state, &input, 5, 0, "7156525x").is_err());
}
