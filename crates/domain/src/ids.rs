//! Identifiers as they arrive from callers: serials, holders, principal names.
//!
//! A serial is printed on the device and typed by people: it keeps leading zeros and is compared
//! as text, exactly (case included), never as a number: `new0` and `NEW0` are two keys.
//!
//! A holder is a person's login, and directories compare logins without regard to case:
//! `Bob`, `bob` and `BOB` are one person. Every holder okey stores or looks up goes through
//! [`fold_holder`] first, so it is kept, and matched, in lower case.

/// Longest serial accepted.
pub const MAX_SERIAL_LEN: usize = 64;
/// Longest holder identifier accepted.
pub const MAX_HOLDER_LEN: usize = 128;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Nothing given where something is required.
    #[error("the {0} is empty")]
    Empty(&'static str),
    /// Too long.
    #[error("the {what} is longer than {max} characters")]
    TooLong {
        /// Which identifier.
        what: &'static str,
        /// Its limit.
        max: usize,
    },
    /// A character outside the allowed set.
    #[error("the {0} may contain only letters, digits and . _ - (@ for holders)")]
    Charset(&'static str),
}

fn check(value: &str, what: &'static str, max: usize, extra: &[u8]) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty(what));
    }
    if value.len() > max {
        return Err(IdError::TooLong { what, max });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b))
    {
        return Err(IdError::Charset(what));
    }
    Ok(())
}

/// A token serial: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn validate_serial(serial: &str) -> Result<(), IdError> {
    check(serial, "serial", MAX_SERIAL_LEN, b"")
}

/// A holder (user) identifier: 1 to 128 of `A-Z a-z 0-9 . _ - @`.
pub fn validate_holder(holder: &str) -> Result<(), IdError> {
    check(holder, "holder", MAX_HOLDER_LEN, b"@")
}

/// A holder (user) identifier, checked as [`validate_holder`] does and folded to lower case:
/// the form in which holders are stored and looked up.
pub fn fold_holder(holder: &str) -> Result<String, IdError> {
    validate_holder(holder)?;
    Ok(holder.to_ascii_lowercase())
}

/// A caller principal's name: 1 to 64 of `A-Z a-z 0-9 . _ - @`.
pub fn validate_principal_name(name: &str) -> Result<(), IdError> {
    check(name, "principal name", 64, b"@")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials() {
        assert!(validate_serial("0001234").is_ok());
        assert!(validate_serial("NK-PRO.2_x").is_ok());
        assert_eq!(validate_serial(""), Err(IdError::Empty("serial")));
        assert!(validate_serial("a b").is_err());
        assert!(validate_serial("é").is_err());
        assert!(validate_serial(&"1".repeat(65)).is_err());
        assert!(validate_serial("x@y").is_err());
        assert!(validate_holder("jean.dupont@ac-example.fr").is_ok());
        assert!(validate_holder("a;drop").is_err());
    }

    #[test]
    fn holders_fold_serials_do_not() {
        assert_eq!(fold_holder("Bob").as_deref(), Ok("bob"));
        assert_eq!(fold_holder("BOB"), fold_holder("bob"));
        assert_eq!(
            fold_holder("Jean.Dupont@AC-Example.fr").as_deref(),
            Ok("jean.dupont@ac-example.fr")
        );
        assert!(fold_holder("Bob Smith").is_err());
        assert_eq!(fold_holder(""), Err(IdError::Empty("holder")));
    }
}
