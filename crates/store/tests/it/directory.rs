//! The directory: an import is checked as a whole, names the line it refuses, writes nothing
//! then, and updates entries it already holds.

use okey_domain::org::{Function, OrgError, Person, PersonId, Uai, Unit, UnitId, UnitKind};
use okey_store::*;

use crate::common::*;

fn at<T>(origin: &str, value: T) -> Located<T> {
    Located {
        origin: origin.into(),
        value,
    }
}

pub(crate) fn units() -> Vec<Located<Unit>> {
    let school = |uai: &str| UnitKind::School {
        uai: Uai::parse(uai).expect("uai"),
        under_contract: true,
    };
    vec![
        at(
            "units.csv line 2",
            Unit::new("RECTORAT", "Rectorat", UnitKind::Rectorat, None).expect("unit"),
        ),
        at(
            "units.csv line 3",
            Unit::new(
                "CIRC-1",
                "Circonscription 1",
                UnitKind::District,
                Some("RECTORAT"),
            )
            .expect("unit"),
        ),
        at(
            "units.csv line 4",
            Unit::new("0750654D", "Lycée", school("0750654D"), Some("RECTORAT")).expect("unit"),
        ),
        at(
            "units.csv line 5",
            Unit::new("9740100R", "École", school("9740100R"), Some("CIRC-1")).expect("unit"),
        ),
    ]
}

pub(crate) fn person(line: usize, id: &str, unit: &str, f: &[Function]) -> Located<Person> {
    at(
        &format!("people.csv line {line}"),
        Person::new(
            id,
            &format!("Name {id}"),
            &format!("{id}@ac-example.fr"),
            unit,
            f,
            None,
        )
        .expect("person"),
    )
}

pub(crate) fn pid(s: &str) -> PersonId {
    PersonId::parse(s).expect("id")
}

fn an_import_loads_people_derives_managers_and_updates_on_reimport(db: &Db) {
    let s = db.open();
    let people = vec![
        person(2, "head", "0750654D", &[Function::HeadOfSchool]),
        person(3, "teacher", "0750654D", &[Function::Staff]),
        person(4, "ien", "CIRC-1", &[Function::DistrictInspector]),
        person(5, "director", "9740100R", &[Function::SchoolDirector]),
    ];
    let r = s
        .import_directory(units(), people, &actor())
        .expect("import");
    assert_eq!(
        r,
        DirectoryImport {
            units_created: 4,
            units_updated: 0,
            people_created: 4,
            people_updated: 0
        }
    );
    let teacher = s.person(&pid("TEACHER")).expect("read").expect("present");
    assert_eq!(teacher.functions, vec![Function::Staff]);
    let tree = s.org_tree().expect("tree");
    assert_eq!(
        tree.manager(&teacher, &s).expect("n+1").map(|p| p.id),
        Some(pid("head"))
    );
    let director = s.person(&pid("director")).expect("read").expect("present");
    assert_eq!(
        tree.manager(&director, &s).expect("n+1").map(|p| p.id),
        Some(pid("ien"))
    );

    // The teacher becomes a deputy head: updated, not duplicated.
    let r = s
        .import_directory(
            vec![],
            vec![person(2, "teacher", "0750654D", &[Function::DeputyHead])],
            &actor(),
        )
        .expect("reimport");
    assert_eq!((r.people_created, r.people_updated), (0, 1));
    let teacher = s.person(&pid("teacher")).expect("read").expect("present");
    assert_eq!(teacher.functions, vec![Function::DeputyHead]);
    let tree = s.org_tree().expect("tree");
    assert!(okey_domain::org::manages_lot(
        &teacher,
        &tree,
        okey_domain::org::LotKind::School2D,
        &UnitId::parse("0750654D").expect("id")
    ));
    assert!(s.audit_verify().expect("audit").ok());
}

fn a_bad_entry_names_its_line_and_nothing_is_written(db: &Db) {
    let s = db.open();
    let check = |units: Vec<Located<Unit>>, people: Vec<Located<Person>>, expected: &str| {
        let e = s
            .import_directory(units, people, &actor())
            .expect_err("refused");
        assert!(
            e.to_string().contains(expected),
            "{e} should say {expected}"
        );
        assert_eq!(s.person(&pid("ok")).expect("read"), None);
        assert!(s.org_tree().expect("tree").units().next().is_none());
    };
    let ok = || person(2, "ok", "0750654D", &[Function::Staff]);
    // A head of school in a primary school.
    check(
        units(),
        vec![ok(), person(3, "x", "9740100R", &[Function::HeadOfSchool])],
        "people.csv line 3",
    );
    // A unit nobody declared.
    check(
        units(),
        vec![ok(), person(7, "x", "NOWHERE", &[])],
        "people.csv line 7",
    );
    // A manager nobody knows.
    let mut orphan = person(4, "x", "0750654D", &[]);
    orphan.value.manager = Some(pid("ghost"));
    check(units(), vec![ok(), orphan], "people.csv line 4");
    // A district under a district.
    let mut u = units();
    u.push(at(
        "units.csv line 9",
        Unit::new("CIRC-2", "x", UnitKind::District, Some("CIRC-1")).expect("unit"),
    ));
    check(u, vec![ok()], "units.csv line 9");
    // The same person twice.
    check(
        units(),
        vec![ok(), person(5, "OK", "0750654D", &[])],
        "people.csv line 5",
    );
    let e = OrgError::UnknownUnit("x".into());
    assert!(!e.to_string().is_empty());
}

fn an_api_key_is_bound_to_a_person_of_the_directory_or_not_created(db: &Db) {
    let s = db.open();
    s.import_directory(
        units(),
        vec![person(2, "head", "0750654D", &[Function::HeadOfSchool])],
        &actor(),
    )
    .expect("import");
    let roles = ["manager".to_string()];
    // Nobody of that id: refused, and the key does not exist afterwards.
    let err = s
        .add_api_key_for("ghost", [1; 32], &roles, &pid("nobody"), &actor())
        .expect_err("unknown person");
    assert!(err.to_string().contains("no person nobody"), "{err}");
    assert!(s.api_key(&[1; 32]).expect("read").is_none());
    assert!(s.list_api_keys().expect("list").is_empty());

    s.add_api_key_for("marie", [2; 32], &roles, &pid("HEAD"), &actor())
        .expect("bound");
    s.add_api_key("radius", [3; 32], &["verifier".to_string()], &actor())
        .expect("unbound");
    assert_eq!(s.caller_person("marie").expect("read"), Some(pid("head")));
    assert_eq!(s.caller_person("radius").expect("read"), None);
    assert_eq!(s.caller_person("nobody").expect("read"), None);
    assert_eq!(s.callers_of(&pid("head")).expect("read"), ["marie"]);
    // A revoked key no longer acts for the person.
    s.revoke_api_key("marie", &actor()).expect("revoke");
    assert!(s.callers_of(&pid("head")).expect("read").is_empty());

    let (p, scope) = s
        .person_scope(&pid("head"))
        .expect("read")
        .expect("present");
    assert_eq!(p.unit.as_str(), "0750654D");
    assert!(scope.manages(
        okey_domain::org::LotKind::School2D,
        &UnitId::parse("0750654D").expect("id")
    ));
    assert!(s.person_scope(&pid("nobody")).expect("read").is_none());
    // The scope's lots by kind and unit: the school's 2D lot, not the district's.
    for (id, kind, unit) in [
        ("2D-L", okey_domain::org::LotKind::School2D, "0750654D"),
        ("1D-C", okey_domain::org::LotKind::District1D, "CIRC-1"),
    ] {
        s.create_lot(
            LotRow {
                id: id.into(),
                kind,
                unit: unit.into(),
                name: id.into(),
                validity_days: None,
                created_at: 1,
            },
            &actor(),
        )
        .expect("lot");
    }
    let lots: Vec<String> = s
        .scope_lots(&scope)
        .expect("read")
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(lots, ["2D-L"]);
    assert!(s.audit_verify().expect("audit").ok());
}

both!(
    an_import_loads_people_derives_managers_and_updates_on_reimport,
    a_bad_entry_names_its_line_and_nothing_is_written,
    an_api_key_is_bound_to_a_person_of_the_directory_or_not_created,
);
