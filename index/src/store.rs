//! The document store of a segment: external ids, optional titles, texts and JSON metadata,
//! mapped and read without copying.
//!
//! ```text
//! header (56 bytes): "BRSTDOC1", version u32 (2), 0 u32, count u64, table offset u64,
//!                    data offset u64, data length u64, xxh3-64 of the previous 48 bytes
//! table: count × (start u64, id length u32, title length u32, text length u32,
//!                 metadata length u32, flags u32, 0 u32)
//! data:  per document, its id, title, text and metadata bytes back to back (UTF-8)
//! ```
//!
//! Flags: bit 0 = has text, bit 1 = has metadata, bit 2 = has a title. Version 1 (no titles:
//! 24-byte entries of start, id, text and metadata lengths and flags) is read as well: the
//! engine that wrote it kept a document's title in its metadata as `"title"`, so a version-1
//! document's title is that string (its metadata stays as stored), which is also what a merge
//! carries into a version-2 store. Every access checks the entry against the data length and
//! the bytes for UTF-8, so a damaged file yields an error naming it, never a panic.

use crate::error::{Error, Result};
use crate::files::{FileRecord, HashingWriter, Reader, map};
use memmap2::Mmap;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"BRSTDOC1";
const VERSION: u32 = 2;
const HEADER: usize = 56;
const ENTRY: usize = 32;
/// Entry size of version 1 (no titles).
const ENTRY_V1: usize = 24;
const HAS_TEXT: u32 = 1;
const HAS_METADATA: u32 = 2;
const HAS_TITLE: u32 = 4;

/// A document as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredDoc<'a> {
    /// External id.
    pub id: &'a str,
    /// Title, when stored.
    pub title: Option<&'a str>,
    /// Text, when stored.
    pub text: Option<&'a str>,
    /// Metadata as JSON, when stored.
    pub metadata: Option<&'a str>,
}

/// Writes a document store for `docs` (in document order).
pub fn write<'a>(
    dir: &Path,
    name: &str,
    docs: impl ExactSizeIterator<Item = StoredDoc<'a>> + Clone,
) -> Result<FileRecord> {
    let count = docs.len();
    let table_pos = HEADER as u64;
    let data_pos = table_pos + (count * ENTRY) as u64;
    let data_len: u64 = docs
        .clone()
        .map(|d| {
            (d.id.len() + d.title.map_or(0, str::len) + d.text.map_or(0, str::len) + d.metadata.map_or(0, str::len))
                as u64
        })
        .sum();
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&(count as u64).to_le_bytes());
    header.extend_from_slice(&table_pos.to_le_bytes());
    header.extend_from_slice(&data_pos.to_le_bytes());
    header.extend_from_slice(&data_len.to_le_bytes());
    let checksum = xxhash_rust::xxh3::xxh3_64(&header);
    header.extend_from_slice(&checksum.to_le_bytes());
    let mut w = HashingWriter::create(dir, name)?;
    w.write(&header)?;
    let field_len = |s: &str| -> Result<u32> {
        u32::try_from(s.len())
            .map_err(|_| Error::InvalidInput(format!("a stored field is {} bytes; the limit is 4 GiB", s.len())))
    };
    let mut start = 0u64;
    let mut entry = [0u8; ENTRY];
    for d in docs.clone() {
        let (id, title, text, meta) = (
            field_len(d.id)?,
            field_len(d.title.unwrap_or(""))?,
            field_len(d.text.unwrap_or(""))?,
            field_len(d.metadata.unwrap_or(""))?,
        );
        let flags = if d.text.is_some() { HAS_TEXT } else { 0 }
            | if d.metadata.is_some() { HAS_METADATA } else { 0 }
            | if d.title.is_some() { HAS_TITLE } else { 0 };
        entry[0..8].copy_from_slice(&start.to_le_bytes());
        for (i, value) in [id, title, text, meta, flags, 0].into_iter().enumerate() {
            entry[8 + 4 * i..12 + 4 * i].copy_from_slice(&value.to_le_bytes());
        }
        w.write(&entry)?;
        start += u64::from(id) + u64::from(title) + u64::from(text) + u64::from(meta);
    }
    for d in docs {
        w.write(d.id.as_bytes())?;
        w.write(d.title.unwrap_or("").as_bytes())?;
        w.write(d.text.unwrap_or("").as_bytes())?;
        w.write(d.metadata.unwrap_or("").as_bytes())?;
    }
    w.finish()
}

/// A mapped document store.
#[derive(Debug)]
pub struct DocStore {
    map: Mmap,
    version: u32,
    /// Version 1 only: each document's title, read from its metadata on first use.
    legacy_titles: std::sync::OnceLock<Vec<Option<String>>>,
    count: usize,
    table: usize,
    data: usize,
    data_len: usize,
    path: PathBuf,
}

impl DocStore {
    /// Maps the store and checks its header.
    pub fn open(dir: &Path, record: &FileRecord, count: usize) -> Result<DocStore> {
        let path = dir.join(&record.name);
        let map = map(dir, record)?;
        let damaged = |m: &str| Error::corrupt(&path, m.to_string());
        let mut r = Reader::new(&map);
        let truncated = || damaged("the header is truncated");
        if r.take(8) != Some(MAGIC.as_slice()) {
            return Err(damaged("it does not start with the document store signature"));
        }
        let version = r.u32().ok_or_else(truncated)?;
        let _ = r.u32().ok_or_else(truncated)?;
        let stored = r.u64().ok_or_else(truncated)?;
        let table = r.u64().ok_or_else(truncated)?;
        let data = r.u64().ok_or_else(truncated)?;
        let data_len = r.u64().ok_or_else(truncated)?;
        let checksum = r.u64().ok_or_else(truncated)?;
        if xxhash_rust::xxh3::xxh3_64(&map[..HEADER - 8]) != checksum {
            return Err(damaged("the header checksum does not match"));
        }
        if !(version == 1 || version == VERSION) {
            return Err(damaged(&format!(
                "it is a document store of version {version}; this Barista reads versions 1 and {VERSION}"
            )));
        }
        if stored != count as u64 {
            return Err(damaged(&format!("it holds {stored} documents, the manifest expects {count}")));
        }
        let entry = if version == 1 { ENTRY_V1 } else { ENTRY };
        let table_end = table.checked_add((count * entry) as u64);
        let data_end = data.checked_add(data_len);
        if table_end != Some(data) || data_end != Some(map.len() as u64) {
            return Err(damaged("its sections do not fit the file"));
        }
        Ok(DocStore {
            map,
            version,
            legacy_titles: std::sync::OnceLock::new(),
            count,
            table: table as usize,
            data: data as usize,
            data_len: data_len as usize,
            path,
        })
    }

    /// Document `doc`.
    pub fn get(&self, doc: u32) -> Result<StoredDoc<'_>> {
        let doc = doc as usize;
        if doc >= self.count {
            return Err(Error::InvalidInput(format!("document {doc} is out of range ({} documents)", self.count)));
        }
        let size = if self.version == 1 { ENTRY_V1 } else { ENTRY };
        let e = &self.map[self.table + doc * size..self.table + (doc + 1) * size];
        let le32 = |at: usize| u32::from_le_bytes([e[at], e[at + 1], e[at + 2], e[at + 3]]) as usize;
        let start = u64::from_le_bytes(e[0..8].try_into().unwrap_or([0; 8])) as usize;
        let (id_len, title_len, text_len, meta_len, flags) = if self.version == 1 {
            (le32(8), 0, le32(12), le32(16), le32(20) as u32 & !HAS_TITLE)
        } else {
            (le32(8), le32(12), le32(16), le32(20), le32(24) as u32)
        };
        let end = start.checked_add(id_len + title_len + text_len + meta_len);
        if end.is_none_or(|end| end > self.data_len) {
            return Err(Error::corrupt(&self.path, format!("the entry of document {doc} points outside the data")));
        }
        let base = self.data + start;
        let field = |from: usize, len: usize| -> Result<&str> {
            std::str::from_utf8(&self.map[from..from + len])
                .map_err(|_| Error::corrupt(&self.path, format!("document {doc} holds invalid UTF-8")))
        };
        let (title_at, text_at) = (base + id_len, base + id_len + title_len);
        let meta_at = text_at + text_len;
        let title = if self.version == 1 {
            self.legacy_titles()?.get(doc).and_then(|t| t.as_deref())
        } else if flags & HAS_TITLE != 0 {
            Some(field(title_at, title_len)?)
        } else {
            None
        };
        Ok(StoredDoc {
            id: field(base, id_len)?,
            title,
            text: if flags & HAS_TEXT != 0 { Some(field(text_at, text_len)?) } else { None },
            metadata: if flags & HAS_METADATA != 0 { Some(field(meta_at, meta_len)?) } else { None },
        })
    }

    /// The titles of a version-1 store: each document's metadata `"title"` string, if any.
    fn legacy_titles(&self) -> Result<&[Option<String>]> {
        if let Some(titles) = self.legacy_titles.get() {
            return Ok(titles);
        }
        let mut titles = Vec::with_capacity(self.count);
        for doc in 0..self.count {
            let e = &self.map[self.table + doc * ENTRY_V1..self.table + (doc + 1) * ENTRY_V1];
            let le32 = |at: usize| u32::from_le_bytes([e[at], e[at + 1], e[at + 2], e[at + 3]]) as usize;
            let start = u64::from_le_bytes(e[0..8].try_into().unwrap_or([0; 8])) as usize;
            let (id_len, text_len, meta_len, flags) = (le32(8), le32(12), le32(16), le32(20) as u32);
            let at = start.checked_add(id_len + text_len).filter(|a| a + meta_len <= self.data_len);
            let title = match at {
                Some(at) if flags & HAS_METADATA != 0 => {
                    let bytes = &self.map[self.data + at..self.data + at + meta_len];
                    serde_json::from_slice::<serde_json::Value>(bytes)
                        .ok()
                        .and_then(|m| m.get("title").and_then(|t| t.as_str()).map(str::to_string))
                }
                _ => None,
            };
            titles.push(title);
        }
        Ok(self.legacy_titles.get_or_init(|| titles))
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let docs = vec![
            StoredDoc { id: "a", title: Some("A Title"), text: Some("first text"), metadata: Some("{\"k\":1}") },
            StoredDoc { id: "ü-2", title: None, text: None, metadata: None },
            StoredDoc { id: "c", title: Some(""), text: Some(""), metadata: None },
        ];
        let record = write(dir.path(), "d", docs.clone().into_iter()).unwrap();
        let store = DocStore::open(dir.path(), &record, 3).unwrap();
        for (i, d) in docs.iter().enumerate() {
            assert_eq!(&store.get(i as u32).unwrap(), d);
        }
        assert!(store.get(3).is_err());
        assert!(DocStore::open(dir.path(), &record, 2).is_err());
    }

    /// A version-1 store (no titles, 24-byte entries), as earlier Barista wrote it.
    #[test]
    fn version_1_stores_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let (id, text, meta) = ("a", "first text", "{\"title\":\"T\",\"k\":1}");
        let count = 1u64;
        let (table, data) = (HEADER as u64, (HEADER + ENTRY_V1) as u64);
        let data_len = (id.len() + text.len() + meta.len()) as u64;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        for v in [count, table, data, data_len] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        for v in [id.len() as u32, text.len() as u32, meta.len() as u32, HAS_TEXT | HAS_METADATA] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(format!("{id}{text}{meta}").as_bytes());
        let record = crate::files::write_file(dir.path(), "v1", &bytes).unwrap();
        let store = DocStore::open(dir.path(), &record, 1).unwrap();
        // The title the engine of version 1 kept in the metadata is the title; the metadata stays.
        assert_eq!(store.get(0).unwrap(), StoredDoc { id, title: Some("T"), text: Some(text), metadata: Some(meta) });
    }
}
