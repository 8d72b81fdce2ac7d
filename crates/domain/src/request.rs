//! Key requests (seeds 001 and 002): the person who needs a key asks for it, their manager
//! approves, they sign the charter and choose their PIN, a key is taken from their unit's stock
//! and handed over. This module holds the rules as data, with no I/O: the states a request goes
//! through and the one table of moves between them ([`REQUEST_RULES`]), who may make each move,
//! what must be done before it, which key types a person may ask for, when a request is approved
//! without waiting, the PIN rules and the checks an attachment passes before it is kept.

use std::fmt;

use crate::org::{Function, UnitKind};

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestState {
    /// Being written; without its attachments it is never sent to the validator (002).
    Draft,
    /// Sent: waits for the N+1 (or, when the N+1 is absent, the N+2).
    Submitted,
    /// Approved: the requester signs the charter and chooses the PIN; a key is reserved.
    Approved,
    /// Refused by the validator, with a reason the requester sees.
    Refused,
    /// Withdrawn by the requester (or by the support centre).
    Cancelled,
    /// Approved, but the unit's lot has no key left: the head of school orders, the requester
    /// is told when one arrives (001).
    WaitingForStock,
    /// A key is assigned: the requester books a slot and collects it (002).
    ReadyForPickup,
    /// The key is handed over (hardware) or enrolled and confirmed by its first code (software).
    Completed,
    /// Left too long without an answer, or never collected.
    Expired,
}

impl RequestState {
    /// Every state, in a fixed order.
    pub const ALL: [RequestState; 9] = [
        RequestState::Draft,
        RequestState::Submitted,
        RequestState::Approved,
        RequestState::Refused,
        RequestState::Cancelled,
        RequestState::WaitingForStock,
        RequestState::ReadyForPickup,
        RequestState::Completed,
        RequestState::Expired,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Draft => "draft",
            RequestState::Submitted => "submitted",
            RequestState::Approved => "approved",
            RequestState::Refused => "refused",
            RequestState::Cancelled => "cancelled",
            RequestState::WaitingForStock => "waiting_for_stock",
            RequestState::ReadyForPickup => "ready_for_pickup",
            RequestState::Completed => "completed",
            RequestState::Expired => "expired",
        }
    }

    /// The state a stored name stands for.
    pub fn parse(s: &str) -> Option<RequestState> {
        RequestState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the request is still open (it counts toward "one open request per need").
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            RequestState::Refused
                | RequestState::Cancelled
                | RequestState::Completed
                | RequestState::Expired
        )
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is done to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestAction {
    /// The requester sends the draft to their validator.
    Submit,
    /// The validator approves.
    Approve,
    /// okey approves on submission, for the people who need no validation (002).
    AutoApprove,
    /// The validator refuses, with a reason.
    Refuse,
    /// The requester withdraws it.
    Cancel,
    /// No key of the right type is left in the unit's lot.
    OutOfStock,
    /// A key arrived in the lot: the request goes on where it stopped.
    StockArrived,
    /// A key is assigned to the requester; they may book a pickup slot.
    KeyReady,
    /// The key is handed over (hardware) or confirmed by its first valid code (software).
    Complete,
    /// The scheduled job closes a request left too long.
    Expire,
}

impl RequestAction {
    /// The name used in sentences, the audit and the history.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestAction::Submit => "submit",
            RequestAction::Approve => "approve",
            RequestAction::AutoApprove => "auto_approve",
            RequestAction::Refuse => "refuse",
            RequestAction::Cancel => "cancel",
            RequestAction::OutOfStock => "out_of_stock",
            RequestAction::StockArrived => "stock_arrived",
            RequestAction::KeyReady => "key_ready",
            RequestAction::Complete => "complete",
            RequestAction::Expire => "expire",
        }
    }
}

impl fmt::Display for RequestAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acts on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestParty {
    /// The person who filed it.
    Requester,
    /// Their N+1 (head of school or deputy, IEN, ...), named on the request.
    Validator,
    /// Their N+2: may decide when the N+1 is absent (002).
    SecondValidator,
    /// The manager of the lot the key comes from (hands it over).
    LotManager,
    /// The support centre (may close any request).
    SupportCentre,
    /// okey itself: automatic approval, stock, scheduled expiry, first-code confirmation.
    System,
}

impl RequestParty {
    /// Said in refusals.
    pub fn describe(self) -> &'static str {
        match self {
            RequestParty::Requester => "the requester",
            RequestParty::Validator => "the validator named on the request",
            RequestParty::SecondValidator => "the validator's own manager (N+2)",
            RequestParty::LotManager => "the manager of the lot",
            RequestParty::SupportCentre => "the support centre",
            RequestParty::System => "okey itself",
        }
    }
}

/// What must be true of a request before a move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// At least one attachment (justificatif) is kept with it (002).
    Attachments,
    /// The requester signed the current charter.
    CharterSigned,
    /// The requester chose their PIN (or, on renewal, carries the previous key's).
    PinSet,
    /// A reason is given (a refusal says why).
    Reason,
}

impl Requirement {
    fn sentence(self) -> &'static str {
        match self {
            Requirement::Attachments => {
                "it has no attachment: add the documents that justify it (it stays a draft until then)"
            }
            Requirement::CharterSigned => "the requester has not signed the charter",
            Requirement::PinSet => "the requester has not chosen their PIN",
            Requirement::Reason => "no reason is given",
        }
    }
}

/// One allowed move.
#[derive(Clone, Copy, Debug)]
pub struct RequestRule {
    /// From this state.
    pub from: RequestState,
    /// This action.
    pub action: RequestAction,
    /// Leads to this state.
    pub to: RequestState,
    /// Made by one of these.
    pub parties: &'static [RequestParty],
    /// Once these hold.
    pub requires: &'static [Requirement],
}

use RequestAction as A;
use RequestParty as P;
use RequestState as S;
use Requirement as R;

const REQUESTER: &[RequestParty] = &[P::Requester];
const DECIDERS: &[RequestParty] = &[P::Validator, P::SecondValidator];
const WITHDRAW: &[RequestParty] = &[P::Requester, P::SupportCentre];
const SYSTEM: &[RequestParty] = &[P::System];
const STOCK: &[RequestParty] = &[P::System, P::LotManager];

/// Every move a request can make; anything not here is refused.
pub const REQUEST_RULES: &[RequestRule] = &[
    RequestRule {
        from: S::Draft,
        action: A::Submit,
        to: S::Submitted,
        parties: REQUESTER,
        requires: &[R::Attachments],
    },
    RequestRule {
        from: S::Draft,
        action: A::Cancel,
        to: S::Cancelled,
        parties: WITHDRAW,
        requires: &[],
    },
    RequestRule {
        from: S::Submitted,
        action: A::Approve,
        to: S::Approved,
        parties: DECIDERS,
        requires: &[],
    },
    RequestRule {
        from: S::Submitted,
        action: A::AutoApprove,
        to: S::Approved,
        parties: SYSTEM,
        requires: &[],
    },
    RequestRule {
        from: S::Submitted,
        action: A::Refuse,
        to: S::Refused,
        parties: DECIDERS,
        requires: &[R::Reason],
    },
    RequestRule {
        from: S::Submitted,
        action: A::Cancel,
        to: S::Cancelled,
        parties: WITHDRAW,
        requires: &[],
    },
    RequestRule {
        from: S::Submitted,
        action: A::Expire,
        to: S::Expired,
        parties: SYSTEM,
        requires: &[],
    },
    RequestRule {
        from: S::Approved,
        action: A::OutOfStock,
        to: S::WaitingForStock,
        parties: SYSTEM,
        requires: &[],
    },
    RequestRule {
        from: S::WaitingForStock,
        action: A::StockArrived,
        to: S::Approved,
        parties: STOCK,
        requires: &[],
    },
    RequestRule {
        from: S::Approved,
        action: A::KeyReady,
        to: S::ReadyForPickup,
        parties: STOCK,
        requires: &[],
    },
    RequestRule {
        from: S::ReadyForPickup,
        action: A::Complete,
        to: S::Completed,
        parties: &[P::LotManager],
        requires: &[R::CharterSigned, R::PinSet],
    },
    // A software key is confirmed by its first valid code: no pickup.
    RequestRule {
        from: S::Approved,
        action: A::Complete,
        to: S::Completed,
        parties: SYSTEM,
        requires: &[R::CharterSigned, R::PinSet],
    },
    RequestRule {
        from: S::Approved,
        action: A::Cancel,
        to: S::Cancelled,
        parties: WITHDRAW,
        requires: &[],
    },
    RequestRule {
        from: S::WaitingForStock,
        action: A::Cancel,
        to: S::Cancelled,
        parties: WITHDRAW,
        requires: &[],
    },
    RequestRule {
        from: S::ReadyForPickup,
        action: A::Cancel,
        to: S::Cancelled,
        parties: WITHDRAW,
        requires: &[],
    },
    RequestRule {
        from: S::ReadyForPickup,
        action: A::Expire,
        to: S::Expired,
        parties: SYSTEM,
        requires: &[],
    },
];

/// Why a move was refused. Each sentence names the state and the action.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefusal {
    /// No rule moves a request in this state by this action.
    #[error("a request that is {state} cannot be {action}d")]
    NotFromState {
        /// Current state.
        state: RequestState,
        /// Attempted action.
        action: RequestAction,
    },
    /// The rule exists, but not for this party.
    #[error(
        "a request that is {state} can be {action}d only by {allowed}, not by {party}",
        party = party.describe()
    )]
    NotThisParty {
        /// Current state.
        state: RequestState,
        /// Attempted action.
        action: RequestAction,
        /// Who tried.
        party: RequestParty,
        /// Who may.
        allowed: String,
    },
    /// A requirement of the move is not met.
    #[error("the request cannot be {action}d: {}", missing.sentence())]
    Missing {
        /// Attempted action.
        action: RequestAction,
        /// What is missing.
        missing: Requirement,
    },
}

/// The facts about a request that requirements look at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// Attachments kept with it.
    pub attachments: usize,
    /// The charter is signed.
    pub charter_signed: bool,
    /// The PIN is chosen (or carried from the previous key).
    pub pin_set: bool,
    /// A reason accompanies this move.
    pub reason_given: bool,
}

impl RequestFacts {
    fn holds(&self, r: Requirement) -> bool {
        match r {
            Requirement::Attachments => self.attachments > 0,
            Requirement::CharterSigned => self.charter_signed,
            Requirement::PinSet => self.pin_set,
            Requirement::Reason => self.reason_given,
        }
    }
}

/// The state `action` by `party` leads to from `state`, given `facts`, or why it is refused.
/// When a person is several parties (the requester is also the lot manager), pass each in turn:
/// a request is never approved by its own requester, because Approve is not the requester's.
pub fn request_transition(
    state: RequestState,
    action: RequestAction,
    party: RequestParty,
    facts: &RequestFacts,
) -> Result<RequestState, RequestRefusal> {
    let mut rules = REQUEST_RULES
        .iter()
        .filter(|r| r.from == state && r.action == action)
        .peekable();
    if rules.peek().is_none() {
        return Err(RequestRefusal::NotFromState { state, action });
    }
    let candidates: Vec<&RequestRule> = rules.collect();
    let Some(rule) = candidates.iter().find(|r| r.parties.contains(&party)) else {
        let mut allowed: Vec<RequestParty> = candidates
            .iter()
            .flat_map(|r| r.parties.iter().copied())
            .collect();
        allowed.sort();
        allowed.dedup();
        return Err(RequestRefusal::NotThisParty {
            state,
            action,
            party,
            allowed: allowed
                .iter()
                .map(|p| p.describe())
                .collect::<Vec<_>>()
                .join(" or "),
        });
    };
    if let Some(missing) = rule.requires.iter().copied().find(|r| !facts.holds(*r)) {
        return Err(RequestRefusal::Missing { action, missing });
    }
    Ok(rule.to)
}

/// The kind of key asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestedKey {
    /// A hardware token collected from the lot.
    Hardware,
    /// A software token on the requester's phone.
    Software,
}

/// New key or renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Need {
    /// A first key.
    NewKey,
    /// "Renouveler ma clef": the new key keeps the previous key's PIN (002).
    Renewal,
}

/// Why a person may not file a request at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilingRefusal {
    /// 001: schools outside contract are not served by okey.
    #[error("{unit} is a school outside contract (hors contrat): okey does not serve its staff")]
    OutsideContract {
        /// The school.
        unit: String,
    },
    /// 001: software keys are not defined for staff of secondary schools.
    #[error(
        "software keys are not available to the staff of a secondary school (2D): ask for a hardware key"
    )]
    NoSoftwareIn2D,
    /// One open request per person and need.
    #[error("you already have an open request (number {0}) for this: complete or cancel it first")]
    AlreadyOpen(u64),
}

/// Whether a person of a unit of kind `unit` (a school's flags included) may ask for `key`.
/// `is_2d_school` says the school is a secondary school (établissement, under the Rectorat)
/// rather than a 1D école (under a district).
pub fn may_request(
    unit_name: &str,
    unit: &UnitKind,
    is_2d_school: bool,
    key: RequestedKey,
) -> Result<(), FilingRefusal> {
    if let UnitKind::School { under_contract, .. } = unit {
        if !under_contract {
            return Err(FilingRefusal::OutsideContract {
                unit: unit_name.to_owned(),
            });
        }
        if is_2d_school && key == RequestedKey::Software {
            return Err(FilingRefusal::NoSoftwareIn2D);
        }
    }
    Ok(())
}

/// 002: "pour les personnels du 1er degré sur un poste de direction ou ayant une délégation à
/// ONDE (faisant fonction de direction) la validation est automatique". The reason recorded in
/// the audit when a request is approved without waiting, or `None` when it waits.
pub fn automatic_approval(functions: &[Function], in_1d_school: bool) -> Option<&'static str> {
    if !in_1d_school {
        return None;
    }
    if functions.contains(&Function::SchoolDirector) {
        Some("automatic approval: 1D school director in post")
    } else if functions.contains(&Function::ActingDirector) {
        Some("automatic approval: acting director with the ONDE delegation")
    } else {
        None
    }
}

/// The PIN rules an administration sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinPolicy {
    /// Shortest PIN.
    pub min_len: usize,
    /// Longest PIN.
    pub max_len: usize,
    /// Digits only (a keypad PIN) or letters and digits.
    pub digits_only: bool,
}

impl Default for PinPolicy {
    fn default() -> Self {
        PinPolicy {
            min_len: 4,
            max_len: 8,
            digits_only: true,
        }
    }
}

/// Why a PIN is refused. The PIN itself is never part of the sentence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PinRefusal {
    /// Too short or too long.
    #[error("the PIN must be {min} to {max} characters long")]
    Length {
        /// Shortest.
        min: usize,
        /// Longest.
        max: usize,
    },
    /// A character outside the policy.
    #[error("the PIN may contain only {0}")]
    Charset(&'static str),
    /// Guessable: one repeated character, a run, a repeated pair.
    #[error(
        "this PIN is too easy to guess (one digit repeated, consecutive digits up or down, or a repeated pair): choose another"
    )]
    Weak,
}

impl PinPolicy {
    /// Check a PIN against the policy and refuse the guessable ones (`0000`, `1234`, `4321`,
    /// `1212`, ...).
    pub fn check(&self, pin: &str) -> Result<(), PinRefusal> {
        let len = pin.chars().count();
        if len < self.min_len || len > self.max_len {
            return Err(PinRefusal::Length {
                min: self.min_len,
                max: self.max_len,
            });
        }
        if self.digits_only {
            if !pin.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PinRefusal::Charset("digits"));
            }
        } else if !pin.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(PinRefusal::Charset("letters and digits"));
        }
        let b = pin.as_bytes();
        let all_same = b.iter().all(|c| *c == b[0]);
        let step = |d: i16| b.windows(2).all(|w| i16::from(w[1]) - i16::from(w[0]) == d);
        let run = step(1) || step(-1);
        let pair = b.len() >= 4 && b.len().is_multiple_of(2) && b.chunks(2).all(|c| c == &b[..2]);
        if all_same || run || pair {
            return Err(PinRefusal::Weak);
        }
        Ok(())
    }
}

/// The attachment types a request may carry (justificatifs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttachmentType {
    /// `application/pdf`.
    Pdf,
    /// `image/png`.
    Png,
    /// `image/jpeg`.
    Jpeg,
}

impl AttachmentType {
    /// Its media type.
    pub fn media_type(self) -> &'static str {
        match self {
            AttachmentType::Pdf => "application/pdf",
            AttachmentType::Png => "image/png",
            AttachmentType::Jpeg => "image/jpeg",
        }
    }

    /// The type the first bytes of `content` show, whatever the file is called.
    pub fn sniff(content: &[u8]) -> Option<AttachmentType> {
        if content.starts_with(b"%PDF-") {
            Some(AttachmentType::Pdf)
        } else if content.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(AttachmentType::Png)
        } else if content.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(AttachmentType::Jpeg)
        } else {
            None
        }
    }
}

/// Largest attachment kept.
pub const MAX_ATTACHMENT_BYTES: usize = 5 * 1024 * 1024;
/// Most attachments on one request.
pub const MAX_ATTACHMENTS: usize = 5;

/// Why an attachment is refused (nothing of it is kept).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentRefusal {
    /// Empty or over [`MAX_ATTACHMENT_BYTES`].
    #[error("an attachment must be 1 byte to {} MiB", MAX_ATTACHMENT_BYTES / (1024 * 1024))]
    Size,
    /// Its content is none of PDF, PNG, JPEG.
    #[error("{name}: not a PDF, PNG or JPEG file (its content was checked, not its name)")]
    NotAllowed {
        /// The file name given.
        name: String,
    },
    /// It says it is one type and its content is another.
    #[error("{name}: given as {declared} but its content is {actual}")]
    Disguised {
        /// The file name given.
        name: String,
        /// The declared media type.
        declared: String,
        /// What the content is.
        actual: &'static str,
    },
    /// Too many on one request.
    #[error("a request carries at most {MAX_ATTACHMENTS} attachments")]
    TooMany,
    /// A file name that could be a path or hide its extension.
    #[error("the attachment name must be 1 to 128 characters, without / \\ or control characters")]
    Name,
}

/// Check an attachment before anything of it is stored: its name, its size, and that its
/// content (magic bytes) is a PDF, PNG or JPEG agreeing with the media type declared, if any.
pub fn check_attachment(
    name: &str,
    declared: Option<&str>,
    content: &[u8],
) -> Result<AttachmentType, AttachmentRefusal> {
    if name.is_empty()
        || name.chars().count() > 128
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
        || name.starts_with('.')
    {
        return Err(AttachmentRefusal::Name);
    }
    if content.is_empty() || content.len() > MAX_ATTACHMENT_BYTES {
        return Err(AttachmentRefusal::Size);
    }
    let Some(actual) = AttachmentType::sniff(content) else {
        return Err(AttachmentRefusal::NotAllowed {
            name: name.to_owned(),
        });
    };
    if let Some(d) = declared.filter(|d| !d.is_empty())
        && !d.eq_ignore_ascii_case(actual.media_type())
    {
        return Err(AttachmentRefusal::Disguised {
            name: name.to_owned(),
            declared: d.chars().take(64).collect(),
            actual: actual.media_type(),
        });
    }
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::Uai;

    fn facts() -> RequestFacts {
        RequestFacts {
            attachments: 1,
            charter_signed: true,
            pin_set: true,
            reason_given: true,
        }
    }

    /// The hardware path of 001 step by step, each move by the party the seed names.
    #[test]
    fn a_hardware_request_from_draft_to_completed() {
        let f = facts();
        let mut s = S::Draft;
        for (action, party) in [
            (A::Submit, P::Requester),
            (A::Approve, P::Validator),
            (A::OutOfStock, P::System),
            (A::StockArrived, P::System),
            (A::KeyReady, P::LotManager),
            (A::Complete, P::LotManager),
        ] {
            s = request_transition(s, action, party, &f).expect("allowed");
        }
        assert_eq!(s, S::Completed);
        assert!(!s.is_open());
    }

    /// 002: without attachments the request is not sent; it stays a draft.
    #[test]
    fn no_attachment_no_submission() {
        let f = RequestFacts {
            attachments: 0,
            ..facts()
        };
        let e = request_transition(S::Draft, A::Submit, P::Requester, &f).expect_err("refused");
        assert_eq!(
            e,
            RequestRefusal::Missing {
                action: A::Submit,
                missing: R::Attachments
            }
        );
        assert!(e.to_string().contains("stays a draft"), "{e}");
        assert_eq!(
            request_transition(S::Draft, A::Cancel, P::Requester, &f),
            Ok(S::Cancelled)
        );
    }

    /// The requester never approves their own request; the N+2 may (002); the lot manager may
    /// not decide.
    #[test]
    fn who_decides() {
        let f = facts();
        let e = request_transition(S::Submitted, A::Approve, P::Requester, &f).expect_err("own");
        assert!(
            e.to_string()
                .contains("can be approved only by the validator named on the request or the validator's own manager (N+2), not by the requester"),
            "{e}"
        );
        assert_eq!(
            request_transition(S::Submitted, A::Approve, P::SecondValidator, &f),
            Ok(S::Approved)
        );
        assert!(request_transition(S::Submitted, A::Approve, P::LotManager, &f).is_err());
        let no_reason = RequestFacts {
            reason_given: false,
            ..f
        };
        assert!(matches!(
            request_transition(S::Submitted, A::Refuse, P::Validator, &no_reason),
            Err(RequestRefusal::Missing {
                missing: R::Reason,
                ..
            })
        ));
    }

    #[test]
    fn a_key_is_not_handed_over_before_charter_and_pin() {
        for (charter, pin, missing) in [(false, true, R::CharterSigned), (true, false, R::PinSet)] {
            let f = RequestFacts {
                charter_signed: charter,
                pin_set: pin,
                ..facts()
            };
            assert_eq!(
                request_transition(S::ReadyForPickup, A::Complete, P::LotManager, &f),
                Err(RequestRefusal::Missing {
                    action: A::Complete,
                    missing
                })
            );
        }
    }

    /// Closed requests stay closed: no rule leaves them, and the sentence names state and action.
    #[test]
    fn closed_requests_do_not_move() {
        for s in [S::Refused, S::Cancelled, S::Completed, S::Expired] {
            assert!(!s.is_open());
            assert!(REQUEST_RULES.iter().all(|r| r.from != s), "{s}");
            let e = request_transition(s, A::Approve, P::Validator, &facts()).expect_err("closed");
            assert_eq!(
                e.to_string(),
                format!("a request that is {s} cannot be approved")
            );
        }
        for s in RequestState::ALL {
            assert_eq!(RequestState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn outside_contract_and_software_in_2d_are_refused() {
        let school = |under_contract| UnitKind::School {
            uai: Uai::parse("0750654D").expect("uai"),
            under_contract,
        };
        let e = may_request("9740001A", &school(false), true, RequestedKey::Hardware)
            .expect_err("hors contrat");
        assert!(e.to_string().contains("outside contract"), "{e}");
        assert_eq!(
            may_request("9740001A", &school(true), true, RequestedKey::Software),
            Err(FilingRefusal::NoSoftwareIn2D)
        );
        assert!(may_request("9740001A", &school(true), true, RequestedKey::Hardware).is_ok());
        assert!(may_request("9740001A", &school(true), false, RequestedKey::Software).is_ok());
        assert!(
            may_request(
                "RECTORAT",
                &UnitKind::Rectorat,
                false,
                RequestedKey::Software
            )
            .is_ok()
        );
    }

    #[test]
    fn directors_in_1d_are_approved_at_once() {
        assert!(automatic_approval(&[Function::SchoolDirector], true).is_some());
        assert!(
            automatic_approval(&[Function::ActingDirector], true)
                .is_some_and(|r| r.contains("ONDE"))
        );
        assert_eq!(automatic_approval(&[Function::Staff], true), None);
        assert_eq!(automatic_approval(&[Function::HeadOfSchool], false), None);
        assert_eq!(automatic_approval(&[Function::SchoolDirector], false), None);
    }

    #[test]
    fn weak_pins_are_refused() {
        let p = PinPolicy::default();
        for weak in [
            "0000", "1234", "4321", "0123", "9876", "1212", "123456", "88888888",
        ] {
            assert_eq!(p.check(weak), Err(PinRefusal::Weak), "{weak}");
        }
        for ok in ["2580", "7319", "1470", "90210", "1122"] {
            assert_eq!(p.check(ok), Ok(()), "{ok}");
        }
        assert!(matches!(p.check("123"), Err(PinRefusal::Length { .. })));
        assert!(matches!(
            p.check("123456789"),
            Err(PinRefusal::Length { .. })
        ));
        assert_eq!(p.check("12a4"), Err(PinRefusal::Charset("digits")));
        for weak in ["0000", "1234", "1212"] {
            let e = p.check(weak).expect_err("weak").to_string();
            assert!(
                !e.contains(weak),
                "the sentence does not repeat the PIN: {e}"
            );
        }
    }

    #[test]
    fn attachments_are_checked_by_content() {
        let pdf = b"%PDF-1.7\n...".to_vec();
        let png = b"\x89PNG\r\n\x1a\n....".to_vec();
        let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10];
        assert_eq!(
            check_attachment("arrete.pdf", Some("application/pdf"), &pdf),
            Ok(AttachmentType::Pdf)
        );
        assert_eq!(
            check_attachment("scan.png", None, &png),
            Ok(AttachmentType::Png)
        );
        assert_eq!(
            check_attachment("photo.jpg", Some("image/jpeg"), &jpeg),
            Ok(AttachmentType::Jpeg)
        );
        // A script named like a PDF, and a PNG declared as a PDF.
        assert!(matches!(
            check_attachment(
                "arrete.pdf",
                Some("application/pdf"),
                b"#!/bin/sh\nrm -rf /"
            ),
            Err(AttachmentRefusal::NotAllowed { .. })
        ));
        assert!(matches!(
            check_attachment("arrete.pdf", Some("application/pdf"), &png),
            Err(AttachmentRefusal::Disguised {
                actual: "image/png",
                ..
            })
        ));
        assert_eq!(
            check_attachment("a.pdf", None, b""),
            Err(AttachmentRefusal::Size)
        );
        let mut big = pdf.clone();
        big.resize(MAX_ATTACHMENT_BYTES + 1, b' ');
        assert_eq!(
            check_attachment("a.pdf", None, &big),
            Err(AttachmentRefusal::Size)
        );
        for bad in ["../etc/passwd", "a\\b.pdf", ".hidden.pdf", "", "a\nb.pdf"] {
            assert_eq!(
                check_attachment(bad, None, &pdf),
                Err(AttachmentRefusal::Name),
                "{bad:?}"
            );
        }
    }
}
