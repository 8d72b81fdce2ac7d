//! Transcript conformance: every transcript in `firmware-fixtures/transcripts` (written from
//! the fact sheet's byte layouts by `firmware-fixtures/tools/make_transcripts.py`) is replayed
//! against the driver (exact requests, parsed answers) and against the simulator (exact
//! answers), so driver, simulator and fact sheet cannot drift apart silently.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use okey_hid::nitrokey::{
    NitrokeyError, NitrokeyPro, Slot, SlotConfig, SlotWrite, TimeMode, Timing,
};
use okey_hid::secret::{AccessCode, Digits, FixedTempPassword, OtpSecret, Pin, TempPassword};
use okey_hid::transport::{Transport, TransportError};
use okey_hid::yubikey::{HotpConfig, IdEncoding, YkSlot, YubiKeyError, YubiKeyOtp};
use okey_token_sim::{NitrokeyProfile, SimDevice, SimTransport, VirtualClock, YubiKeyProfile};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware-fixtures")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Exchange {
    Send(Vec<u8>),
    Get(Vec<u8>),
}

#[derive(Debug, Default)]
struct Call {
    op: String,
    args: HashMap<String, String>,
    exchanges: Vec<Exchange>,
    expect: HashMap<String, String>,
}

#[derive(Debug)]
struct Transcript {
    name: String,
    profile: HashMap<String, String>,
    temp_password: Option<String>,
    calls: Vec<Call>,
}

fn key_values<'a>(words: impl Iterator<Item = &'a str>) -> HashMap<String, String> {
    words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn parse_hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).expect("hex line")
}

fn load_profile(name: &str) -> HashMap<String, String> {
    let text = std::fs::read_to_string(fixtures().join("profiles").join(format!("{name}.profile")))
        .expect("profile file");
    key_values(text.lines().filter(|l| !l.starts_with('#')))
}

fn load(path: &Path) -> Transcript {
    let text = std::fs::read_to_string(path).expect("transcript");
    let mut t = Transcript {
        name: path.display().to_string(),
        profile: HashMap::new(),
        temp_password: None,
        calls: Vec::new(),
    };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
        match head {
            "#" => {}
            "profile" => t.profile = load_profile(rest),
            "temp-password" => t.temp_password = Some(rest.to_owned()),
            "call" => {
                let mut words = rest.split_whitespace();
                t.calls.push(Call {
                    op: words.next().expect("operation").to_owned(),
                    args: key_values(words),
                    ..Call::default()
                });
            }
            ">" | "<" | "expect" => {
                let call = t.calls.last_mut().expect("line inside a call");
                match head {
                    ">" => call.exchanges.push(Exchange::Send(parse_hex(rest))),
                    "<" => call.exchanges.push(Exchange::Get(parse_hex(rest))),
                    _ => call.expect = key_values(rest.split_whitespace()),
                }
            }
            other => panic!("{}: unknown line kind {other:?}", t.name),
        }
    }
    t
}

fn transcripts(family: &str) -> Vec<Transcript> {
    let dir = fixtures().join("transcripts").join(family);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("transcript directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no transcripts in {}", dir.display());
    paths.iter().map(|p| load(p)).collect()
}

/// A transport that plays one call's exchanges and records any deviation.
#[derive(Clone, Default)]
struct Replay(Arc<Mutex<ReplayState>>);

#[derive(Default)]
struct ReplayState {
    queue: VecDeque<Exchange>,
    errors: Vec<String>,
}

impl Replay {
    fn load(&self, call: &Call) {
        let mut s = self.0.lock().expect("replay");
        s.queue = call.exchanges.iter().cloned().collect();
        s.errors.clear();
    }

    fn finish(&self, what: &str) {
        let s = self.0.lock().expect("replay");
        assert!(s.errors.is_empty(), "{what}: {:?}", s.errors);
        assert!(
            s.queue.is_empty(),
            "{what}: {} exchange(s) not used",
            s.queue.len()
        );
    }
}

impl Transport for Replay {
    fn send_feature_report(&mut self, report: &[u8], _: Duration) -> Result<(), TransportError> {
        let mut s = self.0.lock().expect("replay");
        match s.queue.pop_front() {
            Some(Exchange::Send(expected)) if expected == report => Ok(()),
            other => {
                s.errors.push(format!(
                    "driver sent {} but the transcript has {other:?}",
                    hex::encode(report)
                ));
                Err(TransportError::Io("transcript mismatch".into()))
            }
        }
    }

    fn get_feature_report(&mut self, buf: &mut [u8], _: Duration) -> Result<usize, TransportError> {
        let mut s = self.0.lock().expect("replay");
        match s.queue.pop_front() {
            Some(Exchange::Get(data)) if data.len() <= buf.len() => {
                buf[..data.len()].copy_from_slice(&data);
                Ok(data.len())
            }
            other => {
                s.errors.push(format!(
                    "driver read a report; the transcript has {other:?}"
                ));
                Err(TransportError::Io("transcript mismatch".into()))
            }
        }
    }

    fn pause(&mut self, _: Duration) {}
}

fn arg<'a>(call: &'a Call, key: &str) -> &'a str {
    call.args
        .get(key)
        .unwrap_or_else(|| panic!("call {} lacks {key}", call.op))
}

fn nk_slot(s: &str) -> Slot {
    let n: u8 = s[4..].parse().expect("slot number");
    if s.starts_with("hotp") {
        Slot::Hotp(n)
    } else {
        Slot::Totp(n)
    }
}

fn pin(s: &str) -> Pin {
    Pin::new(s).expect("pin")
}

fn u32_any(s: &str) -> u32 {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).expect("hex"),
        None => s.parse().expect("number"),
    }
}

/// Checks a Nitrokey result against the call's expectations.
fn nk_outcome(call: &Call, result: Result<HashMap<String, String>, NitrokeyError>) {
    let what = format!("call {} {:?}", call.op, call.args);
    match result {
        Ok(got) => {
            assert!(
                !call.expect.contains_key("status"),
                "{what}: expected an error"
            );
            for (k, v) in &call.expect {
                assert_eq!(got.get(k), Some(v), "{what}: {k}");
            }
        }
        Err(NitrokeyError::Command { status, .. }) => {
            assert_eq!(
                call.expect.get("status").map(String::as_str),
                Some(status.byte().to_string().as_str()),
                "{what}: unexpected command status {status}"
            );
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

fn run_nitrokey_driver(t: &Transcript) {
    let replay = Replay::default();
    let tmp =
        TempPassword::from_text(t.temp_password.as_deref().expect("temp-password")).expect("tmp");
    let mut calls = t.calls.iter();
    let open = calls.next().expect("first call");
    assert_eq!(open.op, "open", "{}", t.name);
    replay.load(open);
    let mut nk = NitrokeyPro::open_with(
        replay.clone(),
        Timing::default(),
        Box::new(FixedTempPassword(tmp)),
    )
    .expect("open");
    replay.finish(&format!("{} open", t.name));
    nk_outcome(
        open,
        Ok(HashMap::from([
            ("firmware".into(), nk.firmware().to_string()),
            ("serial".into(), format!("{:#010x}", nk.card_serial())),
        ])),
    );
    for call in calls {
        replay.load(call);
        let none = HashMap::new;
        let result: Result<HashMap<String, String>, NitrokeyError> = match call.op.as_str() {
            "user_retry_count" => nk
                .user_retry_count()
                .map(|c| HashMap::from([("count".into(), c.to_string())])),
            "admin_retry_count" => nk
                .admin_retry_count()
                .map(|c| HashMap::from([("count".into(), c.to_string())])),
            "write_slot" => {
                let secret =
                    OtpSecret::new(hex::decode(arg(call, "secret")).expect("hex")).expect("s");
                let counter = call
                    .args
                    .get("counter")
                    .or_else(|| call.args.get("step"))
                    .expect("counter or step")
                    .parse()
                    .expect("number");
                let write = SlotWrite {
                    name: arg(call, "name"),
                    secret: &secret,
                    counter_or_step: counter,
                    config: SlotConfig {
                        eight_digits: arg(call, "digits") == "8",
                        ..SlotConfig::default()
                    },
                    token_id: [0; 13],
                };
                nk.admin(&pin(arg(call, "admin")))
                    .and_then(|mut a| a.write_slot(nk_slot(arg(call, "slot")), &write))
                    .map(|()| none())
            }
            "erase_slot" => nk
                .admin(&pin(arg(call, "admin")))
                .and_then(|mut a| a.erase_slot(nk_slot(arg(call, "slot"))))
                .map(|()| none()),
            "read_slot" => nk.read_slot(nk_slot(arg(call, "slot"))).map(|s| {
                HashMap::from([
                    ("name".into(), s.name.clone()),
                    ("counter".into(), s.counter_or_step.to_string()),
                    (
                        "digits".into(),
                        if s.config.eight_digits { "8" } else { "6" }.into(),
                    ),
                ])
            }),
            "get_code" => nk
                .get_code(nk_slot(arg(call, "slot")), None)
                .map(|c| HashMap::from([("code".into(), c.expose_text().as_str().to_owned())])),
            "set_time" => {
                let mode = if arg(call, "mode") == "force" {
                    TimeMode::Force
                } else {
                    TimeMode::Checked
                };
                nk.set_time(mode, arg(call, "time").parse().expect("time"))
                    .map(|()| none())
            }
            "change_user_pin" => nk
                .change_user_pin(&pin(arg(call, "old")), &pin(arg(call, "new")))
                .map(|()| none()),
            "change_admin_pin" => nk
                .change_admin_pin(&pin(arg(call, "old")), &pin(arg(call, "new")))
                .map(|()| none()),
            "unlock_user_pin" => nk
                .unlock_user_pin(&pin(arg(call, "admin")), &pin(arg(call, "new")))
                .map(|()| none()),
            "factory_reset" => nk.factory_reset(&pin(arg(call, "admin"))).map(|()| none()),
            other => panic!("{}: unknown Nitrokey call {other}", t.name),
        };
        replay.finish(&format!("{} call {}", t.name, call.op));
        nk_outcome(call, result);
    }
}

fn yk_slot(s: &str) -> YkSlot {
    if s == "1" { YkSlot::One } else { YkSlot::Two }
}

fn access(s: &str) -> AccessCode {
    AccessCode::parse_hex(s).expect("access code")
}

fn run_yubikey_driver(t: &Transcript) {
    let replay = Replay::default();
    let mut calls = t.calls.iter();
    let open = calls.next().expect("first call");
    assert_eq!(open.op, "open", "{}", t.name);
    replay.load(open);
    let mut yk = YubiKeyOtp::open(replay.clone()).expect("open");
    replay.finish(&format!("{} open", t.name));
    let status_map = |s: okey_hid::yubikey::YkStatus| {
        HashMap::from([
            ("version".to_owned(), s.version.to_string()),
            ("pgm_seq".to_owned(), s.pgm_seq.to_string()),
            ("touch".to_owned(), s.touch_level.to_string()),
        ])
    };
    // `open` read the status; read it again from the same recorded report for the check.
    let mut opened = Replay::default();
    opened.load(open);
    let st = okey_hid::yubikey::YkStatus::parse(&{
        let mut b = [0u8; 8];
        opened
            .get_feature_report(&mut b, Duration::ZERO)
            .expect("status");
        b
    })
    .expect("status");
    check_yk(open, Ok(status_map(st)));
    for call in calls {
        replay.load(call);
        let result: Result<HashMap<String, String>, YubiKeyError> = match call.op.as_str() {
            "status" => yk.status().map(status_map),
            "serial" => yk
                .serial()
                .map(|s| HashMap::from([("serial".into(), s.to_string())])),
            "program_hotp" => {
                let secret =
                    OtpSecret::new(hex::decode(arg(call, "secret")).expect("hex")).expect("s");
                let new = access(arg(call, "new_access"));
                let config = HotpConfig {
                    secret: &secret,
                    digits: if arg(call, "digits") == "8" {
                        Digits::Eight
                    } else {
                        Digits::Six
                    },
                    imf: arg(call, "imf").parse().expect("imf"),
                    token_id: &[],
                    id_encoding: match arg(call, "id_encoding") {
                        "modhex2" => IdEncoding::Modhex2,
                        _ => IdEncoding::None,
                    },
                    append_cr: arg(call, "append_cr") == "1",
                    ext_flags: u8::try_from(u32_any(arg(call, "ext"))).expect("ext"),
                    new_access_code: &new,
                };
                yk.program_hotp(
                    yk_slot(arg(call, "slot")),
                    &config,
                    &access(arg(call, "current_access")),
                )
                .map(|()| HashMap::new())
            }
            "delete_slot" => yk
                .delete_slot(
                    yk_slot(arg(call, "slot")),
                    &access(arg(call, "current_access")),
                )
                .map(|()| HashMap::new()),
            "swap" => yk.swap_slots().map(|()| HashMap::new()),
            other => panic!("{}: unknown YubiKey call {other}", t.name),
        };
        replay.finish(&format!("{} call {}", t.name, call.op));
        check_yk(call, result);
    }
}

fn check_yk(call: &Call, result: Result<HashMap<String, String>, YubiKeyError>) {
    let what = format!("call {} {:?}", call.op, call.args);
    match result {
        Ok(got) => {
            assert!(
                !call.expect.contains_key("error"),
                "{what}: expected an error"
            );
            for (k, v) in &call.expect {
                assert_eq!(got.get(k), Some(v), "{what}: {k}");
            }
        }
        Err(YubiKeyError::Rejected(_)) => {
            assert_eq!(
                call.expect.get("error").map(String::as_str),
                Some("rejected"),
                "{what}"
            );
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Feeds the recorded requests to a fresh simulated device built from the profile and checks
/// every answer byte for byte.
fn run_simulator(t: &Transcript) {
    let clock = VirtualClock::new();
    let p = &t.profile;
    let mut device = match p.get("family").map(String::as_str) {
        Some("nitrokey-pro") => {
            let minor: u8 = p["firmware"]
                .split('.')
                .nth(1)
                .expect("minor")
                .parse()
                .expect("minor");
            let mut profile = NitrokeyProfile::new(minor, u32_any(&p["card_serial"])).instant();
            profile.usb_serial = p["usb_serial"].clone();
            SimDevice::nitrokey("replay", profile, &clock)
        }
        Some("yubikey-otp") => {
            let v: Vec<u8> = p["firmware"]
                .split('.')
                .map(|x| x.parse().expect("version"))
                .collect();
            let profile = YubiKeyProfile::new((v[0], v[1], v[2]), u32_any(&p["serial"])).instant();
            SimDevice::yubikey("replay", profile)
        }
        other => panic!("{}: unknown family {other:?}", t.name),
    };
    device.plug(clock.now_ms());
    let shared = Arc::new(Mutex::new(device));
    let mut transport = SimTransport::open(&shared, &clock).expect("plugged");
    for call in &t.calls {
        for (i, x) in call.exchanges.iter().enumerate() {
            match x {
                Exchange::Send(r) => transport
                    .send_feature_report(r, Duration::ZERO)
                    .expect("send"),
                Exchange::Get(expected) => {
                    let mut buf = vec![0u8; expected.len()];
                    let n = transport
                        .get_feature_report(&mut buf, Duration::ZERO)
                        .expect("get");
                    assert_eq!(
                        hex::encode(&buf[..n]),
                        hex::encode(expected),
                        "{}: simulator answer #{i} to call {} {:?}",
                        t.name,
                        call.op,
                        call.args
                    );
                }
            }
        }
    }
}

#[test]
fn nitrokey_transcripts_replay_against_the_driver() {
    for t in transcripts("nitrokey") {
        run_nitrokey_driver(&t);
    }
}

#[test]
fn nitrokey_transcripts_replay_against_the_simulator() {
    for t in transcripts("nitrokey") {
        run_simulator(&t);
    }
}

#[test]
fn yubikey_transcripts_replay_against_the_driver() {
    for t in transcripts("yubikey") {
        run_yubikey_driver(&t);
    }
}

#[test]
fn yubikey_transcripts_replay_against_the_simulator() {
    for t in transcripts("yubikey") {
        run_simulator(&t);
    }
}

#[test]
fn transcripts_cover_every_driver_command() {
    let mut ops: Vec<String> = transcripts("nitrokey")
        .into_iter()
        .chain(transcripts("yubikey"))
        .flat_map(|t| t.calls.into_iter().map(|c| c.op))
        .collect();
    ops.sort();
    ops.dedup();
    for op in [
        "admin_retry_count",
        "change_admin_pin",
        "change_user_pin",
        "delete_slot",
        "erase_slot",
        "factory_reset",
        "get_code",
        "program_hotp",
        "read_slot",
        "serial",
        "set_time",
        "status",
        "swap",
        "unlock_user_pin",
        "user_retry_count",
        "write_slot",
    ] {
        assert!(ops.iter().any(|o| o == op), "no transcript exercises {op}");
    }
}
