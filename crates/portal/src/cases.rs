//! The support desk's cases in the portal: opening a case (seed 004's form, with its
//! attachments), the person's cases, one case with its messages, and a reply; for a person of
//! the support centre, the queue of open cases, internal notes, assignment and resolution. Each
//! page is one SupportService call for the session's person: the server shows anyone else only
//! the cases they declared and never the internal notes, and refuses the desk's moves to
//! anyone not of the support centre.

use axum::extract::{Multipart, Path, Query, State};
use maud::html;
use okey_server::proto;
use okey_server::proto::support_service_client::SupportServiceClient;
use serde::Deserialize;

use crate::pages::{layout, path};
use crate::web::{Page, PageError, Shared, User, page, person_entry, see_other};

/// Largest body of the new-case form: the attachments at their largest, and the fields.
pub const FORM_LIMIT: usize =
    okey_domain::request::MAX_ATTACHMENTS * okey_domain::request::MAX_ATTACHMENT_BYTES + 64 * 1024;

/// Whether the person is of the support centre (what the pages offer; the server decides).
async fn at_desk(app: &Shared, person: &str) -> bool {
    person_entry(app, person, person)
        .await
        .is_some_and(|p| p.found_key_desk)
}

fn priority_name(p: i32) -> &'static str {
    match proto::CasePriority::try_from(p) {
        Ok(proto::CasePriority::Blocking) => "bloquante",
        Ok(proto::CasePriority::Major) => "majeure",
        Ok(proto::CasePriority::Minor) => "mineure",
        _ => "—",
    }
}

/// The kinds of case, in the form's order: (value, French label).
const KINDS: [(&str, &str); 6] = [
    ("key_not_working", "Ma clef ne fonctionne pas"),
    ("lost_pin", "Code PIN perdu"),
    ("desynchronised", "Clef désynchronisée"),
    ("key_lost", "Clef perdue"),
    ("keys_not_in_okey", "Clefs en ma possession absentes d'OKEY"),
    ("other", "Autre demande"),
];

fn kind_name(k: &str) -> &str {
    KINDS
        .iter()
        .find(|(v, _)| *v == k)
        .map_or(k, |(_, label)| label)
}

fn client(app: &Shared) -> SupportServiceClient<tonic::transport::Channel> {
    app.grpc.support()
}

fn state_name(s: &str) -> &'static str {
    match s {
        "open" => "ouvert",
        "resolved" => "résolu",
        _ => "inconnu",
    }
}

/// The cases the person may see: theirs, or for the support centre the open cases by
/// priority.
pub async fn list(State(app): State<Shared>, user: User) -> Page {
    let s = &user.session;
    let desk = at_desk(&app, &s.person).await;
    let cases = client(&app)
        .list_cases(app.grpc.request(
            &s.person,
            proto::ListCasesRequest {
                all: !desk,
                assignee: String::new(),
                limit: 200,
            },
        )?)
        .await?
        .into_inner()
        .cases;
    let (title, caption) = if desk {
        (
            "Dossiers de support ouverts",
            "Les dossiers ouverts, les plus urgents d'abord",
        )
    } else {
        (
            "Mes dossiers de support",
            "Les dossiers de support que vous avez ouverts",
        )
    };
    page(layout(
        title,
        Some(s),
        html! {
            p { a href="/support/dossiers/nouveau" { "Ouvrir un dossier de support" } }
            @if cases.is_empty() {
                p { "Aucun dossier." }
            } @else {
                table {
                    caption { (caption) }
                    thead { tr {
                        th scope="col" { "Numéro" }
                        th scope="col" { "Priorité" }
                        th scope="col" { "Objet" }
                        @if desk {
                            th scope="col" { "Déclarant" }
                            th scope="col" { "Suivi par" }
                        }
                        th scope="col" { "État" }
                        th scope="col" { "Ouvert le" }
                    } }
                    tbody {
                        @for c in &cases {
                            tr {
                                td { a href={ "/support/dossiers/" (path(&c.number)) } { "Dossier " (c.number) } }
                                td { (priority_name(c.priority)) }
                                td { (c.subject) }
                                @if desk {
                                    td { (c.name) " (" (c.declarant) ")" }
                                    td { @if c.assignee.is_empty() { "personne" } @else { (c.assignee) } }
                                }
                                td { (state_name(&c.state)) }
                                td { (s.zone.short(c.opened_at)) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

#[derive(Deserialize, Default)]
pub struct Done {
    #[serde(default)]
    fait: String,
}

/// One case: its fields, messages and the reply form.
pub async fn show(
    State(app): State<Shared>,
    user: User,
    Path(number): Path<String>,
    Query(done): Query<Done>,
) -> Page {
    let s = &user.session;
    let desk = at_desk(&app, &s.person).await;
    let c = client(&app)
        .show_case(app.grpc.request(
            &s.person,
            proto::ShowCaseRequest {
                number: number.clone(),
            },
        )?)
        .await?
        .into_inner();
    page(layout(
        &format!("Dossier {}", c.number),
        Some(s),
        html! {
            @match done.fait.as_str() {
                "reponse" => p.notice role="status" { "Votre réponse est ajoutée au dossier." },
                "note" => p.notice role="status" { "La note interne est ajoutée au dossier (elle n'est pas envoyée au déclarant)." },
                "attribution" => p.notice role="status" { "Le dossier est attribué." },
                "resolution" => p.notice role="status" { "Le dossier est résolu : le déclarant est prévenu par courriel." },
                "ouvert" => p.notice role="status" { "Votre dossier est ouvert : son numéro vous est envoyé par courriel." },
                _ => {},
            }
            dl.fields {
                dt { "État" } dd { (state_name(&c.state)) }
                dt { "Type" } dd { (kind_name(&c.kind)) }
                dt { "Priorité" } dd { (priority_name(c.priority)) }
                dt { "Objet" } dd { (c.subject) }
                dt { "Description" } dd { (c.description) }
                dt { "Déclarant" } dd { (c.name) " (" (c.declarant) ")" }
                @if !c.serial.is_empty() { dt { "Clef" } dd { (c.serial) } }
                @if !c.assignee.is_empty() { dt { "Suivi par" } dd { (c.assignee) } }
                dt { "Ouvert le" } dd { (s.zone.short(c.opened_at)) }
                @if !c.resolution.is_empty() { dt { "Résolution" } dd { (c.resolution) } }
            }
            section aria-labelledby="messages-titre" {
                h2 id="messages-titre" { "Échanges" }
                @if c.messages.is_empty() {
                    p { "Aucun message." }
                } @else {
                    ol {
                        @for m in &c.messages {
                            li {
                                p { strong { (m.author) } " — " (s.zone.short(m.at)) @if m.internal { " (note interne)" } }
                                p { (m.body) }
                            }
                        }
                    }
                }
            }
            @if c.state == "open" {
                section aria-labelledby="reponse-titre" {
                    h2 id="reponse-titre" { "Répondre" }
                    form method="post" action={ "/support/dossiers/" (path(&c.number)) "/reponse" } {
                        input type="hidden" name="csrf" value=(s.csrf.as_str());
                        label for="message" { "Votre message" }
                        textarea id="message" name="message" rows="4" cols="60" required maxlength="4000" {}
                        @if desk {
                            label { input type="checkbox" name="interne" value="oui"; " Note interne (jamais envoyée au déclarant)" }
                        }
                        p { button type="submit" { "Envoyer la réponse" } }
                    }
                }
                @if desk {
                    @if let Some(d) = &c.diagnosis {
                        section aria-labelledby="diagnostic-titre" {
                            h2 id="diagnostic-titre" { "Diagnostic de la clef" }
                            p { (d.advice) }
                        }
                    }
                    section aria-labelledby="attribution-titre" {
                        h2 id="attribution-titre" { "Attribuer le dossier" }
                        form method="post" action={ "/support/dossiers/" (path(&c.number)) "/attribution" } {
                            input type="hidden" name="csrf" value=(s.csrf.as_str());
                            label for="agent" { "Agent du centre de support (identifiant dans l'annuaire)" }
                            input type="text" id="agent" name="agent" required maxlength="64"
                                value=(if c.assignee.is_empty() { s.person.as_str() } else { c.assignee.as_str() });
                            label for="priorite" { "Priorité" }
                            select id="priorite" name="priorite" {
                                @for (v, label) in [(1, "bloquante"), (2, "majeure"), (3, "mineure")] {
                                    option value=(v) selected[c.priority == v] { (label) }
                                }
                            }
                            p { button type="submit" { "Attribuer" } }
                        }
                    }
                    section aria-labelledby="resolution-titre" {
                        h2 id="resolution-titre" { "Résoudre le dossier" }
                        form method="post" action={ "/support/dossiers/" (path(&c.number)) "/resolution" } {
                            input type="hidden" name="csrf" value=(s.csrf.as_str());
                            label for="resolution" { "Résolution (envoyée au déclarant)" }
                            textarea id="resolution" name="resolution" rows="3" cols="60" required maxlength="4000" {}
                            p { button type="submit" { "Résoudre" } }
                        }
                    }
                }
            }
            p { a href="/support/dossiers" { "Retour aux dossiers" } }
        },
    ))
}

#[derive(Deserialize)]
pub struct ReplyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    interne: String,
}

/// A reply on a case (mailed to the declarant by the server).
pub async fn reply(
    State(app): State<Shared>,
    user: User,
    Path(number): Path<String>,
    axum::Form(f): axum::Form<ReplyForm>,
) -> Page {
    user.check(&f.csrf)?;
    let body = f.message.trim().to_owned();
    if body.is_empty() {
        return Err(PageError::Invalid("écrivez votre message".into()));
    }
    client(&app)
        .reply_case(app.grpc.request(
            &user.session.person,
            proto::ReplyCaseRequest {
                number: number.clone(),
                body,
                internal: f.interne == "oui",
            },
        )?)
        .await?;
    let done = if f.interne == "oui" {
        "note"
    } else {
        "reponse"
    };
    see_other(&format!("/support/dossiers/{}?fait={done}", path(&number)))
}

#[derive(Deserialize)]
pub struct AssignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    priorite: i32,
}

/// The support centre gives a case to an agent, with its priority.
pub async fn assign(
    State(app): State<Shared>,
    user: User,
    Path(number): Path<String>,
    axum::Form(f): axum::Form<AssignForm>,
) -> Page {
    user.check(&f.csrf)?;
    client(&app)
        .assign_case(app.grpc.request(
            &user.session.person,
            proto::AssignCaseRequest {
                number: number.clone(),
                agent: f.agent.trim().to_owned(),
                priority: f.priorite,
            },
        )?)
        .await?;
    see_other(&format!(
        "/support/dossiers/{}?fait=attribution",
        path(&number)
    ))
}

#[derive(Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    resolution: String,
}

/// The support centre closes a case with its resolution (mailed to the declarant).
pub async fn resolve(
    State(app): State<Shared>,
    user: User,
    Path(number): Path<String>,
    axum::Form(f): axum::Form<ResolveForm>,
) -> Page {
    user.check(&f.csrf)?;
    let resolution = f.resolution.trim().to_owned();
    if resolution.is_empty() {
        return Err(PageError::Invalid("écrivez la résolution".into()));
    }
    client(&app)
        .resolve_case(app.grpc.request(
            &user.session.person,
            proto::ResolveCaseRequest {
                number: number.clone(),
                resolution,
            },
        )?)
        .await?;
    see_other(&format!(
        "/support/dossiers/{}?fait=resolution",
        path(&number)
    ))
}

/// The form of seed 004: every field it requires, and at least one attachment.
pub async fn new_case(State(app): State<Shared>, user: User) -> Page {
    let s = &user.session;
    let me = person_entry(&app, &s.person, &s.person).await;
    let name = me.as_ref().map(|p| p.name.clone()).unwrap_or_default();
    let max_mib = okey_domain::request::MAX_ATTACHMENT_BYTES / (1024 * 1024);
    let text = |id: &'static str, label: &'static str, value: String| {
        html! {
            label for=(id) { (label) }
            input type="text" id=(id) name=(id) required maxlength="300" value=(value);
        }
    };
    page(layout(
        "Ouvrir un dossier de support",
        Some(s),
        html! {
            p { "Tous les champs sont obligatoires, sauf le numéro de série quand la demande ne porte pas sur une clef." }
            form method="post" action="/support/dossiers" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(s.csrf.as_str());
                label for="type" { "Type de demande" }
                select id="type" name="type" required {
                    @for (v, label) in KINDS { option value=(v) { (label) } }
                }
                fieldset {
                    legend { "Priorité" }
                    label { input type="radio" name="priorite" value="1" required; " Bloquante : le service est indisponible" }
                    label { input type="radio" name="priorite" value="2"; " Majeure : une fonction majeure d'un service est indisponible" }
                    label { input type="radio" name="priorite" value="3"; " Mineure : information, orientation, aide sur une fonction mineure" }
                }
                (text("nom", "Nom et prénom", name))
                (text("fonction", "Fonction", String::new()))
                (text("telephone", "Téléphone", String::new()))
                (text("commune", "Établissement ou service, et commune", String::new()))
                (text("objet", "Objet", String::new()))
                (text("population", "Population concernée", String::new()))
                label for="description" { "Description" }
                textarea id="description" name="description" rows="5" cols="60" required maxlength="20000" {}
                (text("localisation", "Localisation (salle, poste)", String::new()))
                label for="numero" { "Numéro de série de la clef concernée" }
                input type="text" id="numero" name="numero" maxlength="64";
                label for="pieces" { "Capture d'écran ou pièce jointe (PDF, PNG ou JPEG, " (max_mib) " Mio au plus)" }
                input type="file" id="pieces" name="pieces" required multiple accept="application/pdf,image/png,image/jpeg";
                p { button type="submit" { "Ouvrir le dossier" } }
            }
        },
    ))
}

/// Open the case: the server checks every field (the first one missing is named) and the
/// attachments, and mails its number to the declarant.
pub async fn open(State(app): State<Shared>, user: User, mut form: Multipart) -> Page {
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        PageError::Invalid(format!(
            "le formulaire n'a pas pu être lu : {}",
            e.body_text()
        ))
    };
    let mut csrf = String::new();
    let mut r = proto::OpenCaseRequest::default();
    while let Some(field) = form.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "pieces" {
            let file = field.file_name().unwrap_or_default().to_owned();
            let media = field.content_type().unwrap_or_default().to_owned();
            let content = field.bytes().await.map_err(unreadable)?;
            // A file input left empty sends one part with no name and no content.
            if !(file.is_empty() && content.is_empty()) {
                r.attachments.push(proto::CaseAttachment {
                    name: file,
                    media_type: media,
                    content: content.to_vec(),
                });
            }
            continue;
        }
        let text = field.text().await.map_err(unreadable)?;
        let text = text.trim().to_owned();
        match name.as_str() {
            "csrf" => csrf = text,
            "type" => r.kind = text,
            "priorite" => r.priority = text.parse().unwrap_or(0),
            "nom" => r.name = text,
            "fonction" => r.function = text,
            "telephone" => r.phone = text,
            "commune" => r.unit_town = text,
            "objet" => r.subject = text,
            "population" => r.population = text,
            "description" => r.description = text,
            "localisation" => r.location = text,
            "numero" => r.serial = text,
            _ => {}
        }
    }
    user.check(&csrf)?;
    let c = client(&app)
        .open_case(app.grpc.request(&user.session.person, r)?)
        .await?
        .into_inner();
    see_other(&format!(
        "/support/dossiers/{}?fait=ouvert",
        path(&c.number)
    ))
}
