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
