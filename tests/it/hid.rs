//! The USB bench end to end: the real `okey` binary runs `okey hid ... --simulate` as a
//! technician against a real `okey serve`; the test then asks the server itself, with its own
//! client, whether the codes the simulated tokens show are accepted.

use std::process::{Command, Output, Stdio};

use okey_e2e::{Client, OKEY_VARS, Server, check, okey_binary, verify_serial};
use okey_server::proto;

/// A technician credential created through the API.
async fn technician(server: &Server) -> String {
    server.key_with_role("bench-1", "technician").await
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn output(out: Output) -> Run {
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `okey hid <args>` as a technician of `server` (credential in the environment).
fn hid(server: &Server, key: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(okey_binary());
    for v in OKEY_VARS {
        cmd.env_remove(v);
    }
    let out = cmd
        .arg("hid")
        .args(args)
        .arg("--server")
        .arg(format!("http://{}", server.addr))
        .env("OKEY_API_KEY", key)
        .env("OKEY_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run okey hid");
    output(out)
}

/// `okey hid <args>` without any server.
fn hid_offline(args: &[&str]) -> Run {
    let mut cmd = Command::new(okey_binary());
    for v in OKEY_VARS {
        cmd.env_remove(v);
    }
    output(
        cmd.arg("hid")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run okey hid"),
    )
}

/// The `next code <serial>: <code>` lines printed with --show-next-code.
fn next_codes(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("next code "))
        .filter_map(|rest| rest.split_once(": "))
        .map(|(s, c)| (s.to_owned(), c.to_owned()))
        .collect()
}

async fn token(c: &mut Client, serial: &str) -> proto::Token {
    c.tokens
        .get_token(proto::GetTokenRequest {
            serial: serial.into(),
        })
        .await
        .expect("get token")
        .into_inner()
}

fn active() -> i32 {
    proto::TokenStatus::Active as i32
}

/// After a failed initialisation the token must not verify: it is absent, or present and not
/// active (today: revoked by AbortInitialisation).
async fn assert_not_active(c: &mut Client, serial: &str) {
    match c
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: serial.into(),
        })
        .await
    {
        Ok(t) => assert_ne!(t.into_inner().status, active(), "{serial}"),
        Err(status) => assert_eq!(status.code(), tonic::Code::NotFound, "{serial}"),
    }
}

#[tokio::test]
async fn init_activates_tokens_whose_next_code_is_accepted_once() {
    let server = Server::start();
    let key = technician(&server).await;
    // Three Nitrokey firmware generations (0.15, 0.8, 0.7) and two YubiKeys.
    let run = hid(
        &server,
        &key,
        &[
            "init",
            "--simulate",
            "--simulate-nitrokey",
            "3",
            "--simulate-yubikey",
            "2",
            "--simulate-serial-base",
            "0x2000",
            "--all",
            "--show-next-code",
        ],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    for line in [
        "initialised NK-00002000 (HOTP slot 0): active on the server, device counter 1",
        "initialised NK-00002002 (HOTP slot 0): active on the server, device counter 1",
        "initialised YK-8195 (YubiKey slot 1): active on the server, device counter 1",
    ] {
        assert!(run.stdout.contains(line), "{line} in {}", run.stdout);
    }
    let codes = next_codes(&run.stdout);
    let serials: Vec<&str> = codes.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        serials,
        [
            "NK-00002000",
            "NK-00002001",
            "NK-00002002",
            "YK-8195",
            "YK-8196"
        ]
    );
    let mut c = server.admin().await;
    for (serial, code) in &codes {
        let t = token(&mut c, serial).await;
        assert_eq!(t.status, active(), "{serial}");
        // The confirmation consumed counter 0; the device's next code is counter 1.
        assert_eq!(t.counter, 1, "{serial}");
        assert_eq!(
            check(&mut c, verify_serial(serial, code)).await,
            (true, "accepted".into()),
            "{serial}"
        );
        assert!(
            !check(&mut c, verify_serial(serial, code)).await.0,
            "{serial}: replay"
        );
        assert_eq!(token(&mut c, serial).await.counter, 2, "{serial}");
    }
}

#[tokio::test]
async fn totp_init_sets_the_clock_and_the_confirmation_code_is_spent() {
    let server = Server::start();
    let key = technician(&server).await;
    let run = hid(
        &server,
        &key,
        &[
            "init",
            "--simulate",
            "--simulate-serial-base",
            "0x2100",
            "--kind",
            "totp",
            "--digits",
            "8",
            "--show-next-code",
        ],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("initialised NK-00002100 (TOTP slot 0): active on the server, clock set to")
    );
    let codes = next_codes(&run.stdout);
    let [(serial, code)] = codes.as_slice() else {
        panic!("one next code expected: {}", run.stdout);
    };
    assert_eq!(code.len(), 8);
    let mut c = server.admin().await;
    let t = token(&mut c, serial).await;
    assert_eq!(t.status, active());
    assert!(t.last_step > 0, "the confirmation used a step");
    assert_eq!(t.drift, 0);
    // Read straight after the confirmation, the device shows the code of the step the
    // confirmation already used: it is not accepted again.
    assert!(!check(&mut c, verify_serial(serial, code)).await.0);
}

#[tokio::test]
async fn a_token_pulled_out_during_init_stays_inactive() {
    let server = Server::start();
    let key = technician(&server).await;
    for (serial, args) in [
        ("NK-00002200", &["--simulate-serial-base", "0x2200"][..]),
        (
            "YK-8800",
            &[
                "--simulate-serial-base",
                "8800",
                "--simulate-nitrokey",
                "0",
                "--simulate-yubikey",
                "1",
            ][..],
        ),
    ] {
        let mut all = vec!["init", "--simulate", "--simulate-pull", "1"];
        all.extend_from_slice(args);
        let run = hid(&server, &key, &all);
        assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr
                .contains("The token was unplugged during the operation"),
            "{}",
            run.stderr
        );
        assert!(!run.stdout.contains("initialised"));
        let mut c = server.admin().await;
        assert_not_active(&mut c, serial).await;
    }
}

#[tokio::test]
async fn list_shows_the_simulated_bench() {
    let run = hid_offline(&[
        "list",
        "--simulate",
        "--simulate-nitrokey",
        "3",
        "--simulate-yubikey",
        "2",
        "--simulate-serial-base",
        "0x00A1B200",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let expected = "\
DEVICE                   FAMILY        FIRMWARE  SERIAL        SLOTS IN USE           PIN TRIES
sim:nitrokey:00A1B200    Nitrokey Pro  0.15      NK-00A1B200   -                      user 3 admin 3
sim:nitrokey:00A1B201    Nitrokey Pro  0.8       NK-00A1B201   -                      user 3 admin 3
sim:nitrokey:00A1B202    Nitrokey Pro  0.7       NK-00A1B202   -                      user 3 admin 3
sim:yubikey:10596867     YubiKey OTP   5.4.3     YK-10596867   -                      -
sim:yubikey:10596868     YubiKey OTP   5.2.7     YK-10596868   -                      -
";
    assert_eq!(run.stdout, expected);
    // Bad input is exit code 2.
    let run = hid_offline(&["list", "--simulate", "--simulate-nitrokey", "0"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("the simulated bench is empty"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn batch_reports_a_pulled_token_and_goes_on() {
    let server = Server::start();
    let key = technician(&server).await;
    let run = hid(
        &server,
        &key,
        &[
            "batch",
            "--simulate",
            "--simulate-nitrokey",
            "4",
            "--simulate-yubikey",
            "1",
            "--simulate-serial-base",
            "0x3000",
            "--simulate-pull",
            "3",
        ],
    );
    // Some tokens failed: a negative answer.
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let mut summary = run.stdout.lines().skip_while(|l| !l.starts_with("batch: "));
    assert_eq!(summary.next(), Some("batch: 4 initialised, 1 failed"));
    let rest: Vec<&str> = summary.collect();
    for line in [
        "  ok      NK-00003000 (HOTP slot 0)",
        "  ok      NK-00003001 (HOTP slot 0)",
        "  ok      NK-00003003 (HOTP slot 0)",
        "  ok      YK-12292 (YubiKey slot 1)",
    ] {
        assert!(rest.contains(&line), "{line} in {}", run.stdout);
    }
    assert!(
        rest.iter().any(|l| l
            .starts_with("  FAILED  NK-00003002 at sim:nitrokey:00003002 (pulled out): ")),
        "{}",
        run.stdout
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("advice: The token was unplugged during the operation")),
        "{}",
        run.stdout
    );
    assert!(
        rest.iter()
            .any(|l| l.starts_with("time: ") && l.contains("tokens per minute"))
    );
    let mut c = server.admin().await;
    for serial in ["NK-00003000", "NK-00003001", "NK-00003003", "YK-12292"] {
        assert_eq!(token(&mut c, serial).await.status, active(), "{serial}");
    }
    assert_not_active(&mut c, "NK-00003002").await;
}

#[tokio::test]
async fn hotp_resync_moves_the_server_to_a_token_that_ran_ahead() {
    let server = Server::start();
    let key = technician(&server).await;
    for (serial, args) in [
        ("NK-00004000", &["--simulate-serial-base", "0x4000"][..]),
        (
            "YK-16400",
            &[
                "--simulate-serial-base",
                "16400",
                "--simulate-nitrokey",
                "0",
                "--simulate-yubikey",
                "1",
            ][..],
        ),
    ] {
        let mut all = vec![
            "resync",
            "--simulate",
            "--simulate-presses",
            "20",
            "--show-next-code",
        ];
        all.extend_from_slice(args);
        let run = hid(&server, &key, &all);
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        // Counter 0 confirmed the initialisation, 1..=20 were pressed away, 21 and 22 are
        // the two resync codes: the server expects 23 next, beyond its normal window of 10.
        assert!(
            run.stdout.contains(&format!(
                "{serial}: the server was behind; its counter moved from 1 to 23"
            )),
            "{}",
            run.stdout
        );
        let mut c = server.admin().await;
        assert_eq!(token(&mut c, serial).await.counter, 23);
        let codes = next_codes(&run.stdout);
        let [(shown, code)] = codes.as_slice() else {
            panic!("one next code expected: {}", run.stdout);
        };
        assert_eq!(shown, serial);
        assert!(check(&mut c, verify_serial(serial, code)).await.0);
        assert!(!check(&mut c, verify_serial(serial, code)).await.0);
    }
}

#[tokio::test]
async fn totp_resync_records_the_drift_and_sets_the_clock() {
    // A wider TOTP window than the default, so a clock two steps fast is still recognised.
    let server = Server::start_with("totp_skew = 3\n");
    let key = technician(&server).await;
    let run = hid(
        &server,
        &key,
        &[
            "resync",
            "--simulate",
            "--simulate-serial-base",
            "0x4100",
            "--kind",
            "totp",
            "--simulate-clock-offset",
            "60",
        ],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("NK-00004100: clock set to "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let drift: i64 = line
        .rsplit_once("drift recorded on the server: ")
        .and_then(|(_, d)| d.strip_suffix(" steps"))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // Two steps fast (one if a step boundary passed between setting the clock and the
    // server's check).
    assert!((1..=2).contains(&drift), "{line}");
    let mut c = server.admin().await;
    assert_eq!(token(&mut c, "NK-00004100").await.drift, drift);
}

/// `okey hid pin ...` on a simulated Nitrokey with secrets in the environment.
fn pin_run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(okey_binary());
    for v in OKEY_VARS {
        cmd.env_remove(v);
    }
    cmd.args([
        "hid",
        "pin",
        "--simulate",
        "--simulate-serial-base",
        "0x5000",
    ])
    .args(args)
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    output(cmd.output().expect("run okey hid pin"))
}

#[test]
fn pin_changes_report_the_tries_left() {
    let run = pin_run(&["--show"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "NK-00005000: counters read; PIN tries left: user 3 admin 3\n"
    );
    // A wrong current PIN costs a try, and the technician is told how many are left.
    let run = pin_run(
        &["--change-user"],
        &[("OKEY_USER_PIN", "000000"), ("OKEY_NEW_PIN", "654321")],
    );
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("advice: Wrong PIN."), "{}", run.stderr);
    assert!(
        run.stderr.contains("PIN tries left: user 2 admin 3"),
        "{}",
        run.stderr
    );
    // The factory PIN of a fresh simulated token, and a new one of 6 characters.
    let run = pin_run(&["--change-user"], &[("OKEY_NEW_PIN", "654321")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("NK-00005000: user PIN changed"));
    // A new user PIN shorter than 6 is refused by the token.
    let run = pin_run(&["--change-user"], &[("OKEY_NEW_PIN", "12345")]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("user PINs need at least 6 characters"),
        "{}",
        run.stderr
    );
    // No new PIN in the environment and nothing on standard input: nothing is changed.
    let run = pin_run(&["--change-admin"], &[]);
    assert_eq!(run.code, Some(2));
    assert!(!run.stdout.contains("changed"));
}

#[tokio::test]
async fn a_failed_init_can_be_run_again() {
    let server = Server::start();
    let key = technician(&server).await;
    let base = ["init", "--simulate", "--simulate-serial-base", "0x2300"];
    let mut pulled = base.to_vec();
    pulled.extend_from_slice(&["--simulate-pull", "1"]);
    assert_eq!(hid(&server, &key, &pulled).code, Some(2));
    let mut again = base.to_vec();
    again.push("--show-next-code");
    let run = hid(&server, &key, &again);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let codes = next_codes(&run.stdout);
    let [(serial, code)] = codes.as_slice() else {
        panic!("one next code expected: {}", run.stdout);
    };
    let mut c = server.admin().await;
    assert_eq!(token(&mut c, serial).await.status, active());
    assert!(check(&mut c, verify_serial(serial, code)).await.0);
}

#[tokio::test]
async fn only_technicians_initialise_and_nothing_is_created_otherwise() {
    let server = Server::start();
    let mut admin = server.admin().await;
    let verifier = admin
        .callers
        .create_api_key(proto::CreateApiKeyRequest {
            name: "radius-1".into(),
            roles: vec!["verifier".into()],
            ..Default::default()
        })
        .await
        .expect("create verifier key")
        .into_inner()
        .api_key;
    let run = hid(
        &server,
        &verifier,
        &["init", "--simulate", "--simulate-serial-base", "0x6000"],
    );
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("PermissionDenied"), "{}", run.stderr);
    assert!(
        run.stderr.contains("advice: The server refused"),
        "{}",
        run.stderr
    );
    let err = admin
        .tokens
        .get_token(proto::GetTokenRequest {
            serial: "NK-00006000".into(),
        })
        .await
        .expect_err("no token was created");
    assert_eq!(err.code(), tonic::Code::NotFound);
    // No server at all: an error before anything is written.
    let mut cmd = Command::new(okey_binary());
    for v in OKEY_VARS {
        cmd.env_remove(v);
    }
    let run = output(
        cmd.args([
            "hid",
            "init",
            "--simulate",
            "--server",
            "http://127.0.0.1:1",
        ])
        .env("OKEY_API_KEY", "unused")
        .stdin(Stdio::null())
        .output()
        .expect("run okey hid"),
    );
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("cannot reach okey"), "{}", run.stderr);
}
