//! The pages, in French: one function per screen, maud markup, every value escaped.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use okey_server::proto;

use crate::session::Session;
use crate::web::KeyFilter;

/// The one style sheet (served from this origin: the CSP allows no inline style). Colours meet
/// WCAG 2.1 AA contrast (text #1a1a1a on white, links #0b4ea2, focus outline visible).
pub const CSS: &str = r#"
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #1a1a1a; background: #fff; margin: 0; line-height: 1.5; }
a { color: #0b4ea2; }
a:focus, button:focus, input:focus, select:focus, textarea:focus, main:focus { outline: 3px solid #b34700; outline-offset: 2px; }
.skip { position: absolute; left: -10000px; }
.skip:focus { position: static; }
header, footer { background: #f0f0f0; padding: 0.5rem 1rem; }
header .brand { font-weight: bold; margin: 0; }
nav ul { list-style: none; padding: 0; margin: 0.5rem 0; display: flex; gap: 1rem; flex-wrap: wrap; }
main { padding: 1rem; max-width: 70rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #767676; padding: 0.3rem 0.5rem; text-align: left; }
th { background: #e8e8e8; }
form.inline { display: inline; }
fieldset { border: 1px solid #767676; margin: 1rem 0; padding: 0.5rem 1rem; }
label { display: block; margin-top: 0.5rem; }
input, select, textarea, button { font: inherit; }
button { background: #0b4ea2; color: #fff; border: 2px solid #0b4ea2; padding: 0.3rem 0.8rem; cursor: pointer; }
button.secondary { background: #fff; color: #0b4ea2; }
.notice { border-left: 4px solid #1e7b34; padding: 0.3rem 0.8rem; background: #eef7f0; }
.error { border-left: 4px solid #b00020; padding: 0.3rem 0.8rem; background: #fdecee; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dl.fields dt { font-weight: bold; }
"#;

/// A path segment, percent-encoded.
pub fn path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query value, percent-encoded.
pub fn query(s: &str) -> String {
    path(s)
}

pub(crate) fn layout(title: &str, user: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="fr" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — OKEY" }
                link rel="stylesheet" href="/static/portal.css";
            }
            body {
                a.skip href="#contenu" { "Aller au contenu" }
                header {
                    p.brand { a href="/" { "OKEY" } " — gestion des clefs OTP" }
                    @if let Some(s) = user {
                        nav aria-label="Menu principal" {
                            ul {
                                li { a href="/" { "Accueil" } }
                                li { a href="/ma-clef" { "Ma clef" } }
                                li { a href="/lots" { "Gérer les clefs" } }
                                li { a href="/support" { "Rechercher une clef" } }
                            }
                        }
                        form.inline method="post" action="/deconnexion" {
                            input type="hidden" name="csrf" value=(s.csrf.as_str());
                            span { "Connecté : " (s.name) " (" (s.person) ") " }
                            button.secondary type="submit" { "Se déconnecter" }
                        }
                    }
                }
                main id="contenu" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
                footer { p { "OKEY — portail des personnels" } }
            }
        }
    }
}

/// The error page.
pub fn error(title: &str, text: &str, detail: Option<&str>) -> Markup {
    error_page(title, text, detail, None)
}

/// The error page, with a login link (back to the local path `login`) when it is set.
pub fn error_page(title: &str, text: &str, detail: Option<&str>, login: Option<&str>) -> Markup {
    layout(
        title,
        None,
        html! {
            div.error role="alert" { p { (text) } }
            @if let Some(d) = detail {
                p { "Détail : " (d) }
            }
            @if let Some(back) = login {
                p { a href={ "/connexion?retour=" (query(back)) } { "Se connecter" } }
            }
            p { a href="/" { "Retour à l'accueil" } }
        },
    )
}

/// The page of someone not logged in.
pub fn welcome(login: bool) -> Markup {
    layout(
        "Bienvenue",
        None,
        html! {
            p { "Ce portail permet aux gestionnaires de lots et au centre de support de gérer les clefs OTP." }
            @if login {
                p { a href="/connexion" { "Se connecter avec le compte de l'académie" } }
            } @else {
                p.error { "La connexion n'est pas configurée sur ce serveur." }
            }
        },
    )
}

/// After logout.
pub fn logged_out() -> Markup {
    layout(
        "Vous êtes déconnecté",
        None,
        html! {
            p.notice role="status" { "Votre session est terminée." }
            p { a href="/connexion" { "Se reconnecter" } }
        },
    )
}

/// The session is closed here and the browser goes on to the provider to close it there
/// too (at once, by a refresh: the page has no script), with a link if it does not.
pub fn leaving(provider_url: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="fr" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content={ "0; url=" (provider_url) };
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Déconnexion — OKEY" }
                link rel="stylesheet" href="/static/portal.css";
            }
            body {
                main id="contenu" {
                    h1 { "Déconnexion" }
                    p.notice role="status" { "Votre session okey est terminée. Déconnexion du guichet d'authentification…" }
                    p { a href=(provider_url) { "Terminer aussi la session du guichet d'authentification" } }
                }
            }
        }
    }
}

/// French name of a key state.
pub fn state_name(state: i32) -> &'static str {
    use proto::KeyState as S;
    match S::try_from(state) {
        Ok(S::None) => "hors lot",
        Ok(S::Delivered) => "livrée",
        Ok(S::Reserved) => "réservée",
        Ok(S::Assigned) => "attribuée",
        Ok(S::HandedOver) => "remise",
        Ok(S::Returned) => "restituée",
        Ok(S::Lost) => "perdue",
        Ok(S::Found) => "retrouvée",
        Ok(S::Expired) => "expirée",
        Ok(S::Scrapped) => "mise au rebut",
        Ok(S::Recycled) => "recyclée",
        _ => "inconnu",
    }
}

/// The filter value of a key state.
fn state_slug(state: i32) -> &'static str {
    use proto::KeyState as S;
    match S::try_from(state) {
        Ok(S::None) => "none",
        Ok(S::Delivered) => "delivered",
        Ok(S::Reserved) => "reserved",
        Ok(S::Assigned) => "assigned",
        Ok(S::HandedOver) => "handed_over",
        Ok(S::Returned) => "returned",
        Ok(S::Lost) => "lost",
        Ok(S::Found) => "found",
        Ok(S::Expired) => "expired",
        Ok(S::Scrapped) => "scrapped",
        Ok(S::Recycled) => "recycled",
        _ => "unknown",
    }
}

const STATES: [i32; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

fn kind_name(kind: i32) -> &'static str {
    use proto::LotKind as K;
    match K::try_from(kind) {
        Ok(K::LotKind2d) => "2D (établissement)",
        Ok(K::LotKind1d) => "1D (circonscription)",
        Ok(K::Rectorat) => "Rectorat",
        Ok(K::Examen) => "Examen",
        _ => "inconnu",
    }
}

/// The home page: what the person manages, by their functions.
pub fn home(
    s: &Session,
    me: Option<&proto::DirectoryPerson>,
    lots: &[proto::LotSummary],
    waiting: &[proto::KeyRequest],
) -> Markup {
    let desk = me.is_some_and(|p| p.found_key_desk || p.recycling);
    layout(
        "Accueil",
        Some(s),
        html! {
            @if let Some(p) = me {
                p { "Bonjour " (p.name) "." }
                @if !p.functions.is_empty() {
                    p { "Vos fonctions : " (p.functions.join(", ")) " — " (p.unit_name) " (" (p.unit) ")." }
                }
            }
            (crate::request_pages::waiting_section(s, waiting))
            section aria-labelledby="ma-clef-titre" {
                h2 id="ma-clef-titre" { "Ma clef" }
                p { a href="/ma-clef" { "Mes clefs et mes demandes" } " — " a href="/demandes/nouvelle" { "demander ou renouveler ma clef" } }
            }
            section aria-labelledby="dossiers-titre" {
                h2 id="dossiers-titre" { "Support" }
                p { a href="/support/dossiers" { "Mes dossiers de support" } }
            }
            @if desk {
                section aria-labelledby="support-titre" {
                    h2 id="support-titre" { "Centre de support" }
                    p { a href="/support" { "Rechercher une clef par son numéro de série" } " (titulaire, lot, état, historique, clef retrouvée)." }
                }
            }
            section aria-labelledby="lots-titre" {
                h2 id="lots-titre" { "Vos lots" }
                @if lots.is_empty() {
                    p { "Vous ne gérez aucun lot." }
                } @else {
                    ul {
                        @for l in lots {
                            @if let Some(lot) = &l.lot {
                                li {
                                    a href={ "/lots/" (path(&lot.id)) } { "Gérer les clefs du lot " (lot.id) }
                                    " — " (lot.name) " (" (kind_name(lot.kind)) ")"
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The lots the person sees.
pub fn lots(s: &Session, lots: &[proto::LotSummary]) -> Markup {
    layout(
        "Gérer les clefs",
        Some(s),
        html! {
            @if lots.is_empty() {
                p { "Vous ne gérez aucun lot." }
            } @else {
                table {
                    caption { "Vos lots et leurs clefs par état" }
                    thead { tr { th scope="col" { "Lot" } th scope="col" { "Nom" } th scope="col" { "Type" } th scope="col" { "Clefs par état" } th scope="col" { "Commandes en cours" } } }
                    tbody {
                        @for l in lots {
                            @if let Some(lot) = &l.lot {
                                tr {
                                    td { a href={ "/lots/" (path(&lot.id)) } { (lot.id) } }
                                    td { (lot.name) }
                                    td { (kind_name(lot.kind)) }
                                    td { @for (i, c) in l.counts.iter().enumerate() { @if i > 0 { ", " } (state_name(c.state)) " : " (c.count) } }
                                    td { (l.open_orders) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn sort_link(lot: &str, f: &KeyFilter, column: &str, label: &str) -> Markup {
    let current = f.tri == column || (f.tri.is_empty() && column == "serie");
    let desc = current && f.ordre == "desc";
    let next = if current && !desc { "desc" } else { "asc" };
    let aria = if !current {
        "none"
    } else if desc {
        "descending"
    } else {
        "ascending"
    };
    html! {
        th scope="col" aria-sort=(aria) {
            a href={ "/lots/" (path(lot)) "?etat=" (path(&f.etat)) "&recherche=" (path(&f.recherche)) "&tri=" (column) "&ordre=" (next) } {
                (label)
                @if current { @if desc { " ▼" } @else { " ▲" } }
            }
        }
    }
}

/// "Gérer les clefs": the lot's keys, filtered and sorted.
pub fn lot_keys(s: &Session, d: &proto::LotDetail, f: &KeyFilter) -> Markup {
    let lot = d.summary.as_ref().and_then(|x| x.lot.as_ref());
    let id = lot.map(|l| l.id.as_str()).unwrap_or("");
    let needle = f.recherche.trim().to_lowercase();
    let mut keys: Vec<&proto::Key> = d
        .keys
        .iter()
        .filter(|k| f.etat.is_empty() || state_slug(k.state) == f.etat)
        .filter(|k| {
            needle.is_empty()
                || k.serial.to_lowercase().contains(&needle)
                || k.holder.to_lowercase().contains(&needle)
        })
        .collect();
    match f.tri.as_str() {
        "etat" => keys.sort_by(|a, b| {
            state_name(a.state)
                .cmp(state_name(b.state))
                .then(a.serial.cmp(&b.serial))
        }),
        "titulaire" => keys.sort_by(|a, b| a.holder.cmp(&b.holder).then(a.serial.cmp(&b.serial))),
        "validite" => keys.sort_by(|a, b| {
            a.valid_until
                .cmp(&b.valid_until)
                .then(a.serial.cmp(&b.serial))
        }),
        _ => keys.sort_by(|a, b| a.serial.cmp(&b.serial)),
    }
    if f.ordre == "desc" {
        keys.reverse();
    }
    let title = format!("Gérer les clefs du lot {id}");
    layout(
        &title,
        Some(s),
        html! {
            @if let Some(l) = lot { p { (l.name) " — " (kind_name(l.kind)) ", unité " (l.unit) "." } }
            p { a href={ "/lots/" (path(id)) "/commandes" } { "Commandes de clefs de ce lot" } }
            p { a href={ "/lots/" (path(id)) "/creneaux" } { "Créneaux de retrait de ce lot" } }
            form method="get" action={ "/lots/" (path(id)) } role="search" aria-label="Filtrer les clefs" {
                label for="etat" { "État" }
                select id="etat" name="etat" {
                    option value="" selected[f.etat.is_empty()] { "Tous" }
                    @for st in STATES {
                        option value=(state_slug(st)) selected[f.etat == state_slug(st)] { (state_name(st)) }
                    }
                }
                label for="recherche" { "Numéro de série ou titulaire contient" }
                input id="recherche" name="recherche" type="search" value=(f.recherche);
                input type="hidden" name="tri" value=(f.tri);
                input type="hidden" name="ordre" value=(f.ordre);
                p { button type="submit" { "Filtrer" } }
            }
            p role="status" { (keys.len()) " clef(s) sur " (d.keys.len()) "." }
            table {
                caption { "Clefs du lot " (id) }
                thead {
                    tr {
                        (sort_link(id, f, "serie", "Numéro de série"))
                        (sort_link(id, f, "etat", "État"))
                        (sort_link(id, f, "titulaire", "Titulaire"))
                        th scope="col" { "Type" }
                        (sort_link(id, f, "validite", "Fin de validité"))
                    }
                }
                tbody {
                    @for k in &keys {
                        tr {
                            td { a href={ "/clefs/" (path(&k.serial)) } { (k.serial) } }
                            td { (state_name(k.state)) }
                            td { @if k.holder.is_empty() { "—" } @else { (k.holder) } }
                            td { @if k.kind == "software" { "logicielle" } @else { "matérielle" } }
                            td { (s.zone.short(k.valid_until)) }
                        }
                    }
                }
            }
        },
    )
}

/// The lot's orders, and a form for a new one.
pub fn orders(s: &Session, d: &proto::LotDetail) -> Markup {
    let id = d
        .summary
        .as_ref()
        .and_then(|x| x.lot.as_ref())
        .map(|l| l.id.as_str())
        .unwrap_or("");
    let title = format!("Commandes du lot {id}");
    layout(
        &title,
        Some(s),
        html! {
            p { a href={ "/lots/" (path(id)) } { "Retour aux clefs du lot" } }
            h2 { "Commandes" }
            @if d.orders.is_empty() {
                p { "Aucune commande." }
            } @else {
                table {
                    caption { "Commandes du lot " (id) }
                    thead { tr { th scope="col" { "N°" } th scope="col" { "Quantité" } th scope="col" { "État" } th scope="col" { "Commentaire" } th scope="col" { "Passée par" } th scope="col" { "Le" } th scope="col" { "Action" } } }
                    tbody {
                        @for o in &d.orders {
                            tr {
                                td { (o.id) }
                                td { (o.quantity) }
                                td { @match proto::OrderState::try_from(o.state) {
                                    Ok(proto::OrderState::Open) => "en cours",
                                    Ok(proto::OrderState::Fulfilled) => "livrée",
                                    Ok(proto::OrderState::Cancelled) => "annulée",
                                    _ => "inconnu",
                                } }
                                td { (o.comment) }
                                td { (o.ordered_by) }
                                td { (s.zone.short(o.ordered_at)) }
                                td {
                                    @if o.state == proto::OrderState::Open as i32 {
                                        form.inline method="post" action={ "/lots/" (path(id)) "/commandes/" (o.id) "/annuler" } {
                                            input type="hidden" name="csrf" value=(s.csrf.as_str());
                                            button.secondary type="submit" { "Annuler la commande " (o.id) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Commander des clefs" }
            form method="post" action={ "/lots/" (path(id)) "/commandes" } {
                input type="hidden" name="csrf" value=(s.csrf.as_str());
                label for="quantite" { "Nombre de clefs" }
                input id="quantite" name="quantite" type="number" min="1" max="10000" required;
                label for="commentaire" { "Commentaire (facultatif)" }
                textarea id="commentaire" name="commentaire" rows="2" {}
                p { button type="submit" { "Commander" } }
            }
        },
    )
}

/// The lot's pickup slots (booked or free), and a form to offer one.
pub fn slots(s: &Session, lot: &str, slots: &[proto::PickupSlot]) -> Markup {
    let title = format!("Créneaux de retrait du lot {lot}");
    layout(
        &title,
        Some(s),
        html! {
            p { a href={ "/lots/" (path(lot)) } { "Retour aux clefs du lot" } }
            h2 { "Créneaux proposés" }
            @if slots.is_empty() {
                p { "Aucun créneau n'est proposé." }
            } @else {
                table {
                    caption { "Créneaux de retrait du lot " (lot) }
                    thead { tr { th scope="col" { "Le" } th scope="col" { "Lieu" } th scope="col" { "Réservé" } } }
                    tbody {
                        @for sl in slots {
                            tr {
                                td { (s.zone.short(sl.starts_at)) }
                                td { (sl.place) }
                                td { @if sl.request == 0 { "libre" } @else { "demande n° " (sl.request) } }
                            }
                        }
                    }
                }
            }
            h2 { "Proposer un créneau" }
            form method="post" action={ "/lots/" (path(lot)) "/creneaux" } {
                input type="hidden" name="csrf" value=(s.csrf.as_str());
                label for="debut" { "Date et heure (" (zone_label(&s.zone)) ")" }
                input id="debut" name="debut" type="datetime-local" required;
                label for="lieu" { "Lieu du retrait" }
                input id="lieu" name="lieu" type="text" maxlength="200" required;
                p { button type="submit" { "Proposer ce créneau" } }
            }
        },
    )
}

/// How a form names the zone its times are typed in: "heure UTC", or "heure de
/// Indian/Reunion, UTC+04:00" (the offset now).
pub(crate) fn zone_label(z: &okey_server::Zone) -> String {
    let offset = z.offset_label(okey_server::clock::now());
    if z.name() == "UTC" {
        "heure UTC".to_owned()
    } else {
        format!("heure de {}, {offset}", z.name())
    }
}

fn done_text(done: &str) -> Option<&'static str> {
    match done {
        "perdue" => Some("La clef est déclarée perdue."),
        "stock" => Some("La clef est remise en stock."),
        "remise" => {
            Some("La clef est remise à son titulaire : imprimez le bordereau de remise ci-dessous.")
        }
        "restitution" => Some(
            "La restitution est enregistrée : imprimez le bordereau de restitution ci-dessous.",
        ),
        _ => None,
    }
}

fn key_fields(s: &Session, k: &proto::Key) -> Markup {
    html! {
        dl.fields {
            dt { "Numéro de série" } dd { (k.serial) }
            dt { "État" } dd { (state_name(k.state)) }
            dt { "Titulaire" } dd { @if k.holder.is_empty() { "aucun" } @else { (k.holder) } }
            dt { "Lot" } dd { @if k.lot.is_empty() { "aucun" } @else { (k.lot) } }
            dt { "Lot d'origine" } dd { @if k.origin_lot.is_empty() { "—" } @else { (k.origin_lot) } }
            dt { "Type" } dd { @if k.kind == "software" { "logicielle" } @else { "matérielle" } }
            dt { "Authentification" } dd { (k.status) }
            dt { "Fin de validité" } dd { (s.zone.short(k.valid_until)) }
            @if !k.reserved_for.is_empty() { dt { "Réservée pour" } dd { (k.reserved_for) } }
        }
    }
}

fn history(s: &Session, d: &proto::KeyDetail) -> Markup {
    html! {
        h2 { "Historique" }
        @if d.history.is_empty() {
            p { "Aucun événement." }
        } @else {
            table {
                caption { "Historique de la clef" }
                thead { tr { th scope="col" { "Date" } th scope="col" { "Action" } th scope="col" { "Par" } th scope="col" { "État" } th scope="col" { "Titulaire" } th scope="col" { "Commentaire" } } }
                tbody {
                    @for e in &d.history {
                        tr {
                            td { (s.zone.short(e.at)) }
                            td { (e.action) }
                            td { (e.actor) }
                            td { (state_name(e.state_before)) " → " (state_name(e.state_after)) }
                            td { (e.holder_after) }
                            td { (e.comment) }
                        }
                    }
                }
            }
        }
    }
}

/// "Gérer la clef": the key, its receipts and the lot manager's actions.
pub fn key(s: &Session, d: &proto::KeyDetail, done: &str) -> Markup {
    let Some(k) = d.key.as_ref() else {
        return error(
            "Clef introuvable",
            "Le serveur n'a rien renvoyé pour cette clef.",
            None,
        );
    };
    let title = format!("Gérer la clef {}", k.serial);
    let base = format!("/clefs/{}", path(&k.serial));
    layout(
        &title,
        Some(s),
        html! {
            @if let Some(t) = done_text(done) { p.notice role="status" { (t) } }
            (key_fields(s, k))
            @if !k.lot.is_empty() { p { a href={ "/lots/" (path(&k.lot)) } { "Retour aux clefs du lot " (k.lot) } } }
            h2 { "Bordereaux" }
            @if d.receipts.is_empty() {
                p { "Aucun bordereau." }
            } @else {
                ul {
                    @for r in &d.receipts {
                        li {
                            a href={ (base) "/bordereaux/" (path(&r.number)) } {
                                @if r.kind == proto::ReceiptKind::Return as i32 { "Bordereau de restitution " } @else { "Bordereau de remise " }
                                (r.number) " (PDF)"
                            }
                            " — " (r.holder) ", " (s.zone.short(r.at))
                            @if r.confirmed_at != 0 { ", signé le " (s.zone.short(r.confirmed_at)) }
                        }
                    }
                }
            }
            h2 { "Actions" }
            form method="post" action={ (base) "/remise" } {
                fieldset {
                    legend { "Remise à un titulaire" }
                    input type="hidden" name="csrf" value=(s.csrf.as_str());
                    label for="titulaire" { "Titulaire (identifiant dans l'annuaire)" }
                    input id="titulaire" name="titulaire" type="text" required autocomplete="off";
                    label for="lieu" { "Lieu de la remise" }
                    input id="lieu" name="lieu" type="text";
                    p { button type="submit" { "Remettre la clef" } }
                }
            }
            form method="post" action={ (base) "/restitution" } {
                fieldset {
                    legend { "Restitution par le titulaire" }
                    input type="hidden" name="csrf" value=(s.csrf.as_str());
                    label for="etat-rendu" { "État de la clef rendue" }
                    select id="etat-rendu" name="etat" {
                        option value="good" { "bon" }
                        option value="damaged" { "abîmée" }
                        option value="broken" { "cassée" }
                    }
                    label for="lieu-restitution" { "Lieu de la restitution" }
                    input id="lieu-restitution" name="lieu" type="text";
                    p { button type="submit" { "Enregistrer la restitution" } }
                }
            }
            form method="post" action={ (base) "/perdue" } {
                fieldset {
                    legend { "Déclarer la clef perdue" }
                    input type="hidden" name="csrf" value=(s.csrf.as_str());
                    label for="commentaire" { "Circonstances (facultatif)" }
                    textarea id="commentaire" name="commentaire" rows="2" {}
                    p { button type="submit" { "Déclarer perdue" } }
                }
            }
            form method="post" action={ (base) "/stock" } {
                fieldset {
                    legend { "Mettre en stock" }
                    input type="hidden" name="csrf" value=(s.csrf.as_str());
                    p { "Remet une clef retrouvée dans son lot d'origine, disponible." }
                    p { button type="submit" { "Mettre en stock" } }
                }
            }
            (history(s, d))
        },
    )
}

fn decision_text(d: i32) -> &'static str {
    use proto::FoundDecision as F;
    match F::try_from(d) {
        Ok(F::Scrap) => "La clef est expirée : mettez-la au rebut.",
        Ok(F::RouteToHolder) => {
            "La clef appartient à un titulaire : renvoyez-la lui (s'il n'en a plus besoin, il la restitue au gestionnaire de son lot)."
        }
        Ok(F::ToLotManager) => {
            "La clef n'est attribuée à personne : transmettez-la au gestionnaire de son lot."
        }
        Ok(F::ToItDepartment) => {
            "Clef du lot du Rectorat attribuée à personne : transmettez-la à la DSI pour recyclage ou mise au rebut."
        }
        Ok(F::BackToOriginLot) => {
            "La clef était déclarée perdue : elle est retrouvée et revient dans son lot d'origine."
        }
        Ok(F::NothingToDo) => "La clef est déjà mise au rebut ou recyclée : rien à faire.",
        _ => "Décision inconnue.",
    }
}

/// The support centre's search by serial, with the found-key decision.
pub fn support(
    s: &Session,
    serial: &str,
    d: Option<&proto::KeyDetail>,
    holder: Option<&proto::DirectoryPerson>,
    decision: Option<&proto::FoundKeyResponse>,
    notice: Option<&str>,
) -> Markup {
    layout(
        "Rechercher une clef",
        Some(s),
        html! {
            form method="get" action="/support" role="search" aria-label="Rechercher une clef" {
                label for="numero" { "Numéro de série" }
                input id="numero" name="numero" type="search" value=(serial) required;
                p { button type="submit" { "Rechercher" } }
            }
            @if let Some(n) = notice {
                p.notice role="status" { (n) }
            }
            @if let Some(f) = decision {
                div.notice role="status" {
                    p { strong { "Décision : " } (decision_text(f.decision)) }
                }
            }
            @if let Some(k) = d.and_then(|d| d.key.as_ref()) {
                h2 { "Clef " (k.serial) }
                (key_fields(s, k))
                @if let Some(p) = holder {
                    h3 { "Titulaire" }
                    p { (p.name) " (" (p.id) "), " (p.email) " — " (p.unit_name) " (" (p.unit) ")" }
                }
                form method="post" action={ "/support/" (path(&k.serial)) "/retrouvee" } {
                    input type="hidden" name="csrf" value=(s.csrf.as_str());
                    p { button type="submit" { "Clef retrouvée : que faire ?" } }
                }
                form method="post" action={ "/support/" (path(&k.serial)) "/deblocage" } {
                    input type="hidden" name="csrf" value=(s.csrf.as_str());
                    p { button type="submit" { "Débloquer la clef" } " (remet à zéro le compteur d'échecs)" }
                }
                form method="post" action={ "/support/" (path(&k.serial)) "/resynchronisation" } {
                    fieldset {
                        legend { "Resynchroniser la clef" }
                        input type="hidden" name="csrf" value=(s.csrf.as_str());
                        p { "Saisissez deux codes consécutifs affichés par la clef." }
                        label for="premier" { "Premier code" }
                        input id="premier" name="premier" type="text" inputmode="numeric" autocomplete="off" required;
                        label for="second" { "Code suivant" }
                        input id="second" name="second" type="text" inputmode="numeric" autocomplete="off" required;
                        p { button type="submit" { "Resynchroniser" } }
                    }
                }
                p { a href={ "/clefs/" (path(&k.serial)) } { "Gérer la clef " (k.serial) } }
                @if let Some(d) = d { (history(s, d)) }
            }
            (PreEscaped(""))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        let s = Session::for_tests(okey_server::Zone::utc());
        assert_eq!(s.zone.short(0), "—");
        assert_eq!(s.zone.short(1), "01/01/1970 00:00 UTC");
        // 2026-12-04 18:35:00 UTC.
        assert_eq!(s.zone.short(1_796_409_300), "04/12/2026 18:35 UTC");
        // 2024-02-29 (a leap day) 12:00 UTC.
        assert_eq!(s.zone.short(1_709_208_000), "29/02/2024 12:00 UTC");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path("2D-A"), "2D-A");
        assert_eq!(path("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(path("é"), "%C3%A9");
    }

    #[test]
    fn values_are_escaped() {
        let m = error("t", "<script>x</script>", Some("\"&"));
        let s = m.into_string();
        assert!(!s.contains("<script>x"), "{s}");
        assert!(s.contains("&lt;script&gt;"), "{s}");
        assert!(s.contains("lang=\"fr\""), "{s}");
    }
}
