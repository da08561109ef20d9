//! The one line reader every text input shares (BEIR and MS MARCO files, Barista's JSONL),
//! and the policy for lines it cannot take as they are.
//!
//! Real data set files are not clean: the MS MARCO collection holds mojibake and stray invalid
//! bytes, BEIR files may start with a byte-order mark, Windows tools end lines with `\r\n`,
//! and JSON written by other tools can hold a lone UTF-16 surrogate escape (`"\ud83d"`, half
//! of an emoji cut by a truncation) that strict JSON parsers refuse. The policy
//! ([`Reading`]):
//!
//! - **tolerant** (default): a line with invalid UTF-8 is decoded with U+FFFD in place of the
//!   bad bytes, a lone surrogate escape becomes `\ufffd`; both are *repaired* and counted. A
//!   line that still cannot be read (not JSON, no id, wrong number of fields) is *skipped*. The
//!   reader goes on; [`Reading::summary`] says how many lines were repaired and skipped, with
//!   `file:line` and the reason of the first few, for the command to print as a warning.
//! - **strict** (`--strict`): the first line that needs a repair or cannot be read stops the
//!   read with an error naming `file:line` and what is wrong.
//!
//! Every line keeps its 1-based number in errors and warnings.

use crate::{Error, Result};
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How many repaired or skipped lines a summary names.
const EXAMPLES: usize = 5;

/// The policy for lines a reader cannot take as they are, and what it repaired and skipped
/// (see the module docs). Cheap to clone: clones share the record.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    strict: bool,
    log: Arc<Mutex<Log>>,
}

#[derive(Debug, Default)]
struct Log {
    repaired: usize,
    skipped: usize,
    examples: Vec<String>,
}

impl Reading {
    /// Repairs what it can, skips what it cannot, and records both.
    pub fn tolerant() -> Reading {
        Reading::default()
    }

    /// Stops at the first line that needs a repair or cannot be read.
    pub fn strict() -> Reading {
        Reading { strict: true, ..Reading::default() }
    }

    /// Whether this is the strict policy.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Line `line` of `path` holds `problem` (invalid UTF-8, a lone surrogate escape), which
    /// the tolerant policy replaces by U+FFFD; an error under the strict policy.
    pub fn repaired(&self, path: &Path, line: usize, problem: &str) -> Result<()> {
        if self.strict {
            return Err(Error::Malformed {
                path: path.to_path_buf(),
                line,
                message: format!("{problem} (--strict stops here; without it, it is replaced by U+FFFD and reported)"),
            });
        }
        let mut log = self.log();
        log.repaired += 1;
        if log.examples.len() < EXAMPLES {
            log.examples.push(format!("{}:{line}: repaired: {problem} replaced by U+FFFD", path.display()));
        }
        Ok(())
    }

    /// A line that cannot be read (`error`, a [`Error::Malformed`]): skipped and recorded, or
    /// returned under the strict policy.
    pub fn skip(&self, error: Error) -> Result<()> {
        if self.strict {
            return Err(error);
        }
        let mut log = self.log();
        log.skipped += 1;
        if log.examples.len() < EXAMPLES {
            log.examples.push(format!("skipped {error}"));
        }
        Ok(())
    }

    /// Lines repaired and lines skipped so far.
    pub fn counts(&self) -> (usize, usize) {
        let log = self.log();
        (log.repaired, log.skipped)
    }

    /// A warning to print when lines were repaired or skipped: how many, and the first few
    /// with `file:line` and why.
    pub fn summary(&self) -> Option<String> {
        let log = self.log();
        if log.repaired == 0 && log.skipped == 0 {
            return None;
        }
        Some(format!(
            "{} line(s) repaired and {} skipped while reading (pass --strict to stop at the first instead): {}{}",
            log.repaired,
            log.skipped,
            log.examples.join("; "),
            if log.repaired + log.skipped > log.examples.len() { "; …" } else { "" }
        ))
    }
}

/// Streams the non-blank lines of `path` as `(line number, text)`, without line endings, with
/// a leading byte-order mark removed and invalid UTF-8 replaced by U+FFFD (a repair, see
/// [`Reading`]).
pub fn read_lines(path: &Path, reading: &Reading) -> Result<impl Iterator<Item = Result<(usize, String)>> + use<>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), error: source })?;
    Ok(lines_of(BufReader::with_capacity(1 << 20, file), path, reading))
}

/// [`read_lines`] over any reader (standard input, say), named `name` in errors and warnings.
pub fn lines_of<R: BufRead>(
    mut reader: R,
    name: &Path,
    reading: &Reading,
) -> impl Iterator<Item = Result<(usize, String)>> + use<R> {
    let path: PathBuf = name.to_path_buf();
    let reading = reading.clone();
    let mut number = 0;
    let mut buffer = Vec::new();
    std::iter::from_fn(move || {
        loop {
            buffer.clear();
            number += 1;
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => return Some(Err(Error::Io { path: path.clone(), error: source })),
            }
            let mut bytes = buffer.as_slice();
            if number == 1 {
                bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
            }
            while let [rest @ .., b'\n' | b'\r'] = bytes {
                bytes = rest;
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let text = match std::str::from_utf8(bytes) {
                Ok(text) => text.to_string(),
                Err(_) => {
                    if let Err(e) = reading.repaired(&path, number, "invalid UTF-8") {
                        return Some(Err(e));
                    }
                    String::from_utf8_lossy(bytes).into_owned()
                }
            };
            return Some(Ok((number, text)));
        }
    })
}

/// Parses line `number` of `path` as JSON into `T`. A lone UTF-16 surrogate escape is
/// repaired (`\ufffd`); a line that still does not parse is skipped (`Ok(None)`) or, under the
/// strict policy, an error that says what was `expected`.
pub fn parse_json<T: DeserializeOwned>(
    reading: &Reading,
    path: &Path,
    number: usize,
    line: &str,
    expected: &str,
) -> Result<Option<T>> {
    let error = match serde_json::from_str(line) {
        Ok(value) => return Ok(Some(value)),
        Err(e) => e,
    };
    if let Some(fixed) = replace_lone_surrogates(line)
        && let Ok(value) = serde_json::from_str(&fixed)
    {
        reading.repaired(path, number, "a lone UTF-16 surrogate escape")?;
        return Ok(Some(value));
    }
    reading.skip(Error::Malformed {
        path: path.to_path_buf(),
        line: number,
        message: format!("{error}; {expected}"),
    })?;
    Ok(None)
}

/// `line` with every `\uD800`–`\uDFFF` escape that is not half of a surrogate pair replaced by
/// `\uFFFD`, or `None` if it has none. Escaped backslashes (`\\u…`) are left alone.
pub fn replace_lone_surrogates(line: &str) -> Option<String> {
    let bytes = line.as_bytes();
    let unit = |at: usize| -> Option<u16> {
        let hex = bytes.get(at..at + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    };
    let mut out = String::with_capacity(line.len());
    let (mut i, mut last, mut changed) = (0, 0, false);
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match unit(i) {
            Some(0xD800..=0xDBFF) if matches!(unit(i + 6), Some(0xDC00..=0xDFFF)) => i += 12,
            Some(0xD800..=0xDFFF) => {
                out.push_str(&line[last..i]);
                out.push_str("\\ufffd");
                i += 6;
                last = i;
                changed = true;
            }
            // Any other escape (a `\\` among them): skip it whole.
            _ => i += 2,
        }
    }
    changed.then(|| {
        out.push_str(&line[last..]);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_bom_and_line_ends_skips_blanks_and_keeps_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tsv");
        std::fs::write(&path, b"\xef\xbb\xbfone\r\n\n  \ntw\xffo\nthree").unwrap();
        let reading = Reading::tolerant();
        let lines: Vec<_> = read_lines(&path, &reading).unwrap().map(Result::unwrap).collect();
        assert_eq!(lines, vec![(1, "one".into()), (4, "tw\u{fffd}o".into()), (5, "three".into())]);
        assert_eq!(reading.counts(), (1, 0));
        let summary = reading.summary().unwrap();
        assert!(summary.contains("x.tsv:4: repaired: invalid UTF-8"), "{summary}");
        let strict = Reading::strict();
        let results: Vec<_> = read_lines(&path, &strict).unwrap().collect();
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("x.tsv:4") && err.contains("invalid UTF-8"), "{err}");
    }

    #[test]
    fn a_missing_file_names_itself() {
        let err = read_lines(Path::new("/nonexistent/q.tsv"), &Reading::tolerant()).err().unwrap().to_string();
        assert!(err.contains("/nonexistent/q.tsv"), "{err}");
    }

    #[test]
    fn lone_surrogates_are_replaced_and_pairs_kept() {
        assert_eq!(replace_lone_surrogates(r#"{"t": "emoji \ud83d cut"}"#).unwrap(), r#"{"t": "emoji \ufffd cut"}"#);
        assert_eq!(replace_lone_surrogates(r#"{"t": "end \udc00"}"#).unwrap(), r#"{"t": "end \ufffd"}"#);
        assert_eq!(replace_lone_surrogates(r#"{"t": "pair \ud83d\ude00 ok"}"#), None);
        assert_eq!(replace_lone_surrogates(r#"{"t": "escaped \\ud83d is text"}"#), None);
        assert_eq!(replace_lone_surrogates(r#"{"t": "\ud83d\ud83d"}"#).unwrap(), r#"{"t": "\ufffd\ufffd"}"#);
        let reading = Reading::tolerant();
        let v: serde_json::Value =
            parse_json(&reading, Path::new("c.jsonl"), 3, r#"{"t": "emoji \ud83d cut"}"#, "x").unwrap().unwrap();
        assert_eq!(v["t"], "emoji \u{fffd} cut");
        assert!(parse_json::<serde_json::Value>(&reading, Path::new("c.jsonl"), 4, "{oops", "x").unwrap().is_none());
        assert_eq!(reading.counts(), (1, 1));
        assert!(reading.summary().unwrap().contains("skipped c.jsonl:4"));
    }
}
