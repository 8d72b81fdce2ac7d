//! End-to-end tests against a real `okey serve` process (one test binary, one module per area).

mod authz;
mod bad_input;
mod challenge;
mod crash;
mod hid;
mod hsm;
mod lifecycle;
mod operations;
mod seed_files;
mod tls;
