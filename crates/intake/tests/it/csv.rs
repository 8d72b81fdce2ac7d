//! The OATH CSV format: per-line packages and per-line errors.

use okey_intake::{
    Algorithm, FileError, ImportError, OathCsvReader, PackageErrorKind, Position, collect_all,
    collect_partial,
};

use crate::common::{check_hotp_vectors, check_totp_vectors};

fn read(text: &str) -> Vec<Result<okey_intake::KeyPackage, ImportError>> {
    OathCsvReader::new(text.as_bytes()).collect()
}

const GOOD: &str = "\
# stock delivered 2026-03-01
serial, seed, type, digits, step

000123, 3132333435363738393031323334353637383930, hotp, 6,
000124,3132333435363738393031323334353637383930,TOTP,8,30
000125, 3132333435363738393031323334353637383930313233343536373839303132, totp, 8, 30
";

#[test]
fn good_file() {
    let ps: Vec<_> = read(GOOD).into_iter().map(Result::unwrap).collect();
    assert_eq!(ps.len(), 3);
    assert_eq!(ps[0].serial.as_deref(), Some("000123"));
    assert_eq!(ps[0].position, 4);
    assert_eq!(ps[0].algorithm, Algorithm::Hotp);
    assert_eq!(ps[0].counter, Some(0));
    assert_eq!(ps[0].digits(), Some(6));
    check_hotp_vectors(&ps[0]);
    assert_eq!(ps[1].algorithm, Algorithm::Totp);
    assert_eq!(ps[1].time_interval, Some(30));
    assert_eq!(ps[1].digits(), Some(8));
    check_totp_vectors(&ps[1]);
    // No header line is fine too.
    let no_header: String = GOOD
        .lines()
        .filter(|l| !l.starts_with("serial"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        read(&no_header).into_iter().filter(Result::is_ok).count(),
        3
    );
}

#[test]
fn per_line_errors() {
    let text = "\
000001, 3132333435363738393031323334353637383930, hotp, 6, 0
000002, 313233343536373839303132333435363738393, hotp, 6,
000003, 3132333435363738393031323334353637383930, motp, 6,
000004, 3132333435363738393031323334353637383930, totp, 6, 0
000005, 3132333435363738393031323334353637383930, hotp, 5,
000006, 3132333435363738393031323334353637383930, hotp
000001, 3132333435363738393031323334353637383930, totp, 6, 30
, 3132333435363738393031323334353637383930, totp, 6, 30
000009, 31323334, totp, 6, 30
000010, 3132333435363738393031323334353637383930, hotp, 6, 30
";
    let items = read(text);
    assert_eq!(items.len(), 10);
    assert!(items[0].is_ok());
    let kinds: Vec<(Position, PackageErrorKind)> = items[1..]
        .iter()
        .map(|r| match r {
            Err(ImportError::Package(e)) => (e.package.position, e.kind.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    let field = |field: &'static str, reason: &str| PackageErrorKind::InvalidField {
        field,
        reason: reason.into(),
    };
    assert_eq!(
        kinds[0],
        (
            Position::Line(2),
            PackageErrorKind::InvalidHex { field: "seed" }
        )
    );
    assert_eq!(
        kinds[1],
        (
            Position::Line(3),
            PackageErrorKind::UnknownAlgorithm("motp".into())
        )
    );
    assert_eq!(
        kinds[2],
        (
            Position::Line(4),
            field("step", "\"0\" (TOTP needs a step of at least 1 second)")
        )
    );
    assert_eq!(
        kinds[3],
        (Position::Line(5), field("digits", "\"5\" (6 to 10)"))
    );
    assert_eq!(
        kinds[4],
        (Position::Line(6), PackageErrorKind::FieldCount { found: 3 })
    );
    assert!(
        matches!(&kinds[5], (Position::Line(7), PackageErrorKind::DuplicateSerial { serial, first })
        if serial == "000001" && first.position == Position::Line(1))
    );
    assert_eq!(
        kinds[6],
        (Position::Line(8), PackageErrorKind::MissingSerial)
    );
    assert_eq!(
        kinds[7],
        (
            Position::Line(9),
            PackageErrorKind::SecretLength {
                len: 4,
                min: 16,
                max: 128
            }
        )
    );
    assert_eq!(
        kinds[8],
        (
            Position::Line(10),
            field("step", "\"30\" (HOTP takes no step: leave it empty or 0)")
        )
    );
    let Err(ImportError::Package(e)) = &items[6] else {
        unreachable!()
    };
    assert_eq!(
        e.to_string(),
        "line 7 (serial \"000001\"): serial \"000001\" is also used by line 1 (serial \"000001\")"
    );
    // Error texts never carry the seed.
    for item in &items {
        if let Err(e) = item {
            assert!(!e.to_string().contains("3132333435"), "{e}");
        }
    }
    let refusal = collect_all(read(text)).unwrap_err();
    assert_eq!(refusal.packages.len(), 9);
    let partial = collect_partial(read(text));
    assert_eq!(partial.accepted.len(), 1);
    assert_eq!(partial.refused.len(), 9);
}

#[test]
fn file_errors() {
    let long = format!("000001, {}, hotp, 6,\n", "31".repeat(3000));
    assert!(matches!(
        read(&long).as_slice(),
        [Err(ImportError::File(FileError::Csv(_)))]
    ));
    let bin: &[u8] = b"000001, \xff\xfe, hotp, 6,\n";
    let items: Vec<_> = OathCsvReader::new(bin).collect();
    assert!(matches!(
        items.as_slice(),
        [Err(ImportError::File(FileError::Csv(_)))]
    ));
}
