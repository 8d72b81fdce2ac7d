//! Architecture invariants that a test can check: the core depends on nothing async, nothing
//! that does I/O on its behalf, and reads no clock.

use std::path::Path;
use std::process::Command;

#[test]
fn otp_depends_on_nothing_async_or_networked() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "okey-otp",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    for forbidden in [
        "tokio", "futures", "async-", "mio", "hyper", "rusqlite", "hidapi", "rusb", "tonic",
    ] {
        assert!(
            !tree.lines().any(|l| l.starts_with(forbidden)),
            "okey-otp must not depend on {forbidden}:\n{tree}"
        );
    }
}

#[test]
fn otp_source_reads_no_clock_and_does_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.starts_with("//!"),
            "{} must start with a //! line",
            path.display()
        );
        for forbidden in [
            "SystemTime",
            "Instant",
            "std::fs",
            "std::net",
            "std::io",
            "std::env",
            "println!",
            "eprintln!",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                path.display()
            );
        }
    }
}
