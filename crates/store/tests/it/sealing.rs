//! sealing tests.
