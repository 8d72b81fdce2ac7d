//! Bench workflows (in progress).
