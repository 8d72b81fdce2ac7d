//! A simulated device on a simulated USB port: firmware, plug state, injected faults, and the
//! [`SimTransport`] that speaks to it through okey-hid's [`Transport`] trait.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use okey_hid::transport::{DeviceInfo, Family, Transport, TransportError};

use crate::clock::VirtualClock;
use crate::nitrokey::{NitrokeyProfile, NitrokeySim};
use crate::yubikey::{YubiKeyProfile, YubiKeySim};

/// A fault to inject into the next matching transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next SET_REPORT arrives with one bit flipped (transmission error).
    CorruptRequest,
    /// The next GET_REPORT delivers a report with one bit flipped.
    CorruptResponse,
    /// The GET_REPORT after this many more delivers a report with one bit flipped.
    CorruptResponseAfter(u32),
    /// The next SET_REPORT is lost.
    DropRequest,
    /// The next accepted request keeps the device busy for this many extra polls.
    Busy(u32),
    /// The device is pulled out when it receives a request whose first byte (Nitrokey
    /// command) or frame command (YubiKey, on any chunk of a frame with this command)
    /// equals this value; the request is lost.
    UnplugOnCommand(u8),
    /// The device is pulled out after this many more SET_REPORTs have been delivered.
    UnplugAfterWrites(u32),
}

/// The firmware inside a simulated device.
#[derive(Debug)]
pub enum Firmware {
    /// A Nitrokey Pro.
    Nitrokey(Box<NitrokeySim>),
    /// A YubiKey OTP interface.
    YubiKey(YubiKeySim),
}

/// One simulated token.
#[derive(Debug)]
pub struct SimDevice {
    /// Bus path / name.
    pub path: String,
    /// Firmware state.
    pub firmware: Firmware,
    plugged: bool,
    /// Incremented on every plug-in; transports opened before are dead.
    generation: u64,
    faults: VecDeque<Fault>,
    writes_seen: u32,
    yk_frame_cmd_probe: [u8; 70],
}

impl SimDevice {
    /// A Nitrokey Pro (not plugged in).
    pub fn nitrokey(path: &str, profile: NitrokeyProfile, clock: &VirtualClock) -> Self {
        Self::with(
            path,
            Firmware::Nitrokey(Box::new(NitrokeySim::new(profile, clock.now_ms()))),
        )
    }

    /// A YubiKey (not plugged in).
    pub fn yubikey(path: &str, profile: YubiKeyProfile) -> Self {
        Self::with(path, Firmware::YubiKey(YubiKeySim::new(profile)))
    }

    fn with(path: &str, firmware: Firmware) -> Self {
        Self {
            path: path.to_owned(),
            firmware,
            plugged: false,
            generation: 0,
            faults: VecDeque::new(),
            writes_seen: 0,
            yk_frame_cmd_probe: [0; 70],
        }
    }

    /// USB identity as discovery reports it.
    pub fn info(&self) -> DeviceInfo {
        match &self.firmware {
            Firmware::Nitrokey(n) => DeviceInfo {
                path: self.path.clone(),
                vendor_id: 0x20A0,
                product_id: 0x4108,
                family: Family::NitrokeyPro,
                usb_serial: Some(n.profile().usb_serial.clone()),
                product: Some("Nitrokey Pro (simulated)".into()),
            },
            Firmware::YubiKey(_) => DeviceInfo {
                path: self.path.clone(),
                vendor_id: 0x1050,
                product_id: 0x0407,
                family: Family::YubiKeyOtp,
                usb_serial: None,
                product: Some("YubiKey OTP+FIDO+CCID (simulated)".into()),
            },
        }
    }

    /// True while plugged in.
    pub fn is_plugged(&self) -> bool {
        self.plugged
    }

    /// Plugs in (power-up: RAM state starts fresh).
    pub fn plug(&mut self, now_ms: u64) {
        if self.plugged {
            return;
        }
        self.plugged = true;
        self.generation += 1;
        match &mut self.firmware {
            Firmware::Nitrokey(n) => n.power_cycle(now_ms),
            Firmware::YubiKey(y) => y.power_cycle(),
        }
    }

    /// Pulls out.
    pub fn unplug(&mut self) {
        self.plugged = false;
        self.faults.clear();
    }

    /// Queues a fault.
    pub fn inject(&mut self, fault: Fault) {
        if matches!(fault, Fault::UnplugAfterWrites(_)) {
            self.writes_seen = 0;
        }
        self.faults.push_back(fault);
    }

    /// Faults not yet triggered.
    pub fn pending_faults(&self) -> usize {
        self.faults.len()
    }

    fn take_fault(&mut self, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let i = self.faults.iter().position(pred)?;
        self.faults.remove(i)
    }

    fn set_report(&mut self, report: &[u8], now_ms: u64) -> Result<(), TransportError> {
        if !self.plugged {
            return Err(TransportError::Disconnected);
        }
        // Which command is this? (YubiKey: the frame command is only known on the last
        // chunk, so track the frame as it is written.)
        let command = match &self.firmware {
            Firmware::Nitrokey(_) => report.first().copied(),
            Firmware::YubiKey(_) => {
                let flags = report.get(7).copied().unwrap_or(0);
                if flags & 0x80 != 0 && flags & 0x1F < 10 {
                    let seq = usize::from(flags & 0x1F);
                    if seq == 0 {
                        self.yk_frame_cmd_probe = [0; 70];
                    }
                    if let (Some(dst), Some(src)) = (
                        self.yk_frame_cmd_probe.get_mut(seq * 7..seq * 7 + 7),
                        report.get(..7),
                    ) {
                        dst.copy_from_slice(src);
                    }
                }
                self.yk_frame_cmd_probe.get(64).copied()
            }
        };
        if let Some(c) = command
            && self
                .take_fault(|f| *f == Fault::UnplugOnCommand(c))
                .is_some()
        {
            self.unplug();
            return Err(TransportError::Disconnected);
        }
        if let Some(Fault::UnplugAfterWrites(n)) = self
            .faults
            .iter()
            .find(|f| matches!(f, Fault::UnplugAfterWrites(_)))
            && self.writes_seen >= *n
        {
            self.unplug();
            return Err(TransportError::Disconnected);
        }
        self.writes_seen += 1;
        if self.take_fault(|f| *f == Fault::DropRequest).is_some() {
            return Ok(());
        }
        let mut data = report.to_vec();
        if self.take_fault(|f| *f == Fault::CorruptRequest).is_some()
            && let Some(b) = data.get_mut(if report.len() > 8 { 9 } else { 3 })
        {
            *b ^= 0x01;
        }
        let busy = self.take_fault(|f| matches!(f, Fault::Busy(_)));
        match &mut self.firmware {
            Firmware::Nitrokey(n) => {
                if let Some(Fault::Busy(p)) = busy {
                    n.inject_busy(p);
                }
                n.set_report(&data, now_ms);
            }
            Firmware::YubiKey(y) => {
                y.set_report(&data);
                if let Some(Fault::Busy(p)) = busy {
                    y.inject_busy(u8::try_from(p).unwrap_or(u8::MAX));
                }
            }
        }
        zeroize::Zeroize::zeroize(&mut data);
        Ok(())
    }

    fn get_report(&mut self, buf: &mut [u8], now_ms: u64) -> Result<usize, TransportError> {
        if !self.plugged {
            return Err(TransportError::Disconnected);
        }
        let mut report: Vec<u8> = match &mut self.firmware {
            Firmware::Nitrokey(n) => n.get_report(now_ms).to_vec(),
            Firmware::YubiKey(y) => y.get_report().to_vec(),
        };
        let at = if report.len() > 8 { 10 } else { 4 };
        let mut corrupt = self.take_fault(|f| *f == Fault::CorruptResponse).is_some();
        if let Some(f) = self
            .faults
            .iter_mut()
            .find(|f| matches!(f, Fault::CorruptResponseAfter(_)))
            && let Fault::CorruptResponseAfter(n) = f
        {
            if *n == 0 {
                corrupt = true;
                self.take_fault(|f| matches!(f, Fault::CorruptResponseAfter(0)));
            } else {
                *n -= 1;
            }
        }
        if corrupt && let Some(b) = report.get_mut(at) {
            *b ^= 0x01;
        }
        let n = report.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), report.get(..n)) {
            dst.copy_from_slice(src);
        }
        zeroize::Zeroize::zeroize(&mut report);
        Ok(n)
    }
}

/// Shared handle to a simulated device.
pub type SharedDevice = Arc<Mutex<SimDevice>>;

/// Locks a device, recovering from a poisoned lock (a panicking test thread must not turn
/// every later access into a panic).
pub fn lock(dev: &SharedDevice) -> MutexGuard<'_, SimDevice> {
    dev.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An opened simulated device: the [`Transport`] the drivers use in simulation.
#[derive(Debug, Clone)]
pub struct SimTransport {
    device: SharedDevice,
    clock: VirtualClock,
    generation: u64,
}

impl SimTransport {
    /// Opens a plugged device; `None` when it is not plugged in.
    pub fn open(device: &SharedDevice, clock: &VirtualClock) -> Option<Self> {
        let generation = {
            let d = lock(device);
            if !d.is_plugged() {
                return None;
            }
            d.generation
        };
        Some(Self {
            device: Arc::clone(device),
            clock: clock.clone(),
            generation,
        })
    }

    fn with_device<R>(
        &self,
        f: impl FnOnce(&mut SimDevice, u64) -> Result<R, TransportError>,
    ) -> Result<R, TransportError> {
        let mut d = lock(&self.device);
        if d.generation != self.generation {
            return Err(TransportError::Disconnected);
        }
        f(&mut d, self.clock.now_ms())
    }
}

impl Transport for SimTransport {
    fn send_feature_report(
        &mut self,
        report: &[u8],
        _timeout: Duration,
    ) -> Result<(), TransportError> {
        self.with_device(|d, now| d.set_report(report, now))
    }

    fn get_feature_report(
        &mut self,
        buf: &mut [u8],
        _timeout: Duration,
    ) -> Result<usize, TransportError> {
        self.with_device(|d, now| d.get_report(buf, now))
    }

    fn pause(&mut self, duration: Duration) {
        self.clock.advance(duration);
    }
}
