//! The verify hot path: cost per HOTP candidate, 10-wide window verification when the code
//! matches the first candidate, the last and none (the three must be equal: the constant-time
//! evidence), TOTP verification, OCRA and the server-side PIN check, each beside its baselines in
//! the same run (the `hmac` crate keyed per code, the `hmac` crate with a cloned precomputed
//! state, totp-rs, and two bare SHA-1 compressions as the floor of one MAC chain).
//!
//! Run: `cargo bench -p okey-benches --bench otp`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use okey_benches::{HmacPrecomputed, hmac_fresh_hotp, totp_rs};
use okey_otp::{
    Algorithm, Code, Digits, OcraInput, OcraSuite, OtpKey, OtpState, Pepper, Pin, PinBinding,
    TotpParams, check_pin_unknown, hotp, ocra, split_passcode, verify_hotp, verify_ocra,
    verify_totp, verify_unknown,
};

const KEY: &[u8] = b"12345678901234567890";
const KEY_32: &[u8] = b"12345678901234567890123456789012";
const NOW: u64 = 1_700_000_000;

fn sha1_key() -> OtpKey {
    OtpKey::new(Algorithm::Sha1, KEY).expect("valid key")
}

fn candidate(c: &mut Criterion) {
    let mut g = c.benchmark_group("hotp_candidate");
    let key = sha1_key();
    g.bench_function("okey_sha1", |b| {
        let mut counter = 0u64;
        b.iter(|| {
            counter = counter.wrapping_add(1);
            hotp(&key, black_box(counter), Digits::SIX)
        })
    });
    let pre = HmacPrecomputed::new(KEY).expect("valid key");
    g.bench_function("hmac_cloned_state", |b| {
        let mut counter = 0u64;
        b.iter(|| {
            counter = counter.wrapping_add(1);
            pre.hotp(black_box(counter), 6)
        })
    });
    g.bench_function("hmac_fresh_key", |b| {
        let mut counter = 0u64;
        b.iter(|| {
            counter = counter.wrapping_add(1);
            hmac_fresh_hotp(black_box(KEY), black_box(counter), 6)
        })
    });
    let rs = totp_rs(KEY, 6, 1);
    g.bench_function("totp_rs_generate", |b| {
        let mut time = NOW;
        b.iter(|| {
            time = time.wrapping_add(30);
            rs.generate(black_box(time))
        })
    });
    g.bench_function("two_sha1_compressions", |b| {
        let mut block = [[0u8; 64]; 1];
        b.iter(|| {
            let mut state = black_box([
                0x6745_2301u32,
                0xEFCD_AB89,
                0x98BA_DCFE,
                0x1032_5476,
                0xC3D2_E1F0,
            ]);
            block[0][0] = block[0][0].wrapping_add(1);
            sha1::block_api::compress(&mut state, &block);
            sha1::block_api::compress(&mut state, &block);
            state
        })
    });
    for (name, alg, secret) in [
        ("okey_sha256", Algorithm::Sha256, KEY_32),
        ("okey_sha512", Algorithm::Sha512, KEY),
    ] {
        let key = OtpKey::new(alg, secret).expect("valid key");
        g.bench_function(name, |b| {
            let mut counter = 0u64;
            b.iter(|| {
                counter = counter.wrapping_add(1);
                hotp(&key, black_box(counter), Digits::SIX)
            })
        });
    }
    g.finish();
}

/// A six-digit code that matches no counter in `first..first + count`.
fn code_outside(key: &OtpKey, first: u64, count: u64) -> Code {
    let used: Vec<String> = (first..first + count)
        .map(|c| hotp(key, c, Digits::SIX).to_text())
        .collect();
    (0..1_000_000u32)
        .map(|v| format!("{v:06}"))
        .find(|t| !used.contains(t))
        .and_then(|t| Code::parse(&t, Digits::SIX).ok())
        .expect("a free code")
}

fn window(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_hotp_window10");
    let key = sha1_key();
    let state = OtpState {
        counter: 1000,
        ..OtpState::default()
    };
    let first = hotp(&key, 1000, Digits::SIX);
    let last = hotp(&key, 1009, Digits::SIX);
    let none = code_outside(&key, 1000, 10);
    for (name, code) in [
        ("match_first", first),
        ("match_last", last),
        ("no_match", none),
    ] {
        // The proof must exist exactly when expected: a bench that verified nothing would lie.
        let accepted = verify_hotp(&key, Digits::SIX, &state, 10, &code).is_some();
        assert_eq!(accepted, name != "no_match", "{name}");
        g.bench_function(format!("okey_{name}"), |b| {
            b.iter(|| verify_hotp(&key, Digits::SIX, black_box(&state), 10, black_box(&code)))
        });
    }
    g.bench_function("okey_unknown_subject", |b| {
        b.iter(|| verify_unknown(Algorithm::Sha1, Digits::SIX, 10, black_box(&none)))
    });
    // Baseline: the `hmac` crate with precomputed state and an early exit (not constant-time).
    let pre = HmacPrecomputed::new(KEY).expect("valid key");
    let value = |code: &Code| code.to_text().parse::<u32>().expect("digits");
    for (name, code) in [
        ("match_first", value(&first)),
        ("match_last", value(&last)),
        ("no_match", value(&none)),
    ] {
        g.bench_function(format!("hmac_cloned_early_exit_{name}"), |b| {
            b.iter(|| pre.verify_early_exit(black_box(1000), 10, 6, black_box(code)))
        });
    }
    g.finish();
}

/// Verification cost as the window grows: with `Throughput::Elements(window)` criterion also
/// reports candidates per second, i.e. the cost of one candidate inside a window.
fn window_sizes(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_hotp_no_match_by_window");
    let key = sha1_key();
    let state = OtpState {
        counter: 1000,
        ..OtpState::default()
    };
    for window in [1u32, 3, 10, 16, 100] {
        let none = code_outside(&key, 1000, u64::from(window));
        g.throughput(Throughput::Elements(u64::from(window)));
        g.bench_function(format!("window_{window}"), |b| {
            b.iter(|| {
                verify_hotp(
                    &key,
                    Digits::SIX,
                    black_box(&state),
                    window,
                    black_box(&none),
                )
            })
        });
    }
    g.finish();
}

fn totp_verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_totp_skew1");
    let key = sha1_key();
    let params = TotpParams::default();
    let state = OtpState::default();
    let step = NOW / 30;
    let now_code = hotp(&key, step, Digits::SIX);
    let none = code_outside(&key, step - 1, 3);
    for (name, code) in [("match", now_code), ("no_match", none)] {
        assert_eq!(
            verify_totp(&key, &params, &state, NOW, 1, &code).is_some(),
            name == "match"
        );
        g.bench_function(format!("okey_{name}"), |b| {
            b.iter(|| {
                verify_totp(
                    &key,
                    &params,
                    black_box(&state),
                    black_box(NOW),
                    1,
                    black_box(&code),
                )
            })
        });
    }
    let rs = totp_rs(KEY, 6, 1);
    for (name, code) in [("match", now_code.to_text()), ("no_match", none.to_text())] {
        assert_eq!(rs.check(&code, NOW).is_some(), name == "match");
        g.bench_function(format!("totp_rs_{name}"), |b| {
            b.iter(|| rs.check(black_box(&code), black_box(NOW)))
        });
    }
    g.finish();
}

fn ocra_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ocra");
    let one_way: OcraSuite = "OCRA-1:HOTP-SHA1-6:QN08".parse().expect("suite");
    let key = sha1_key();
    let input = OcraInput {
        question: "12345678",
        ..OcraInput::default()
    };
    g.bench_function("compute_sha1_qn08", |b| {
        b.iter(|| ocra(&key, black_box(&one_way), black_box(&input)))
    });
    let pinned: OcraSuite = "OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1".parse().expect("suite");
    let key256 = OtpKey::new(Algorithm::Sha256, KEY_32).expect("valid key");
    let pin_hash = okey_otp::digest(Algorithm::Sha1, b"1234");
    let input = OcraInput {
        question: "12345678",
        pin_hash: Some(pin_hash.as_bytes()),
        counter: Some(3),
        ..OcraInput::default()
    };
    g.bench_function("compute_sha256_counter_pin", |b| {
        b.iter(|| ocra(&key256, black_box(&pinned), black_box(&input)))
    });
    // RFC 6287 C.1: counter 3 gives 71565254; verify from counter 0 over a window of 10.
    let state = OtpState::default();
    let verify_input = OcraInput {
        counter: None,
        ..input
    };
    assert!(
        verify_ocra(&key256, &pinned, &state, &verify_input, 10, 0, "71565254")
            .expect("well-formed")
            .is_some()
    );
    g.bench_function("verify_sha256_counter_window10", |b| {
        b.iter(|| {
            verify_ocra(
                &key256,
                &pinned,
                black_box(&state),
                black_box(&verify_input),
                10,
                0,
                black_box("71565254"),
            )
        })
    });
    g.bench_function("parse_suite", |b| {
        b.iter(|| black_box("OCRA-1:HOTP-SHA512-8:C-QH64-PSHA256-S064-T1M").parse::<OcraSuite>())
    });
    g.finish();
}

fn pin(c: &mut Criterion) {
    let mut g = c.benchmark_group("pin");
    let pepper = Pepper::new(b"0123456789abcdef0123456789abcdef").expect("pepper");
    let pin = Pin::new("4711").expect("pin");
    let stored = pepper.verifier(PinBinding::Token("0012345"), &pin);
    let wrong = Pin::new("4712").expect("pin");
    g.bench_function("check_right", |b| {
        b.iter(|| {
            pepper.check(
                black_box(PinBinding::Token("0012345")),
                black_box(&pin),
                &stored,
            )
        })
    });
    g.bench_function("check_wrong", |b| {
        b.iter(|| {
            pepper.check(
                black_box(PinBinding::Token("0012345")),
                black_box(&wrong),
                &stored,
            )
        })
    });
    g.bench_function("check_unknown_token", |b| {
        b.iter(|| check_pin_unknown(&pepper, black_box(&pin)))
    });
    g.bench_function("split_passcode", |b| {
        b.iter(|| split_passcode(black_box("4711123456"), Digits::SIX, true))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = candidate, window, window_sizes, totp_verify, ocra_bench, pin
}
criterion_main!(benches);
