//! `okey lot ...` and `okey key ...`: lots, stock and the custody of keys, through the
//! LifecycleService, acting as the person the API key belongs to.
//!
//! Human tables by default, `--json` for scripts. Exit codes: 0 done, 1 refused (the key's
//! state does not allow it, or the acting person may not), 2 bad input or error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use okey_server::proto::{self, lifecycle_service_client::LifecycleServiceClient};
use serde_json::{Value, json};
use tonic::Code;

use crate::client::{Authed, ClientArgs};

/// Lots and stock.
#[derive(Debug, Args)]
pub struct LotArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: LotCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    #[value(name = "2d")]
    Secondary,
    #[value(name = "1d")]
    Primary,
    Rectorat,
    Examen,
}

#[derive(Debug, Subcommand)]
enum LotCommand {
    /// The lots you may see, with their stock per state.
    List,
    /// One lot: its keys (state, holder, dates) and orders.
    Show { lot: String },
    /// Create a lot (admin).
    Create {
        id: String,
        #[arg(long, value_enum)]
        kind: KindArg,
        /// The unit it belongs to (a school's official code, a district, RECTORAT, DEC).
        #[arg(long)]
        unit: String,
        #[arg(long)]
        name: String,
        /// Validity given to keys registered into it, in days.
        #[arg(long)]
        validity_days: Option<u32>,
    },
    /// Name a person as a delegate manager of a lot (admin).
    Delegate {
        lot: String,
        person: String,
        /// Remove the delegate instead.
        #[arg(long)]
        remove: bool,
    },
    /// Register keys known to okey but in no lot into a lot, delivered.
    Register {
        lot: String,
        #[arg(required = true)]
        serials: Vec<String>,
        /// Validity end (YYYY-MM-DD or Unix seconds); default: the lot's.
        #[arg(long)]
        valid_until: Option<String>,
    },
    /// Move keys in stock to another lot.
    Move {
        #[arg(required = true)]
        serials: Vec<String>,
        /// The lot to move them to.
        #[arg(long)]
        to: String,
    },
    /// Order keys for a lot.
    Order {
        lot: String,
        #[arg(long)]
        quantity: u32,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Fulfil an open order with these keys (moved or registered into the order's lot).
    Fulfil {
        order: u64,
        #[arg(required = true)]
        serials: Vec<String>,
    },
    /// Cancel an open order.
    Cancel { order: u64 },
    /// Reserve one available key of the lot for each person (first appointment batch).
    Reserve {
        lot: String,
        #[arg(required = true)]
        persons: Vec<String>,
        /// The hand-over meeting, YYYY-MM-DDTHH:MM (UTC) or Unix seconds: each person gets a
        /// convocation mail (with --meeting-place).
        #[arg(long, requires = "meeting_place")]
        meeting_at: Option<String>,
        /// Where the hand-over meeting takes place.
        #[arg(long, requires = "meeting_at")]
        meeting_place: Option<String>,
    },
    /// Run the scheduled key job now (expiry, deactivation; admin).
    RunJobs,
}

/// The custody of one key.
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ConditionArg {
    Good,
    Damaged,
    Broken,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Owner, lot, origin lot, state, dates, history and receipts.
    Show { serial: String },
    /// Declare the key lost (stolen, broken): unassigned, it can no longer log in.
    Lost {
        serial: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// The holder gives the key back ("mettre en stock"); a return receipt is made.
    Return {
        serial: String,
        #[arg(long, value_enum, default_value = "good")]
        condition: ConditionArg,
        /// Where the key is given back (printed on the return receipt).
        #[arg(long)]
        place: Option<String>,
    },
    /// Someone brought the key in: prints what to do with it.
    Found { serial: String },
    /// Hand the key over to its holder; a hand-over receipt is made.
    Handover {
        /// The key (omit with --batch).
        #[arg(required_unless_present = "batch")]
        serial: Option<String>,
        /// The holder (person id).
        #[arg(long, required_unless_present = "batch")]
        to: Option<String>,
        /// Where the hand-over takes place.
        #[arg(long)]
        place: Option<String>,
        /// A temporary holder's period end (YYYY-MM-DD or Unix seconds).
        #[arg(long)]
        until: Option<String>,
        /// A file of `serial,person` lines: all handed over in one commit, or none.
        #[arg(long, conflicts_with_all = ["serial", "to"])]
        batch: Option<PathBuf>,
    },
    /// Bind the key to a holder before the hand-over.
    Assign {
        serial: String,
        #[arg(long)]
        to: String,
    },
    /// Unbind an assigned key.
    Unassign { serial: String },
    /// Stop the key logging in (now, or at --at: an end of function date); its return becomes due.
    Deactivate {
        serial: String,
        /// When (YYYY-MM-DD or Unix seconds); default now.
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Put a found key back in its origin lot, delivered.
    Restock { serial: String },
    /// Destroy the key.
    Scrap { serial: String },
    /// Send the key to the IT department to be initialised again.
    Recycle { serial: String },
    /// A recycled key, initialised again, back in stock.
    Reissue { serial: String },
    /// The holder signs their hand-over by typing the receipt number back.
    Confirm { serial: String, receipt: String },
    /// The key's latest receipt (or --number); --out writes it as the PDF both parties sign.
    Receipt {
        serial: String,
        #[arg(long)]
        number: Option<String>,
        /// Write the PDF receipt (bordereau de remise / de restitution) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the PDF's dates at this offset from UTC, e.g. +04:00 (La Réunion).
        #[arg(long, default_value = "+00:00", allow_hyphen_values = true)]
        utc_offset: String,
    },
    /// Why the key does not work: state, lock, failures, last login, last refusals, validity,
    /// TOTP drift, and the action that fits (support).
    Diagnose { serial: String },
    /// Issue a temporary key for the holder of SERIAL, bound to their PIN, that stops working
    /// on its own (default 10 days); SERIAL is disabled, not deleted (support).
    Temporary {
        serial: String,
        /// Validity in days (1 to 60; default the server's, 10 days).
        #[arg(long)]
        days: Option<u32>,
        /// The support case it is issued on.
        #[arg(long)]
        case: Option<String>,
    },
}

type Client = LifecycleServiceClient<Authed>;

async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    let c = args.connect().await?;
    Ok(c.lifecycle)
}

/// Refusals are answers (exit 1), not errors.
pub(crate) fn answer(r: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match r {
        Err(e) => match e.downcast_ref::<tonic::Status>() {
            Some(s) if matches!(s.code(), Code::FailedPrecondition | Code::PermissionDenied) => {
                eprintln!("okey: refused: {}", s.message());
                Ok(ExitCode::from(1))
            }
            _ => Err(e),
        },
        ok => ok,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DDTHH:MM` (UTC) or Unix seconds.
pub(crate) fn parse_time(s: &str) -> anyhow::Result<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let bad = || {
        anyhow::anyhow!("{s:?} is not a date (YYYY-MM-DD, YYYY-MM-DDTHH:MM in UTC) or Unix seconds")
    };
    if let Some((date, time)) = s.split_once('T') {
        let (h, m) = time.split_once(':').ok_or_else(bad)?;
        let (h, m): (u64, u64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        return Ok(parse_time(date)? + h * 3600 + m * 60);
    }
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    };
    if !(1970..=9999).contains(&y) || d < 1 || d > days_in {
        return Err(bad());
    }
    u64::try_from(days_from_civil(y, m, d) * 86_400).map_err(|_| bad())
}

/// `+HH:MM` / `-HH:MM` (or `Z`) as minutes from UTC.
fn parse_offset(s: &str) -> anyhow::Result<i32> {
    let bad = || anyhow::anyhow!("{s:?} is not an offset from UTC such as +04:00 or -05:30");
    if s == "Z" {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 || h * 60 + m > 14 * 60 {
        return Err(bad());
    }
    Ok(sign * (h * 60 + m))
}

/// A Unix time as `YYYY-MM-DD HH:MM` UTC ("-" for none).
fn show_time(t: u64) -> String {
    if t == 0 {
        return "-".into();
    }
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

fn state_name(s: i32) -> &'static str {
    match proto::KeyState::try_from(s) {
        Ok(proto::KeyState::None) => "in no lot",
        Ok(proto::KeyState::Delivered) => "delivered",
        Ok(proto::KeyState::Reserved) => "reserved",
        Ok(proto::KeyState::Assigned) => "assigned",
        Ok(proto::KeyState::HandedOver) => "handed_over",
        Ok(proto::KeyState::Returned) => "returned",
        Ok(proto::KeyState::Lost) => "lost",
        Ok(proto::KeyState::Found) => "found",
        Ok(proto::KeyState::Expired) => "expired",
        Ok(proto::KeyState::Scrapped) => "scrapped",
        Ok(proto::KeyState::Recycled) => "recycled",
        _ => "unknown",
    }
}

fn lot_kind_name(k: i32) -> &'static str {
    match proto::LotKind::try_from(k) {
        Ok(proto::LotKind::LotKind2d) => "2d",
        Ok(proto::LotKind::LotKind1d) => "1d",
        Ok(proto::LotKind::Rectorat) => "rectorat",
        Ok(proto::LotKind::Examen) => "examen",
        _ => "unknown",
    }
}

fn order_state_name(s: i32) -> &'static str {
    match proto::OrderState::try_from(s) {
        Ok(proto::OrderState::Open) => "open",
        Ok(proto::OrderState::Fulfilled) => "fulfilled",
        Ok(proto::OrderState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

fn decision_name(d: i32) -> &'static str {
    match proto::FoundDecision::try_from(d) {
        Ok(proto::FoundDecision::Scrap) => "scrap",
        Ok(proto::FoundDecision::RouteToHolder) => "route_to_holder",
        Ok(proto::FoundDecision::ToLotManager) => "to_lot_manager",
        Ok(proto::FoundDecision::ToItDepartment) => "to_it_department",
        Ok(proto::FoundDecision::BackToOriginLot) => "back_to_origin_lot",
        Ok(proto::FoundDecision::NothingToDo) => "nothing_to_do",
        _ => "unknown",
    }
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

fn key_json(k: &proto::Key) -> Value {
    json!({
        "serial": k.serial,
        "state": state_name(k.state),
        "status": k.status,
        "kind": k.kind,
        "holder": k.holder,
        "lot": k.lot,
        "origin_lot": k.origin_lot,
        "valid_until": k.valid_until,
        "active_until": k.active_until,
        "return_due": k.return_due,
        "reserved_for": k.reserved_for,
        "changed_at": k.changed_at,
    })
}

fn key_row(k: &proto::Key) -> Vec<String> {
    vec![
        k.serial.clone(),
        state_name(k.state).to_owned(),
        dash(&k.holder),
        dash(&k.lot),
        dash(&k.origin_lot),
        show_time(k.valid_until),
        show_time(k.active_until),
        show_time(k.return_due),
    ]
}

const KEY_HEADER: [&str; 8] = [
    "SERIAL",
    "STATE",
    "HOLDER",
    "LOT",
    "ORIGIN",
    "VALID UNTIL",
    "ACTIVE UNTIL",
    "RETURN DUE",
];

fn keys_out(json_out: bool, keys: &[proto::Key]) {
    if json_out {
        println!(
            "{}",
            Value::Array(keys.iter().map(key_json).collect::<Vec<_>>())
        );
    } else {
        print!(
            "{}",
            table(&KEY_HEADER, &keys.iter().map(key_row).collect::<Vec<_>>())
        );
    }
}

fn receipt_json(r: &proto::Receipt) -> Value {
    json!({
        "number": r.number,
        "kind": if r.kind == proto::ReceiptKind::Return as i32 { "return" } else { "handover" },
        "serial": r.serial,
        "lot": r.lot,
        "unit": r.unit,
        "lot_name": r.lot_name,
        "holder": r.holder,
        "staff": r.staff,
        "at": r.at,
        "place": r.place,
        "condition": r.condition,
        "until": r.until,
        "confirmed_at": r.confirmed_at,
        "confirmed_how": r.confirmed_how,
    })
}

fn receipt_text(r: &proto::Receipt) -> String {
    let kind = if r.kind == proto::ReceiptKind::Return as i32 {
        "return receipt (bordereau de restitution)"
    } else {
        "hand-over receipt (bordereau de remise)"
    };
    let mut s = format!(
        "{kind} {}\nkey {}  lot {} ({}, unit {})\nholder {}  staff {}  at {}\n",
        r.number,
        r.serial,
        r.lot,
        dash(&r.lot_name),
        dash(&r.unit),
        r.holder,
        r.staff,
        show_time(r.at)
    );
    if !r.place.is_empty() {
        s.push_str(&format!("place {}\n", r.place));
    }
    if !r.condition.is_empty() {
        s.push_str(&format!("condition {}\n", r.condition));
    }
    if r.until != 0 {
        s.push_str(&format!("until {}\n", show_time(r.until)));
    }
    s.push_str(&if r.confirmed_at != 0 {
        format!(
            "signed {} ({})\n",
            show_time(r.confirmed_at),
            r.confirmed_how
        )
    } else {
        "not signed yet\n".to_owned()
    });
    s
}

fn change_out(json_out: bool, r: &proto::KeyChangeResponse) {
    if json_out {
        println!(
            "{}",
            json!({
                "key": r.key.as_ref().map(key_json),
                "receipt": r.receipt.as_ref().map(receipt_json),
            })
        );
    } else {
        if let Some(k) = &r.key {
            print!("{}", table(&KEY_HEADER, &[key_row(k)]));
        }
        if let Some(rc) = &r.receipt {
            print!("{}", receipt_text(rc));
        }
    }
}

fn order_json(o: &proto::Order) -> Value {
    json!({
        "id": o.id,
        "lot": o.lot,
        "quantity": o.quantity,
        "state": order_state_name(o.state),
        "comment": o.comment,
        "ordered_by": o.ordered_by,
        "ordered_at": o.ordered_at,
        "closed_by": o.closed_by,
        "closed_at": o.closed_at,
        "serials": o.serials,
    })
}

fn order_rows(orders: &[proto::Order]) -> String {
    table(
        &["ORDER", "LOT", "QUANTITY", "STATE", "BY", "AT", "KEYS"],
        &orders
            .iter()
            .map(|o| {
                vec![
                    o.id.to_string(),
                    o.lot.clone(),
                    o.quantity.to_string(),
                    order_state_name(o.state).to_owned(),
                    o.ordered_by.clone(),
                    show_time(o.ordered_at),
                    dash(&o.serials.join(",")),
                ]
            })
            .collect::<Vec<_>>(),
    )
}

fn counts_text(s: &proto::LotSummary) -> String {
    let c: Vec<String> = s
        .counts
        .iter()
        .map(|c| format!("{} {}", state_name(c.state), c.count))
        .collect();
    dash(&c.join(", "))
}

fn summary_json(s: &proto::LotSummary) -> Value {
    let lot = s.lot.clone().unwrap_or_default();
    let counts: serde_json::Map<String, Value> = s
        .counts
        .iter()
        .map(|c| (state_name(c.state).to_owned(), json!(c.count)))
        .collect();
    json!({
        "id": lot.id,
        "kind": lot_kind_name(lot.kind),
        "unit": lot.unit,
        "name": lot.name,
        "validity_days": lot.validity_days,
        "delegates": lot.delegates,
        "counts": counts,
        "open_orders": s.open_orders,
    })
}

/// `okey lot ...`.
pub async fn lot(args: LotArgs) -> anyhow::Result<ExitCode> {
    answer(lot_inner(args).await)
}

async fn lot_inner(args: LotArgs) -> anyhow::Result<ExitCode> {
    let mut c = connect(&args.client).await?;
    let j = args.json;
    match args.command {
        LotCommand::List => {
            let lots = c
                .list_lots(proto::ListLotsRequest {})
                .await?
                .into_inner()
                .lots;
            if j {
                println!(
                    "{}",
                    Value::Array(lots.iter().map(summary_json).collect::<Vec<_>>())
                );
            } else {
                let rows: Vec<Vec<String>> = lots
                    .iter()
                    .map(|s| {
                        let l = s.lot.clone().unwrap_or_default();
                        vec![
                            l.id,
                            lot_kind_name(l.kind).to_owned(),
                            l.unit,
                            l.name,
                            counts_text(s),
                            s.open_orders.to_string(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["LOT", "KIND", "UNIT", "NAME", "STOCK", "OPEN ORDERS"],
                        &rows
                    )
                );
            }
        }
        LotCommand::Show { lot } => {
            let d = c.show_lot(proto::LotRef { id: lot }).await?.into_inner();
            let s = d.summary.clone().unwrap_or_default();
            if j {
                println!(
                    "{}",
                    json!({
                        "lot": summary_json(&s),
                        "keys": d.keys.iter().map(key_json).collect::<Vec<_>>(),
                        "orders": d.orders.iter().map(order_json).collect::<Vec<_>>(),
                    })
                );
            } else {
                let l = s.lot.clone().unwrap_or_default();
                println!(
                    "lot {} ({}, unit {}): {}",
                    l.id,
                    lot_kind_name(l.kind),
                    l.unit,
                    l.name
                );
                println!("stock: {}", counts_text(&s));
                if !l.delegates.is_empty() {
                    println!("delegates: {}", l.delegates.join(", "));
                }
                println!();
                keys_out(false, &d.keys);
                if !d.orders.is_empty() {
                    println!();
                    print!("{}", order_rows(&d.orders));
                }
            }
        }
        LotCommand::Create {
            id,
            kind,
            unit,
            name,
            validity_days,
        } => {
            let l = c
                .create_lot(proto::CreateLotRequest {
                    id,
                    kind: match kind {
                        KindArg::Secondary => proto::LotKind::LotKind2d,
                        KindArg::Primary => proto::LotKind::LotKind1d,
                        KindArg::Rectorat => proto::LotKind::Rectorat,
                        KindArg::Examen => proto::LotKind::Examen,
                    } as i32,
                    unit,
                    name,
                    validity_days: validity_days.unwrap_or(0),
                })
                .await?
                .into_inner();
            if j {
                println!("{}", json!({"id": l.id, "kind": lot_kind_name(l.kind)}));
            } else {
                println!("created lot {}", l.id);
            }
        }
        LotCommand::Delegate {
            lot,
            person,
            remove,
        } => {
            let l = c
                .set_lot_delegate(proto::SetLotDelegateRequest {
                    lot,
                    person,
                    remove,
                })
                .await?
                .into_inner();
            if j {
                println!("{}", json!({"id": l.id, "delegates": l.delegates}));
            } else {
                println!("lot {} delegates: {}", l.id, dash(&l.delegates.join(", ")));
            }
        }
        LotCommand::Register {
            lot,
            serials,
            valid_until,
        } => {
            let valid_until = valid_until.as_deref().map(parse_time).transpose()?;
            let keys = c
                .register_keys(proto::RegisterKeysRequest {
                    lot,
                    serials,
                    valid_until: valid_until.unwrap_or(0),
                })
                .await?
                .into_inner()
                .keys;
            keys_out(j, &keys);
        }
        LotCommand::Move { serials, to } => {
            let keys = c
                .move_keys(proto::MoveKeysRequest {
                    to_lot: to,
                    serials,
                })
                .await?
                .into_inner()
                .keys;
            keys_out(j, &keys);
        }
        LotCommand::Order {
            lot,
            quantity,
            comment,
        } => {
            let o = c
                .order_keys(proto::OrderKeysRequest {
                    lot,
                    quantity,
                    comment: comment.unwrap_or_default(),
                })
                .await?
                .into_inner();
            print_order(j, &o);
        }
        LotCommand::Fulfil { order, serials } => {
            let o = c
                .close_order(proto::CloseOrderRequest {
                    id: order,
                    serials,
                    cancel: false,
                })
                .await?
                .into_inner();
            print_order(j, &o);
        }
        LotCommand::Cancel { order } => {
            let o = c
                .close_order(proto::CloseOrderRequest {
                    id: order,
                    serials: vec![],
                    cancel: true,
                })
                .await?
                .into_inner();
            print_order(j, &o);
        }
        LotCommand::Reserve {
            lot,
            persons,
            meeting_at,
            meeting_place,
        } => {
            let keys = c
                .reserve_keys(proto::ReserveKeysRequest {
                    lot,
                    persons,
                    meeting_at: meeting_at
                        .as_deref()
                        .map(parse_time)
                        .transpose()?
                        .unwrap_or(0),
                    meeting_place: meeting_place.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .keys;
            keys_out(j, &keys);
        }
        LotCommand::RunJobs => {
            let events = c
                .run_scheduled_jobs(proto::RunScheduledJobsRequest {})
                .await?
                .into_inner()
                .events;
            if j {
                println!(
                    "{}",
                    Value::Array(
                        events
                            .iter()
                            .map(|e| json!({"serial": e.serial, "lot": e.lot, "action": e.action, "holder": e.holder}))
                            .collect()
                    )
                );
            } else {
                print!(
                    "{}",
                    table(
                        &["SERIAL", "LOT", "ACTION", "HOLDER"],
                        &events
                            .iter()
                            .map(|e| vec![
                                e.serial.clone(),
                                dash(&e.lot),
                                e.action.clone(),
                                dash(&e.holder)
                            ])
                            .collect::<Vec<_>>()
                    )
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_order(j: bool, o: &proto::Order) {
    if j {
        println!("{}", order_json(o));
    } else {
        print!("{}", order_rows(std::slice::from_ref(o)));
    }
}

/// `okey key ...`.
pub async fn key(args: KeyArgs) -> anyhow::Result<ExitCode> {
    let KeyArgs {
        client,
        json,
        command,
    } = args;
    match command {
        // The support desk's (SupportService).
        KeyCommand::Diagnose { serial } => {
            crate::support_cmd::diagnose(&client, json, serial).await
        }
        KeyCommand::Temporary { serial, days, case } => {
            crate::support_cmd::temporary(&client, json, serial, days, case).await
        }
        command => answer(
            key_inner(KeyArgs {
                client,
                json,
                command,
            })
            .await,
        ),
    }
}

fn change(serial: String, action: proto::KeyChangeAction) -> proto::ChangeKeyRequest {
    proto::ChangeKeyRequest {
        serial,
        action: action as i32,
        ..Default::default()
    }
}

fn read_batch(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((serial, person)) = line.split_once(',') else {
            bail!(
                "{} line {}: expected `serial,person`",
                path.display(),
                i + 1
            );
        };
        out.push((serial.trim().to_owned(), person.trim().to_owned()));
    }
    if out.is_empty() {
        bail!("{} holds no `serial,person` line", path.display());
    }
    Ok(out)
}

async fn key_inner(args: KeyArgs) -> anyhow::Result<ExitCode> {
    use proto::KeyChangeAction as A;
    let mut c = connect(&args.client).await?;
    let j = args.json;
    let req = match args.command {
        // Dispatched by `key` to the support desk's commands before this.
        KeyCommand::Diagnose { .. } | KeyCommand::Temporary { .. } => {
            bail!("okey key diagnose and okey key temporary go to the SupportService")
        }
        KeyCommand::Show { serial } => {
            let d = c.show_key(proto::KeyRef { serial }).await?.into_inner();
            let k = d.key.clone().unwrap_or_default();
            if j {
                println!(
                    "{}",
                    json!({
                        "key": key_json(&k),
                        "history": d.history.iter().map(|e| json!({
                            "at": e.at, "actor": e.actor, "action": e.action,
                            "state_before": state_name(e.state_before),
                            "state_after": state_name(e.state_after),
                            "lot_before": e.lot_before, "lot_after": e.lot_after,
                            "holder_before": e.holder_before, "holder_after": e.holder_after,
                            "comment": e.comment,
                        })).collect::<Vec<_>>(),
                        "receipts": d.receipts.iter().map(receipt_json).collect::<Vec<_>>(),
                    })
                );
            } else {
                println!(
                    "key {}  state {}  holder {}  lot {}  origin lot {}",
                    k.serial,
                    state_name(k.state),
                    dash(&k.holder),
                    dash(&k.lot),
                    dash(&k.origin_lot)
                );
                println!(
                    "status {}  valid until {}  active until {}  return due {}",
                    k.status,
                    show_time(k.valid_until),
                    show_time(k.active_until),
                    show_time(k.return_due)
                );
                println!();
                let rows: Vec<Vec<String>> = d
                    .history
                    .iter()
                    .map(|e| {
                        vec![
                            show_time(e.at),
                            e.actor.clone(),
                            e.action.clone(),
                            format!(
                                "{} -> {}",
                                state_name(e.state_before),
                                state_name(e.state_after)
                            ),
                            format!("{} -> {}", dash(&e.lot_before), dash(&e.lot_after)),
                            format!("{} -> {}", dash(&e.holder_before), dash(&e.holder_after)),
                            dash(&e.comment),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["AT", "BY", "ACTION", "STATE", "LOT", "HOLDER", "COMMENT"],
                        &rows
                    )
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        KeyCommand::Found { serial } => {
            let f = c.found_key(proto::KeyRef { serial }).await?.into_inner();
            if j {
                println!(
                    "{}",
                    json!({
                        "decision": decision_name(f.decision),
                        "advice": f.advice,
                        "key": f.key.as_ref().map(key_json),
                    })
                );
            } else {
                println!("{}: {}", decision_name(f.decision), f.advice);
            }
            return Ok(ExitCode::SUCCESS);
        }
        KeyCommand::Handover {
            serial,
            to,
            place,
            until,
            batch,
        } => {
            let until = until.as_deref().map(parse_time).transpose()?.unwrap_or(0);
            let place = place.unwrap_or_default();
            let pairs = match (batch, serial, to) {
                (Some(file), _, _) => read_batch(&file)?,
                (None, Some(s), Some(t)) => vec![(s, t)],
                _ => bail!("give SERIAL --to PERSON, or --batch FILE"),
            };
            let items = pairs
                .into_iter()
                .map(|(serial, to)| proto::HandOverItem {
                    serial,
                    to,
                    place: place.clone(),
                    until,
                })
                .collect();
            let done = c
                .hand_over(proto::HandOverRequest { items })
                .await?
                .into_inner()
                .handed_over;
            if j {
                println!(
                    "{}",
                    Value::Array(
                        done.iter()
                            .map(|r| json!({
                                "key": r.key.as_ref().map(key_json),
                                "receipt": r.receipt.as_ref().map(receipt_json),
                            }))
                            .collect()
                    )
                );
            } else {
                for r in &done {
                    change_out(false, r);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        KeyCommand::Return {
            serial,
            condition,
            place,
        } => {
            let r = c
                .return_key(proto::ReturnKeyRequest {
                    serial,
                    place: place.unwrap_or_default(),
                    condition: match condition {
                        ConditionArg::Good => "good",
                        ConditionArg::Damaged => "damaged",
                        ConditionArg::Broken => "broken",
                    }
                    .into(),
                })
                .await?
                .into_inner();
            change_out(j, &r);
            return Ok(ExitCode::SUCCESS);
        }
        KeyCommand::Confirm { serial, receipt } => {
            let r = c
                .confirm_hand_over(proto::ConfirmHandOverRequest {
                    serial,
                    receipt_number: receipt,
                })
                .await?
                .into_inner();
            if j {
                println!("{}", receipt_json(&r));
            } else {
                print!("{}", receipt_text(&r));
            }
            return Ok(ExitCode::SUCCESS);
        }
        KeyCommand::Receipt {
            serial,
            number,
            out,
            utc_offset,
        } => {
            let utc_offset_minutes = parse_offset(&utc_offset)?;
            let req = proto::GetReceiptRequest {
                serial,
                number: number.unwrap_or_default(),
                utc_offset_minutes,
            };
            if let Some(path) = out {
                let pdf = c.get_receipt_pdf(req).await?.into_inner();
                std::fs::write(&path, &pdf.pdf)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                if j {
                    println!(
                        "{}",
                        json!({"number": pdf.number, "out": path.display().to_string(), "bytes": pdf.pdf.len()})
                    );
                } else {
                    println!(
                        "receipt {} written to {} ({} bytes)",
                        pdf.number,
                        path.display(),
                        pdf.pdf.len()
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let r = c.get_receipt(req).await?.into_inner();
            if j {
                println!("{}", receipt_json(&r));
            } else {
                print!("{}", receipt_text(&r));
            }
            return Ok(ExitCode::SUCCESS);
        }
        KeyCommand::Lost { serial, comment } => proto::ChangeKeyRequest {
            comment: comment.unwrap_or_default(),
            ..change(serial, A::Lost)
        },
        KeyCommand::Assign { serial, to } => proto::ChangeKeyRequest {
            person: to,
            ..change(serial, A::Assign)
        },
        KeyCommand::Unassign { serial } => change(serial, A::Unassign),
        KeyCommand::Deactivate {
            serial,
            at,
            comment,
        } => proto::ChangeKeyRequest {
            at: at.as_deref().map(parse_time).transpose()?.unwrap_or(0),
            comment: comment.unwrap_or_default(),
            ..change(serial, A::Deactivate)
        },
        KeyCommand::Restock { serial } => change(serial, A::Restock),
        KeyCommand::Scrap { serial } => change(serial, A::Scrap),
        KeyCommand::Recycle { serial } => change(serial, A::Recycle),
        KeyCommand::Reissue { serial } => change(serial, A::Reissue),
    };
    let r = c.change_key(req).await?.into_inner();
    change_out(j, &r);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_and_offsets_parse() {
        assert_eq!(
            parse_time("2026-09-01T09:30").expect("time"),
            parse_time("2026-09-01").expect("date") + 9 * 3600 + 30 * 60
        );
        assert!(parse_time("2026-09-01T24:00").is_err());
        assert!(parse_time("2026-09-01T9").is_err());
        assert_eq!(parse_offset("+04:00").expect("offset"), 240);
        assert_eq!(parse_offset("-05:30").expect("offset"), -330);
        assert_eq!(parse_offset("Z").expect("offset"), 0);
        assert!(parse_offset("+15:00").is_err());
        assert!(parse_offset("04:00").is_err());
    }

    #[test]
    fn dates_are_midnight_utc_and_print_back() {
        // 2026-08-20 00:00 UTC, checked against `date -u -d 2026-08-20 +%s`.
        assert_eq!(parse_time("2026-08-20").expect("date"), 1_787_184_000);
        assert_eq!(parse_time("1970-01-01").expect("date"), 0);
        assert_eq!(parse_time("2024-02-29").expect("leap"), 1_709_164_800);
        assert!(parse_time("2023-02-29").is_err());
        assert!(parse_time("2026-13-01").is_err());
        assert!(parse_time("20 août").is_err());
        assert_eq!(parse_time("1787184000").expect("unix"), 1_787_184_000);
        assert_eq!(
            show_time(1_787_184_000 + 9 * 3600 + 5 * 60),
            "2026-08-20 09:05"
        );
        assert_eq!(show_time(0), "-");
    }

    #[test]
    fn tables_pad_to_the_widest_cell() {
        let t = table(
            &["A", "LONG"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONG\nxyz  1\nq    22\n");
    }
}
