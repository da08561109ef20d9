//! The one line reader every text format shares: bytes in, lossily decoded lines out.
//!
//! Real data set files are not clean: the MS MARCO collection holds mojibake and stray invalid
//! bytes, BEIR files may start with a byte-order mark, Windows tools end lines with `\r\n`.
//! Reading bytes and decoding each line lossily means a bad byte costs one replacement
//! character, never the whole read, and every line keeps its 1-based number for errors.

use crate::{Error, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Streams the non-blank lines of `path` as `(line number, text)`, without line endings, with
/// a leading byte-order mark removed and invalid UTF-8 replaced by U+FFFD.
pub(crate) fn read_lines(path: &Path) -> Result<impl Iterator<Item = Result<(usize, String)>> + use<>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let path: PathBuf = path.to_path_buf();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut number = 0;
    let mut buffer = Vec::new();
    Ok(std::iter::from_fn(move || {
        loop {
            buffer.clear();
            number += 1;
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => return Some(Err(Error::Io { path: path.clone(), source })),
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
            return Some(Ok((number, String::from_utf8_lossy(bytes).into_owned())));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_bom_and_line_ends_skips_blanks_and_keeps_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tsv");
        std::fs::write(&path, b"\xef\xbb\xbfone\r\n\n  \ntw\xffo\nthree").unwrap();
        let lines: Vec<_> = read_lines(&path).unwrap().map(Result::unwrap).collect();
        assert_eq!(lines, vec![(1, "one".into()), (4, "tw\u{fffd}o".into()), (5, "three".into())]);
    }

    #[test]
    fn a_missing_file_names_itself() {
        let err = read_lines(Path::new("/nonexistent/q.tsv")).err().unwrap().to_string();
        assert!(err.contains("/nonexistent/q.tsv"), "{err}");
    }
}
