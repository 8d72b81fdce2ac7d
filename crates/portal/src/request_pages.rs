//! The requester's and the validator's pages, in French: maud markup, every value escaped.

use maud::{Markup, PreEscaped, html};
use okey_server::proto;

use crate::pages::{layout, path, state_name};
use crate::session::Session;

/// What the request page shows.
pub struct RequestView {
    /// The request, its attachments and history.
    pub detail: proto::RequestDetail,
    /// The free pickup slots of its lot, when the requester may book one.
    pub slots: Vec<proto::PickupSlot>,
    /// What was just done (a flash).
    pub done: String,
    /// Why the PIN just typed was refused (never the PIN itself).
    pub pin_error: Option<String>,
}

/// French name of a request state.
pub fn request_state(state: &str) -> &'static str {
    match state {
        "draft" => "brouillon",
        "submitted" => "en attente de validation",
        "approved" => "validée",
        "refused" => "refusée",
        "cancelled" => "annulée",
        "waiting_for_stock" => "en attente de stock",
        "ready_for_pickup" => "clef prête à retirer",
        "completed" => "terminée (clef remise)",
        "expired" => "expirée",
        _ => "inconnu",
    }
}

fn key_type(t: &str) -> &'static str {
    match t {
        "software" => "clef logicielle (application sur téléphone)",
        _ => "clef matérielle",
    }
}

fn need(n: &str) -> &'static str {
    match n {
        "renewal" => "renouvellement",
        _ => "première demande",
    }
}

fn action_name(a: &str) -> &str {
    match a {
        "file" => "demande déposée",
        "submit" => "envoyée au valideur",
        "approve" => "validée",
        "auto_approve" => "validée d'office",
        "refuse" => "refusée",
        "cancel" => "annulée",
        "charter" => "charte signée",
        "pin" => "code PIN choisi",
        "out_of_stock" => "plus de clef en stock",
        "stock_arrived" => "clef arrivée en stock",
        "key_ready" => "clef prête",
        "appointment" => "rendez-vous pris",
        "complete" => "clef remise",
        "expire" => "expirée",
        other => other,
    }
}

fn done_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "envoyee" => "Votre demande est envoyée à votre valideur, qui est prévenu par courriel.",
        "validee" => "La demande est validée : le demandeur est prévenu par courriel.",
        "refusee" => "La demande est refusée : le demandeur est prévenu, avec le motif.",
        "charte" => "La charte est signée.",
        "pin" => "Votre code PIN est enregistré.",
        "rendez-vous" => "Votre rendez-vous de retrait est pris.",
        "annulee" => "La demande est annulée.",
        "perdue" => "La clef est déclarée perdue : elle ne permet plus de se connecter.",
        "nouveau-pin" => {
            "Votre nouveau code PIN est enregistré : tapez-le désormais avant le code de la clef."
        }
        _ => return None,
    })
}

fn requests_table(
    s: &Session,
    caption: &str,
    list: &[proto::KeyRequest],
    with_requester: bool,
) -> Markup {
    html! {
        table {
            caption { (caption) }
            thead {
                tr {
                    th scope="col" { "Demande" }
                    @if with_requester { th scope="col" { "Demandeur" } }
                    th scope="col" { "Type" }
                    th scope="col" { "Motif" }
                    th scope="col" { "État" }
                    th scope="col" { "Déposée le" }
                }
            }
            tbody {
                @for r in list {
                    tr {
                        td { a href={ "/demandes/" (r.id) } { "Demande n° " (r.id) } }
                        @if with_requester { td { (r.requester) } }
                        td { (key_type(&r.key_type)) }
                        td { (r.reason) }
                        td { (request_state(&r.state)) }
                        td { (s.zone.short(r.created_at)) }
                    }
                }
            }
        }
    }
}

/// The validator's section of the home page.
pub fn waiting_section(s: &Session, waiting: &[proto::KeyRequest]) -> Markup {
    html! {
        section aria-labelledby="valider-titre" {
            h2 id="valider-titre" { "Demandes à valider" }
            @if waiting.is_empty() {
                p { "Aucune demande n'attend votre validation." }
            } @else {
                (requests_table(s, "Les demandes de clef qui attendent votre décision", waiting, true))
            }
        }
    }
}

/// "Ma clef": the person's keys and their state, their requests and theirs.
pub fn my_key(
    s: &Session,
    keys: &[proto::Key],
    requests: &[proto::KeyRequest],
    done: &str,
) -> Markup {
    layout(
        "Ma clef",
        Some(s),
        html! {
            @if let Some(t) = done_text(done) {
                p.notice role="status" { (t) }
            }
            section aria-labelledby="clefs-titre" {
                h2 id="clefs-titre" { "Mes clefs" }
                @if keys.is_empty() {
                    p { "Vous n'avez pas de clef remise par okey." }
                } @else {
                    table {
                        caption { "Les clefs qui vous sont remises" }
                        thead { tr {
                            th scope="col" { "Numéro de série" }
                            th scope="col" { "État" }
                            th scope="col" { "Lot" }
                            th scope="col" { "Code PIN" }
                            th scope="col" { "Perte" }
                        } }
                        tbody {
                            @for k in keys {
                                tr {
                                    td { (k.serial) }
                                    td { (state_name(k.state)) }
                                    td { (k.lot) }
                                    td {
                                        @if k.state == proto::KeyState::HandedOver as i32 {
                                            a href={ "/ma-clef/" (path(&k.serial)) "/pin" } { "Changer le code PIN de la clef " (k.serial) }
                                        } @else {
                                            "—"
                                        }
                                    }
                                    td {
                                        @if k.state == proto::KeyState::HandedOver as i32 {
                                            form method="post" action={ "/ma-clef/" (path(&k.serial)) "/perdue" } {
                                                input type="hidden" name="csrf" value=(s.csrf.as_str());
                                                label for={ "perte-" (k.serial) } { "Circonstances (facultatif)" }
                                                input type="text" id={ "perte-" (k.serial) } name="commentaire" maxlength="500";
                                                button type="submit" { "Déclarer la clef " (k.serial) " perdue" }
                                            }
                                        } @else {
                                            "—"
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p { a href="/demandes/nouvelle" { "Demander ou renouveler ma clef" } }
            }
            section aria-labelledby="demandes-titre" {
                h2 id="demandes-titre" { "Mes demandes" }
                @if requests.is_empty() {
                    p { "Vous n'avez déposé aucune demande." }
                } @else {
                    (requests_table(s, "Vos demandes de clef et leur état", requests, false))
                }
            }
        },
    )
}

/// "Changer mon code PIN" for a key in use, also when the old PIN is forgotten: a code the key
/// shows now proves the person holds it. `error` is why the last try was refused (never the PIN
/// nor the code); the form always comes back empty.
pub fn change_pin(s: &Session, serial: &str, error: Option<&str>) -> Markup {
    let action = format!("/ma-clef/{}/pin", path(serial));
    let described = if error.is_some() {
        "code-aide pin-erreur"
    } else {
        "code-aide"
    };
    layout(
        "Changer mon code PIN",
        Some(s),
        html! {
            p { "Clef " strong { (serial) } ". Vous n'avez pas besoin de l'ancien code PIN : la clef prouve que vous l'avez en main." }
            @if let Some(why) = error {
                div.error role="alert" id="pin-erreur" { p { "Code PIN inchangé : " (why) } }
            }
            form method="post" action=(action) {
                input type="hidden" name="csrf" value=(s.csrf.as_str());
                label for="code" { "Code affiché par la clef" }
                p id="code-aide" { "Appuyez sur le bouton de la clef et tapez le code qu'elle affiche, sans votre code PIN. Un code faux compte comme une connexion manquée." }
                input type="text" id="code" name="code" required inputmode="numeric" autocomplete="one-time-code" maxlength="10"
                    aria-describedby=(described);
                label for="pin" { "Nouveau code PIN" }
                input type="password" id="pin" name="pin" required inputmode="numeric" autocomplete="new-password";
                label for="confirmation" { "Nouveau code PIN, à nouveau" }
                input type="password" id="confirmation" name="confirmation" required inputmode="numeric" autocomplete="new-password";
                p { button type="submit" { "Enregistrer mon nouveau code PIN" } }
            }
            p { a href="/ma-clef" { "Retour à ma clef" } }
        },
    )
}

/// "Demander / renouveler ma clef".
pub fn new_request(s: &Session, manager: Option<&proto::PersonRef>) -> Markup {
    let max_mib = okey_domain::request::MAX_ATTACHMENT_BYTES / (1024 * 1024);
    layout(
        "Demander ou renouveler ma clef",
        Some(s),
        html! {
            form method="post" action="/demandes" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(s.csrf.as_str());
                fieldset {
                    legend { "Type de clef" }
                    label { input type="radio" name="type" value="hardware" checked; " Clef matérielle (remise en main propre)" }
                    label { input type="radio" name="type" value="software"; " Clef logicielle (application sur votre téléphone)" }
                }
                fieldset {
                    legend { "Besoin" }
                    label { input type="radio" name="besoin" value="new" checked; " Première demande" }
                    label { input type="radio" name="besoin" value="renewal"; " Renouvellement (la nouvelle clef garde votre code PIN)" }
                }
                label for="motif" { "Motif de la demande" }
                textarea id="motif" name="motif" rows="3" cols="60" required maxlength="500" {}
                label for="pieces" { "Justificatifs (PDF, PNG ou JPEG, " (max_mib) " Mo au plus chacun, " (okey_domain::request::MAX_ATTACHMENTS) " au plus)" }
                input type="file" id="pieces" name="pieces" multiple required accept="application/pdf,image/png,image/jpeg";
                label for="valideur" { "Valideur (identifiant dans l'annuaire)" }
                p id="valideur-aide" {
                    @if let Some(m) = manager {
                        "Votre responsable (N+1) selon l'annuaire : " (m.name) " (" (m.id) "). Vous pouvez en indiquer un autre."
                    } @else {
                        "L'annuaire ne donne pas votre responsable (N+1) : indiquez votre valideur."
                    }
                }
                input type="text" id="valideur" name="valideur" aria-describedby="valideur-aide"
                    value=(manager.map(|m| m.id.as_str()).unwrap_or(""));
                p { button type="submit" { "Envoyer la demande" } }
            }
        },
    )
}

fn fields(s: &Session, r: &proto::KeyRequest, slot: Option<&proto::PickupSlot>) -> Markup {
    html! {
        dl.fields {
            dt { "État" } dd { (request_state(&r.state)) }
            dt { "Demandeur" } dd { (r.requester) }
            dt { "Type" } dd { (key_type(&r.key_type)) " — " (need(&r.need)) }
            dt { "Motif" } dd { (r.reason) }
            dt { "Valideur" } dd { @if r.validator.is_empty() { "—" } @else { (r.validator) } }
            @if !r.second_validator.is_empty() {
                dt { "Valideur de niveau supérieur (N+2)" } dd { (r.second_validator) }
            }
            @if !r.decided_by.is_empty() {
                dt { "Décision de" } dd { (r.decided_by) }
            }
            @if !r.decision_reason.is_empty() {
                dt { "Motif de la décision" } dd { (r.decision_reason) }
            }
            dt { "Charte" } dd { @if r.charter_version == 0 { "non signée" } @else { "signée le " (s.zone.short(r.charter_signed_at)) } }
            dt { "Code PIN" } dd { @if r.pin_set { "choisi" } @else { "non choisi" } }
            @if !r.serial.is_empty() {
                dt { "Clef réservée" } dd { (r.serial) " (lot " (r.lot) ")" }
            }
            @if let Some(sl) = slot {
                dt { "Rendez-vous de retrait" } dd { (s.zone.short(sl.starts_at)) ", " (sl.place) }
            }
        }
    }
}

/// One request, with the forms its state offers the person looking at it.
pub fn request(s: &Session, v: &RequestView) -> Markup {
    let d = &v.detail;
    let Some(r) = &d.request else {
        return layout(
            "Demande introuvable",
            Some(s),
            html! { p { "Cette demande n'existe pas." } },
        );
    };
    let me = s.person.as_str();
    let mine = r.requester == me;
    let deciding = r.state == "submitted" && (r.validator == me || r.second_validator == me);
    let going = matches!(
        r.state.as_str(),
        "approved" | "waiting_for_stock" | "ready_for_pickup"
    );
    let charter = mine && going && r.charter_version == 0;
    let pin = mine && going && r.charter_version != 0 && !r.pin_set;
    let enrol = mine
        && r.state == "approved"
        && r.key_type == "software"
        && r.charter_version != 0
        && r.pin_set;
    let booking = mine && r.state == "ready_for_pickup" && r.slot == 0;
    let cancel = mine
        && matches!(
            r.state.as_str(),
            "draft" | "submitted" | "approved" | "waiting_for_stock"
        );
    let csrf = s.csrf.as_str();
    let action = |what: &str| format!("/demandes/{}/{what}", r.id);
    layout(
        &format!("Demande n° {}", r.id),
        Some(s),
        html! {
            @if let Some(t) = done_text(&v.done) {
                p.notice role="status" { (t) }
            }
            (fields(s, r, d.slot.as_ref()))
            section aria-labelledby="pieces-titre" {
                h2 id="pieces-titre" { "Justificatifs" }
                @if d.attachments.is_empty() {
                    p { "Aucun justificatif." }
                } @else {
                    ul {
                        @for a in &d.attachments {
                            li {
                                a href={ "/demandes/" (r.id) "/pieces/" (a.id) } { "Télécharger " (a.name) }
                                " (" (a.media_type) ", " (a.size) " octets)"
                            }
                        }
                    }
                }
            }
            @if deciding {
                section aria-labelledby="decision-titre" {
                    h2 id="decision-titre" { "Votre décision" }
                    form method="post" action=(action("decision")) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="decision" value="valider";
                        button type="submit" { "Valider la demande" }
                    }
                    form method="post" action=(action("decision")) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="decision" value="refuser";
                        label for="motif-refus" { "Motif du refus (le demandeur le lira)" }
                        textarea id="motif-refus" name="motif" rows="2" cols="60" required maxlength="500" {}
                        p { button.secondary type="submit" { "Refuser la demande" } }
                    }
                }
            }
            @if charter {
                section aria-labelledby="charte-titre" {
                    h2 id="charte-titre" { "Signer la charte" }
                    p { "Lisez la charte d'utilisation des clefs OTP, puis saisissez le numéro imprimé à son bas et cochez la case." }
                    p { a href="/charte" { "Lire la charte d'utilisation des clefs OTP (PDF)" } }
                    form method="post" action=(action("charte")) {
                        input type="hidden" name="csrf" value=(csrf);
                        label for="numero" { "Numéro de la charte" }
                        input type="text" id="numero" name="numero" required autocomplete="off";
                        label { input type="checkbox" name="lu" value="oui" required; " J'ai lu la charte et je m'engage à la respecter" }
                        p { button type="submit" { "Signer la charte" } }
                    }
                }
            }
            @if pin {
                section aria-labelledby="pin-titre" {
                    h2 id="pin-titre" { "Choisir mon code PIN" }
                    p id="pin-aide" { "Votre code PIN se tape avant le code de la clef à chaque connexion. Personne d'autre ne le connaît ; il n'est jamais affiché." }
                    @if let Some(why) = &v.pin_error {
                        div.error role="alert" id="pin-erreur" { p { "Code PIN refusé : " (why) } }
                    }
                    form method="post" action=(action("pin")) {
                        input type="hidden" name="csrf" value=(csrf);
                        label for="pin" { "Code PIN" }
                        input type="password" id="pin" name="pin" required inputmode="numeric" autocomplete="new-password"
                            aria-describedby=(if v.pin_error.is_some() { "pin-aide pin-erreur" } else { "pin-aide" });
                        label for="confirmation" { "Code PIN, à nouveau" }
                        input type="password" id="confirmation" name="confirmation" required inputmode="numeric" autocomplete="new-password";
                        p { button type="submit" { "Enregistrer mon code PIN" } }
                    }
                }
            }
            @if enrol {
                section aria-labelledby="enrol-titre" {
                    h2 id="enrol-titre" { "Installer ma clef logicielle" }
                    form method="post" action=(action("enrolement")) {
                        input type="hidden" name="csrf" value=(csrf);
                        fieldset {
                            legend { "Votre téléphone" }
                            label { input type="radio" name="plateforme" value="android" required; " Android" }
                            label { input type="radio" name="plateforme" value="ios"; " iPhone (iOS)" }
                        }
                        p { button type="submit" { "Afficher le QR code" } }
                    }
                }
            }
            @if booking {
                section aria-labelledby="rdv-titre" {
                    h2 id="rdv-titre" { "Prendre rendez-vous pour retirer ma clef" }
                    @if v.slots.is_empty() {
                        p { "Aucun créneau n'est proposé pour le moment : le gestionnaire du lot en proposera." }
                    } @else {
                        form method="post" action=(action("rendez-vous")) {
                            input type="hidden" name="csrf" value=(csrf);
                            fieldset {
                                legend { "Créneaux proposés" }
                                @for sl in &v.slots {
                                    label { input type="radio" name="creneau" value=(sl.id) required; " " (s.zone.short(sl.starts_at)) " — " (sl.place) }
                                }
                            }
                            p { button type="submit" { "Réserver ce créneau" } }
                        }
                    }
                }
            }
            @if cancel {
                form method="post" action=(action("annulation")) {
                    input type="hidden" name="csrf" value=(csrf);
                    p { button.secondary type="submit" { "Annuler ma demande" } }
                }
            }
            section aria-labelledby="historique-titre" {
                h2 id="historique-titre" { "Historique" }
                table {
                    caption { "Les étapes de la demande" }
                    thead { tr {
                        th scope="col" { "Date" }
                        th scope="col" { "Par" }
                        th scope="col" { "Étape" }
                        th scope="col" { "Commentaire" }
                    } }
                    tbody {
                        @for e in &d.events {
                            tr {
                                td { (s.zone.short(e.at)) }
                                td { (e.actor) }
                                td { (action_name(&e.action)) }
                                td { (e.comment) }
                            }
                        }
                    }
                }
            }
            p { a href="/ma-clef" { "Retour à ma clef" } }
        },
    )
}

/// A software key's QR code and instructions (this answer only).
pub fn enrolment(s: &Session, id: u64, instructions: &str, svg: &str) -> Markup {
    layout(
        "Installer ma clef logicielle",
        Some(s),
        html! {
            p { (instructions) }
            figure {
                (PreEscaped(svg))
                figcaption { "Scannez ce QR code avec l'application d'authentification. Il n'est affiché qu'une fois : ne le partagez pas." }
            }
            p { "Votre premier code valide confirme la clef et termine la demande." }
            p { a href={ "/demandes/" (id) } { "Retour à la demande" } }
        },
    )
}
