//! The seeds' key workflows through a real `okey serve` and the `okey lot` / `okey key` CLI:
//! one test per paragraph of 000 (found keys and lots), 001 (the 2D procedure) and 003 (the 1D
//! note's five cases), written from the seeds' own wording.

use std::process::Output;

use okey_e2e::{RFC_SECRET_HEX, Server, check, hotp_token, reference_hotp, verify_serial};
use okey_server::proto;
use serde_json::Value;

const LYCEE: &str = "2D-9740001A";
const CIRC: &str = "1D-CIRC-NORD";
const RECTORAT: &str = "RECTORAT";
const EXAMEN: &str = "EXAMEN";

/// The directory behind the managers' keys: each key acts as its directory person.
const ACADEMY_UNITS: &str = "id,kind,name,parent,under_contract
RECTORAT,rectorat,Rectorat,,
SUPPORT,support_centre,Centre de support,RECTORAT,
DEC,exams_office,Division des examens,RECTORAT,
9740001H,school,Lycée Leconte de Lisle,RECTORAT,yes
CIRC-NORD,district,Circonscription Nord,RECTORAT,
";
const ACADEMY_PEOPLE: &str = "id,name,email,unit,functions
p.proviseur,Paul Proviseur,p.proviseur@ac-example.fr,9740001H,head
p.ien,Inès Ien,p.ien@ac-example.fr,CIRC-NORD,ien
e.agent,Émile Agent,e.agent@ac-example.fr,9740001H,staff
";

/// A server with the four kinds of lot, their managers' API keys and some keys.
struct Academy {
    server: Server,
    /// Head of school of the lycée (delegate manager of its 2D lot).
    head: String,
    /// District inspector (manager of the district's 1D lot).
    ien: String,
    /// Support centre agent.
    support: String,
}

fn rfc_code(counter: u64) -> String {
    reference_hotp(&hex::decode(RFC_SECRET_HEX).expect("hex"), counter, 6)
}

impl Academy {
    async fn new(serials: &[&str]) -> Academy {
        let server = Server::start();
        server.import_directory(ACADEMY_UNITS, ACADEMY_PEOPLE);
        let a = Academy {
            head: server
                .key_for_person("p.proviseur", "manager", "p.proviseur")
                .await,
            ien: server.key_for_person("p.ien", "manager", "p.ien").await,
            support: server.key_with_role("p.support", "support").await,
            server,
        };
        for (id, kind, unit, name) in [
            (LYCEE, "2d", "9740001A", "Lycée Leconte de Lisle"),
            (CIRC, "1d", "CIRC-NORD", "Circonscription Nord"),
            (RECTORAT, "rectorat", "RECTORAT", "Rectorat"),
            (EXAMEN, "examen", "DEC", "Division des examens"),
        ] {
            a.admin_ok(&[
                "lot", "create", id, "--kind", kind, "--unit", unit, "--name", name,
            ]);
        }
        a.admin_ok(&["lot", "delegate", LYCEE, "p.proviseur"]);
        a.admin_ok(&["lot", "delegate", CIRC, "p.ien"]);
        if !serials.is_empty() {
            let mut admin = a.server.admin().await;
            admin
                .tokens
                .import_tokens(proto::ImportTokensRequest {
                    tokens: serials
                        .iter()
                        .map(|s| hotp_token(s, RFC_SECRET_HEX))
                        .collect(),
                })
                .await
                .expect("import");
        }
        a
    }

    fn run(&self, key: &str, args: &[&str]) -> Output {
        self.server.cli(args, &[("OKEY_API_KEY", key)])
    }

    /// `okey ARGS` as `key`, which must succeed; its standard output.
    fn ok(&self, key: &str, args: &[&str]) -> String {
        let out = self.run(key, args);
        assert!(
            out.status.success(),
            "okey {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn admin_ok(&self, args: &[&str]) -> String {
        self.ok(&self.server.admin_key.clone(), args)
    }

    /// `okey ARGS --json` as `key`.
    fn json(&self, key: &str, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(key, &a)).expect("JSON")
    }

    /// `okey ARGS` as `key`, which must be refused (exit 1); its error line.
    fn refused(&self, key: &str, args: &[&str]) -> String {
        let out = self.run(key, args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "okey {args:?}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn key(&self, serial: &str) -> Value {
        self.json(&self.support, &["key", "show", serial])
    }

    fn state(&self, serial: &str) -> String {
        self.key(serial)["key"]["state"]
            .as_str()
            .expect("state")
            .to_owned()
    }

    async fn logs_in(&self, serial: &str, counter: u64) -> bool {
        let mut c = self.server.admin().await;
        check(&mut c, verify_serial(serial, &rfc_code(counter)))
            .await
            .0
    }
}

// ---- 000: FAQ "Clé retrouvée" -------------------------------------------------------------

/// "La clé n'appartient à personne: en fonction du lot d'appartenance de la clé, le support
/// avisera (faire remettre la clé au gestionnaire du lot concerné ou la fournir à l'équipe
/// système pour la recycler ou la mettre au rebut). La clé est expirée: il convient de la mettre
/// au rebut. La clé appartient à une personne: le centre support identifiera le circuit le plus
/// approprié afin de remettre la clé à la personne concernée."
#[tokio::test]
async fn seed_000_a_found_key_gets_the_faq_decision() {
    let a = Academy::new(&["F-SCHOOL", "F-RECT", "F-EXP", "F-HELD"]).await;
    let s = a.support.clone();
    a.ok(&s, &["lot", "register", LYCEE, "F-SCHOOL", "F-HELD"]);
    a.ok(&s, &["lot", "register", RECTORAT, "F-RECT"]);
    a.ok(
        &s,
        &["lot", "register", LYCEE, "F-EXP", "--valid-until", "1000"],
    );
    a.ok(&a.head, &["key", "handover", "F-HELD", "--to", "m.dupont"]);
    let found = |serial: &str| a.json(&s, &["key", "found", serial]);
    assert_eq!(found("F-SCHOOL")["decision"], "to_lot_manager");
    assert!(
        found("F-SCHOOL")["advice"]
            .as_str()
            .expect("advice")
            .contains(LYCEE)
    );
    assert_eq!(found("F-RECT")["decision"], "to_it_department");
    assert_eq!(found("F-EXP")["decision"], "scrap");
    let held = found("F-HELD");
    assert_eq!(held["decision"], "route_to_holder");
    assert!(
        held["advice"]
            .as_str()
            .expect("advice")
            .contains("m.dupont")
    );
    // The human output says the same in a sentence.
    let text = a.ok(&s, &["key", "found", "F-HELD"]);
    assert!(
        text.starts_with("route_to_holder: key F-HELD belongs to m.dupont"),
        "{text}"
    );
    // "Si la personne n'a plus d'utilité de sa clé, elle vient la remettre au gestionnaire du
    // lot associé."
    a.ok(&a.head, &["key", "return", "F-HELD"]);
    assert_eq!(a.state("F-HELD"), "returned");
    // Only the support centre (or the IT department) runs the found-key desk.
    a.refused(&a.head, &["key", "found", "F-SCHOOL"]);
    // The expired one is scrapped, as decided.
    a.ok(&s, &["key", "scrap", "F-EXP"]);
    assert_eq!(a.state("F-EXP"), "scrapped");
}

/// "Clé déclarée perdue, mais retrouvée: retirer la clé de son lot, la remettre dans son lot
/// d'origine, passer la clé à l'état livrée; la clé est de nouveau disponible pour une nouvelle
/// attribution."
#[tokio::test]
async fn seed_000_a_lost_key_found_goes_back_to_its_origin_lot_delivered() {
    let a = Academy::new(&["L1"]).await;
    let s = a.support.clone();
    a.ok(&s, &["lot", "register", LYCEE, "L1"]);
    // It was lent to the exams office's lot, then handed over there and lost.
    a.ok(&a.head, &["lot", "move", "L1", "--to", EXAMEN]);
    a.ok(&s, &["key", "handover", "L1", "--to", "j.jury"]);
    assert!(a.logs_in("L1", 0).await);
    a.ok(
        &s,
        &["key", "lost", "L1", "--comment", "perdue pendant le jury"],
    );
    assert!(!a.logs_in("L1", 1).await, "a lost key does not log in");
    let f = a.json(&s, &["key", "found", "L1"]);
    assert_eq!(f["decision"], "back_to_origin_lot");
    assert_eq!(f["key"]["lot"], LYCEE);
    assert_eq!(f["key"]["state"], "delivered");
    assert!(
        !a.logs_in("L1", 2).await,
        "found: no login before a new hand-over"
    );
    // Available for a new attribution by the lycée.
    a.ok(&a.head, &["key", "handover", "L1", "--to", "m.martin"]);
    assert!(a.logs_in("L1", 3).await);
    let history: Vec<String> = a.key("L1")["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["action"].as_str().expect("action").to_owned())
        .collect();
    assert_eq!(
        history,
        [
            "register", "move", "handover", "lost", "found", "restock", "handover"
        ]
    );
}

/// "Plusieurs lots: 2D (chaque établissement, géré par le chef d'établissement ou toute autre
/// personne ayant une délégation), 1D (chaque circonscription, géré par l'inspection ou les
/// ATICE), Rectorat (clés logicielles et matérielles, géré par le centre support), Examen (la
/// DEC gère son lot en toute autonomie)."
#[tokio::test]
async fn seed_000_each_lot_is_run_by_its_own_managers() {
    let a = Academy::new(&["S1", "D1"]).await;
    let s = a.support.clone();
    a.ok(&s, &["lot", "register", LYCEE, "S1"]);
    a.ok(&s, &["lot", "register", CIRC, "D1"]);
    let kinds: Vec<(String, String)> = a
        .json(&s, &["lot", "list"])
        .as_array()
        .expect("lots")
        .iter()
        .map(|l| {
            (
                l["id"].as_str().expect("id").to_owned(),
                l["kind"].as_str().expect("kind").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (CIRC.into(), "1d".into()),
            (LYCEE.into(), "2d".into()),
            (EXAMEN.into(), "examen".into()),
            (RECTORAT.into(), "rectorat".into()),
        ]
    );
    // The head of school sees and runs their school's lot, not the district's.
    let mine = a.json(&a.head, &["lot", "list"]);
    assert_eq!(mine.as_array().expect("lots").len(), 1);
    assert_eq!(mine[0]["id"], LYCEE);
    let e = a.refused(&a.head, &["key", "handover", "D1", "--to", "x.y"]);
    assert!(e.contains("does not manage lot 1D-CIRC-NORD"), "{e}");
    a.refused(&a.head, &["lot", "show", CIRC]);
    a.refused(&a.ien, &["key", "lost", "S1"]);
    a.ok(&a.ien, &["key", "handover", "D1", "--to", "d.directeur"]);
    // The support centre acts on any lot.
    a.ok(&s, &["key", "lost", "S1"]);
}

// ---- 001: FAQ "Clef OTP 2D" -----------------------------------------------------------------

/// "Que faire si l'établissement n'a plus de clef? Le chef d'établissement: passer une nouvelle
/// commande depuis OKEY."
#[tokio::test]
async fn seed_001_an_empty_lot_orders_keys_and_the_order_brings_them_in() {
    let a = Academy::new(&["N1", "N2"]).await;
    let s = a.support.clone();
    a.ok(&s, &["lot", "register", RECTORAT, "N1", "N2"]);
    let order = a.json(
        &a.head,
        &[
            "lot",
            "order",
            LYCEE,
            "--quantity",
            "2",
            "--comment",
            "plus de clef",
        ],
    );
    assert_eq!(order["state"], "open");
    let id = order["id"].as_u64().expect("id").to_string();
    // Not for someone else's lot.
    a.refused(&a.ien, &["lot", "order", LYCEE, "--quantity", "1"]);
    // Nor fulfilled by the head themselves.
    a.refused(&a.head, &["lot", "fulfil", &id, "N1", "N2"]);
    let done = a.json(&s, &["lot", "fulfil", &id, "N1", "N2"]);
    assert_eq!(done["state"], "fulfilled");
    let lot = a.json(&a.head, &["lot", "show", LYCEE]);
    assert_eq!(lot["lot"]["counts"]["delivered"], 2);
    assert_eq!(lot["orders"][0]["serials"], serde_json::json!(["N1", "N2"]));
    a.refused(&s, &["lot", "cancel", &id]);
}

/// "Dans le cas où vous auriez toujours des clefs disponibles dans votre établissement et que
/// celles-ci n'apparaissent pas dans OKEY: faire un ticket en indiquant les numéros de série;
/// l'équipe d'assistance les rendra disponibles dans OKEY."
#[tokio::test]
async fn seed_001_keys_missing_from_okey_are_registered_by_serial() {
    let a = Academy::new(&["0042", "0043"]).await;
    // The head cannot register them: the assistance does.
    a.refused(&a.head, &["lot", "register", LYCEE, "0042", "0043"]);
    assert_eq!(a.state("0042"), "in no lot");
    let keys = a.json(&a.support, &["lot", "register", LYCEE, "0042", "0043"]);
    assert_eq!(keys[0]["state"], "delivered");
    assert_eq!(keys[1]["origin_lot"], LYCEE);
    let table = a.ok(&a.head, &["lot", "show", LYCEE]);
    assert!(
        table.contains("0042") && table.contains("stock: delivered 2"),
        "{table}"
    );
    // A serial okey does not know is bad input, and nothing is registered.
    let out = a.run(&a.support, &["lot", "register", LYCEE, "0044"]);
    assert_eq!(out.status.code(), Some(2));
}

/// "Le chef d'établissement clique sur 'gérer les clefs', repère la clef, choisit le motif
/// 'clef perdue', met un commentaire et valide. Cette action a pour effet de désallouer la clef
/// et de permettre à la personne de faire une nouvelle demande de clef."
#[tokio::test]
async fn seed_001_a_head_declares_a_key_lost_with_a_comment() {
    let a = Academy::new(&["P1"]).await;
    a.ok(&a.support, &["lot", "register", LYCEE, "P1"]);
    a.ok(&a.head, &["key", "handover", "P1", "--to", "c.prof"]);
    assert!(a.logs_in("P1", 0).await);
    let out = a.json(
        &a.head,
        &["key", "lost", "P1", "--comment", "oubliée dans le bus"],
    );
    assert_eq!(out["key"]["state"], "lost");
    assert_eq!(out["key"]["holder"], "", "unassigned");
    assert!(!a.logs_in("P1", 1).await);
    let k = a.key("P1");
    let last = k["history"]
        .as_array()
        .expect("history")
        .last()
        .cloned()
        .expect("event");
    assert_eq!(
        (
            last["action"].as_str(),
            last["comment"].as_str(),
            last["holder_before"].as_str()
        ),
        (Some("lost"), Some("oubliée dans le bus"), Some("c.prof"))
    );
    // Declaring it lost twice is refused with a sentence naming the state and the action.
    let e = a.refused(&a.head, &["key", "lost", "P1"]);
    assert!(
        e.contains("a key that is lost cannot be declared lost"),
        "{e}"
    );
    // Every change is on the audit chain with its actor and before -> after.
    let mut admin = a.server.admin().await;
    let recs = admin.audit_records(20).await;
    let lost = recs
        .iter()
        .find(|r| r.action == "key.lost")
        .expect("audited");
    assert!(lost.actor.starts_with("p.proviseur"), "{lost:?}");
    assert!(lost.reason.starts_with("handed_over -> lost"), "{lost:?}");
}

/// "Que faire si un personnel vient rendre une clef? La procédure est la même, sauf que le
/// motif il faut choisir 'mettre en stock'."
#[tokio::test]
async fn seed_001_a_returned_key_goes_back_in_stock_for_someone_else() {
    let a = Academy::new(&["R1"]).await;
    a.ok(&a.support, &["lot", "register", LYCEE, "R1"]);
    a.ok(&a.head, &["key", "handover", "R1", "--to", "a.depart"]);
    let out = a.json(&a.head, &["key", "return", "R1", "--condition", "good"]);
    assert_eq!(out["key"]["state"], "returned");
    assert_eq!(out["receipt"]["kind"], "return");
    assert_eq!(out["receipt"]["holder"], "a.depart");
    assert!(!a.logs_in("R1", 0).await, "back in stock: no login");
    a.ok(&a.head, &["key", "handover", "R1", "--to", "b.arrivee"]);
    assert!(a.logs_in("R1", 1).await);
}

/// "Le chef d'établissement lui remet sa clef en indiquant sur OKEY que la clef a été remise."
#[tokio::test]
async fn seed_001_the_head_records_the_hand_over_and_the_holder_signs_it() {
    let a = Academy::new(&["H1"]).await;
    a.ok(&a.support, &["lot", "register", LYCEE, "H1"]);
    assert!(!a.logs_in("H1", 0).await, "delivered, not yet handed over");
    let out = a.json(
        &a.head,
        &[
            "key",
            "handover",
            "H1",
            "--to",
            "e.agent",
            "--place",
            "secrétariat du lycée",
        ],
    );
    let receipt = &out[0]["receipt"];
    assert_eq!(receipt["kind"], "handover");
    assert_eq!(receipt["staff"], "p.proviseur");
    assert_eq!(receipt["place"], "secrétariat du lycée");
    assert_eq!(receipt["unit"], "9740001A");
    let number = receipt["number"].as_str().expect("number").to_owned();
    // The holder signs by typing the receipt number back (with their own key).
    let holder = a
        .server
        .key_for_person("e.agent", "manager", "e.agent")
        .await;
    a.refused(&a.head, &["key", "confirm", "H1", &number]);
    let signed = a.json(&holder, &["key", "confirm", "H1", &number.to_lowercase()]);
    assert_eq!(signed["confirmed_how"], "receipt");
    assert!(a.logs_in("H1", 0).await);
    let r = a.json(&holder, &["key", "receipt", "H1"]);
    assert_eq!(r["number"], number.as_str());
    assert!(r["confirmed_at"].as_u64().expect("time") > 0);
    // The signed receipt as a PDF.
    let pdf = a.server.data_dir.join("../receipt.pdf");
    a.ok(
        &holder,
        &["key", "receipt", "H1", "--out", pdf.to_str().expect("path")],
    );
    assert!(
        std::fs::read(&pdf)
            .expect("the PDF is written")
            .starts_with(b"%PDF-")
    );
}

// ---- 003: note to IEN and school directors -------------------------------------------------

/// "Tout directeur appelé à quitter sa fonction doit impérativement restituer la clé à l'IEN
/// responsable de la circonscription. L'IEN s'assurera que le directeur aura signé le bordereau
/// de restitution."
#[tokio::test]
async fn seed_003_a_leaving_director_returns_the_key_to_the_ien_with_a_receipt() {
    let a = Academy::new(&["D7"]).await;
    a.ok(&a.support, &["lot", "register", CIRC, "D7"]);
    a.ok(&a.ien, &["key", "handover", "D7", "--to", "d.partant"]);
    let out = a.json(&a.ien, &["key", "return", "D7", "--condition", "damaged"]);
    assert_eq!(out["receipt"]["kind"], "return");
    assert_eq!(out["receipt"]["condition"], "damaged");
    assert_eq!(out["receipt"]["staff"], "p.ien");
    assert!(
        out["receipt"]["number"]
            .as_str()
            .expect("number")
            .starts_with("RS-")
    );
    // "L'IEN se chargera de faire parvenir la clé au Centre Informatique du rectorat."
    a.ok(&a.ien, &["lot", "move", "D7", "--to", RECTORAT]);
    assert_eq!(a.key("D7")["key"]["lot"], RECTORAT);
}

/// CAS 1: "Le directeur est absent plus d'une semaine, il est remplacé par un adjoint. L'IEN
/// fait une demande à l'assistance pour qu'une clé soit préparée au nom du remplaçant; il
/// organise la remise et lui fait signer le bordereau de remise."
#[tokio::test]
async fn seed_003_case_1_a_deputy_gets_a_key_for_a_period() {
    let a = Academy::new(&["DEP1"]).await;
    a.ok(&a.support, &["lot", "register", CIRC, "DEP1"]);
    // The assistance prepares it in the deputy's name.
    a.ok(&a.support, &["key", "assign", "DEP1", "--to", "r.adjoint"]);
    assert_eq!(a.state("DEP1"), "assigned");
    // The IEN hands it over to that deputy only, for the period.
    let e = a.refused(&a.ien, &["key", "handover", "DEP1", "--to", "q.autre"]);
    assert!(e.contains("assigned to r.adjoint"), "{e}");
    let until = (okey_e2e_now() + 30 * 86_400).to_string();
    let out = a.json(
        &a.ien,
        &[
            "key",
            "handover",
            "DEP1",
            "--to",
            "r.adjoint",
            "--until",
            &until,
        ],
    );
    assert_eq!(out[0]["receipt"]["until"].as_u64(), until.parse().ok());
    assert_eq!(out[0]["key"]["active_until"].as_u64(), until.parse().ok());
    assert!(a.logs_in("DEP1", 0).await);
}

/// CAS 2: "Le directeur revient: l'IEN désactive les droits du remplaçant, récupère la clé et
/// lui fait signer le bordereau de restitution. Il n'a plus accès aux applications."
#[tokio::test]
async fn seed_003_case_2_the_deputy_is_deactivated_and_returns_the_key() {
    let a = Academy::new(&["DEP2"]).await;
    a.ok(&a.support, &["lot", "register", CIRC, "DEP2"]);
    a.ok(&a.ien, &["key", "handover", "DEP2", "--to", "r.adjoint"]);
    assert!(a.logs_in("DEP2", 0).await);
    let out = a.json(
        &a.ien,
        &[
            "key",
            "deactivate",
            "DEP2",
            "--comment",
            "retour du directeur",
        ],
    );
    assert!(out["key"]["return_due"].as_u64().expect("due") > 0);
    assert!(!a.logs_in("DEP2", 1).await, "no more access");
    let r = a.json(&a.ien, &["key", "return", "DEP2"]);
    assert_eq!(r["receipt"]["kind"], "return");
    assert_eq!(r["key"]["state"], "returned");
}

/// CAS 3: "La clé ne fonctionne plus, elle est perdue, a été volée ou brisée: l'assistance lui
/// prépare une nouvelle clé; il devra s'organiser avec son IEN pour la récupérer."
#[tokio::test]
async fn seed_003_case_3_a_broken_key_is_replaced_by_a_new_one() {
    let a = Academy::new(&["OLD", "NEW"]).await;
    a.ok(&a.support, &["lot", "register", CIRC, "OLD", "NEW"]);
    a.ok(&a.ien, &["key", "handover", "OLD", "--to", "d.directeur"]);
    a.ok(&a.support, &["key", "lost", "OLD", "--comment", "brisée"]);
    a.ok(&a.support, &["key", "assign", "NEW", "--to", "d.directeur"]);
    a.ok(&a.ien, &["key", "handover", "NEW", "--to", "d.directeur"]);
    assert!(!a.logs_in("OLD", 0).await);
    assert!(a.logs_in("NEW", 0).await);
    // The broken one goes to the IT department to be scrapped.
    a.ok(&a.support, &["key", "scrap", "OLD"]);
    let e = a.refused(&a.ien, &["key", "handover", "OLD", "--to", "d.directeur"]);
    assert!(
        e.contains("a key that is scrapped cannot be handed over"),
        "{e}"
    );
}

/// CAS 4: "Le directeur quitte sa fonction en fin d'année: la désactivation sera faite
/// automatiquement. Il restitue la clé à son IEN et signe le bordereau de restitution dans la
/// première semaine de juillet."
#[tokio::test]
async fn seed_003_case_4_an_end_of_function_date_deactivates_the_key_by_itself() {
    let a = Academy::new(&["FIN"]).await;
    a.ok(&a.support, &["lot", "register", CIRC, "FIN"]);
    a.ok(&a.ien, &["key", "handover", "FIN", "--to", "d.retraite"]);
    let end = okey_e2e_now() + 2;
    a.ok(
        &a.ien,
        &["key", "deactivate", "FIN", "--at", &end.to_string()],
    );
    assert!(a.logs_in("FIN", 0).await, "still in function");
    assert_eq!(a.key("FIN")["key"]["return_due"], 0);
    while okey_e2e_now() <= end {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        !a.logs_in("FIN", 1).await,
        "deactivated at the date, without a job"
    );
    let events = a.json(&a.server.admin_key.clone(), &["lot", "run-jobs"]);
    assert_eq!(events[0]["serial"], "FIN");
    assert_eq!(events[0]["lot"], CIRC);
    assert_eq!(events[0]["action"], "deactivate");
    // On the IEN's list: the lot shows the return due.
    let lot = a.json(&a.ien, &["lot", "show", CIRC]);
    assert!(lot["keys"][0]["return_due"].as_u64().expect("due") > 0);
    a.ok(&a.ien, &["key", "return", "FIN"]);
    assert_eq!(a.state("FIN"), "returned");
}

/// CAS 5: "Première nomination d'un directeur: le nouveau directeur recevra une convocation à
/// une réunion de remise de clé OTP au rectorat; à cette date il réceptionnera la clé et aura
/// immédiatement accès à sa base."
#[tokio::test]
async fn seed_003_case_5_new_directors_get_keys_reserved_and_handed_over_in_one_batch() {
    let a = Academy::new(&["B1", "B2", "B3"]).await;
    let s = a.support.clone();
    a.ok(&s, &["lot", "register", RECTORAT, "B1", "B2", "B3"]);
    // Four new directors, three keys: refused, nothing reserved.
    let e = a.refused(
        &s,
        &[
            "lot", "reserve", RECTORAT, "n.un", "n.deux", "n.trois", "n.quatre",
        ],
    );
    assert!(e.contains("has 3 available keys, 4 are needed"), "{e}");
    assert_eq!(a.state("B1"), "delivered");
    let reserved = a.json(&s, &["lot", "reserve", RECTORAT, "n.un", "n.deux"]);
    let serials: Vec<String> = reserved
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["serial"].as_str().expect("serial").to_owned())
        .collect();
    assert_eq!(serials, ["B1", "B2"]);
    assert_eq!(reserved[0]["reserved_for"], "n.un");
    // The meeting: a batch of hand-overs, one commit. A wrong line refuses the whole batch.
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "B1,n.un\nB2,n.un\n").expect("write");
    let e = a.refused(
        &s,
        &[
            "key",
            "handover",
            "--batch",
            bad.to_str().expect("path"),
            "--place",
            "rectorat",
        ],
    );
    assert!(e.contains("reserved for n.deux"), "{e}");
    assert_eq!(
        a.state("B1"),
        "reserved",
        "nothing of the batch was written"
    );
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "# serial,person\nB1,n.un\nB2,n.deux\n").expect("write");
    let done = a.json(
        &s,
        &[
            "key",
            "handover",
            "--batch",
            good.to_str().expect("path"),
            "--place",
            "rectorat",
        ],
    );
    assert_eq!(done.as_array().expect("done").len(), 2);
    // "Il aura immédiatement accès à sa base."
    assert!(a.logs_in("B1", 0).await);
    assert!(a.logs_in("B2", 0).await);
    assert!(!a.logs_in("B3", 0).await);
}

fn okey_e2e_now() -> u64 {
    okey_server::clock::now()
}
