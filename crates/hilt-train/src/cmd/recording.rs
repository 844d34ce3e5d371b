//! `hilt recording verify DIR` and `hilt recording export DIR --device ID
//! --out F.npz`: read what hiltd kept (`docs/recording.md`) without a
//! daemon. The export is the layout `hilt collect` writes, so `hilt twin
//! fit --data F.npz` refits a twin from training measurements directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hilt_core::DeviceSpec;
use hilt_record::Record;
use hilt_train::Result;
use hilt_train::error::Error;
use hilt_train::twin::TwinData;

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Check every record: count, bytes, first and last time, and every
    /// corrupt record with its offset (exit 1 if there is one).
    Verify {
        /// The recording directory (hiltd's `[recording] dir`).
        dir: PathBuf,
    },
    /// Write one device's records as an .npz (the layout of `hilt collect`).
    Export {
        /// The recording directory.
        dir: PathBuf,
        /// The device.
        #[arg(long)]
        device: String,
        /// Only records measured at or after this (RFC 3339, e.g.
        /// 2026-12-03T10:00:00Z, or Unix seconds).
        #[arg(long, value_parser = parse_time)]
        since: Option<SystemTime>,
        /// Only records measured before this (same forms).
        #[arg(long, value_parser = parse_time)]
        until: Option<SystemTime>,
        /// Only records measured under this lease id.
        #[arg(long)]
        lease: Option<String>,
        /// Where to write.
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_time(s: &str) -> std::result::Result<SystemTime, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map(|d| UNIX_EPOCH + d)
            .map_err(|_| format!("'{s}' is not a time after 1970"));
    }
    humantime::parse_rfc3339_weak(s).map_err(|e| {
        format!("'{s}' is neither RFC 3339 (2026-12-03T10:00:00Z) nor Unix seconds: {e}")
    })
}

fn time_of(ns: i64) -> String {
    match u64::try_from(ns) {
        Ok(ns) => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
        }
        Err(_) => format!("{ns} ns before 1970"),
    }
}

pub fn run(c: Cmd) -> Result<()> {
    match c {
        Cmd::Verify { dir } => verify(&dir),
        Cmd::Export {
            dir,
            device,
            since,
            until,
            lease,
            out,
        } => export(&dir, &device, since, until, lease.as_deref(), &out),
    }
}

fn devices(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        if e.path().is_dir() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn scan(dir: &Path, device: &str) -> Result<Vec<hilt_record::SegmentScan>> {
    hilt_record::scan_device(dir, device).map_err(|e| Error::data(dir.join(device), e.to_string()))
}

fn verify(dir: &Path) -> Result<()> {
    let mut problems = 0;
    let devices = devices(dir)?;
    if devices.is_empty() {
        return Err(Error::data(dir, "no device recordings here"));
    }
    for device in devices {
        let scans = scan(dir, &device)?;
        let records: usize = scans.iter().map(|s| s.records.len()).sum();
        let bytes: u64 = scans.iter().map(|s| s.bytes).sum();
        let mut all = scans.iter().flat_map(|s| s.records.iter().map(|(_, r)| r));
        let first = all.next().map(|r| r.wall_start_ns);
        let last = scans
            .iter()
            .rev()
            .find_map(|s| s.records.last())
            .map(|(_, r)| r.wall_end_ns);
        let span = match (first, last) {
            (Some(a), Some(b)) => format!(", {} .. {}", time_of(a), time_of(b)),
            _ => String::new(),
        };
        println!(
            "{device}: {} segments, {records} records, {bytes} bytes{span}",
            scans.len()
        );
        for s in &scans {
            for c in &s.corrupt {
                problems += 1;
                println!(
                    "  corrupt: {} offset {} ({} bytes): {}",
                    s.path.display(),
                    c.offset,
                    c.len,
                    c.why
                );
            }
            if let Some((off, len)) = s.torn_tail {
                println!(
                    "  torn tail: {} offset {off} ({len} bytes; hiltd cuts it when it next opens the segment)",
                    s.path.display()
                );
            }
        }
    }
    if problems > 0 {
        return Err(Error::data(
            dir,
            format!("{problems} corrupt record(s); readers skip them and keep the rest"),
        ));
    }
    Ok(())
}

fn export(
    dir: &Path,
    device: &str,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    lease: Option<&str>,
    out: &Path,
) -> Result<()> {
    let lease = lease.map(hilt_record::lease_tag);
    let (since, until) = (
        since.map(hilt_record::unix_ns),
        until.map(hilt_record::unix_ns),
    );
    let scans = scan(dir, device)?;
    if scans.is_empty() {
        let known = devices(dir).unwrap_or_default().join(", ");
        return Err(Error::data(
            dir,
            format!("no recording of device '{device}' (recorded here: {known})"),
        ));
    }
    let mut skipped = 0;
    let records: Vec<Record> = scans
        .into_iter()
        .flat_map(|s| {
            skipped += s.corrupt.len();
            s.records.into_iter().map(|(_, r)| r)
        })
        .filter(|r| since.is_none_or(|t| r.wall_start_ns >= t))
        .filter(|r| until.is_none_or(|t| r.wall_start_ns < t))
        .filter(|r| lease.as_ref().is_none_or(|l| &r.lease == l))
        .collect();
    if records.is_empty() {
        return Err(Error::invalid(format!(
            "no records of '{device}' match --since/--until/--lease"
        )));
    }
    let mut specs: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &records {
        *specs.entry(r.spec_hash.as_str()).or_default() += 1;
    }
    if specs.len() > 1 {
        return Err(Error::invalid(format!(
            "the records of '{device}' were measured under {} different specs ({}): narrow \
             them with --since/--until/--lease to one",
            specs.len(),
            specs
                .iter()
                .map(|(h, n)| format!("{h}: {n} records"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let hash = records[0].spec_hash.clone();
    let spec_path = dir.join(device).join(format!("spec-{hash}.json"));
    let text = std::fs::read_to_string(&spec_path).map_err(|e| Error::io(&spec_path, e))?;
    let spec: DeviceSpec =
        serde_json::from_str(&text).map_err(|e| Error::data(&spec_path, e.to_string()))?;
    let data = twin_data(spec, &records).map_err(|e| Error::data(dir.join(device), e))?;
    data.save(out)?;
    println!(
        "{}: {} rows from {} records of '{device}'{}",
        out.display(),
        data.len(),
        records.len(),
        if skipped > 0 {
            format!(" ({skipped} corrupt records skipped)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The records as `hilt collect`'s arrays.
fn twin_data(spec: DeviceSpec, records: &[Record]) -> std::result::Result<TwinData, String> {
    let ms = records
        .iter()
        .map(|r| {
            r.measurement()
                .ok_or_else(|| format!("record {}: its arrays disagree with their shapes", r.seq))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    TwinData::from_measurements(spec, &ms).map_err(|e| e.to_string())
}
