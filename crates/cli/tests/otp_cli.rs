//! `okey otp` as a user runs it: the real binary against the RFC 4226, 6238 and 6287 vectors in
//! `shared/vectors/`, plus exit codes, error lines, leading zeros and malformed keys and codes.
//! Rendered output (status, stdout, stderr) is compared as snapshots.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use expect_test::{Expect, expect};
use serde_json::Value;

const RFC_KEY: &str = "3132333435363738393031323334353637383930";
const RFC_KEY_32: &str = "3132333435363738393031323334353637383930313233343536373839303132";

fn okey_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_okey"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the okey binary starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("okey finishes")
}

fn okey(args: &[&str]) -> Output {
    okey_with_stdin(args, "")
}

/// `status`, stdout and stderr of a run, as one text for snapshots.
fn render(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let status = out
        .status
        .code()
        .map_or("signal".to_owned(), |c| c.to_string());
    let mut text = format!("status {status}\n");
    for line in stdout.lines() {
        text.push_str(&format!("out: {line}\n"));
    }
    for line in stderr.lines() {
        text.push_str(&format!("err: {line}\n"));
    }
    text
}

/// Run `okey otp ARGS` and compare the rendered result with a snapshot.
fn check(args: &[&str], expected: Expect) {
    let mut full = vec!["otp"];
    full.extend_from_slice(args);
    expected.assert_eq(&render(&okey(&full)));
}

/// Run `okey otp ARGS`, require exit 0 and return stdout's lines.
fn lines(args: &[&str]) -> Vec<String> {
    let mut full = vec!["otp"];
    full.extend_from_slice(args);
    let out = okey(&full);
    assert!(
        out.status.success(),
        "okey {full:?} failed:\n{}",
        render(&out)
    );
    assert!(out.stderr.is_empty(), "stderr on success: {}", render(&out));
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn vectors(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn rfc4226_appendix_d() {
    let v = vectors("hotp-rfc4226.json");
    let key = s(&v["secret"], "hex");
    let base32 = s(&v["secret"], "base32");
    let rows = v["vectors"].as_array().expect("rows");
    assert_eq!(rows.len(), 10);
    let expected: Vec<String> = rows.iter().map(|r| s(r, "hotp_6_digits").into()).collect();
    // One counter at a time, with both key encodings.
    for row in rows {
        let count = row["count"].as_u64().expect("count").to_string();
        let code = s(row, "hotp_6_digits");
        assert_eq!(lines(&["hotp", "--key", key, "--counter", &count]), [code]);
        assert_eq!(
            lines(&["hotp", "--base32", base32, "--counter", &count]),
            [code]
        );
        // And verification from counter 0 over the whole table finds this counter.
        assert_eq!(
            lines(&[
                "verify",
                "hotp",
                "--key",
                key,
                "--counter",
                "0",
                "--window",
                "9",
                "--code",
                code
            ]),
            [count.as_str()]
        );
    }
    // The whole table as one window.
    assert_eq!(
        lines(&["hotp", "--key", key, "--counter", "0", "--window", "9"]),
        expected
    );
    // The tail of the table from counter 5.
    assert_eq!(
        lines(&["hotp", "--key", key, "--counter", "5", "--window", "4"]),
        expected[5..]
    );
}

#[test]
fn rfc6238_appendix_b() {
    let v = vectors("totp-rfc6238.json");
    let rows = v["vectors"].as_array().expect("rows");
    assert_eq!(rows.len(), 18);
    for row in rows {
        let mode = s(row, "mode").to_ascii_lowercase();
        let key = s(&v["seeds"][s(row, "seed_name")], "hex");
        let time = row["time_unix"].as_u64().expect("time").to_string();
        let step = row["T"].as_u64().expect("T").to_string();
        let code = s(row, "totp_8_digits");
        let common = [
            "--key",
            key,
            "--time",
            &time,
            "--digits",
            "8",
            "--algorithm",
            &mode,
        ];
        let mut args = vec!["totp"];
        args.extend_from_slice(&common);
        assert_eq!(lines(&args), [code], "{mode} at {time}");

        let mut args = vec!["verify", "totp", "--code", code];
        args.extend_from_slice(&common);
        assert_eq!(lines(&args), [step.as_str()], "{mode} at {time}");
    }
}

#[test]
fn rfc6238_window_prints_following_steps() {
    // RFC 6238 SHA-1 codes at 59 s (step 1) and the two following steps, checked against
    // single-step runs at 89 s and 119 s.
    let window = lines(&[
        "totp", "--key", RFC_KEY, "--time", "59", "--digits", "8", "--window", "2",
    ]);
    let single = |t: &str| {
        lines(&["totp", "--key", RFC_KEY, "--time", t, "--digits", "8"])
            .pop()
            .expect("one line")
    };
    assert_eq!(window, [single("59"), single("89"), single("119")]);
    assert_eq!(window[0], "94287082");
}

#[test]
fn rfc6287_appendix_c() {
    let v = vectors("ocra-rfc6287.json");
    let pin = s(&v["pin"], "value");
    let pin_hash = s(&v["pin"], "sha1_hex");
    let time = v["timestamp"]["unix"].as_u64().expect("unix").to_string();
    let mut checked = 0;
    for table in v["tables"].as_array().expect("tables") {
        let suite = s(table, "ocra_suite");
        let key = s(&v["keys"][s(table, "key")], "hex");
        for row in table["vectors"].as_array().expect("vectors") {
            let question = s(row, "question");
            let expected = s(row, "expected");
            let counter = row["counter"].as_u64().map(|c| c.to_string());
            let mut args = vec![
                "ocra",
                "--suite",
                suite,
                "--key",
                key,
                "--question",
                question,
            ];
            if let Some(c) = &counter {
                args.extend(["--counter", c.as_str()]);
            }
            if suite.contains("-T") {
                args.extend(["--time", time.as_str()]);
            }
            if suite.contains("-P") {
                // Once with the PIN (hashed by okey) and once with the published hash.
                let mut with_pin = args.clone();
                with_pin.extend(["--pin", pin]);
                assert_eq!(lines(&with_pin), [expected], "{with_pin:?}");
                args.extend(["--pin-hash", pin_hash]);
            }
            assert_eq!(lines(&args), [expected], "{args:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, v["vector_count"].as_u64().expect("count"));
}

#[test]
fn leading_zeros_are_printed_and_required() {
    // Codes recorded from oathtool 2.6.7 for the RFC 4226 key: counter 36 is 003784, counter 44
    // is 000152, and the 7-digit code of counter 150 is 0072172.
    assert_eq!(
        lines(&["hotp", "--key", RFC_KEY, "--counter", "36"]),
        ["003784"]
    );
    assert_eq!(
        lines(&["hotp", "--key", RFC_KEY, "--counter", "44"]),
        ["000152"]
    );
    assert_eq!(
        lines(&[
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "150",
            "--digits",
            "7"
        ]),
        ["0072172"]
    );
    // RFC 6238: 07081804 at 1111111109 (SHA-1, 8 digits).
    assert_eq!(
        lines(&[
            "totp",
            "--key",
            RFC_KEY,
            "--time",
            "1111111109",
            "--digits",
            "8"
        ]),
        ["07081804"]
    );
    check(
        &[
            "verify",
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "40",
            "--window",
            "9",
            "--code",
            "000152",
        ],
        expect![[r#"
            status 0
            out: 44
        "#]],
    );
    // The same code without its leading zeros is a malformed code, not a rejection.
    check(
        &[
            "verify",
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "40",
            "--window",
            "9",
            "--code",
            "152",
        ],
        expect![[r#"
            status 2
            err: error: --code: the code must be 6 digits long, got 3 characters
        "#]],
    );
}

#[test]
fn verify_accepts_rejects_and_reports_exit_codes() {
    // 359152 is counter 2 (RFC 4226).
    check(
        &[
            "verify",
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "0",
            "--window",
            "2",
            "--code",
            "359152",
        ],
        expect![[r#"
            status 0
            out: 2
        "#]],
    );
    // One short of it: rejected, exit 1.
    check(
        &[
            "verify",
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "0",
            "--window",
            "1",
            "--code",
            "359152",
        ],
        expect![[r#"
            status 1
            out: rejected
        "#]],
    );
    // A code below the counter: rejected (replay).
    check(
        &[
            "verify",
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "3",
            "--window",
            "5",
            "--code",
            "359152",
        ],
        expect![[r#"
            status 1
            out: rejected
        "#]],
    );
    // The default window is 0: exactly the given counter.
    check(
        &[
            "verify",
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "2",
            "--code",
            "359152",
        ],
        expect![[r#"
            status 0
            out: 2
        "#]],
    );
    // TOTP: 94287082 is step 1 (RFC 6238). At 89 s (step 2) it needs a window of 1.
    check(
        &[
            "verify", "totp", "--key", RFC_KEY, "--time", "89", "--digits", "8", "--code",
            "94287082",
        ],
        expect![[r#"
            status 1
            out: rejected
        "#]],
    );
    check(
        &[
            "verify", "totp", "--key", RFC_KEY, "--time", "89", "--digits", "8", "--window", "1",
            "--code", "94287082",
        ],
        expect![[r#"
            status 0
            out: 1
        "#]],
    );
    // And from the other side: at 29 s (step 0) the step-1 code is one step ahead.
    check(
        &[
            "verify", "totp", "--key", RFC_KEY, "--time", "29", "--digits", "8", "--window", "1",
            "--code", "94287082",
        ],
        expect![[r#"
            status 0
            out: 1
        "#]],
    );
    // T0 and step move the step count: with T0 = 30 and 60 s steps, 89 s is step 0.
    check(
        &[
            "verify", "totp", "--key", RFC_KEY, "--time", "89", "--t0", "30", "--step", "60",
            "--digits", "8", "--code", "84755224",
        ],
        expect![[r#"
            status 0
            out: 0
        "#]],
    );
}

#[test]
fn bad_input_is_exit_2_with_one_line() {
    check(
        &["hotp", "--key", "313", "--counter", "0"],
        expect![[r#"
            status 2
            err: error: --key: not hexadecimal: 3 digits, an odd number (two digits per byte)
        "#]],
    );
    check(
        &["hotp", "--key", "31zz", "--counter", "0"],
        expect![[r#"
            status 2
            err: error: --key: not hexadecimal: digit 3 is not 0-9 or a-f
        "#]],
    );
    check(
        &["hotp", "--key", "", "--counter", "0"],
        expect![[r#"
            status 2
            err: error: bad key: the key is empty
        "#]],
    );
    check(
        &["hotp", "--base32", "GEZDGNBVGY3TQOJ1", "--counter", "0"],
        expect![[r#"
            status 2
            err: error: --base32: not base32: symbol 16 is not A-Z or 2-7 (or padding in the middle)
        "#]],
    );
    check(
        &["hotp", "--base32", "GEZ", "--counter", "0"],
        expect![[r#"
            status 2
            err: error: --base32: not base32: 3 symbols cannot end a base32 text (lengths are 2, 4, 5 or 7 modulo 8)
        "#]],
    );
    check(
        &["hotp", "--key", RFC_KEY, "--counter", "0", "--digits", "5"],
        expect![[r#"
            status 2
            err: error: --digits: 5 digits is not supported: use 6 to 10 (OCRA: 0 or 4 to 10)
        "#]],
    );
    check(
        &[
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "18446744073709551615",
            "--window",
            "1",
        ],
        expect![[r#"
            status 2
            err: error: --counter: the window runs past the last counter (2^64 - 1)
        "#]],
    );
    check(
        &[
            "verify",
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "0",
            "--code",
            "35915x",
        ],
        expect![[r#"
            status 2
            err: error: --code: the code must contain only the digits 0-9
        "#]],
    );
    check(
        &[
            "verify",
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "0",
            "--code",
            "84755224",
        ],
        expect![[r#"
            status 2
            err: error: --code: the code must be 6 digits long, got 8 characters
        "#]],
    );
    check(
        &["totp", "--key", RFC_KEY, "--time", "59", "--step", "0"],
        expect![[r#"
            status 2
            err: error: --step: the time step must be at least one second
        "#]],
    );
    check(
        &["totp", "--key", RFC_KEY, "--time", "59", "--t0", "60"],
        expect![[r#"
            status 2
            err: error: --time: the time is before the token's T0
        "#]],
    );
    check(
        &[
            "ocra",
            "--suite",
            "OCRA-1:HOTP-SHA1-6:QN08-T1X",
            "--key",
            RFC_KEY,
            "--question",
            "1",
        ],
        expect![[r#"
            status 2
            err: error: --suite: bad OCRA suite part "T1X": time step must be 1-59S, 1-59M or 1-48H
        "#]],
    );
    check(
        &[
            "ocra",
            "--suite",
            "OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1",
            "--key",
            RFC_KEY_32,
            "--question",
            "12345678",
            "--pin",
            "1234",
        ],
        expect![[r#"
            status 2
            err: error: the suite requires a counter
        "#]],
    );
    check(
        &[
            "ocra",
            "--suite",
            "OCRA-1:HOTP-SHA1-6:QN08",
            "--key",
            RFC_KEY,
            "--question",
            "12345678",
            "--pin",
            "1234",
        ],
        expect![[r#"
            status 2
            err: error: --pin: the suite OCRA-1:HOTP-SHA1-6:QN08 does not use a PIN
        "#]],
    );
    check(
        &[
            "ocra",
            "--suite",
            "OCRA-1:HOTP-SHA1-6:QN08",
            "--key",
            RFC_KEY,
            "--question",
            "12345678",
            "--time",
            "1206446790",
        ],
        expect![[r#"
            status 2
            err: error: --time: the suite OCRA-1:HOTP-SHA1-6:QN08 is not time-based
        "#]],
    );
    check(
        &[
            "ocra",
            "--suite",
            "OCRA-1:HOTP-SHA1-6:QN08",
            "--key",
            RFC_KEY,
            "--question",
            "1234567a",
        ],
        expect![[r#"
            status 2
            err: error: bad question: QN challenges are decimal digits
        "#]],
    );
    check(
        &[
            "ocra",
            "--suite",
            "OCRA-1:HOTP-SHA256-8:QN08-PSHA1",
            "--key",
            RFC_KEY_32,
            "--question",
            "12345678",
            "--pin-hash",
            "7110eda4",
        ],
        expect![[r#"
            status 2
            err: error: the PIN hash length does not match the suite's hash function
        "#]],
    );
}

#[test]
fn argument_errors_exit_2() {
    // Both key options, neither, an unknown algorithm, a negative counter, a huge window.
    for args in [
        &[
            "otp",
            "hotp",
            "--key",
            RFC_KEY,
            "--base32",
            "GEZA",
            "--counter",
            "0",
        ][..],
        &["otp", "hotp", "--counter", "0"],
        &[
            "otp",
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "0",
            "--algorithm",
            "md5",
        ],
        &["otp", "hotp", "--key", RFC_KEY, "--counter", "-1"],
        &[
            "otp",
            "hotp",
            "--key",
            RFC_KEY,
            "--counter",
            "0",
            "--window",
            "100001",
        ],
        &[
            "otp",
            "ocra",
            "--suite",
            "OCRA-1:HOTP-SHA1-6:QN08",
            "--key",
            RFC_KEY,
            "--question",
            "1",
            "--pin",
            "1234",
            "--pin-hash",
            "00",
        ],
        &["otp", "verify", "hotp", "--key", RFC_KEY, "--counter", "0"],
        &["otp", "frobnicate"],
    ] {
        let out = okey(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", render(&out));
        assert!(out.stdout.is_empty(), "{args:?}: {}", render(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
}

#[test]
fn keys_from_stdin_and_files() {
    // The RFC key in base32 with spaces, lower case and padding, given on stdin.
    let out = okey_with_stdin(
        &["otp", "hotp", "--base32", "-", "--counter", "1"],
        "gezd gnbv gy3t qojq gezd gnbv gy3t qojq\n",
    );
    expect![[r#"
        status 0
        out: 287082
    "#]]
    .assert_eq(&render(&out));

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("seed.hex");
    std::fs::write(&path, format!("{RFC_KEY}\n")).expect("write key file");
    let arg = format!("@{}", path.display());
    assert_eq!(
        lines(&["hotp", "--key", &arg, "--counter", "2"]),
        ["359152"]
    );

    let missing = format!("@{}", dir.path().join("absent").display());
    let out = okey(&["otp", "hotp", "--key", &missing, "--counter", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: --key {missing}: cannot open the key file: "
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn base32_is_case_padding_and_space_insensitive() {
    // RFC 4648 §10: "foob" is MZXW6YQ=; the same key in every spelling gives the same codes.
    let reference = lines(&[
        "hotp",
        "--key",
        "666f6f62",
        "--counter",
        "7",
        "--window",
        "3",
    ]);
    for spelling in ["MZXW6YQ=", "MZXW6YQ", "mzxw6yq", "MZ XW 6Y Q="] {
        assert_eq!(
            lines(&[
                "hotp",
                "--base32",
                spelling,
                "--counter",
                "7",
                "--window",
                "3"
            ]),
            reference,
            "{spelling}"
        );
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // this test is about the CLI reading the clock
fn totp_defaults_to_the_clock() {
    // Without --time the code is that of the current step: it must equal one of the codes of
    // the steps around a clock read just before (the step may change between the two runs).
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let now = lines(&["totp", "--key", RFC_KEY]);
    let around = lines(&[
        "totp",
        "--key",
        RFC_KEY,
        "--time",
        &before.to_string(),
        "--window",
        "1",
    ]);
    assert_eq!(now.len(), 1);
    assert!(around.contains(&now[0]), "{now:?} not in {around:?}");
}
