//! Where a key is in its custody: the second dimension beside [`crate::Status`].
//!
//! [`crate::Status`] says whether a token may authenticate at all (initialised, active, disabled,
//! revoked). [`KeyState`] says where the physical (or software) key is in the administration's
//! hands: in a lot's stock, set aside, bound to a holder, in the holder's hands, back in stock,
//! lost, found, expired, scrapped or recycled. Both must agree before a code is accepted: see
//! [`can_authenticate`].
//!
//! The changes are data: [`RULES`] lists, for every [`KeyAction`], the states it starts from, the
//! state it leads to and the [`Party`] that may perform it. [`transition`] is the only function
//! that reads it, and the store calls it inside its compare-and-set, so a change refused here is
//! never written.
//!
//! ```text
//!            register            reserve            assign            hand over
//! (outside) ─────────▶ DELIVERED ───────▶ RESERVED ──────▶ ASSIGNED ──────────▶ HANDED_OVER
//!                          ▲   ◀─unreserve─┘   ◀─unassign────┘                    │    │
//!                          │                                        return        │    │ declare lost
//!                          │        RETURNED ◀────────────────────────────────────┘    ▼
//!                          │ restock (back to the origin lot)                         LOST
//!                          └────────────────────── FOUND ◀────────── find ────────────┘
//! expire: any state in stock or in hand ──▶ EXPIRED ──scrap──▶ SCRAPPED (final)
//! recycle (IT): stock, found ──▶ RECYCLED ──reissue──▶ DELIVERED
//! ```

use std::fmt;
use std::str::FromStr;

/// Where a key is in its custody.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyState {
    /// In its lot's stock, available ("livrée").
    Delivered,
    /// Set aside in its lot for an approved request or a named appointment.
    Reserved,
    /// Bound to a holder, waiting for the hand-over.
    Assigned,
    /// In the holder's hands: the only state (with an enrolling software key) that logs in.
    HandedOver,
    /// Given back by its holder, in stock again ("mettre en stock").
    Returned,
    /// Declared lost (or stolen, broken): unassigned, cannot log in.
    Lost,
    /// A key declared lost that turned up again; never logs in before a new hand-over.
    Found,
    /// Past its validity end.
    Expired,
    /// Destroyed ("mise au rebut"): final.
    Scrapped,
    /// Taken by the IT department to be initialised again.
    Recycled,
}

impl KeyState {
    /// Every state, in a fixed order.
    pub const ALL: [KeyState; 10] = [
        KeyState::Delivered,
        KeyState::Reserved,
        KeyState::Assigned,
        KeyState::HandedOver,
        KeyState::Returned,
        KeyState::Lost,
        KeyState::Found,
        KeyState::Expired,
        KeyState::Scrapped,
        KeyState::Recycled,
    ];

    /// Stable snake-case name (database, wire, CLI).
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyState::Delivered => "delivered",
            KeyState::Reserved => "reserved",
            KeyState::Assigned => "assigned",
            KeyState::HandedOver => "handed_over",
            KeyState::Returned => "returned",
            KeyState::Lost => "lost",
            KeyState::Found => "found",
            KeyState::Expired => "expired",
            KeyState::Scrapped => "scrapped",
            KeyState::Recycled => "recycled",
        }
    }

    /// The state in a sentence ("handed over").
    pub const fn words(self) -> &'static str {
        match self {
            KeyState::HandedOver => "handed over",
            s => s.as_str(),
        }
    }

    /// Whether the key is in its lot's stock and free to be given to someone.
    pub const fn available(self) -> bool {
        matches!(self, KeyState::Delivered | KeyState::Returned)
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        KeyState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown key state {s:?}"))
    }
}

/// Something done to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAction {
    /// Put a key that is in no lot yet into a lot (its origin lot), as delivered.
    Register,
    /// Set a key aside for a request or an appointment.
    Reserve,
    /// Put a reserved key back in stock.
    Unreserve,
    /// Bind a key to a holder.
    Assign,
    /// Unbind an assigned key that was not handed over.
    Unassign,
    /// Give the key to its holder (with a hand-over receipt).
    HandOver,
    /// The holder gives the key back (with a return receipt); it is in stock again.
    Return,
    /// The key is lost, stolen or broken: unassigned, no more logins.
    DeclareLost,
    /// Someone brings a key to the support centre: a lost key becomes found, any other key is
    /// only looked up (and the lookup recorded).
    Find,
    /// A found key goes back to its origin lot, delivered.
    Restock,
    /// Move a key in stock to another lot.
    Move,
    /// Stop a handed-over key from logging in (end of function, end of a deputy's period);
    /// its return is then due.
    Deactivate,
    /// The validity end has passed.
    Expire,
    /// Destroy the key.
    Scrap,
    /// Send the key to be initialised again.
    Recycle,
    /// A recycled key, initialised again, goes back in stock.
    Reissue,
}

impl KeyAction {
    /// Every action, in a fixed order.
    pub const ALL: [KeyAction; 16] = [
        KeyAction::Register,
        KeyAction::Reserve,
        KeyAction::Unreserve,
        KeyAction::Assign,
        KeyAction::Unassign,
        KeyAction::HandOver,
        KeyAction::Return,
        KeyAction::DeclareLost,
        KeyAction::Find,
        KeyAction::Restock,
        KeyAction::Move,
        KeyAction::Deactivate,
        KeyAction::Expire,
        KeyAction::Scrap,
        KeyAction::Recycle,
        KeyAction::Reissue,
    ];

    /// Stable name (audit, history, wire).
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyAction::Register => "register",
            KeyAction::Reserve => "reserve",
            KeyAction::Unreserve => "unreserve",
            KeyAction::Assign => "assign",
            KeyAction::Unassign => "unassign",
            KeyAction::HandOver => "handover",
            KeyAction::Return => "return",
            KeyAction::DeclareLost => "lost",
            KeyAction::Find => "found",
            KeyAction::Restock => "restock",
            KeyAction::Move => "move",
            KeyAction::Deactivate => "deactivate",
            KeyAction::Expire => "expire",
            KeyAction::Scrap => "scrap",
            KeyAction::Recycle => "recycle",
            KeyAction::Reissue => "reissue",
        }
    }

    /// The action in a sentence, as a past participle ("a lost key cannot be *handed over*").
    pub const fn words(self) -> &'static str {
        match self {
            KeyAction::Register => "registered into a lot",
            KeyAction::Reserve => "reserved",
            KeyAction::Unreserve => "put back from its reservation",
            KeyAction::Assign => "assigned",
            KeyAction::Unassign => "unassigned",
            KeyAction::HandOver => "handed over",
            KeyAction::Return => "returned",
            KeyAction::DeclareLost => "declared lost",
            KeyAction::Find => "declared found",
            KeyAction::Restock => "put back in its origin lot",
            KeyAction::Move => "moved to another lot",
            KeyAction::Deactivate => "deactivated",
            KeyAction::Expire => "marked expired",
            KeyAction::Scrap => "scrapped",
            KeyAction::Recycle => "recycled",
            KeyAction::Reissue => "reissued",
        }
    }
}

impl fmt::Display for KeyAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        KeyAction::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown key action {s:?}"))
    }
}

/// Who acts on a key, as far as its custody goes. The organisation decides which party a person
/// is for a given key (a head of school is the lot manager of their school's lot, and nobody's
/// lot manager elsewhere); this table decides what each party may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// A manager of the lot the key is in (head of school or delegate, IEN or ATICE, the exams
    /// office for its lot, the support centre for the Rectorat lot).
    LotManager,
    /// The support centre (assistance), for any lot.
    SupportCentre,
    /// The IT department (DSI / centre informatique), for any lot.
    ItDepartment,
    /// The person the key is assigned or handed over to.
    Holder,
    /// okey's own scheduled jobs (expiry, end of function, end of a deputy's period).
    Scheduler,
}

impl Party {
    /// Every party, in a fixed order.
    pub const ALL: [Party; 5] = [
        Party::LotManager,
        Party::SupportCentre,
        Party::ItDepartment,
        Party::Holder,
        Party::Scheduler,
    ];

    /// The party in a sentence.
    pub const fn words(self) -> &'static str {
        match self {
            Party::LotManager => "the lot manager",
            Party::SupportCentre => "the support centre",
            Party::ItDepartment => "the IT department",
            Party::Holder => "the key's holder",
            Party::Scheduler => "okey's scheduled jobs",
        }
    }
}

/// Where a rule leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// To this state.
    To(KeyState),
    /// The state does not change (a move, a deactivation, a recorded look-up).
    Same,
}

/// One line of the table: `action` from any of `from` leads to `to`, for any of `parties`.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// The action.
    pub action: KeyAction,
    /// Whether the action applies to a key in no lot yet (registration only).
    pub from_outside: bool,
    /// The states it starts from.
    pub from: &'static [KeyState],
    /// The state it leads to.
    pub to: Target,
    /// Who may perform it.
    pub parties: &'static [Party],
}

use KeyState as S;
use Party as P;

const STAFF: &[Party] = &[P::LotManager, P::SupportCentre, P::ItDepartment];
const CENTRAL: &[Party] = &[P::SupportCentre, P::ItDepartment];
/// States in which a key sits in a lot's stock, not in anybody's hands.
const IN_STOCK: &[KeyState] = &[S::Delivered, S::Returned];
/// States a key can be in before it is out of use for good.
const LIVE: &[KeyState] = &[
    S::Delivered,
    S::Reserved,
    S::Assigned,
    S::HandedOver,
    S::Returned,
    S::Lost,
    S::Found,
];

/// The custody table. One rule per action; an action not applicable to a state is refused.
pub const RULES: &[Rule] = &[
    Rule {
        action: KeyAction::Register,
        from_outside: true,
        from: &[],
        to: Target::To(S::Delivered),
        parties: CENTRAL,
    },
    Rule {
        action: KeyAction::Reserve,
        from_outside: false,
        from: IN_STOCK,
        to: Target::To(S::Reserved),
        parties: STAFF,
    },
    Rule {
        action: KeyAction::Unreserve,
        from_outside: false,
        from: &[S::Reserved],
        to: Target::To(S::Delivered),
        parties: STAFF,
    },
    Rule {
        action: KeyAction::Assign,
        from_outside: false,
        from: &[S::Delivered, S::Returned, S::Reserved],
        to: Target::To(S::Assigned),
        parties: STAFF,
    },
    Rule {
        action: KeyAction::Unassign,
        from_outside: false,
        from: &[S::Assigned],
        to: Target::To(S::Delivered),
        parties: STAFF,
    },
    Rule {
        action: KeyAction::HandOver,
        from_outside: false,
        from: &[S::Delivered, S::Returned, S::Reserved, S::Assigned],
        to: Target::To(S::HandedOver),
        parties: STAFF,
    },
    Rule {
        action: KeyAction::Return,
        from_outside: false,
        from: &[S::Assigned, S::HandedOver],
        to: Target::To(S::Returned),
        parties: STAFF,
    },
    Rule {
        action: KeyAction::DeclareLost,
        from_outside: false,
        from: &[
            S::Delivered,
            S::Reserved,
            S::Assigned,
            S::HandedOver,
            S::Returned,
        ],
        to: Target::To(S::Lost),
        // A holder may declare their own key lost (it stops logging in at once).
        parties: &[P::LotManager, P::SupportCentre, P::ItDepartment, P::Holder],
    },
    Rule {
        action: KeyAction::Find,
        from_outside: false,
        from: &[S::Lost],
        to: Target::To(S::Found),
        parties: CENTRAL,
    },
    Rule {
        action: KeyAction::Restock,
        from_outside: false,
        from: &[S::Found],
        to: Target::To(S::Delivered),
        parties: STAFF,
    },
    Rule {
        action: KeyAction::Move,
        from_outside: false,
        from: &[S::Delivered, S::Returned, S::Found, S::Expired],
        to: Target::Same,
        parties: STAFF,
    },
    Rule {
        action: KeyAction::Deactivate,
        from_outside: false,
        from: &[S::HandedOver],
        to: Target::Same,
        parties: &[P::LotManager, P::SupportCentre, P::Scheduler],
    },
    Rule {
        action: KeyAction::Expire,
        from_outside: false,
        from: LIVE,
        to: Target::To(S::Expired),
        parties: &[P::Scheduler, P::SupportCentre, P::ItDepartment],
    },
    Rule {
        action: KeyAction::Scrap,
        from_outside: false,
        from: &[S::Delivered, S::Returned, S::Found, S::Expired, S::Lost],
        to: Target::To(S::Scrapped),
        parties: CENTRAL,
    },
    Rule {
        action: KeyAction::Recycle,
        from_outside: false,
        from: &[S::Delivered, S::Returned, S::Found],
        to: Target::To(S::Recycled),
        parties: &[P::ItDepartment],
    },
    Rule {
        action: KeyAction::Reissue,
        from_outside: false,
        from: &[S::Recycled],
        to: Target::To(S::Delivered),
        parties: &[P::ItDepartment],
    },
];

/// The rule of an action.
pub fn rule(action: KeyAction) -> &'static Rule {
    // Every action has exactly one rule (checked by a test); the fallback is never reached.
    RULES
        .iter()
        .find(|r| r.action == action)
        .unwrap_or(&RULES[0])
}

/// A refused custody change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTransitionError {
    /// The action does not apply to a key in this state.
    #[error("{}", state_sentence(*.from, *.action))]
    State {
        /// The key's state (`None`: in no lot).
        from: Option<KeyState>,
        /// What was asked.
        action: KeyAction,
    },
    /// The action applies, but not for this party.
    #[error(
        "a key that is {} can be {} only by {}, not by {}",
        from.map_or("in no lot", KeyState::words),
        action.words(),
        party_list(rule(*action).parties),
        party.words()
    )]
    Party {
        /// The key's state.
        from: Option<KeyState>,
        /// What was asked.
        action: KeyAction,
        /// Who asked.
        party: Party,
    },
}

fn state_sentence(from: Option<KeyState>, action: KeyAction) -> String {
    match from {
        None => format!(
            "a key that is in no lot cannot be {}: register it into a lot first",
            action.words()
        ),
        Some(s) => format!("a key that is {} cannot be {}", s.words(), action.words()),
    }
}

fn party_list(parties: &[Party]) -> String {
    let words: Vec<&str> = parties.iter().map(|p| p.words()).collect();
    match words.split_last() {
        None => "nobody".into(),
        Some((last, [])) => (*last).into(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The state `action` leads to from `from` (`None`: the key is in no lot), if `party` may
/// perform it; a sentence naming the state and the action otherwise.
pub fn transition(
    from: Option<KeyState>,
    action: KeyAction,
    party: Party,
) -> Result<KeyState, KeyTransitionError> {
    let r = rule(action);
    let to = match (from, r.to) {
        (None, Target::To(to)) if r.from_outside => to,
        (Some(s), Target::To(to)) if r.from.contains(&s) => to,
        (Some(s), Target::Same) if r.from.contains(&s) => s,
        _ => return Err(KeyTransitionError::State { from, action }),
    };
    if !r.parties.contains(&party) {
        return Err(KeyTransitionError::Party {
            from,
            action,
            party,
        });
    }
    Ok(to)
}

/// Whether a key in custody state `custody` (`None`: in no lot, issued directly to its holder)
/// may have a code accepted, as far as custody goes: only a handed-over key, or a software key
/// assigned to its holder and enrolling with its first code. The token's [`crate::Status`],
/// validity end and deactivation are checked beside this.
pub const fn can_authenticate(custody: Option<KeyState>, software: bool) -> bool {
    match custody {
        None | Some(KeyState::HandedOver) => true,
        Some(KeyState::Assigned) => software,
        Some(_) => false,
    }
}

/// What the support centre should do with a key someone brought in (FAQ "Clé retrouvée").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoundDecision {
    /// The key is expired: scrap it.
    Scrap,
    /// The key belongs to someone: route it back to them (if they no longer need it, they
    /// return it to their lot manager).
    RouteToHolder {
        /// The holder.
        holder: String,
    },
    /// Nobody's key in a school's, district's or the exams office's lot: hand it to that lot's
    /// manager.
    ToLotManager,
    /// Nobody's key in the Rectorat's lot: the IT department recycles or scraps it.
    ToItDepartment,
    /// A key declared lost, now found: take it out of its lot, put it back in its origin lot,
    /// delivered (available again; no login before a new hand-over).
    BackToOriginLot,
    /// The key is out of use for good (scrapped) or already with the IT department (recycled).
    NothingToDo,
}

impl FoundDecision {
    /// Stable name (wire, `--json`).
    pub const fn as_str(&self) -> &'static str {
        match self {
            FoundDecision::Scrap => "scrap",
            FoundDecision::RouteToHolder { .. } => "route_to_holder",
            FoundDecision::ToLotManager => "to_lot_manager",
            FoundDecision::ToItDepartment => "to_it_department",
            FoundDecision::BackToOriginLot => "back_to_origin_lot",
            FoundDecision::NothingToDo => "nothing_to_do",
        }
    }
}

/// What a found key calls for. `expired`: its validity end has passed (whether or not the
/// scheduled job has marked it yet); `holder`: the person it is assigned or handed over to;
/// `rectorat_lot`: the lot it is in is the Rectorat's (run by the support centre itself).
pub fn found_decision(
    state: KeyState,
    holder: Option<&str>,
    expired: bool,
    rectorat_lot: bool,
) -> FoundDecision {
    match state {
        KeyState::Scrapped | KeyState::Recycled => FoundDecision::NothingToDo,
        KeyState::Expired => FoundDecision::Scrap,
        _ if expired => FoundDecision::Scrap,
        KeyState::Lost | KeyState::Found => FoundDecision::BackToOriginLot,
        KeyState::Assigned | KeyState::HandedOver => match holder {
            Some(h) => FoundDecision::RouteToHolder {
                holder: h.to_owned(),
            },
            None if rectorat_lot => FoundDecision::ToItDepartment,
            None => FoundDecision::ToLotManager,
        },
        KeyState::Delivered | KeyState::Reserved | KeyState::Returned => {
            if rectorat_lot {
                FoundDecision::ToItDepartment
            } else {
                FoundDecision::ToLotManager
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, written out independently of [`RULES`]: (state, action) → result for
    /// the parties allowed, one line per applicable pair. Everything not listed is refused.
    const EXPECTED: &[(Option<KeyState>, KeyAction, KeyState, &[Party])] = {
        use KeyAction as A;
        const STAFF: &[Party] = &[P::LotManager, P::SupportCentre, P::ItDepartment];
        const STAFF_H: &[Party] = &[P::LotManager, P::SupportCentre, P::ItDepartment, P::Holder];
        const CENTRAL: &[Party] = &[P::SupportCentre, P::ItDepartment];
        const EXP: &[Party] = &[P::SupportCentre, P::ItDepartment, P::Scheduler];
        const DEACT: &[Party] = &[P::LotManager, P::SupportCentre, P::Scheduler];
        const IT: &[Party] = &[P::ItDepartment];
        &[
            (None, A::Register, S::Delivered, CENTRAL),
            (Some(S::Delivered), A::Reserve, S::Reserved, STAFF),
            (Some(S::Returned), A::Reserve, S::Reserved, STAFF),
            (Some(S::Reserved), A::Unreserve, S::Delivered, STAFF),
            (Some(S::Delivered), A::Assign, S::Assigned, STAFF),
            (Some(S::Returned), A::Assign, S::Assigned, STAFF),
            (Some(S::Reserved), A::Assign, S::Assigned, STAFF),
            (Some(S::Assigned), A::Unassign, S::Delivered, STAFF),
            (Some(S::Delivered), A::HandOver, S::HandedOver, STAFF),
            (Some(S::Returned), A::HandOver, S::HandedOver, STAFF),
            (Some(S::Reserved), A::HandOver, S::HandedOver, STAFF),
            (Some(S::Assigned), A::HandOver, S::HandedOver, STAFF),
            (Some(S::Assigned), A::Return, S::Returned, STAFF),
            (Some(S::HandedOver), A::Return, S::Returned, STAFF),
            (Some(S::Delivered), A::DeclareLost, S::Lost, STAFF_H),
            (Some(S::Reserved), A::DeclareLost, S::Lost, STAFF_H),
            (Some(S::Assigned), A::DeclareLost, S::Lost, STAFF_H),
            (Some(S::HandedOver), A::DeclareLost, S::Lost, STAFF_H),
            (Some(S::Returned), A::DeclareLost, S::Lost, STAFF_H),
            (Some(S::Lost), A::Find, S::Found, CENTRAL),
            (Some(S::Found), A::Restock, S::Delivered, STAFF),
            (Some(S::Delivered), A::Move, S::Delivered, STAFF),
            (Some(S::Returned), A::Move, S::Returned, STAFF),
            (Some(S::Found), A::Move, S::Found, STAFF),
            (Some(S::Expired), A::Move, S::Expired, STAFF),
            (Some(S::HandedOver), A::Deactivate, S::HandedOver, DEACT),
            (Some(S::Delivered), A::Expire, S::Expired, EXP),
            (Some(S::Reserved), A::Expire, S::Expired, EXP),
            (Some(S::Assigned), A::Expire, S::Expired, EXP),
            (Some(S::HandedOver), A::Expire, S::Expired, EXP),
            (Some(S::Returned), A::Expire, S::Expired, EXP),
            (Some(S::Lost), A::Expire, S::Expired, EXP),
            (Some(S::Found), A::Expire, S::Expired, EXP),
            (Some(S::Delivered), A::Scrap, S::Scrapped, CENTRAL),
            (Some(S::Returned), A::Scrap, S::Scrapped, CENTRAL),
            (Some(S::Found), A::Scrap, S::Scrapped, CENTRAL),
            (Some(S::Expired), A::Scrap, S::Scrapped, CENTRAL),
            (Some(S::Lost), A::Scrap, S::Scrapped, CENTRAL),
            (Some(S::Delivered), A::Recycle, S::Recycled, IT),
            (Some(S::Returned), A::Recycle, S::Recycled, IT),
            (Some(S::Found), A::Recycle, S::Recycled, IT),
            (Some(S::Recycled), A::Reissue, S::Delivered, IT),
        ]
    };

    #[test]
    fn every_state_action_and_party_is_as_written() {
        let froms = std::iter::once(None).chain(KeyState::ALL.into_iter().map(Some));
        let mut checked = 0;
        for from in froms {
            for action in KeyAction::ALL {
                let line = EXPECTED
                    .iter()
                    .find(|(f, a, _, _)| *f == from && *a == action);
                for party in Party::ALL {
                    let got = transition(from, action, party);
                    match line {
                        None => assert_eq!(
                            got,
                            Err(KeyTransitionError::State { from, action }),
                            "{from:?} × {action:?} × {party:?}"
                        ),
                        Some((_, _, to, parties)) if parties.contains(&party) => {
                            assert_eq!(got, Ok(*to), "{from:?} × {action:?} × {party:?}")
                        }
                        Some(_) => assert_eq!(
                            got,
                            Err(KeyTransitionError::Party {
                                from,
                                action,
                                party
                            }),
                            "{from:?} × {action:?} × {party:?}"
                        ),
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 11 * 16 * 5);
    }

    #[test]
    fn one_rule_per_action() {
        for a in KeyAction::ALL {
            assert_eq!(RULES.iter().filter(|r| r.action == a).count(), 1, "{a:?}");
        }
        assert_eq!(RULES.len(), KeyAction::ALL.len());
    }

    #[test]
    fn scrapped_is_final() {
        for a in KeyAction::ALL {
            for p in Party::ALL {
                assert!(transition(Some(S::Scrapped), a, p).is_err(), "{a:?} {p:?}");
            }
        }
    }

    #[test]
    fn refusals_name_the_state_and_the_action() {
        let e = transition(Some(S::Lost), KeyAction::HandOver, P::LotManager).expect_err("refused");
        assert_eq!(e.to_string(), "a key that is lost cannot be handed over");
        let e = transition(Some(S::HandedOver), KeyAction::Scrap, P::SupportCentre)
            .expect_err("refused");
        assert_eq!(
            e.to_string(),
            "a key that is handed over cannot be scrapped"
        );
        let e = transition(None, KeyAction::HandOver, P::SupportCentre).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "a key that is in no lot cannot be handed over: register it into a lot first"
        );
        let e =
            transition(Some(S::Delivered), KeyAction::Recycle, P::LotManager).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "a key that is delivered can be recycled only by the IT department, not by the lot manager"
        );
        let e = transition(Some(S::Lost), KeyAction::Find, P::Holder).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "a key that is lost can be declared found only by the support centre or the IT \
             department, not by the key's holder"
        );
    }

    #[test]
    fn only_a_key_in_hand_logs_in() {
        for s in KeyState::ALL {
            assert_eq!(
                can_authenticate(Some(s), false),
                s == S::HandedOver,
                "{s:?} hardware"
            );
            assert_eq!(
                can_authenticate(Some(s), true),
                matches!(s, S::HandedOver | S::Assigned),
                "{s:?} software"
            );
        }
        assert!(can_authenticate(None, false));
    }

    #[test]
    fn found_keys_follow_the_faq() {
        use FoundDecision as D;
        let check = |s, holder, expired, rect, want: D| {
            assert_eq!(
                found_decision(s, holder, expired, rect),
                want,
                "{s:?} {holder:?} {expired} {rect}"
            )
        };
        // "La clé n'appartient à personne": by lot.
        check(S::Delivered, None, false, false, D::ToLotManager);
        check(S::Returned, None, false, false, D::ToLotManager);
        check(S::Delivered, None, false, true, D::ToItDepartment);
        check(S::Reserved, None, false, true, D::ToItDepartment);
        // "La clé est expirée": scrap, whatever else.
        check(S::Expired, None, true, false, D::Scrap);
        check(S::HandedOver, Some("p1"), true, false, D::Scrap);
        check(S::Delivered, None, true, true, D::Scrap);
        // "La clé appartient à une personne": route it back.
        check(
            S::HandedOver,
            Some("p1"),
            false,
            false,
            D::RouteToHolder {
                holder: "p1".into(),
            },
        );
        check(
            S::Assigned,
            Some("p2"),
            false,
            true,
            D::RouteToHolder {
                holder: "p2".into(),
            },
        );
        // Declared lost, then found: back to its origin lot.
        check(S::Lost, None, false, false, D::BackToOriginLot);
        check(S::Found, None, false, true, D::BackToOriginLot);
        check(S::Scrapped, None, false, false, D::NothingToDo);
        check(S::Recycled, None, true, false, D::NothingToDo);
    }

    #[test]
    fn names_round_trip() {
        for s in KeyState::ALL {
            assert_eq!(s.as_str().parse::<KeyState>(), Ok(s));
        }
        for a in KeyAction::ALL {
            assert_eq!(a.as_str().parse::<KeyAction>(), Ok(a));
        }
        assert!("Lost".parse::<KeyState>().is_err());
    }
}
