//! `--simulate`: a bench of simulated tokens (okey-token-sim firmware speaking the real HID
//! protocols), so every `okey hid` workflow runs without hardware, through the same driver
//! and workflow code as on a real bench.
//!
//! The simulated tokens live only as long as one command: each run starts with factory-fresh
//! devices (default PINs 123456 / 12345678, empty slots, no YubiKey access code).

use anyhow::{Context, bail};
use clap::Args;
use okey_hid::DeviceInfo;
use okey_hid::DeviceProvider;
use okey_hid::bench::OtpKind;
use okey_hid::nitrokey::proto::CommandId;
use okey_hid::nitrokey::{NitrokeyPro, Slot, TimeMode};
use okey_hid::secret::{OtpCode, Pin};
use okey_hid::transport::Family;
use okey_hid::yubikey::YkSlot;
use okey_token_sim::{DeviceId, Fault, NitrokeyProfile, SimBench, YubiKeyProfile};

/// Nitrokey firmware generations the simulated bench cycles through: 0.15 (current), 0.8
/// (first with inline passwords), 0.7 (AUTHORIZE generation).
const NITROKEY_FIRMWARES: [u8; 3] = [15, 8, 7];
/// YubiKey firmware versions the simulated bench cycles through.
const YUBIKEY_FIRMWARES: [(u8, u8, u8); 2] = [(5, 4, 3), (5, 2, 7)];

/// Options of the simulated bench.
#[derive(Debug, Args, Clone, Default)]
pub struct SimArgs {
    /// Use simulated tokens instead of USB hardware. Without --simulate-nitrokey and
    /// --simulate-yubikey the bench holds one Nitrokey Pro (firmware 0.15).
    #[arg(long, global = true)]
    pub simulate: bool,
    /// Number of simulated Nitrokey Pro tokens; firmware cycles 0.15, 0.8, 0.7.
    #[arg(long, global = true, value_name = "N", requires = "simulate")]
    pub simulate_nitrokey: Option<usize>,
    /// Number of simulated YubiKeys (OTP interface); firmware cycles 5.4.3, 5.2.7.
    #[arg(long, global = true, value_name = "N", requires = "simulate")]
    pub simulate_yubikey: Option<usize>,
    /// Serial of the first simulated token (decimal or 0x hex); the others follow. Random
    /// by default, so repeated runs against one server do not collide.
    #[arg(long, global = true, value_name = "SERIAL", value_parser = parse_serial, requires = "simulate")]
    pub simulate_serial_base: Option<u32>,
    /// Pull simulated token number K (1-based, in bench order) out of its port while its slot
    /// is being written (repeatable).
    #[arg(long, global = true, value_name = "K", requires = "simulate")]
    pub simulate_pull: Vec<usize>,
}

fn parse_serial(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("not a serial number: {s}"))
}

/// A simulated bench and the order of its tokens.
pub struct Simulation {
    /// The bench (a [`DeviceProvider`]).
    pub bench: SimBench,
    /// Its tokens, in bench order.
    pub ids: Vec<DeviceId>,
}

impl SimArgs {
    fn counts(&self) -> (usize, usize) {
        match (self.simulate_nitrokey, self.simulate_yubikey) {
            (None, None) => (1, 0),
            (n, y) => (n.unwrap_or(0), y.unwrap_or(0)),
        }
    }

    /// Builds the bench; `plugged` plugs every token in (otherwise batch mode's autopilot
    /// plugs them one after the other). `epoch` is the host's Unix time now.
    pub fn build(
        &self,
        epoch: u64,
        plugged: bool,
        yubikey_slot: YkSlot,
    ) -> anyhow::Result<Simulation> {
        let (nk, yk) = self.counts();
        let total = nk + yk;
        if total == 0 {
            bail!("the simulated bench is empty: give --simulate-nitrokey or --simulate-yubikey");
        }
        if total > 10_000 {
            bail!("at most 10000 simulated tokens");
        }
        for k in &self.simulate_pull {
            if *k == 0 || *k > total {
                bail!("--simulate-pull {k}: the bench has tokens 1 to {total}");
            }
        }
        let base = match self.simulate_serial_base {
            Some(b) => b,
            None => rand::random_range(0x0100_0000..0x7F00_0000),
        };
        let serial = |i: usize| -> anyhow::Result<u32> {
            u32::try_from(i)
                .ok()
                .and_then(|i| base.checked_add(i))
                .context("--simulate-serial-base is too large for this many tokens")
        };
        let mut bench = SimBench::new(epoch);
        let mut ids = Vec::with_capacity(total);
        for i in 0..nk {
            let fw = NITROKEY_FIRMWARES
                .get(i % NITROKEY_FIRMWARES.len())
                .copied()
                .unwrap_or(15);
            ids.push(bench.add_nitrokey(NitrokeyProfile::new(fw, serial(i)?)));
        }
        for j in 0..yk {
            let fw = YUBIKEY_FIRMWARES
                .get(j % YUBIKEY_FIRMWARES.len())
                .copied()
                .unwrap_or((5, 4, 3));
            ids.push(bench.add_yubikey(YubiKeyProfile::new(fw, serial(nk + j)?)));
        }
        for k in &self.simulate_pull {
            let Some(id) = ids.get(k - 1).copied() else {
                continue;
            };
            let command = if k - 1 < nk {
                CommandId::WriteToSlot as u8
            } else {
                yubikey_slot.config_cmd()
            };
            bench.inject(id, Fault::UnplugOnCommand(command));
        }
        eprintln!(
            "simulated bench: {nk} Nitrokey Pro, {yk} YubiKey, serials from {base:#010X} ({base}); factory PINs (user {}, admin {}), no access codes",
            okey_hid::secret::DEFAULT_USER_PIN,
            okey_hid::secret::DEFAULT_ADMIN_PIN,
        );
        if plugged {
            for id in &ids {
                bench.plug(*id);
            }
        } else {
            bench.set_row(ids.clone());
        }
        Ok(Simulation { bench, ids })
    }
}

impl Simulation {
    /// The simulated token behind a device, if it is one of ours.
    fn id_of(&self, device: &DeviceInfo) -> Option<DeviceId> {
        self.ids.iter().copied().find(|id| {
            self.bench
                .with_device(*id, |d| d.path == device.path)
                .unwrap_or(false)
        })
    }

    /// Reads the next code the simulated token shows (Nitrokey: GET_CODE; YubiKey: a touch).
    /// Only for `--simulate`, so a new user can try a login with it.
    pub fn next_code(
        &mut self,
        device: &DeviceInfo,
        kind: OtpKind,
        nitrokey_slot: Slot,
        yubikey_slot: YkSlot,
        user_pin: Option<&Pin>,
    ) -> anyhow::Result<OtpCode> {
        match device.family {
            Family::NitrokeyPro => {
                let transport = self.bench.open(device)?;
                let mut nk = NitrokeyPro::open(transport)?;
                let slot = match (kind, nitrokey_slot) {
                    (OtpKind::Hotp, s @ Slot::Hotp(_))
                    | (OtpKind::Totp { .. }, s @ Slot::Totp(_)) => s,
                    _ => bail!("the slot does not match the code kind"),
                };
                Ok(nk.get_code(slot, user_pin)?)
            }
            Family::YubiKeyOtp => {
                let id = self.id_of(device).context("not a simulated token")?;
                let text = self
                    .bench
                    .touch(id, yubikey_slot)
                    .context("the simulated key typed nothing")?;
                OtpCode::parse(&text).context("the simulated key typed something else than a code")
            }
        }
    }

    /// Presses the simulated token's button `n` times without logging in (HOTP codes
    /// generated and thrown away), so the device runs ahead of the server.
    pub fn press(
        &mut self,
        device: &DeviceInfo,
        n: u64,
        nitrokey_slot: Slot,
        yubikey_slot: YkSlot,
        user_pin: Option<&Pin>,
    ) -> anyhow::Result<()> {
        for _ in 0..n {
            self.next_code(device, OtpKind::Hotp, nitrokey_slot, yubikey_slot, user_pin)?;
        }
        Ok(())
    }

    /// Sets a simulated Nitrokey's clock `offset` seconds away from `host_time`, as a clock
    /// that drifted would be.
    pub fn skew_clock(
        &mut self,
        device: &DeviceInfo,
        host_time: u64,
        offset: i64,
    ) -> anyhow::Result<()> {
        if device.family != Family::NitrokeyPro {
            bail!("only Nitrokeys have a clock");
        }
        let transport = self.bench.open(device)?;
        let mut nk = NitrokeyPro::open(transport)?;
        let t = host_time
            .checked_add_signed(offset)
            .context("clock offset out of range")?;
        nk.set_time(TimeMode::Force, t)?;
        Ok(())
    }
}
