//! lockout tests.
