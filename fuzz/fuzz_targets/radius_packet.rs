//! Fuzz the RADIUS parser on arbitrary datagrams: nothing may panic, a parsed packet's
//! attributes tile its octets exactly, the Message-Authenticator check and password recovery
//! run on whatever parsed, and a packet rebuilt from the parsed attributes is the same octets.
//!
//! Input layout: one byte choosing the shared secret's length, then the datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use okey_radius::packet::{Builder, HEADER_LEN, Packet, attr, unhide_password};

fuzz_target!(|data: &[u8]| {
    let Some((&head, datagram)) = data.split_first() else {
        return;
    };
    let secret = &b"0123456789abcdef0123456789abcdef"[..16 + usize::from(head % 17)];
    let Ok(p) = Packet::parse(datagram) else {
        return;
    };
    assert!(p.raw.len() >= HEADER_LEN && p.raw.len() <= datagram.len());
    let tiled: usize = p.attributes.iter().map(|a| 2 + a.value.len()).sum();
    assert_eq!(HEADER_LEN + tiled, p.raw.len());
    let _ = p.message_authenticator(secret);
    let _ = p.is_response_to(&[0; 16], secret);
    if let Some(hidden) = p.first(attr::USER_PASSWORD) {
        if let Ok(clear) = unhide_password(hidden, secret, &p.authenticator) {
            assert!(clear.len() <= hidden.len());
        }
    }
    let mut b = Builder::new(p.code, p.identifier);
    for a in &p.attributes {
        b.push(a.kind, a.value).expect("a parsed attribute fits again");
    }
    let mut rebuilt = b.finish_request(&p.authenticator, secret);
    assert_eq!(rebuilt.len(), p.raw.len());
    rebuilt[2..4].copy_from_slice(&p.raw[2..4]);
    assert_eq!(rebuilt, p.raw);
});
