//! Token status and the changes between statuses that okey allows.
//!
//! ```text
//! INITIALISING ──code read back──▶ ACTIVE ◀──enable── DISABLED
//!      │                             │  └──disable──▶    │
//!      └─abort─▶ REVOKED ◀──revoke── ┴───────────────────┘
//! PENDING ──first valid code──▶ ACTIVE          (software tokens)
//!    └──revoke──▶ REVOKED
//! ```
//! Only an active token verifies. Revoked is final. A token becomes active only by proving it
//! holds its seed (the bench reading its code back, or a first valid code): no administrative
//! change makes an initialising or pending token active, and a pending token cannot be disabled
//! (so every disabled token was active once, and enabling it proves nothing new is needed).

/// Lifecycle status of a token as far as authentication is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Created on the USB bench; the seed is being written to the device.
    Initialising,
    /// A software token waiting for its first valid code.
    Pending,
    /// Verifies.
    Active,
    /// Temporarily out of use.
    Disabled,
    /// Out of use for good.
    Revoked,
}

/// A refused status change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a token cannot go from {from:?} to {to:?}")]
pub struct TransitionError {
    /// Current status.
    pub from: Status,
    /// Requested status.
    pub to: Status,
}

/// Whether an administrative status change (enable, disable, revoke) is allowed. The changes
/// a token makes by proving its seed (confirmation on the bench, a first valid code) are not
/// administrative and are not in this table.
pub fn check_transition(from: Status, to: Status) -> Result<(), TransitionError> {
    use Status::*;
    let ok = matches!(
        (from, to),
        (Initialising, Revoked)
            | (Pending, Revoked)
            | (Active, Disabled)
            | (Active, Revoked)
            | (Disabled, Active)
            | (Disabled, Revoked)
    );
    if ok {
        Ok(())
    } else {
        Err(TransitionError { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_is_final_and_bench_tokens_cannot_be_enabled_by_hand() {
        for to in [
            Status::Initialising,
            Status::Pending,
            Status::Active,
            Status::Disabled,
        ] {
            assert!(check_transition(Status::Revoked, to).is_err());
        }
        assert!(check_transition(Status::Initialising, Status::Disabled).is_err());
        // Only a proof of the seed makes a token active, never an administrator.
        assert!(check_transition(Status::Initialising, Status::Active).is_err());
        assert!(check_transition(Status::Pending, Status::Active).is_err());
        // A pending token disabled and then enabled would be active without a first code.
        assert!(check_transition(Status::Pending, Status::Disabled).is_err());
        assert!(check_transition(Status::Pending, Status::Revoked).is_ok());
        assert!(check_transition(Status::Disabled, Status::Active).is_ok());
        assert!(check_transition(Status::Active, Status::Active).is_err());
    }
}
