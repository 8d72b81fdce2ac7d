//! The one place where errors become gRPC statuses.
//!
//! Caller mistakes get their specific code and a human sentence (built from fixed texts, never
//! from secrets). Anything unexpected is logged with its detail and answered with a generic
//! `INTERNAL`, so internals do not leak to callers.

use okey_store::StoreError;
use tonic::{Code, Status};

/// Longest message a status carries, in bytes. Messages travel as a header (`grpc-message`), and
/// stock clients refuse a header past a few kilobytes: a status that echoed a megabyte of input
/// would reach the caller as its own client's `RESOURCE_EXHAUSTED` instead of okey's answer.
pub const MAX_MESSAGE: usize = 1024;
/// Most characters of a caller's value shown in a message.
pub const MAX_SHOWN: usize = 64;

/// A caller's value as a message shows it: quoted, control characters escaped, cut after
/// [`MAX_SHOWN`] characters with its full length said.
pub fn shown(value: &str) -> String {
    let count = value.chars().count();
    if count <= MAX_SHOWN {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(MAX_SHOWN).collect();
    format!("{head:?}... ({} bytes)", value.len())
}

/// `message` cut to at most [`MAX_MESSAGE`] bytes, at a character boundary.
fn capped(message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    const MORE: &str = " [...]";
    let mut end = MAX_MESSAGE - MORE.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = message;
    out.truncate(end);
    out.push_str(MORE);
    out
}

/// A status with `code` and `message`, the message capped at [`MAX_MESSAGE`] bytes. Every
/// message built from a caller's input or a file's content goes through here.
pub fn status(code: Code, message: impl Into<String>) -> Status {
    Status::new(code, capped(message.into()))
}

/// `s` with `context` before its message (e.g. which item of a batch), capped.
pub fn within(context: &str, s: &Status) -> Status {
    status(s.code(), format!("{context}: {}", s.message()))
}

/// A validation failure: `INVALID_ARGUMENT` with the error's sentence.
pub fn invalid(e: impl std::fmt::Display) -> Status {
    status(Code::InvalidArgument, e.to_string())
}

/// Map a store error.
pub fn store_status(e: StoreError) -> Status {
    let code = match &e {
        StoreError::Invalid { .. } => Code::InvalidArgument,
        StoreError::Forbidden(_) => Code::PermissionDenied,
        StoreError::UnknownSerial(_) | StoreError::UnknownApiKey(_) | StoreError::UnknownLot(_) => {
            Code::NotFound
        }
        StoreError::DuplicateSerial(_)
        | StoreError::DuplicateApiKey
        | StoreError::ApiKeyNameTaken(_) => Code::AlreadyExists,
        StoreError::Precondition(_) | StoreError::Unsupported(_) => Code::FailedPrecondition,
        StoreError::Conflict => Code::Aborted,
        // Fail closed, and say why: the HSM is a dependency the operator must restore.
        StoreError::HsmGone(_) => {
            tracing::error!(error = %e, "the HSM is unreachable");
            Code::Unavailable
        }
        _ => {
            tracing::error!(error = %e, "store error");
            return Status::internal("internal error; see the server log");
        }
    };
    status(code, e.to_string())
}

/// Whether a store error means "no such token".
pub fn is_not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::UnknownSerial(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_values_and_messages_are_capped() {
        assert_eq!(shown("0012"), "\"0012\"");
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        let big = "é".repeat(1 << 20);
        let s = shown(&big);
        assert!(s.len() < 200, "{s}");
        assert!(s.ends_with("... (2097152 bytes)"), "{s}");
        let long = invalid(format!("bad: {big}"));
        assert_eq!(long.code(), Code::InvalidArgument);
        assert!(long.message().len() <= MAX_MESSAGE);
        assert!(long.message().starts_with("bad: é") && long.message().ends_with(" [...]"));
        assert_eq!(invalid("short").message(), "short");
        let inner = within(&format!("token 1 ({})", shown(&big)), &long);
        assert!(inner.message().len() <= MAX_MESSAGE);
        let store = store_status(StoreError::Precondition(big.clone()));
        assert_eq!(store.code(), Code::FailedPrecondition);
        assert!(store.message().len() <= MAX_MESSAGE);
    }
}
