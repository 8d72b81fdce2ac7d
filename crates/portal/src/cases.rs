//! The support desk's cases in the portal: the person's cases, one case with its messages, and
//! a reply. Each page is one SupportService call for the session's person: the server shows a
//! manager or portal caller only the cases its person declared, and never the internal notes.

use axum::extract::{Path, Query, State};
use maud::html;
use okey_server::proto;
use okey_server::proto::support_service_client::SupportServiceClient;
use serde::Deserialize;

use crate::pages::{layout, path};
use crate::web::{Page, PageError, Shared, User, page, see_other};

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

/// The cases the person may see.
pub async fn list(State(app): State<Shared>, user: User) -> Page {
    let s = &user.session;
    let cases = client(&app)
        .list_cases(app.grpc.request(
            &s.person,
            proto::ListCasesRequest {
                all: true,
                assignee: String::new(),
                limit: 200,
            },
        )?)
        .await?
        .into_inner()
        .cases;
    page(layout(
        "Mes dossiers de support",
        Some(s),
        html! {
            @if cases.is_empty() {
                p { "Aucun dossier." }
            } @else {
                table {
                    caption { "Les dossiers de support que vous avez ouverts" }
                    thead { tr {
                        th scope="col" { "Numéro" }
                        th scope="col" { "Objet" }
                        th scope="col" { "État" }
                        th scope="col" { "Ouvert le" }
                    } }
                    tbody {
                        @for c in &cases {
                            tr {
                                td { a href={ "/support/dossiers/" (path(&c.number)) } { "Dossier " (c.number) } }
                                td { (c.subject) }
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
            @if done.fait == "reponse" {
                p.notice role="status" { "Votre réponse est ajoutée au dossier." }
            }
            dl.fields {
                dt { "État" } dd { (state_name(&c.state)) }
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
                        p { button type="submit" { "Envoyer la réponse" } }
                    }
                }
            }
            p { a href="/support/dossiers" { "Retour à mes dossiers" } }
        },
    ))
}

#[derive(Deserialize)]
pub struct ReplyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    message: String,
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
                internal: false,
            },
        )?)
        .await?;
    see_other(&format!("/support/dossiers/{}?fait=reponse", path(&number)))
}
