//! The one place where errors become gRPC statuses.
//!
//! Caller mistakes get their specific code and a human sentence (built from fixed texts, never
//! from secrets). Anything unexpected is logged with its detail and answered with a generic
//! `INTERNAL`, so internals do not leak to callers.

use okey_store::StoreError;
use tonic::Status;

/// A validation failure: `INVALID_ARGUMENT` with the error's sentence.
pub fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Map a store error.
pub fn store_status(e: StoreError) -> Status {
    match &e {
        StoreError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        StoreError::UnknownSerial(_) | StoreError::UnknownApiKey(_) => {
            Status::not_found(e.to_string())
        }
        StoreError::DuplicateSerial(_)
        | StoreError::DuplicateApiKey
        | StoreError::ApiKeyNameTaken(_) => Status::already_exists(e.to_string()),
        StoreError::Precondition(_) | StoreError::Unsupported(_) => {
            Status::failed_precondition(e.to_string())
        }
        StoreError::Conflict => Status::aborted(e.to_string()),
        // Fail closed, and say why: the HSM is a dependency the operator must restore.
        StoreError::HsmGone(_) => {
            tracing::error!(error = %e, "the HSM is unreachable");
            Status::unavailable(e.to_string())
        }
        _ => {
            tracing::error!(error = %e, "store error");
            Status::internal("internal error; see the server log")
        }
    }
}

/// Whether a store error means "no such token".
pub fn is_not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::UnknownSerial(_))
}
