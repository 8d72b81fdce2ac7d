//! A simulated bench: several simulated tokens on simulated USB ports, behind okey-hid's
//! [`DeviceProvider`], plus the touch emulation and host clock the workflows need, so every
//! `okey hid ... --simulate` workflow runs end to end without hardware.
//!
//! With autopilot on, waiting for an event plays a technician working down a row of tokens:
//! a plugged token is pulled out, then the next token of the row is plugged in.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use okey_hid::bench::{HostClock, TouchSource};
use okey_hid::secret::OtpCode;
use okey_hid::transport::{
    BoxedTransport, DeviceEvent, DeviceInfo, DeviceProvider, DiscoveryError,
};
use okey_hid::yubikey::YkSlot;

use crate::clock::VirtualClock;
use crate::device::{Fault, Firmware, SharedDevice, SimDevice, SimTransport, lock};
use crate::nitrokey::NitrokeyProfile;
use crate::yubikey::YubiKeyProfile;

/// Index of a device on the simulated bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceId(pub usize);

/// The simulated bench.
#[derive(Debug)]
pub struct SimBench {
    clock: VirtualClock,
    epoch: u64,
    devices: Vec<SharedDevice>,
    events: VecDeque<DeviceEvent>,
    row: VecDeque<DeviceId>,
    autopilot: bool,
    /// Plug state as last reported through events.
    present: Vec<bool>,
}

impl SimBench {
    /// An empty bench whose host clock reads `epoch` (Unix seconds) at virtual time 0.
    pub fn new(epoch: u64) -> Self {
        Self {
            clock: VirtualClock::new(),
            epoch,
            devices: Vec::new(),
            events: VecDeque::new(),
            row: VecDeque::new(),
            autopilot: false,
            present: Vec::new(),
        }
    }

    /// The shared virtual clock.
    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    /// Host Unix time now (epoch + virtual time).
    pub fn host_time(&self) -> u64 {
        self.epoch + self.clock.now_ms() / 1000
    }

    /// Adds an unplugged Nitrokey Pro.
    pub fn add_nitrokey(&mut self, profile: NitrokeyProfile) -> DeviceId {
        let path = format!("sim:nitrokey:{:08X}", profile.card_serial);
        let dev = SimDevice::nitrokey(&path, profile, &self.clock);
        self.push(dev)
    }

    /// Adds an unplugged YubiKey.
    pub fn add_yubikey(&mut self, profile: YubiKeyProfile) -> DeviceId {
        let path = format!("sim:yubikey:{}", profile.serial);
        self.push(SimDevice::yubikey(&path, profile))
    }

    fn push(&mut self, dev: SimDevice) -> DeviceId {
        self.devices.push(Arc::new(Mutex::new(dev)));
        self.present.push(false);
        DeviceId(self.devices.len() - 1)
    }

    /// The shared device (for inspection and fault injection).
    pub fn device(&self, id: DeviceId) -> Option<&SharedDevice> {
        self.devices.get(id.0)
    }

    /// Runs `f` on the device's state.
    pub fn with_device<R>(&self, id: DeviceId, f: impl FnOnce(&mut SimDevice) -> R) -> Option<R> {
        self.devices.get(id.0).map(|d| f(&mut lock(d)))
    }

    /// Queues a fault on a device.
    pub fn inject(&self, id: DeviceId, fault: Fault) {
        self.with_device(id, |d| d.inject(fault));
    }

    /// Plugs a device in and queues its arrival event.
    pub fn plug(&mut self, id: DeviceId) {
        let now = self.clock.now_ms();
        if let Some(info) = self.with_device(id, |d| {
            let was = d.is_plugged();
            d.plug(now);
            (!was).then(|| d.info())
        }) && let Some(info) = info
        {
            if let Some(p) = self.present.get_mut(id.0) {
                *p = true;
            }
            self.events.push_back(DeviceEvent::Arrived(info));
        }
    }

    /// Pulls a device out and queues its departure event.
    pub fn unplug(&mut self, id: DeviceId) {
        if let Some(Some(info)) = self.with_device(id, |d| {
            let was = d.is_plugged();
            d.unplug();
            was.then(|| d.info())
        }) {
            if let Some(p) = self.present.get_mut(id.0) {
                *p = false;
            }
            self.events.push_back(DeviceEvent::Left(info));
        }
    }

    /// Sets up a row of tokens handled one at a time by the autopilot technician.
    pub fn set_row(&mut self, row: impl IntoIterator<Item = DeviceId>) {
        self.row = row.into_iter().collect();
        self.autopilot = true;
    }

    fn id_of(&self, path: &str) -> Option<DeviceId> {
        self.devices
            .iter()
            .position(|d| lock(d).path == path)
            .map(DeviceId)
    }

    /// Lets virtual time pass.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// Emulates a touch of a YubiKey slot: returns the typed code (its counter advances).
    pub fn touch(&self, id: DeviceId, slot: YkSlot) -> Option<String> {
        let n = match slot {
            YkSlot::One => 1,
            YkSlot::Two => 2,
        };
        self.with_device(id, |d| {
            if !d.is_plugged() {
                return None;
            }
            match &mut d.firmware {
                Firmware::YubiKey(y) => y.touch(n),
                Firmware::Nitrokey(_) => None,
            }
        })
        .flatten()
    }
}

impl DeviceProvider for SimBench {
    fn enumerate(&mut self) -> Result<Vec<DeviceInfo>, DiscoveryError> {
        Ok(self
            .devices
            .iter()
            .filter_map(|d| {
                let d = lock(d);
                d.is_plugged().then(|| d.info())
            })
            .collect())
    }

    fn open(&mut self, device: &DeviceInfo) -> Result<BoxedTransport, DiscoveryError> {
        let dev = self
            .id_of(&device.path)
            .and_then(|id| self.devices.get(id.0))
            .ok_or_else(|| DiscoveryError::Open {
                path: device.path.clone(),
                reason: "no such device".into(),
            })?;
        SimTransport::open(dev, &self.clock)
            .map(|t| Box::new(t) as BoxedTransport)
            .ok_or_else(|| DiscoveryError::Open {
                path: device.path.clone(),
                reason: "not plugged in".into(),
            })
    }

    fn wait_event(&mut self, timeout: Duration) -> Result<Option<DeviceEvent>, DiscoveryError> {
        // A device that vanished by itself (pulled out mid-operation by a fault) is reported
        // like any departure.
        for (i, seen) in self.present.iter_mut().enumerate() {
            if let Some(d) = self.devices.get(i) {
                let d = lock(d);
                if *seen && !d.is_plugged() {
                    *seen = false;
                    self.events.push_back(DeviceEvent::Left(d.info()));
                }
            }
        }
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        if self.autopilot {
            // The technician pulls whatever is plugged in, then plugs the next of the row.
            let plugged: Vec<DeviceId> = (0..self.devices.len())
                .map(DeviceId)
                .filter(|id| self.with_device(*id, |d| d.is_plugged()) == Some(true))
                .collect();
            if let Some(id) = plugged.first() {
                self.advance(Duration::from_secs(2));
                self.unplug(*id);
            } else if let Some(next) = self.row.pop_front() {
                self.advance(Duration::from_secs(3));
                self.plug(next);
            }
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
        }
        self.clock.advance(timeout);
        Ok(None)
    }
}

/// The technician's finger on the simulated bench: touches YubiKeys so they type a code.
/// Holds the devices present when it was made ([`SimBench::touch_handle`]).
#[derive(Debug, Clone)]
pub struct SimTouch {
    devices: Vec<SharedDevice>,
}

impl TouchSource for SimTouch {
    fn read_touch_code(&mut self, device: &DeviceInfo, slot: YkSlot) -> Result<OtpCode, String> {
        let n = match slot {
            YkSlot::One => 1,
            YkSlot::Two => 2,
        };
        let dev = self
            .devices
            .iter()
            .find(|d| lock(d).path == device.path)
            .ok_or_else(|| "no such device".to_owned())?;
        let text = {
            let mut d = lock(dev);
            if !d.is_plugged() {
                return Err("the key is not plugged in".into());
            }
            match &mut d.firmware {
                Firmware::YubiKey(y) => y.touch(n),
                Firmware::Nitrokey(_) => None,
            }
        }
        .ok_or_else(|| format!("{slot} typed nothing (not an OATH-HOTP slot)"))?;
        OtpCode::parse(&text).ok_or_else(|| "the key typed something that is not a code".into())
    }
}

/// The simulated host's UTC clock: the bench epoch plus virtual time.
#[derive(Debug, Clone)]
pub struct SimHostClock {
    clock: VirtualClock,
    epoch: u64,
}

impl HostClock for SimHostClock {
    fn unix_now(&mut self) -> u64 {
        self.epoch + self.clock.now_ms() / 1000
    }
}

impl SimBench {
    /// A touch source reaching every device added so far.
    pub fn touch_handle(&self) -> SimTouch {
        SimTouch {
            devices: self.devices.clone(),
        }
    }

    /// The host clock of this bench.
    pub fn host_clock(&self) -> SimHostClock {
        SimHostClock {
            clock: self.clock.clone(),
            epoch: self.epoch,
        }
    }
}
