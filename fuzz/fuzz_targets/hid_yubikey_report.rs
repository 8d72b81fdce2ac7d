//! Fuzz target: YubiKey OTP report parsing, and the driver fed arbitrary reports.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use okey_hid::transport::{Transport, TransportError};
use okey_hid::yubikey::proto::{self, SlotConfiguration, YkStatus};
use okey_hid::yubikey::{YkTiming, YubiKeyOtp};

/// Answers every GET_REPORT with the next 8 bytes of fuzz input.
struct Fuzzed<'a>(&'a [u8]);

impl Transport for Fuzzed<'_> {
    fn send_feature_report(&mut self, _: &[u8], _: Duration) -> Result<(), TransportError> {
        Ok(())
    }
    fn get_feature_report(&mut self, buf: &mut [u8], _: Duration) -> Result<usize, TransportError> {
        if self.0.is_empty() {
            return Err(TransportError::Disconnected);
        }
        let n = self.0.len().min(buf.len()).min(8);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
    fn pause(&mut self, _: Duration) {}
}

fuzz_target!(|data: &[u8]| {
    let _ = YkStatus::parse(data);
    let _ = proto::classify_response_report(data);
    let _ = proto::parse_serial(data);
    if let Some((&len, rest)) = data.split_first() {
        let _ = proto::check_response(rest, usize::from(len));
    }
    if let Ok(c) = <[u8; 52]>::try_from(data.get(..52).unwrap_or_default()) {
        let _ = SlotConfiguration::from_bytes(c).crc_ok();
    }
    if let Ok(mut yk) = YubiKeyOtp::open_with(Fuzzed(data), YkTiming::default()) {
        let _ = yk.serial();
        let _ = yk.swap_slots();
    }
});
