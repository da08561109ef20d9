//! The id table of a segment: external id → document number, without building anything on open.
//!
//! ```text
//! "BRSTIDS1", version u32, 0 u32, count u64, then count × (xxh3-64 of the id u64, document u32, 0 u32)
//! sorted by (hash, document)
//! ```
//!
//! A lookup binary-searches the hash and confirms candidates against the document store. The
//! table is small (16 bytes a document) and verified against its checksum on open.

use crate::error::{Error, Result};
use crate::files::{FileRecord, HashingWriter, check_bytes, map};
use memmap2::Mmap;
use std::path::Path;

const MAGIC: &[u8; 8] = b"BRSTIDS1";
const VERSION: u32 = 1;
const HEADER: usize = 24;
const ENTRY: usize = 16;

/// The hash ids are looked up by.
pub fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// Writes the table for ids given in document order.
pub fn write<'a>(dir: &Path, name: &str, ids: impl Iterator<Item = &'a str>) -> Result<FileRecord> {
    let mut entries: Vec<(u64, u32)> = ids.enumerate().map(|(doc, id)| (id_hash(id), doc as u32)).collect();
    entries.sort_unstable();
    let mut w = HashingWriter::create(dir, name)?;
    w.write(MAGIC)?;
    w.write(&VERSION.to_le_bytes())?;
    w.write(&0u32.to_le_bytes())?;
    w.write(&(entries.len() as u64).to_le_bytes())?;
    let mut bytes = Vec::with_capacity(entries.len() * ENTRY);
    for (hash, doc) in entries {
        bytes.extend_from_slice(&hash.to_le_bytes());
        bytes.extend_from_slice(&doc.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
    }
    w.write(&bytes)?;
    w.finish()
}

/// A mapped, verified id table.
#[derive(Debug)]
pub struct IdTable {
    map: Mmap,
    count: usize,
}

impl IdTable {
    /// Maps the table and verifies it completely.
    pub fn open(dir: &Path, record: &FileRecord, count: usize) -> Result<IdTable> {
        let map = map(dir, record)?;
        check_bytes(dir, record, &map)?;
        let path = dir.join(&record.name);
        if map.len() != HEADER + count * ENTRY || &map[..8] != MAGIC || map[8..12] != VERSION.to_le_bytes() {
            return Err(Error::corrupt(path, format!("it is not an id table of {count} documents")));
        }
        Ok(IdTable { map, count })
    }

    fn entry(&self, i: usize) -> (u64, u32) {
        let e = &self.map[HEADER + i * ENTRY..HEADER + (i + 1) * ENTRY];
        (u64::from_le_bytes(e[0..8].try_into().unwrap_or([0; 8])), u32::from_le_bytes([e[8], e[9], e[10], e[11]]))
    }

    /// Document numbers whose id hashes like `id` (confirm against the store).
    pub fn candidates(&self, id: &str) -> impl Iterator<Item = u32> + '_ {
        let hash = id_hash(id);
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.entry(mid).0 < hash { lo = mid + 1 } else { hi = mid }
        }
        (lo..self.count).map(|i| self.entry(i)).take_while(move |e| e.0 == hash).map(|e| e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_id() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..500).map(|i| format!("doc-{i}")).collect();
        let record = write(dir.path(), "i", ids.iter().map(String::as_str)).unwrap();
        let table = IdTable::open(dir.path(), &record, 500).unwrap();
        for (doc, id) in ids.iter().enumerate() {
            assert!(table.candidates(id).any(|d| d == doc as u32), "{id}");
        }
        assert_eq!(table.candidates("missing").count(), 0);
        assert!(IdTable::open(dir.path(), &record, 499).is_err());
    }
}
