//! Conformance with oathtool (OATH Toolkit, the Debian package `oathtool`): the same random keys,
//! counters, times, steps, digit counts and hash functions are given to both programs, and every
//! printed code and every verification answer must agree.
//!
//! The cases come from a fixed-seed RNG, so a failure names a reproducible case. oathtool must be
//! installed (`.ci/run` installs it); if it is missing these tests fail and say how to install it,
//! unless `OKEY_SKIP_OATHTOOL=1` is set.

use std::process::{Command, Output};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Cases per mode.
const CASES: usize = 300;

/// Whether to run: `true` if oathtool is there; `false` if it is missing and skipping was asked
/// for; a panic with install instructions otherwise.
fn oathtool_present() -> bool {
    let found = Command::new("oathtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    if std::env::var("OKEY_SKIP_OATHTOOL").as_deref() == Ok("1") {
        eprintln!("oathtool not found: skipped because OKEY_SKIP_OATHTOOL=1");
        return false;
    }
    panic!(
        "oathtool is not installed, so okey's conformance with it cannot be checked. Install it \
         with `apt-get install -y oathtool` (Debian package oathtool), or set \
         OKEY_SKIP_OATHTOOL=1 to skip these tests knowingly."
    );
}

fn run(program: &str, args: &[String]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"))
}

fn okey(args: &[String]) -> Output {
    let mut full = vec!["otp".to_owned()];
    full.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_okey"), &full)
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Both succeed and print the same lines.
fn same_codes(case: usize, oath_args: &[String], okey_args: &[String]) {
    let theirs = run("oathtool", oath_args);
    let ours = okey(okey_args);
    assert!(
        theirs.status.success(),
        "case {case}: oathtool {oath_args:?} failed: {}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    assert!(
        ours.status.success(),
        "case {case}: okey otp {okey_args:?} failed: {}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let expected = stdout_lines(&theirs);
    assert!(
        !expected.is_empty(),
        "case {case}: oathtool printed nothing"
    );
    assert_eq!(
        stdout_lines(&ours),
        expected,
        "case {case}: okey otp {okey_args:?} vs oathtool {oath_args:?}"
    );
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn random_key(rng: &mut StdRng, max_len: usize) -> Vec<u8> {
    let len = rng.random_range(1..=max_len);
    (0..len).map(|_| rng.random()).collect()
}

/// Small counters (as tokens have), counters around 2^32, and any u64.
fn random_counter(rng: &mut StdRng) -> u64 {
    match rng.random_range(0..3) {
        0 => rng.random_range(0..100_000),
        1 => rng.random_range((1u64 << 32) - 1000..(1u64 << 32) + 1000),
        _ => rng.random_range(0..u64::MAX - 10),
    }
}

const ALGORITHMS: [&str; 3] = ["sha1", "sha256", "sha512"];

/// A TOTP configuration: (time, step, t0).
fn random_clock(rng: &mut StdRng) -> (u64, u32, u64) {
    let time = rng.random_range(0..=10_000_000_000u64);
    let step = match rng.random_range(0..3) {
        0 => 30,
        1 => 60,
        _ => rng.random_range(1..=600),
    };
    let t0 = if rng.random_bool(0.5) {
        0
    } else {
        rng.random_range(0..=time)
    };
    (time, step, t0)
}

#[test]
fn hotp_hex_keys() {
    if !oathtool_present() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(0x6f6b_6579_0001);
    for case in 0..CASES {
        let key = hex::encode(random_key(&mut rng, 64));
        let counter = random_counter(&mut rng);
        let digits = rng.random_range(6..=8u8);
        let window = rng.random_range(0..=3u32);
        same_codes(
            case,
            &[
                s("--hotp"),
                format!("--counter={counter}"),
                format!("--digits={digits}"),
                format!("--window={window}"),
                key.clone(),
            ],
            &[
                s("hotp"),
                s("--key"),
                key,
                s("--counter"),
                s(counter),
                s("--digits"),
                s(digits),
                s("--window"),
                s(window),
            ],
        );
    }
}

#[test]
fn hotp_base32_keys() {
    if !oathtool_present() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(0x6f6b_6579_0002);
    for case in 0..CASES {
        let key = random_key(&mut rng, 40);
        // oathtool takes upper-case base32; okey also gets lower case and no padding.
        let upper = data_encoding::BASE32.encode(&key);
        let ours = if case % 2 == 0 {
            upper.to_ascii_lowercase()
        } else {
            upper.trim_end_matches('=').to_owned()
        };
        let counter = random_counter(&mut rng);
        let digits = rng.random_range(6..=8u8);
        same_codes(
            case,
            &[
                s("--base32"),
                format!("--counter={counter}"),
                format!("--digits={digits}"),
                upper,
            ],
            &[
                s("hotp"),
                s("--base32"),
                ours,
                s("--counter"),
                s(counter),
                s("--digits"),
                s(digits),
            ],
        );
    }
}

#[test]
fn totp_all_algorithms() {
    if !oathtool_present() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(0x6f6b_6579_0003);
    for algorithm in ALGORITHMS {
        for case in 0..CASES {
            let key = hex::encode(random_key(&mut rng, 80));
            let (time, step, t0) = random_clock(&mut rng);
            let digits = rng.random_range(6..=8u8);
            let window = rng.random_range(0..=3u32);
            same_codes(
                case,
                &[
                    format!("--totp={algorithm}"),
                    format!("--now=@{time}"),
                    format!("--time-step-size={step}s"),
                    format!("--start-time=@{t0}"),
                    format!("--digits={digits}"),
                    format!("--window={window}"),
                    key.clone(),
                ],
                &[
                    s("totp"),
                    s("--key"),
                    key,
                    s("--algorithm"),
                    s(algorithm),
                    s("--time"),
                    s(time),
                    s("--step"),
                    s(step),
                    s("--t0"),
                    s(t0),
                    s("--digits"),
                    s(digits),
                    s("--window"),
                    s(window),
                ],
            );
        }
    }
}

/// A code to present: usually one of the token's own codes near the window (inside it, just
/// before it or just past it, computed by oathtool), sometimes random digits.
fn presented_code(
    rng: &mut StdRng,
    oath_code_at: impl Fn(i64) -> Option<String>,
    digits: u8,
    lo: i64,
    hi: i64,
) -> String {
    if rng.random_range(0..4) == 0 {
        let max = 10u64.pow(u32::from(digits));
        return format!("{:0w$}", rng.random_range(0..max), w = usize::from(digits));
    }
    let offset = rng.random_range(lo - 2..=hi + 2);
    oath_code_at(offset).unwrap_or_else(|| "0".repeat(usize::from(digits)))
}

#[test]
fn verify_hotp_agrees() {
    if !oathtool_present() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(0x6f6b_6579_0004);
    let (mut accepted, mut rejected) = (0, 0);
    for case in 0..CASES {
        let key = hex::encode(random_key(&mut rng, 64));
        let counter = rng.random_range(2..1_000_000u64);
        let digits = rng.random_range(6..=8u8);
        let window = rng.random_range(0..=5u32);
        let code_at = |offset: i64| {
            let c = counter.checked_add_signed(offset)?;
            let out = run(
                "oathtool",
                &[
                    format!("--counter={c}"),
                    format!("--digits={digits}"),
                    key.clone(),
                ],
            );
            stdout_lines(&out).pop()
        };
        let code = presented_code(&mut rng, code_at, digits, 0, i64::from(window));
        let theirs = run(
            "oathtool",
            &[
                format!("--counter={counter}"),
                format!("--digits={digits}"),
                format!("--window={window}"),
                key.clone(),
                code.clone(),
            ],
        );
        let ours = okey(&[
            s("verify"),
            s("hotp"),
            s("--key"),
            key.clone(),
            s("--counter"),
            s(counter),
            s("--digits"),
            s(digits),
            s("--window"),
            s(window),
            s("--code"),
            code.clone(),
        ]);
        let what = format!("case {case}: key {key} counter {counter} window {window} code {code}");
        if theirs.status.success() {
            // oathtool prints the match's offset from the start counter; okey the counter.
            let offset: u64 = stdout_lines(&theirs)[0].parse().expect("oathtool offset");
            assert_eq!(ours.status.code(), Some(0), "{what}: okey rejected");
            assert_eq!(stdout_lines(&ours), [s(counter + offset)], "{what}");
            accepted += 1;
        } else {
            assert_eq!(
                theirs.status.code(),
                Some(2),
                "{what}: oathtool failed oddly"
            );
            assert_eq!(ours.status.code(), Some(1), "{what}: okey accepted");
            assert_eq!(stdout_lines(&ours), ["rejected"], "{what}");
            rejected += 1;
        }
    }
    // The mix must exercise both answers substantially.
    assert!(
        accepted > CASES / 4 && rejected > CASES / 4,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn verify_totp_agrees() {
    if !oathtool_present() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(0x6f6b_6579_0005);
    let (mut accepted, mut rejected) = (0, 0);
    for case in 0..CASES {
        let algorithm = ALGORITHMS[case % 3];
        let key = hex::encode(random_key(&mut rng, 64));
        let (time, step, t0) = random_clock(&mut rng);
        // Keep the whole window at or after T0, where both programs agree on what a step is.
        let time = time.max(t0 + 10 * u64::from(step));
        let digits = rng.random_range(6..=8u8);
        let window = rng.random_range(0..=3u32);
        let clock_args = |at: u64| {
            vec![
                format!("--totp={algorithm}"),
                format!("--now=@{at}"),
                format!("--time-step-size={step}s"),
                format!("--start-time=@{t0}"),
                format!("--digits={digits}"),
            ]
        };
        let code_at = |offset: i64| {
            let at = time.checked_add_signed(offset * i64::from(step))?;
            let mut args = clock_args(at);
            args.push(key.clone());
            stdout_lines(&run("oathtool", &args)).pop()
        };
        let w = i64::from(window);
        let code = presented_code(&mut rng, code_at, digits, -w, w);
        let mut args = clock_args(time);
        args.extend([format!("--window={window}"), key.clone(), code.clone()]);
        let theirs = run("oathtool", &args);
        let ours = okey(&[
            s("verify"),
            s("totp"),
            s("--key"),
            key.clone(),
            s("--algorithm"),
            s(algorithm),
            s("--time"),
            s(time),
            s("--step"),
            s(step),
            s("--t0"),
            s(t0),
            s("--digits"),
            s(digits),
            s("--window"),
            s(window),
            s("--code"),
            code.clone(),
        ]);
        let what = format!(
            "case {case}: {algorithm} key {key} time {time} step {step} t0 {t0} window {window} code {code}"
        );
        if theirs.status.success() {
            // oathtool prints how many steps away the match is; okey the step itself.
            let distance: u64 = stdout_lines(&theirs)[0].parse().expect("oathtool distance");
            let current = (time - t0) / u64::from(step);
            assert_eq!(ours.status.code(), Some(0), "{what}: okey rejected");
            let matched: u64 = stdout_lines(&ours)[0].parse().expect("okey step");
            assert_eq!(matched.abs_diff(current), distance, "{what}");
            accepted += 1;
        } else {
            assert_eq!(
                theirs.status.code(),
                Some(2),
                "{what}: oathtool failed oddly"
            );
            assert_eq!(ours.status.code(), Some(1), "{what}: okey accepted");
            assert_eq!(stdout_lines(&ours), ["rejected"], "{what}");
            rejected += 1;
        }
    }
    assert!(
        accepted > CASES / 4 && rejected > CASES / 4,
        "{accepted} accepted, {rejected} rejected"
    );
}
