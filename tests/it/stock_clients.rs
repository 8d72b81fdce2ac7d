//! okey driven by stock gRPC clients it did not write: Python grpcio, grpcio-reflection (which
//! asks for `grpc.reflection.v1alpha`) and the standard health client.

use okey_e2e::Server;
use serde_json::Value;

fn names(v: &Value) -> Vec<String> {
    v["services"]
        .as_array()
        .expect("a list of services")
        .iter()
        .map(|s| s.as_str().expect("a name").to_owned())
        .collect()
}

#[tokio::test]
async fn reflection_v1alpha_lists_every_service_and_health_reports_each_serving() {
    let server = Server::start();
    let listed = names(&server.stock_client(&["services"], ""));
    let mut expected: Vec<String> = okey_server::serve::SERVED
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    expected.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "reflection lists what the server serves");
    for name in [
        "okey.v1.AuthService",
        "okey.v1.TokenService",
        "okey.v1.AuditService",
        "okey.v1.CallerService",
        "okey.v1.LifecycleService",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(listed.iter().any(|l| l == name), "{name} in {listed:?}");
    }

    // Every listed service, and the server as a whole (""), is SERVING to the health client.
    let mut args = vec!["health", ""];
    args.extend(listed.iter().map(String::as_str));
    let health = server.stock_client(&args, "");
    for name in args.iter().skip(1) {
        assert_eq!(health["health"][*name], "SERVING", "{name}: {health}");
    }
    // An unknown service is not found, so the check above can fail.
    let unknown = server.stock_client(&["health", "okey.v1.NoSuchService"], "");
    assert_eq!(unknown["health"]["okey.v1.NoSuchService"], "NOT_FOUND");

    // Messages built from reflection alone make a working call.
    let who = server.stock_client(
        &[
            "call",
            "okey.v1.CallerService",
            "WhoAmI",
            &server.admin_header(),
        ],
        "{}",
    );
    assert_eq!(who["code"], "OK", "{who}");
    assert_eq!(who["response"]["name"], "admin", "{who}");
}

/// `SERVICE METHOD` called by the stock client as the admin, with `request` as JSON.
fn call(server: &Server, service: &str, method: &str, request: &Value) -> Value {
    server.stock_client(
        &["call", service, method, &server.admin_header()],
        &request.to_string(),
    )
}

const MEGABYTE: usize = 1 << 20;

#[tokio::test]
async fn a_megabyte_field_gets_a_short_invalid_argument_not_its_echo() {
    let server = Server::start();
    let big = serde_json::json!({ "$repeat": ["x", MEGABYTE] });
    let cases = [
        (
            "okey.v1.TokenService",
            "ImportTokens",
            serde_json::json!({ "tokens": [{
                "serial": big,
                "kind": "HARDWARE",
                "otp": { "type": "HOTP", "digits": 6 },
                "seed_hex": okey_e2e::RFC_SECRET_HEX,
            }]}),
            "token 1",
        ),
        (
            "okey.v1.CallerService",
            "CreateApiKey",
            serde_json::json!({ "name": "fe-big", "roles": [big] }),
            "unknown role",
        ),
        (
            "okey.v1.TokenService",
            "GetToken",
            serde_json::json!({ "serial": big }),
            "serial",
        ),
    ];
    for (service, method, request, says) in cases {
        let answer = call(&server, service, method, &request);
        assert_eq!(
            answer["code"], "INVALID_ARGUMENT",
            "{method}: {answer:.300}"
        );
        let len = answer["details_len"].as_u64().expect("a length");
        assert!(
            len <= okey_server::status::MAX_MESSAGE as u64,
            "{method}: {len} bytes"
        );
        let details = answer["details"].as_str().expect("details");
        assert!(details.contains(says), "{method}: {details}");
    }
    // The refused requests wrote nothing.
    let mut admin = server.admin().await;
    assert!(admin.serials().await.is_empty());
    let keys = call(
        &server,
        "okey.v1.CallerService",
        "ListApiKeys",
        &serde_json::json!({}),
    );
    assert_eq!(
        keys["response"]["principals"].as_array().map(Vec::len),
        Some(1),
        "{keys}"
    );
}

#[tokio::test]
async fn a_message_that_is_not_protobuf_is_the_callers_fault_and_is_counted() {
    let (server, metrics) = okey_e2e::with_metrics();
    let cases = [
        // Not protobuf at all: a varint that never ends.
        ("okey.v1.AuthService", "Verify", "ffffffff"),
        // Field 2 (passcode) is a string whose bytes are not UTF-8.
        ("okey.v1.AuthService", "Verify", "1202fffe"),
        // A seed-file upload (a client stream) whose first chunk does not decode.
        ("okey.v1.TokenService", "ImportSeedFile", "0aff"),
    ];
    for (service, method, hex) in cases {
        let answer =
            server.stock_client(&["raw", service, method, hex, &server.admin_header()], "");
        assert_eq!(
            answer["code"], "INVALID_ARGUMENT",
            "{method} {hex}: {answer}"
        );
        let details = answer["details"].as_str().expect("details");
        assert!(details.contains("not valid protobuf"), "{details}");
    }
    let body = okey_e2e::scrape(metrics);
    assert_eq!(okey_e2e::sample(&body, "okey_malformed_messages_total"), 3);
}

#[tokio::test]
async fn a_request_with_two_authorization_headers_is_refused() {
    let server = Server::start();
    let admin = server.admin_header();
    let other = "authorization=Bearer okey_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let who = |headers: &[&str]| {
        let mut args = vec!["call", "okey.v1.CallerService", "WhoAmI"];
        args.extend_from_slice(headers);
        server.stock_client(&args, "{}")
    };
    assert_eq!(who(&[&admin])["code"], "OK");
    for headers in [
        [admin.as_str(), other],
        [other, admin.as_str()],
        [admin.as_str(), admin.as_str()],
    ] {
        let answer = who(&headers);
        assert_eq!(answer["code"], "UNAUTHENTICATED", "{headers:?}: {answer}");
        assert!(
            answer["details"]
                .as_str()
                .is_some_and(|d| d.contains("exactly one authorization header")),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn fields_that_do_not_apply_are_refused_with_a_sentence() {
    let server = Server::start();
    let token = |otp: Value, counter: u64| {
        serde_json::json!({ "tokens": [{
            "serial": "F15",
            "kind": "HARDWARE",
            "otp": otp,
            "seed_hex": okey_e2e::RFC_SECRET_HEX,
            "counter": counter.to_string(),
        }]})
    };
    let suite = "OCRA-1:HOTP-SHA1-6:QN08";
    let cases = [
        (
            token(
                serde_json::json!({ "type": "HOTP", "ocra_suite": { "$repeat": ["O", MEGABYTE] } }),
                0,
            ),
            "has no OCRA suite",
        ),
        (
            token(serde_json::json!({ "type": "HOTP", "step": u32::MAX }), 0),
            "has no TOTP step or T0",
        ),
        (
            token(
                serde_json::json!({ "type": "HOTP", "t0": u64::MAX.to_string() }),
                0,
            ),
            "has no TOTP step or T0",
        ),
        (
            token(
                serde_json::json!({ "type": "TOTP", "ocra_suite": suite }),
                0,
            ),
            "has no OCRA suite",
        ),
        (
            token(
                serde_json::json!({ "type": "OCRA", "ocra_suite": suite, "digits": 8 }),
                0,
            ),
            "digits are its suite's",
        ),
        (
            token(
                serde_json::json!({ "type": "OCRA", "ocra_suite": suite, "algorithm": "SHA256" }),
                0,
            ),
            "hash is its suite's",
        ),
        (
            token(
                serde_json::json!({ "type": "OCRA", "ocra_suite": suite, "step": 30 }),
                0,
            ),
            "has no TOTP step or T0",
        ),
        (
            token(serde_json::json!({ "type": "TOTP" }), 5),
            "has no counter",
        ),
    ];
    for (request, says) in cases {
        let answer = call(&server, "okey.v1.TokenService", "ImportTokens", &request);
        assert_eq!(answer["code"], "INVALID_ARGUMENT", "{says}: {answer:.300}");
        let details = answer["details"].as_str().expect("details");
        assert!(details.contains(says), "{says}: {details}");
        assert!(details.contains("token 1 (\"F15\")"), "{details}");
    }
    let created = call(
        &server,
        "okey.v1.TokenService",
        "CreateToken",
        &serde_json::json!({ "otp": { "type": "HOTP", "step": 60 } }),
    );
    assert_eq!(created["code"], "INVALID_ARGUMENT", "{created}");
    let long_nas = call(
        &server,
        "okey.v1.AuthService",
        "Verify",
        &serde_json::json!({
            "subject": { "serial": "F15" },
            "passcode": "755224",
            "client": { "nas_identifier": { "$repeat": ["n", 254] } },
        }),
    );
    assert_eq!(long_nas["code"], "INVALID_ARGUMENT", "{long_nas}");
    let mut admin = server.admin().await;
    assert!(admin.serials().await.is_empty(), "nothing was written");

    // The same fields where they apply are taken.
    let hotp = call(
        &server,
        "okey.v1.TokenService",
        "ImportTokens",
        &token(serde_json::json!({ "type": "HOTP" }), 3),
    );
    assert_eq!(hotp["code"], "OK", "{hotp}");
    let got = call(
        &server,
        "okey.v1.TokenService",
        "GetToken",
        &serde_json::json!({ "serial": "F15" }),
    );
    assert_eq!(got["response"]["counter"], "3", "{got}");
    let mut ocra = token(
        serde_json::json!({ "type": "OCRA", "ocra_suite": suite, "digits": 6, "algorithm": "SHA1" }),
        0,
    );
    ocra["tokens"][0]["serial"] = "F16".into();
    let ocra = call(&server, "okey.v1.TokenService", "ImportTokens", &ocra);
    assert_eq!(ocra["code"], "OK", "{ocra}");
}

/// Serials are exact; holders are logins and fold to lower case wherever they are stored or
/// looked up: `Bob` and `bob` are one person, Verify for `BOB` finds them.
#[tokio::test]
async fn serials_are_exact_and_holders_fold_to_lower_case() {
    let server = Server::start();
    let import = call(
        &server,
        "okey.v1.TokenService",
        "ImportTokens",
        &serde_json::json!({ "tokens": [
            { "serial": "new0", "kind": "HARDWARE", "otp": { "type": "HOTP", "digits": 6 },
              "seed_hex": okey_e2e::RFC_SECRET_HEX, "holder": "Bob" },
            { "serial": "NEW0", "kind": "HARDWARE", "otp": { "type": "HOTP", "digits": 6 },
              "seed_hex": okey_e2e::RFC_SECRET_HEX },
        ]}),
    );
    assert_eq!(import["code"], "OK", "{import}");
    let assign = call(
        &server,
        "okey.v1.TokenService",
        "AssignToken",
        &serde_json::json!({ "serial": "NEW0", "holder": "bob" }),
    );
    assert_eq!(assign["code"], "OK", "{assign}");
    assert_eq!(assign["response"]["holder"], "bob", "{assign}");

    let listed = call(
        &server,
        "okey.v1.TokenService",
        "ListTokens",
        &serde_json::json!({ "holder": "BoB" }),
    );
    assert_eq!(listed["code"], "OK", "{listed}");
    let mut held: Vec<(String, String)> = listed["response"]["tokens"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["serial"].as_str().unwrap_or_default().to_owned(),
                        t["holder"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    held.sort();
    assert_eq!(
        held,
        [("NEW0".into(), "bob".into()), ("new0".into(), "bob".into())],
        "one person holds both keys: {listed}"
    );

    let verify = |user: &str, code: String| {
        call(
            &server,
            "okey.v1.AuthService",
            "Verify",
            &serde_json::json!({ "subject": { "user": user }, "passcode": code }),
        )
    };
    let answer = verify(
        "BOB",
        okey_e2e::reference_hotp(b"12345678901234567890", 0, 6),
    );
    assert_eq!(answer["code"], "OK", "{answer}");
    assert_eq!(answer["response"]["result"], "ACCEPT", "{answer}");

    // Serials stay exact: `New0` is neither key.
    let get = call(
        &server,
        "okey.v1.TokenService",
        "GetToken",
        &serde_json::json!({ "serial": "New0" }),
    );
    assert_eq!(get["code"], "NOT_FOUND", "{get}");
}
