//! Tombstones: one bit per document of a segment, set when the document is deleted (or replaced
//! by a newer version). Segments are immutable, so deleting writes a new tombstone file under a
//! new name and commits it with the manifest.
//!
//! ```text
//! "BRSTDEL1", version u32, 0 u32, documents u64, deleted u64, then ⌈documents/64⌉ u64 words
//! (bit i of word i/64 = document i)
//! ```

use crate::error::{Error, Result};
use crate::files::{FileRecord, read_verified, write_file};
use bitvec::prelude::{BitVec, Lsb0};
use std::path::Path;

const MAGIC: &[u8; 8] = b"BRSTDEL1";
const VERSION: u32 = 1;

/// Deleted documents of one segment.
pub type Tombstones = BitVec<u64, Lsb0>;

/// Writes tombstones durably.
pub fn write(dir: &Path, name: &str, bits: &Tombstones) -> Result<FileRecord> {
    let mut bytes = Vec::with_capacity(32 + bits.as_raw_slice().len() * 8);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&(bits.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&(bits.count_ones() as u64).to_le_bytes());
    for word in bits.as_raw_slice() {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    write_file(dir, name, &bytes)
}

/// Reads and verifies tombstones of a segment of `docs` documents with `deleted` deletions.
pub fn read(dir: &Path, record: &FileRecord, docs: usize, deleted: usize) -> Result<Tombstones> {
    let bytes = read_verified(dir, record)?;
    let path = dir.join(&record.name);
    let words = docs.div_ceil(64);
    let header_ok = bytes.len() == 32 + words * 8
        && &bytes[..8] == MAGIC
        && bytes[8..12] == VERSION.to_le_bytes()
        && bytes[16..24] == (docs as u64).to_le_bytes();
    if !header_ok {
        return Err(Error::corrupt(path, format!("it is not a tombstone file for {docs} documents")));
    }
    let raw: Vec<u64> =
        bytes[32..].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
    let mut bits = Tombstones::from_vec(raw);
    bits.truncate(docs);
    if bits.count_ones() != deleted {
        return Err(Error::corrupt(
            path,
            format!("it marks {} deletions, the manifest recorded {deleted}", bits.count_ones()),
        ));
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut bits = Tombstones::repeat(false, 130);
        bits.set(3, true);
        bits.set(129, true);
        let record = write(dir.path(), "t", &bits).unwrap();
        assert_eq!(read(dir.path(), &record, 130, 2).unwrap(), bits);
        assert!(read(dir.path(), &record, 130, 3).is_err());
        assert!(read(dir.path(), &record, 131, 2).is_err());
    }
}
