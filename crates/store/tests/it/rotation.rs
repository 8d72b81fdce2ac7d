//! rotation tests.
