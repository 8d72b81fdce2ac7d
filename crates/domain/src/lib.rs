//! okey's rules, free of I/O and of any wire format: who may do what, what identifiers look
//! like, which token status changes are allowed, and the custody table of a key (lots, hand-overs,
//! returns, lost and found: [`KeyState`], [`RULES`]).
//!
//! The server decodes a request, authenticates the caller, then asks this crate whether the
//! caller's roles allow the [`Operation`]. The table in [`Operation::allowed_roles`] is the single
//! place that says so: deny by default, every operation names its roles, and a test calls every
//! RPC with every role to prove the table is what the server enforces.
//!
//! [`org`] holds the organisation: units (schools by UAI code, districts, the Rectorat and its
//! departments, the exams office), people and their functions, N+1/N+2, lot kinds, and the scope
//! rule saying which person manages which lot ([`org::manages_lot`], [`org::Scope`]).
#![forbid(unsafe_code)]

mod ids;
mod keystate;
pub mod org;
pub mod request;
mod roles;
mod status;
pub mod support;

pub use ids::{
    IdError, MAX_HOLDER_LEN, MAX_SERIAL_LEN, fold_holder, validate_holder, validate_principal_name,
    validate_serial,
};
pub use keystate::{
    FoundDecision, KeyAction, KeyState, KeyTransitionError, Party, RULES, Rule, Target,
    can_authenticate, found_decision, rule, transition,
};
pub use roles::{Denied, Operation, Role, authorize};
pub use status::{Status, TransitionError, check_transition};
