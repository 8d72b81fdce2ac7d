//! End-to-end tests against a real `okey serve` process (one test binary, one module per area).

mod anchors;
mod authz;
mod bad_input;
mod challenge;
mod crash;
mod directory;
mod documents;
mod hid;
mod holder_pin;
mod hsm;
mod keys;
mod lifecycle;
mod lockout;
mod mail;
mod nodes;
mod operations;
mod org_scope;
mod portal_desk;
mod pskc_policy;
mod radius;
mod requests;
mod seed_files;
mod stock_clients;
mod support;
mod tls;
