//! okey's RADIUS front end (RFC 2865), on the same verify path as gRPC `Verify`.
#![forbid(unsafe_code)]

pub mod packet;
