//! French mail templates: embedded defaults, which an operator directory may override.
//!
//! A template is one minijinja file `NAME.txt` with two blocks, `subject` and `body`. Every
//! template okey sends is known in advance ([`KNOWN`]), with the variables it gets; at start
//! each one (the operator's, or the embedded default) is compiled and rendered once with sample
//! values under strict undefined-variable rules, so a broken template, a missing block or a
//! misspelt variable refuses the start with the file and line, instead of failing later inside a
//! workflow. A file in the operator directory whose name is not a known template is refused too
//! (it would never be used).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior, Value};

/// What every key request mail receives (`Notice::Request`), with sample values.
const REQUEST_VARIABLES: &[(&str, &str)] = &[
    ("id", "42"),
    ("requester", "Éloïse Técher"),
    ("reason", "accès aux applications de gestion"),
    ("validator", "Marie-Hélène Lefèvre"),
    ("lot_name", "Lot du lycée Leconte de Lisle"),
    ("detail", "3"),
    ("portal_url", "https://okey.ac-reunion.fr"),
];

/// A template okey sends: its name, its embedded default and sample values of its variables.
pub struct KnownTemplate {
    /// Name (the file is `NAME.txt`).
    pub name: &'static str,
    /// The embedded default.
    pub default: &'static str,
    /// The variables it receives, with a sample value used to check it at start.
    pub variables: &'static [(&'static str, &'static str)],
}

/// Every template okey renders.
pub const KNOWN: &[KnownTemplate] = &[
    KnownTemplate {
        name: "test",
        default: include_str!("../templates/test.txt"),
        variables: &[
            ("requested_by", "admin"),
            ("message_number", "okey.0123456789abcdef@example.org"),
            ("queued_at", "3 décembre 2026 à 06 h 40 UTC"),
        ],
    },
    KnownTemplate {
        name: "key.convocation",
        default: include_str!("../templates/key.convocation.txt"),
        variables: &[
            ("name", "Noémie Hoarau"),
            ("serial", "NK-0042"),
            ("lot_name", "Lot du Rectorat"),
            ("meeting_at", "1er septembre 2026 à 09 h 00 UTC"),
            ("place", "Rectorat, salle du conseil"),
        ],
    },
    KnownTemplate {
        name: "key.expired",
        default: include_str!("../templates/key.expired.txt"),
        variables: &[
            ("lot", "2D-9740001H"),
            ("lot_name", "Lot du lycée Leconte de Lisle"),
            ("count", "2"),
            ("keys", "- NK-0042 (Éloïse Técher)\n- NK-0043"),
            ("expired_at", "3 décembre 2026 à 06 h 40 UTC"),
        ],
    },
    KnownTemplate {
        name: "key.return_due",
        default: include_str!("../templates/key.return_due.txt"),
        variables: &[
            ("lot", "1D-CIRC-NORD"),
            ("lot_name", "Lot de la circonscription Nord"),
            ("serial", "NK-0042"),
            ("holder", "François Grégoire"),
            ("since", "4 juillet 2026 à 00 h 00 UTC"),
        ],
    },
    KnownTemplate {
        name: "key.lost",
        default: include_str!("../templates/key.lost.txt"),
        variables: &[
            ("name", "Éloïse Técher"),
            ("serial", "NK-0042"),
            ("declared_by", "Marie-Hélène Lefèvre"),
            ("declared_at", "3 décembre 2026 à 06 h 40 UTC"),
            ("comment", "perdue lors d'un déplacement"),
        ],
    },
    KnownTemplate {
        name: "request.waiting",
        default: include_str!("../templates/request.waiting.txt"),
        variables: REQUEST_VARIABLES,
    },
    KnownTemplate {
        name: "request.reminder",
        default: include_str!("../templates/request.reminder.txt"),
        variables: REQUEST_VARIABLES,
    },
    KnownTemplate {
        name: "request.approved",
        default: include_str!("../templates/request.approved.txt"),
        variables: REQUEST_VARIABLES,
    },
    KnownTemplate {
        name: "request.refused",
        default: include_str!("../templates/request.refused.txt"),
        variables: REQUEST_VARIABLES,
    },
    KnownTemplate {
        name: "request.out_of_stock",
        default: include_str!("../templates/request.out_of_stock.txt"),
        variables: REQUEST_VARIABLES,
    },
    KnownTemplate {
        name: "request.stock_arrived",
        default: include_str!("../templates/request.stock_arrived.txt"),
        variables: REQUEST_VARIABLES,
    },
    KnownTemplate {
        name: "request.ready",
        default: include_str!("../templates/request.ready.txt"),
        variables: REQUEST_VARIABLES,
    },
    KnownTemplate {
        name: "case.opened",
        default: include_str!("../templates/case.opened.txt"),
        variables: &[
            ("number", "9740100R-2026-0007"),
            ("name", "Éloïse Técher"),
            ("subject", "Clé OTP refusée"),
            ("priority", "majeure"),
            ("opened_at", "3 décembre 2026 à 06 h 40 UTC"),
        ],
    },
    KnownTemplate {
        name: "case.reply",
        default: include_str!("../templates/case.reply.txt"),
        variables: &[
            ("number", "9740100R-2026-0007"),
            ("subject", "Clé OTP refusée"),
            ("author", "Centre d'assistance"),
            (
                "reply",
                "Pouvez-vous nous indiquer l'heure du dernier refus ?",
            ),
        ],
    },
    KnownTemplate {
        name: "case.resolved",
        default: include_str!("../templates/case.resolved.txt"),
        variables: &[
            ("number", "9740100R-2026-0007"),
            ("subject", "Clé OTP refusée"),
            ("resolution", "La clé a été déverrouillée."),
            ("resolved_at", "3 décembre 2026 à 06 h 40 UTC"),
        ],
    },
    KnownTemplate {
        name: "request.expired",
        default: include_str!("../templates/request.expired.txt"),
        variables: REQUEST_VARIABLES,
    },
];

/// Why the templates cannot be loaded or a mail rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A template file does not compile or does not render with its variables.
    #[error("mail template {file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Broken {
        /// The file (or `embedded:NAME.txt` for a default).
        file: String,
        /// Line of the error, if known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// The operator directory holds a file that is not a known template.
    #[error(
        "{0}: not a mail template okey sends (known: {known}); remove or rename it",
        known = KNOWN.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
    )]
    Unknown(PathBuf),
    /// The operator directory cannot be read.
    #[error("cannot read the mail template directory {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A mail asked for a template that does not exist.
    #[error("no mail template is named {0:?}")]
    NoSuchTemplate(String),
    /// The rendered subject or body is unusable.
    #[error("mail template {name} rendered an empty {what}")]
    Empty {
        /// Template name.
        name: String,
        /// `subject` or `body`.
        what: &'static str,
    },
}

/// The loaded, checked templates.
pub struct Templates {
    env: Environment<'static>,
    files: BTreeMap<String, String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("files", &self.files)
            .finish()
    }
}

/// A rendered mail: one-line subject and plain-text body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// Subject, one line.
    pub subject: String,
    /// Body, ending with a newline.
    pub body: String,
}

fn broken(file: &str, e: &minijinja::Error) -> TemplateError {
    let mut message = e.kind().to_string();
    if let Some(d) = e.detail() {
        message.push_str(": ");
        message.push_str(d);
    }
    TemplateError::Broken {
        file: file.to_owned(),
        line: e.line(),
        message,
    }
}

impl Templates {
    /// The embedded defaults only.
    pub fn embedded() -> Result<Templates, TemplateError> {
        Self::load(None)
    }

    /// The embedded defaults, each overridden by `dir/NAME.txt` when that file exists; every
    /// template is checked (see the module documentation).
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut sources: BTreeMap<String, (String, String)> = KNOWN
            .iter()
            .map(|t| {
                (
                    t.name.to_owned(),
                    (format!("embedded:{}.txt", t.name), t.default.to_owned()),
                )
            })
            .collect();
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| TemplateError::Io(dir.into(), e))?;
            let mut paths = Vec::new();
            for e in entries {
                let e = e.map_err(|e| TemplateError::Io(dir.into(), e))?;
                paths.push(e.path());
            }
            paths.sort();
            for path in paths {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".txt"))
                    .filter(|n| KNOWN.iter().any(|t| t.name == *n))
                    .map(str::to_owned);
                let Some(name) = name else {
                    return Err(TemplateError::Unknown(path));
                };
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| TemplateError::Io(path.clone(), e))?;
                sources.insert(name, (path.display().to_string(), text));
            }
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        // Plain-text mail: nothing is HTML-escaped.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let mut files = BTreeMap::new();
        for (name, (file, text)) in sources {
            env.add_template_owned(name.clone(), text)
                .map_err(|e| broken(&file, &e))?;
            files.insert(name, file);
        }
        let t = Templates { env, files };
        for k in KNOWN {
            let sample: BTreeMap<&str, &str> = k.variables.iter().copied().collect();
            t.render(k.name, Value::from_serialize(&sample))
                .map_err(|e| match e {
                    TemplateError::Empty { what, .. } => TemplateError::Broken {
                        file: t.files.get(k.name).cloned().unwrap_or_default(),
                        line: None,
                        message: format!("the {what} block renders empty"),
                    },
                    other => other,
                })?;
        }
        Ok(t)
    }

    /// Where each template comes from (`embedded:NAME.txt` or the operator's file).
    pub fn sources(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// Render template `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: Value) -> Result<Rendered, TemplateError> {
        let file = self
            .files
            .get(name)
            .ok_or_else(|| TemplateError::NoSuchTemplate(name.to_owned()))?;
        let tmpl = self.env.get_template(name).map_err(|e| broken(file, &e))?;
        let mut captured = tmpl.render_captured(ctx).map_err(|e| broken(file, &e))?;
        let (subject, body) = captured
            .with_state_mut(|state| {
                let subject = state.render_block("subject")?;
                let body = state.render_block("body")?;
                Ok::<_, minijinja::Error>((subject, body))
            })
            .map_err(|e| broken(file, &e))?;
        // One line: a subject never carries a line break into the header.
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        if subject.is_empty() {
            return Err(TemplateError::Empty {
                name: name.to_owned(),
                what: "subject",
            });
        }
        let mut body = body.trim_end().to_string();
        if body.trim().is_empty() {
            return Err(TemplateError::Empty {
                name: name.to_owned(),
                what: "body",
            });
        }
        body.push('\n');
        Ok(Rendered { subject, body })
    }
}
