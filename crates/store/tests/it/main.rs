//! Integration tests of the sealed store (one binary: faster to link, one place to look).

mod audit;
mod backup;
mod basics;
mod challenges;
mod common;
mod concurrency;
mod crash;
mod custody;
mod directory;
mod lockout;
mod migrate;
mod nodes;
mod outbox;
mod pg;
mod requests;
mod rotation;
mod sealing;
mod support;
