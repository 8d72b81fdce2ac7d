//! The directory through a real `okey serve` and the `okey directory` CLI: import all or
//! nothing, show a person or a unit, and who a caller acts as (a key bound to a person, a portal
//! naming its person in `okey-acting-person`).

use okey_e2e::Server;
use okey_server::proto;
use serde_json::Value;
use tonic::Code;

const UNITS: &str = "id,kind,name,parent,under_contract
RECTORAT,rectorat,Rectorat,,
SUPPORT,support_centre,Centre de support,RECTORAT,
9740001H,school,Lycée Leconte de Lisle,RECTORAT,yes
0750654D,school,Lycée Henri-IV,RECTORAT,yes
9741234Y,school,Cours privé,RECTORAT,no
CIRC-1,district,Circonscription 1,RECTORAT,
9740100R,school,École C,CIRC-1,yes
";

const PEOPLE: &str = "id,name,email,unit,functions,manager
m.head,Marie Head,m.head@ac-example.fr,9740001H,head,
j.prof,Jean Prof,j.prof@ac-example.fr,9740001H,staff;ent,
b.head,Bruno Head,b.head@ac-example.fr,0750654D,head,
i.ien,Inès Ien,i.ien@ac-example.fr,CIRC-1,ien,
d.dir,Denis Dir,d.dir@ac-example.fr,9740100R,director,
e.prof,Eva Prof,e.prof@ac-example.fr,9740100R,staff,
s.agent,Sam Agent,s.agent@ac-example.fr,SUPPORT,support,
";

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().expect("dir"),
        }
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("path").to_owned()
    }
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn show_json(server: &Server, id: &str, key: Option<&str>) -> (Option<i32>, Value, String) {
    let env: Vec<(&str, &str)> = key.map(|k| vec![("OKEY_API_KEY", k)]).unwrap_or_default();
    let o = server.cli(&["directory", "show", id, "--json"], &env);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code(), v, stderr(&o))
}

#[tokio::test]
async fn the_exports_import_and_each_entry_shows_as_a_table_or_json() {
    let server = Server::start();
    let f = Files::new();
    let (units, people) = (f.write("units.csv", UNITS), f.write("people.csv", PEOPLE));
    let o = server.cli(&["directory", "import", &people, &units, "--json"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(summary["units_created"], 7);
    assert_eq!(summary["people_created"], 7);
    assert!(
        stderr(&o).contains("sent people.csv: 8 lines"),
        "{}",
        stderr(&o)
    );

    let o = server.cli(&["directory", "show", "J.PROF"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for line in [
        "PERSON     j.prof",
        "UNIT       9740001H (Lycée Leconte de Lisle, school)",
        "FUNCTIONS  ent, staff",
        "N+1        m.head (Marie Head)",
        "MANAGES    -",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    // 1D: the teacher's N+1 is the director, N+2 the IEN, whose lot is the district's.
    let (code, v, _) = show_json(&server, "e.prof", None);
    assert_eq!(code, Some(0));
    assert_eq!(v["person"]["manager"]["id"], "d.dir");
    assert_eq!(v["person"]["second_manager"]["id"], "i.ien");
    let (_, v, _) = show_json(&server, "i.ien", None);
    assert_eq!(v["person"]["manages"], serde_json::json!(["1d CIRC-1"]));
    let (_, v, _) = show_json(&server, "s.agent", None);
    assert_eq!(v["person"]["found_key_desk"], true);
    assert_eq!(
        v["person"]["manages"],
        serde_json::json!(["rectorat RECTORAT"])
    );

    let (_, v, _) = show_json(&server, "9740100r", None);
    assert_eq!(v["unit"]["parent"], "CIRC-1");
    assert_eq!(v["unit"]["home_lot"], "1d CIRC-1");
    assert_eq!(v["unit"]["people"], 2);
    let o = server.cli(&["directory", "show", "9741234Y"], &[]);
    let text = stdout(&o);
    assert!(text.contains("hors contrat (not served)"), "{text}");
    assert!(text.contains("outside contract"), "{text}");
    let (_, v, _) = show_json(&server, "CIRC-1", None);
    assert_eq!(v["unit"]["children"], serde_json::json!(["9740100R"]));

    let o = server.cli(&["directory", "show", "nobody"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("NotFound"), "{}", stderr(&o));

    // Importing again updates: nothing new.
    let o = server.cli(&["directory", "import", &people, &units, "--json"], &[]);
    let summary: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(summary["people_updated"], 7);
    assert_eq!(summary["people_created"], 0);
}

#[tokio::test]
async fn a_bad_row_names_its_line_and_nothing_is_written() {
    let server = Server::start();
    let f = Files::new();
    let units = f.write("units.csv", UNITS);
    // Line 3: a unit the directory does not hold.
    let bad = f.write(
        "people.csv",
        "id,name,email,unit,functions\nok.one,Ok One,ok.one@ac-example.fr,9740001H,staff\n\
         bad.two,Bad Two,bad.two@ac-example.fr,9999999Z,staff\n",
    );
    let o = server.cli(&["directory", "import", &bad, &units], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("people.csv line 3"), "{}", stderr(&o));
    let (code, _, _) = show_json(&server, "ok.one", None);
    assert_eq!(code, Some(2), "the good row was not written either");
    let (code, _, _) = show_json(&server, "9740001H", None);
    assert_eq!(code, Some(2), "nor the units");

    // A function that does not fit its unit: a head of school in a primary school.
    let misplaced = f.write(
        "people.csv",
        "id,name,email,unit,functions\nx.head,X,x@ac-example.fr,9740100R,head\n",
    );
    let o = server.cli(&["directory", "import", &misplaced, &units], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("people.csv line 2") && stderr(&o).contains("head"),
        "{}",
        stderr(&o)
    );

    // An unknown column refuses the file.
    let extra = f.write(
        "people.csv",
        "id,name,email,unit,functions,phone\nok.one,Ok One,ok.one@ac-example.fr,9740001H,staff,0262\n",
    );
    let o = server.cli(&["directory", "import", &extra, &units], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown column \"phone\""),
        "{}",
        stderr(&o)
    );

    // A bad UAI check letter in units.csv names its line.
    let bad_units = f.write(
        "units.csv",
        "id,kind,name,parent,under_contract\nRECTORAT,rectorat,R,,\n9740001A,school,L,RECTORAT,yes\n",
    );
    let good_people = f.write("good.csv", "id,name,email,unit,functions\n");
    let o = server.cli(&["directory", "import", &good_people, &bad_units], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("units.csv line 3") && stderr(&o).contains("check letter"),
        "{}",
        stderr(&o)
    );
    let (code, _, _) = show_json(&server, "RECTORAT", None);
    assert_eq!(code, Some(2), "nothing written");
}

/// 2.5 MiB of people: more than one chunk, and more than a single gRPC message may carry by
/// default would be if sent whole at 300,000 rows (the chunking is what makes it pass).
#[tokio::test]
async fn a_large_export_travels_in_chunks() {
    let server = Server::start();
    let f = Files::new();
    let units = f.write("units.csv", UNITS);
    let mut people = String::from("id,name,email,unit,functions\n");
    let n = 40_000;
    for i in 0..n {
        people.push_str(&format!(
            "p{i:06},Personne numéro {i},p{i:06}@ac-example.fr,9740001H,staff\n"
        ));
    }
    assert!(people.len() > 2 << 20);
    let path = f.write("people.csv", &people);
    let o = server.cli(&["directory", "import", &path, &units, "--json"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(summary["people_read"], n);
    let (_, v, _) = show_json(&server, "9740001H", None);
    assert_eq!(v["unit"]["people"], n);
}

#[tokio::test]
async fn a_key_bound_to_a_person_acts_as_them_and_a_manager_key_must_be_bound() {
    let server = Server::start();
    server.import_directory(UNITS, PEOPLE);
    let mut admin = server.admin().await;
    // An unknown person: refused, and no key is created.
    let err = admin
        .callers
        .create_api_key(proto::CreateApiKeyRequest {
            name: "ghost".into(),
            roles: vec!["manager".into()],
            person: "no.body".into(),
        })
        .await
        .expect_err("unknown person");
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(
        err.message().contains("no person no.body"),
        "{}",
        err.message()
    );
    let listed = admin
        .callers
        .list_api_keys(proto::ListApiKeysRequest {})
        .await
        .expect("list")
        .into_inner()
        .principals;
    assert!(listed.iter().all(|p| p.name != "ghost"));
    // A portal key is not bound to a person, and holds no other role.
    for (roles, person) in [(vec!["portal"], "m.head"), (vec!["portal", "admin"], "")] {
        let err = admin
            .callers
            .create_api_key(proto::CreateApiKeyRequest {
                name: "portal-x".into(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                person: person.into(),
            })
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    }

    // Through the CLI: the key acts as the head of school.
    let o = server.cli(
        &[
            "caller", "create", "marie", "--role", "manager", "--person", "M.Head",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let key = stdout(&o).trim().to_owned();
    let o = server.cli(&["caller", "whoami"], &[("OKEY_API_KEY", &key)]);
    assert_eq!(stdout(&o).trim(), "marie (manager) as m.head");
    let o = server.cli(&["caller", "list"], &[]);
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("marie") && l.ends_with("m.head")),
        "{}",
        stdout(&o)
    );

    // The head sees the people of their school, not another school's; nor the district's.
    let (code, v, _) = show_json(&server, "j.prof", Some(&key));
    assert_eq!(code, Some(0));
    assert_eq!(v["person"]["callers"], serde_json::json!([]), "admins only");
    let (code, _, _) = show_json(&server, "m.head", Some(&key));
    assert_eq!(code, Some(0), "themself");
    for other in ["b.head", "e.prof", "0750654D"] {
        let (code, _, e) = show_json(&server, other, Some(&key));
        assert_eq!(code, Some(1), "{other}: {e}");
        assert!(e.contains("may see only"), "{e}");
    }
    let (_, v, _) = show_json(&server, "m.head", None);
    assert_eq!(v["person"]["callers"], serde_json::json!(["marie"]));

    // The IEN sees the district's primary school and its people.
    let ien = server.key_for_person("ines", "manager", "i.ien").await;
    assert_eq!(show_json(&server, "e.prof", Some(&ien)).0, Some(0));
    assert_eq!(show_json(&server, "9740100R", Some(&ien)).0, Some(0));
    assert_eq!(show_json(&server, "j.prof", Some(&ien)).0, Some(1));

    // A manager key bound to nobody is refused with a sentence, reads and changes alike.
    let unbound = server.key_with_role("unbound", "manager").await;
    let o = server.cli(&["lot", "list"], &[("OKEY_API_KEY", &unbound)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("acts for nobody") && stderr(&o).contains("--person"),
        "{}",
        stderr(&o)
    );
    let (code, _, e) = show_json(&server, "j.prof", Some(&unbound));
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("acts for nobody"), "{e}");
}

#[tokio::test]
async fn only_a_portal_may_name_the_person_it_acts_for() {
    let server = Server::start();
    server.import_directory(UNITS, PEOPLE);
    let mut admin = server.admin().await;
    for (id, kind, unit) in [
        ("2D-A", proto::LotKind::LotKind2d, "9740001H"),
        ("2D-B", proto::LotKind::LotKind2d, "0750654D"),
    ] {
        admin
            .lifecycle
            .create_lot(proto::CreateLotRequest {
                id: id.into(),
                kind: kind as i32,
                unit: unit.into(),
                name: id.into(),
                validity_days: 0,
            })
            .await
            .expect("lot");
    }
    let lots = |r: proto::ListLotsResponse| -> Vec<String> {
        r.lots
            .into_iter()
            .filter_map(|s| s.lot.map(|l| l.id))
            .collect()
    };

    // Any other caller naming a person is refused, whatever it asks, even the admin.
    for role in ["verifier", "support", "manager", "auditor"] {
        let key = server.key_with_role(&format!("k-{role}"), role).await;
        let mut c = server.client_acting(&key, "m.head").await;
        let err = c
            .callers
            .who_am_i(proto::WhoAmIRequest {})
            .await
            .expect_err("not a portal");
        assert_eq!(err.code(), Code::PermissionDenied, "{role}");
        assert!(err.message().contains("role portal"), "{}", err.message());
    }
    let mut forged = server.client_acting(&server.admin_key, "m.head").await;
    let err = forged
        .lifecycle
        .list_lots(proto::ListLotsRequest::default())
        .await
        .expect_err("the admin is not a portal");
    assert_eq!(err.code(), Code::PermissionDenied);
    // The refusal is in the audit chain.
    let records = admin.audit_records(20).await;
    assert!(
        records
            .iter()
            .any(|r| r.actor == "admin" && r.reason == "permission_denied"),
        "{records:?}"
    );

    let portal = server.key_with_role("portal-1", "portal").await;
    // Acting for nobody: refused for the lifecycle.
    let mut nobody = server.client(Some(&portal)).await;
    let err = nobody
        .lifecycle
        .list_lots(proto::ListLotsRequest::default())
        .await
        .expect_err("acting for nobody");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("acting for nobody"),
        "{}",
        err.message()
    );
    // Acting for someone the directory does not hold: refused.
    let mut ghost = server.client_acting(&portal, "no.body").await;
    let err = ghost
        .lifecycle
        .list_lots(proto::ListLotsRequest::default())
        .await
        .expect_err("unknown person");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("not in the directory"),
        "{}",
        err.message()
    );
    // A malformed person id: bad input.
    let mut bad = server.client_acting(&portal, "a;b").await;
    let err = bad
        .callers
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .expect_err("bad id");
    assert_eq!(err.code(), Code::InvalidArgument);

    // Acting for the head of school: their lot only, recorded as the portal for them.
    let mut head = server.client_acting(&portal, "M.Head").await;
    let me = head
        .callers
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!(
        (me.name.as_str(), me.person.as_str()),
        ("portal-1", "m.head")
    );
    let seen = lots(
        head.lifecycle
            .list_lots(proto::ListLotsRequest::default())
            .await
            .expect("list")
            .into_inner(),
    );
    assert_eq!(seen, ["2D-A"]);
    head.lifecycle
        .order_keys(proto::OrderKeysRequest {
            lot: "2D-A".into(),
            quantity: 3,
            comment: String::new(),
        })
        .await
        .expect("their own lot");
    let err = head
        .lifecycle
        .order_keys(proto::OrderKeysRequest {
            lot: "2D-B".into(),
            quantity: 3,
            comment: String::new(),
        })
        .await
        .expect_err("another school's lot");
    assert_eq!(err.code(), Code::PermissionDenied);
    let records = admin.audit_records(10).await;
    assert!(
        records.iter().any(|r| r.actor == "portal-1 for m.head"),
        "{records:?}"
    );
    // The same portal, the next request, another person: that person's scope.
    let mut other = server.client_acting(&portal, "b.head").await;
    let seen = lots(
        other
            .lifecycle
            .list_lots(proto::ListLotsRequest::default())
            .await
            .expect("list")
            .into_inner(),
    );
    assert_eq!(seen, ["2D-B"]);
}
