//! Opening an index's state: the committed segments the manifest names, then the write-ahead
//! log replayed on top of them (the records after `log_applied`).
//!
//! A reader replays without changing anything: a damaged end of the newest log file may be a
//! record a live writer is appending right now, so it is only left out. The writer, holding the
//! lock, cuts such a torn tail at the last whole record and reports it. Damage anywhere else (a
//! record that does not check out in an older file, a missing record) is never cut or skipped:
//! opening fails and names the file.

use crate::error::{Error, Result};
use crate::index::{OpenOptions, Snapshot};
use crate::manifest::Manifest;
use crate::scan::Kernels;
use crate::state::State;
use crate::wal;
use std::path::Path;

/// What opening found in the write-ahead log.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogSummary {
    /// The log files and their lengths in bytes.
    pub files: Vec<(String, u64)>,
    /// Logged operations replayed on top of the committed segments.
    pub replayed: u64,
    /// What was cut (by a writer) or left out (by a reader) at the end of the newest file, and
    /// why.
    pub cut: Option<String>,
}

/// A log file the writer keeps until a flush has put all its records into segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogFile {
    pub(crate) number: u64,
    /// Sequence number of its last record's last operation (0 when it holds none).
    pub(crate) last_seq: u64,
}

/// The recovered state and what the log held.
pub(crate) struct Recovered {
    pub(crate) state: State,
    pub(crate) summary: LogSummary,
    pub(crate) logs: Vec<LogFile>,
}

/// The log files in `dir` with their lengths (a file a writer removes meanwhile is left out).
pub(crate) fn log_lengths(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut lengths = Vec::new();
    for (number, path) in wal::list(dir)? {
        match std::fs::metadata(&path) {
            Ok(m) => lengths.push((wal::file_name(number), m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::read(&path, e)),
        }
    }
    Ok(lengths)
}

/// Opens the state (see the module docs); `repair` (the writer, holding the lock) cuts a torn
/// tail. A reader racing a writer's flush (which replaces the manifest, then removes the log
/// files it covers) can see a file vanish or a manifest older than the logs it lists: it
/// starts over, a few times, as long as the manifest moves on.
pub(crate) fn recover(
    dir: &Path,
    previous: Option<&Snapshot>,
    kernels: Kernels,
    options: OpenOptions,
    capacity: usize,
    repair: bool,
) -> Result<Recovered> {
    let mut attempts = 0;
    loop {
        let manifest = Manifest::read(dir)?;
        let generation = manifest.generation;
        match recover_once(dir, manifest, previous, kernels, options, capacity, repair) {
            Ok(recovered) => return Ok(recovered),
            Err(_) if !repair && attempts < 10 && Manifest::read(dir).is_ok_and(|m| m.generation != generation) => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn recover_once(
    dir: &Path,
    manifest: Manifest,
    previous: Option<&Snapshot>,
    kernels: Kernels,
    options: OpenOptions,
    capacity: usize,
    repair: bool,
) -> Result<Recovered> {
    let mut state = State::open(dir, manifest, previous, kernels, options, capacity)?;
    let files = wal::list(dir)?;
    let start = state.manifest.log_applied + 1;
    let mut expected = start;
    let mut summary = LogSummary::default();
    let mut logs = Vec::with_capacity(files.len());
    for (i, (number, path)) in files.iter().enumerate() {
        let name = wal::file_name(*number);
        let contents = match wal::read(path, *number, state.config()) {
            // A writer removes a log file only once a committed manifest covers it: if that is
            // the manifest read above, the file holds nothing to replay; if it is a newer one,
            // the next file does not continue where this manifest ends, and recovery starts
            // over.
            Err(Error::Io { source, .. }) if !repair && source.kind() == std::io::ErrorKind::NotFound => continue,
            other => other?,
        };
        if let Some(why) = &contents.damage {
            let lost = contents.file_len - contents.valid_len;
            if contents.damage_inside {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "{why}, and it is not the torn end of a crash (whole records follow it, or its checksum \
                         holds), so writes after it would be lost; restore the index directory from a backup. If the \
                         machine lost power while this file was written, what follows byte {} was never acknowledged: \
                         cut the file there (truncate -s {} {}) to open the index",
                        contents.valid_len,
                        contents.valid_len,
                        path.display()
                    ),
                ));
            }
            if i + 1 < files.len() {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "{why}, and newer log files follow, so the writes after it would be lost; restore the index \
                         directory from a backup"
                    ),
                ));
            }
            summary.cut = Some(if repair {
                wal::cut(path, contents.valid_len)?;
                format!(
                    "cut {lost} bytes at byte {} of {name} (a write the crash interrupted): {why}",
                    contents.valid_len
                )
            } else {
                format!(
                    "left out {lost} bytes at byte {} of {name} (a writer may be appending): {why}",
                    contents.valid_len
                )
            });
        }
        state.replay(&contents, path, &mut expected)?;
        let last_seq = contents.records.last().map_or(0, |(first, ops)| first + ops.len() as u64 - 1);
        logs.push(LogFile { number: *number, last_seq });
        let len = if repair && contents.damage.is_some() { contents.valid_len } else { contents.file_len };
        if !(repair && len < wal::HEADER) {
            summary.files.push((name, len));
        }
    }
    summary.replayed = expected - start;
    Ok(Recovered { state, summary, logs })
}
