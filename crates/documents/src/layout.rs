//! Page layout of a receipt: a first pass places text lines and rules on A4 pages (with
//! measured word wrapping and page breaks), a second pass draws them with krilla.

use std::sync::{Arc, LazyLock};

use krilla::Document;
use krilla::geom::{PathBuilder, Point};
use krilla::metadata::{DateTime, Metadata};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, TextDirection};
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

use crate::{Acknowledgement, DocumentError, Receipt, ReceiptKind};

/// The typeface every receipt is set in.
pub const FONT_NAME: &str = "DejaVu Sans";

static REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 56.0;
const TEXT_W: f32 = PAGE_W - 2.0 * MARGIN;
const BOTTOM: f32 = PAGE_H - MARGIN;

/// One face: the font krilla embeds and the metrics used to wrap lines.
struct Face {
    pdf: Font,
    metrics: FontRef<'static>,
    upem: f32,
}

impl Face {
    fn load(data: &'static [u8]) -> Option<Face> {
        let metrics = FontRef::new(data).ok()?;
        let upem = f32::from(
            metrics
                .metrics(Size::unscaled(), LocationRef::default())
                .units_per_em,
        );
        let pdf = Font::new(Arc::new(data.to_vec()).into(), 0)?;
        Some(Face { pdf, metrics, upem })
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        let cmap = self.metrics.charmap();
        let gm = self
            .metrics
            .glyph_metrics(Size::unscaled(), LocationRef::default());
        let units: f32 = text
            .chars()
            .map(|c| {
                let g = cmap.map(c).unwrap_or_default();
                gm.advance_width(g).unwrap_or(0.0)
            })
            .sum();
        units / self.upem * size
    }
}

/// The two faces of the receipt's typeface.
pub(crate) struct Fonts {
    regular: Face,
    bold: Face,
}

static FONTS: LazyLock<Fonts> = LazyLock::new(|| Fonts {
    // The fonts are part of this crate's source: a failure here is a broken build, caught by
    // every test of this crate.
    regular: Face::load(REGULAR).expect("embedded DejaVu Sans parses"),
    bold: Face::load(BOLD).expect("embedded DejaVu Sans Bold parses"),
});

impl Fonts {
    pub(crate) fn get() -> &'static Fonts {
        &FONTS
    }

    /// Whether both faces have a glyph for `ch` (a space always prints).
    pub(crate) fn can_print(&self, ch: char) -> bool {
        ch == ' '
            || (self.regular.metrics.charmap().map(ch).is_some()
                && self.bold.metrics.charmap().map(ch).is_some())
    }

    fn face(&self, bold: bool) -> &Face {
        if bold { &self.bold } else { &self.regular }
    }
}

enum Item {
    Text {
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        text: String,
    },
    Rule {
        x1: f32,
        x2: f32,
        y: f32,
    },
}

struct Cursor<'f> {
    fonts: &'f Fonts,
    pages: Vec<Vec<Item>>,
    y: f32,
}

impl<'f> Cursor<'f> {
    fn new(fonts: &'f Fonts) -> Self {
        Cursor {
            fonts,
            pages: vec![Vec::new()],
            y: MARGIN,
        }
    }

    fn page(&mut self) -> &mut Vec<Item> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Make room for `h` points, starting a new page when this one is full.
    fn room(&mut self, h: f32) {
        if self.y + h > BOTTOM {
            self.pages.push(Vec::new());
            self.y = MARGIN;
        }
    }

    fn gap(&mut self, h: f32) {
        self.y += h;
    }

    /// A paragraph, wrapped to the text width, each line starting at `indent`.
    fn para(&mut self, text: &str, size: f32, bold: bool, indent: f32) {
        let lead = size * 1.35;
        for line in wrap(self.fonts.face(bold), text, size, TEXT_W - indent) {
            self.room(lead);
            self.y += lead;
            let y = self.y;
            self.page().push(Item::Text {
                x: MARGIN + indent,
                y,
                size,
                bold,
                text: line,
            });
        }
    }

    /// "Label : value" on one line (wrapped if too long), the label in bold.
    fn field(&mut self, label: &str, value: &str) {
        let size = 10.5;
        let lead = size * 1.45;
        let label = format!("{label} : ");
        let face = self.fonts.face(true);
        let lw = face.width(&label, size);
        let lines = wrap(self.fonts.face(false), value, size, TEXT_W - lw);
        for (i, line) in lines.into_iter().enumerate() {
            self.room(lead);
            self.y += lead;
            let y = self.y;
            if i == 0 {
                self.page().push(Item::Text {
                    x: MARGIN,
                    y,
                    size,
                    bold: true,
                    text: label.clone(),
                });
            }
            self.page().push(Item::Text {
                x: MARGIN + lw,
                y,
                size,
                bold: false,
                text: line,
            });
        }
    }

    fn heading(&mut self, text: &str) {
        self.room(40.0);
        self.gap(10.0);
        self.para(text, 12.0, true, 0.0);
        self.gap(3.0);
        let y = self.y;
        self.page().push(Item::Rule {
            x1: MARGIN,
            x2: PAGE_W - MARGIN,
            y,
        });
    }
}

/// Greedy word wrap by measured advance widths; a word longer than the line is cut.
fn wrap(face: &Face, text: &str, size: f32, width: f32) -> Vec<String> {
    let width = width * 0.98;
    let mut out = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split(' ').filter(|w| !w.is_empty()) {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if face.width(&candidate, size) <= width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            // The word alone: cut it if it does not fit a line by itself.
            let mut piece = String::new();
            for ch in word.chars() {
                piece.push(ch);
                if face.width(&piece, size) > width {
                    piece.pop();
                    out.push(std::mem::take(&mut piece));
                    piece.push(ch);
                }
            }
            line = piece;
        }
        out.push(line);
    }
    out
}

fn person_line(p: &crate::Person) -> String {
    let mut s = p.name.trim().to_string();
    if let Some(f) = p.function.as_deref().filter(|f| !f.trim().is_empty()) {
        s.push_str(", ");
        s.push_str(f.trim());
    }
    s
}

fn opt(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn lay_out(r: &Receipt, fonts: &Fonts) -> Vec<Vec<Item>> {
    let mut c = Cursor::new(fonts);
    c.para("okey · gestion des clés de sécurité OTP", 9.0, false, 0.0);
    c.gap(8.0);
    c.para(r.title_fr(), 18.0, true, 0.0);
    c.gap(6.0);
    c.field("Bordereau n°", r.number.trim());
    c.field("Date", &r.at.to_french());
    c.field("Lieu", r.place.trim());

    c.heading("Unité");
    c.field("Unité", r.unit.name.trim());
    if let Some(code) = opt(&r.unit.code) {
        c.field("Code de l'unité", code);
    }

    c.heading("Clé");
    c.field("Numéro de série", r.key.serial.trim());
    if let Some(m) = opt(&r.key.model) {
        c.field("Modèle", m);
    }
    if let Some(l) = opt(&r.key.lot) {
        c.field("Lot", l);
    }
    if let ReceiptKind::Return { condition } = r.kind {
        c.field("État de la clé", condition.label_fr());
    }

    c.heading("Titulaire");
    c.field("Nom", &person_line(&r.holder));
    if let Some(id) = opt(&r.holder.id) {
        c.field("Identifiant", id);
    }

    let agent_heading = match r.kind {
        ReceiptKind::HandOver => "Clé remise par",
        ReceiptKind::Return { .. } => "Clé reçue par",
    };
    c.heading(agent_heading);
    c.field("Nom", &person_line(&r.agent));
    if let Some(id) = opt(&r.agent.id) {
        c.field("Identifiant", id);
    }

    if let Some(comment) = opt(&r.comment) {
        c.heading("Observations");
        c.gap(2.0);
        c.para(comment, 10.0, false, 0.0);
    }

    c.heading("Engagement");
    c.gap(2.0);
    let holder = r.holder.name.trim();
    let serial = r.key.serial.trim();
    let statement = match r.kind {
        ReceiptKind::HandOver => format!(
            "Je soussigné(e) {holder} reconnais avoir reçu la clé OTP n° {serial} décrite \
             ci-dessus. Je m'engage à la conserver en lieu sûr, à ne jamais communiquer mon \
             code PIN, à signaler sans délai sa perte ou son vol et à la restituer à la fin de \
             mes fonctions ou sur demande."
        ),
        ReceiptKind::Return { .. } => format!(
            "{holder} a restitué la clé OTP n° {serial} décrite ci-dessus, dont l'état a été \
             constaté contradictoirement. À compter de cette restitution, la clé ne permet plus \
             de s'authentifier au nom de {holder}."
        ),
    };
    c.para(&statement, 10.0, false, 0.0);

    if let Some(ack) = r.acknowledgement {
        c.gap(6.0);
        let text = match ack {
            Acknowledgement::FirstValidCode(t) => format!(
                "Remise confirmée par le titulaire le {} par le premier code valide de la clé.",
                t.to_french()
            ),
            Acknowledgement::ReceiptNumberTyped(t) => format!(
                "Confirmée par le titulaire le {} en saisissant le numéro du bordereau.",
                t.to_french()
            ),
        };
        c.para(&text, 10.0, true, 0.0);
    }

    // Signatures: two boxes side by side.
    c.room(110.0);
    c.gap(24.0);
    let (left, right) = match r.kind {
        ReceiptKind::HandOver => (
            "Signature du titulaire",
            "Signature de la personne qui remet",
        ),
        ReceiptKind::Return { .. } => (
            "Signature du titulaire",
            "Signature de la personne qui reçoit",
        ),
    };
    let y = c.y + 12.0;
    let half = TEXT_W / 2.0;
    let col2 = MARGIN + half + 10.0;
    let page = c.page();
    page.push(Item::Text {
        x: MARGIN,
        y,
        size: 10.0,
        bold: true,
        text: left.to_string(),
    });
    page.push(Item::Text {
        x: col2,
        y,
        size: 10.0,
        bold: true,
        text: right.to_string(),
    });
    page.push(Item::Rule {
        x1: MARGIN,
        x2: MARGIN + half - 10.0,
        y: y + 60.0,
    });
    page.push(Item::Rule {
        x1: col2,
        x2: PAGE_W - MARGIN,
        y: y + 60.0,
    });
    c.y = y + 70.0;
    c.gap(10.0);
    c.para(
        &format!(
            "Bordereau n° {} établi en deux exemplaires, un pour chaque partie.",
            r.number.trim()
        ),
        8.5,
        false,
        0.0,
    );
    c.pages
}

pub(crate) fn render(r: &Receipt) -> Result<Vec<u8>, DocumentError> {
    let fonts = Fonts::get();
    let pages = lay_out(r, fonts);
    let mut doc = Document::new();
    doc.set_metadata(
        Metadata::new()
            .title(r.title_fr().to_string())
            .subject_keywords(r)
            .language("fr-FR".to_string())
            .creator("okey".to_string())
            .creation_date(
                DateTime::new(r.at.year)
                    .month(r.at.month)
                    .day(r.at.day)
                    .hour(r.at.hour)
                    .minute(r.at.minute),
            ),
    );
    let settings =
        PageSettings::from_wh(PAGE_W, PAGE_H).ok_or(DocumentError::Pdf("page size".into()))?;
    for items in &pages {
        let mut page = doc.start_page_with(settings.clone());
        let mut surface = page.surface();
        for item in items {
            match item {
                Item::Text {
                    x,
                    y,
                    size,
                    bold,
                    text,
                } => {
                    surface.set_fill(Some(Fill::default()));
                    surface.set_stroke(None);
                    surface.draw_text(
                        Point::from_xy(*x, *y),
                        fonts.face(*bold).pdf.clone(),
                        *size,
                        text,
                        false,
                        TextDirection::LeftToRight,
                    );
                }
                Item::Rule { x1, x2, y } => {
                    let mut pb = PathBuilder::new();
                    pb.move_to(*x1, *y);
                    pb.line_to(*x2, *y);
                    if let Some(path) = pb.finish() {
                        surface.set_fill(None);
                        surface.set_stroke(Some(Stroke {
                            width: 0.6,
                            ..Default::default()
                        }));
                        surface.draw_path(&path);
                    }
                }
            }
        }
        surface.finish();
        page.finish();
    }
    doc.finish()
        .map_err(|e| DocumentError::Pdf(format!("{e:?}")))
}

trait ReceiptMetadata {
    fn subject_keywords(self, r: &Receipt) -> Self;
}

impl ReceiptMetadata for Metadata {
    fn subject_keywords(self, r: &Receipt) -> Self {
        self.description(format!(
            "{} n° {}, clé {}",
            r.title_fr(),
            r.number.trim(),
            r.key.serial.trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_every_word_in_order_and_fits() {
        let fonts = Fonts::get();
        let text = "Une clé rendue avec son étui, son cordon et la notice d'utilisation, après \
                    trois années de service au secrétariat de l'établissement.";
        let lines = wrap(&fonts.regular, text, 10.0, 150.0);
        assert!(lines.len() > 2, "{lines:?}");
        for l in &lines {
            assert!(fonts.regular.width(l, 10.0) <= 150.0, "{l}");
        }
        assert_eq!(
            lines.join(" ").split(' ').collect::<Vec<_>>(),
            text.split(' ').collect::<Vec<_>>()
        );
    }

    #[test]
    fn wrap_cuts_a_word_longer_than_the_line() {
        let fonts = Fonts::get();
        let word = "A".repeat(80);
        let lines = wrap(&fonts.regular, &word, 10.0, 100.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), word);
    }

    #[test]
    fn the_font_prints_french_and_refuses_what_it_lacks() {
        let fonts = Fonts::get();
        for ch in "éèêëàâäîïôöùûüçœæÉÈÊÀÂÎÔÙÛÇŒÆ«»’°€".chars() {
            assert!(fonts.can_print(ch), "{ch}");
        }
        assert!(!fonts.can_print('\u{4E2D}'));
    }
}
