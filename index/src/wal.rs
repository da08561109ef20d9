//! The write-ahead log: every acknowledged write is a record here, synced to disk before the
//! writer answers, until a flush has put it into a segment named by the manifest.
//!
//! ```text
//! wal-NNNNNN.log   header (32 bytes): "BRSTWAL1", version u32 (1), 0 u32, file number u64,
//!                                     xxh3-64 of the previous 24 bytes
//!                  records, back to back:
//!                    payload length u32, 0 u32, xxh3-64(payload) u64, payload
//!                  payload: first sequence number u64, operation count u32, operations:
//!                    kind u8 (1 = upsert, 2 = delete), id (u32 length + UTF-8)
//!                    upsert: flags u8 (bit 0 text, bit 1 metadata, bit 2 title), the text,
//!                            metadata and title when flagged (u32 length + UTF-8 each), rung
//!                            count u32, per stored rung dim u32 and dim × f32
//! ```
//!
//! One record holds one request's operations (numbered `first, first + 1, …`), so a request is
//! replayed whole or not at all. Concurrent requests share one append and one `fdatasync`
//! (group commit, see [`crate::writer`]). A record whose length, checksum or content does not
//! check out ends the log: in the newest file that is the torn tail of a crash, and opening for
//! writing cuts it (reporting what was cut); anywhere else it is damage, reported, never
//! trusted. A failed append is rolled back (the file is cut back to its previous length and
//! synced), so a request that got an error leaves nothing to replay.

use crate::config::IndexConfig;
use crate::document::{NewDocument, check_id};
use crate::error::{Error, Result};
use crate::files::{Reader, sync_dir};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"BRSTWAL1";
const VERSION: u32 = 1;
/// Bytes of a log file's header.
pub const HEADER: u64 = 32;
/// Bytes before a record's payload.
const RECORD_HEADER: usize = 16;
/// Largest payload (one request's record): writers refuse larger requests, readers take a
/// larger length for damage, not an allocation.
pub const MAX_PAYLOAD: usize = 1 << 31;
const UPSERT: u8 = 1;
const DELETE: u8 = 2;
const HAS_TEXT: u8 = 1;
const HAS_METADATA: u8 = 2;
const HAS_TITLE: u8 = 4;

/// One logged operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Add a document, replacing any live document with its id.
    Upsert(NewDocument),
    /// Delete the live document with this id, if any.
    Delete(String),
}

impl Op {
    /// A delete, its id checked (see [`check_id`]).
    pub fn delete(id: impl Into<String>) -> Result<Op> {
        let id = id.into();
        check_id(&id)?;
        Ok(Op::Delete(id))
    }

    /// The document id the operation is about.
    pub fn id(&self) -> &str {
        match self {
            Op::Upsert(doc) => &doc.id,
            Op::Delete(id) => id,
        }
    }
}

/// File name of log file `number`.
pub fn file_name(number: u64) -> String {
    format!("wal-{number:06}.log")
}

/// The number of a log file from its name, if it is one.
pub fn parse_name(name: &str) -> Option<u64> {
    name.strip_prefix("wal-")?.strip_suffix(".log")?.parse().ok()
}

/// The log files in `dir`, by number.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::read(dir, e))? {
        let entry = entry.map_err(|e| Error::read(dir, e))?;
        if let Some(number) = entry.file_name().to_str().and_then(parse_name) {
            logs.push((number, entry.path()));
        }
    }
    logs.sort();
    Ok(logs)
}

/// Appends one record holding `ops`, numbered from `first_seq`, to `out`.
pub fn encode_record(out: &mut Vec<u8>, first_seq: u64, ops: &[Op]) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    let put_str = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    for op in ops {
        match op {
            Op::Delete(id) => {
                out.push(DELETE);
                put_str(out, id);
            }
            Op::Upsert(doc) => {
                out.push(UPSERT);
                put_str(out, &doc.id);
                let flags = if doc.text.is_some() { HAS_TEXT } else { 0 }
                    | if doc.metadata.is_some() { HAS_METADATA } else { 0 }
                    | if doc.title.is_some() { HAS_TITLE } else { 0 };
                out.push(flags);
                for field in [&doc.text, &doc.metadata, &doc.title].into_iter().flatten() {
                    put_str(out, field);
                }
                out.extend_from_slice(&(doc.vectors.len() as u32).to_le_bytes());
                for v in &doc.vectors {
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    for x in v {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
            }
        }
    }
    let payload_len = out.len() - start - RECORD_HEADER;
    let checksum = xxhash_rust::xxh3::xxh3_64(&out[start + RECORD_HEADER..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 8..start + 16].copy_from_slice(&checksum.to_le_bytes());
}

/// Decodes a payload; every document is checked again against `config`.
fn decode_payload(config: &IndexConfig, payload: &[u8]) -> std::result::Result<(u64, Vec<Op>), String> {
    let mut r = Reader::new(payload);
    let short = || "it ends early".to_string();
    let first_seq = r.u64().ok_or_else(short)?;
    let count = r.u32().ok_or_else(short)? as usize;
    let string = |r: &mut Reader<'_>| -> std::result::Result<String, String> {
        let len = r.u32().ok_or_else(short)? as usize;
        let bytes = r.take(len).ok_or_else(short)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "it holds a string that is not UTF-8".to_string())
    };
    let mut ops = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let kind = r.take(1).ok_or_else(short)?[0];
        let id = string(&mut r)?;
        match kind {
            DELETE => ops.push(Op::delete(id).map_err(|e| e.to_string())?),
            UPSERT => {
                let flags = r.take(1).ok_or_else(short)?[0];
                let text = if flags & HAS_TEXT != 0 { Some(string(&mut r)?) } else { None };
                let metadata = if flags & HAS_METADATA != 0 { Some(string(&mut r)?) } else { None };
                let title = if flags & HAS_TITLE != 0 { Some(string(&mut r)?) } else { None };
                let rungs = r.u32().ok_or_else(short)? as usize;
                if rungs != config.rungs.len() {
                    return Err(format!("a document has {rungs} rungs, the index {}", config.rungs.len()));
                }
                let mut vectors = Vec::with_capacity(rungs);
                for _ in 0..rungs {
                    let dim = r.u32().ok_or_else(short)? as usize;
                    let bytes = r.take(dim.checked_mul(4).ok_or_else(short)?).ok_or_else(short)?;
                    vectors.push(
                        bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect::<Vec<_>>(),
                    );
                }
                let doc = NewDocument::new(config, id, text, metadata, vectors)
                    .and_then(|d| d.with_title(title))
                    .map_err(|e| e.to_string())?;
                ops.push(Op::Upsert(doc));
            }
            other => return Err(format!("unknown operation kind {other}")),
        }
    }
    if r.pos() != payload.len() {
        return Err("it has trailing bytes".into());
    }
    Ok((first_seq, ops))
}

/// What a log file holds.
#[derive(Debug)]
pub struct LogContents {
    /// File number.
    pub number: u64,
    /// Records, in order: (first sequence number, operations).
    pub records: Vec<(u64, Vec<Op>)>,
    /// Bytes up to the end of the last whole record (the header included).
    pub valid_len: u64,
    /// The file's length.
    pub file_len: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub damage: Option<String>,
    /// Whether what stopped it cannot be a torn write: a record whose checksum holds but whose
    /// content does not decode, or whole records further on (damage in the middle of the log).
    pub damage_inside: bool,
}

/// Reads every whole record of a log file (see the module docs for what ends a log).
pub fn read(path: &Path, number: u64, config: &IndexConfig) -> Result<LogContents> {
    let bytes = std::fs::read(path).map_err(|e| Error::read(path, e))?;
    let mut contents = LogContents {
        number,
        records: Vec::new(),
        valid_len: 0,
        file_len: bytes.len() as u64,
        damage: None,
        damage_inside: false,
    };
    let header_ok = bytes.len() >= HEADER as usize
        && &bytes[..8] == MAGIC
        && bytes[8..12] == VERSION.to_le_bytes()
        && bytes[16..24] == number.to_le_bytes()
        && bytes[24..32] == xxhash_rust::xxh3::xxh3_64(&bytes[..24]).to_le_bytes();
    if !header_ok {
        contents.damage = Some(if bytes.len() < HEADER as usize {
            format!("its header is incomplete ({} bytes)", bytes.len())
        } else {
            "its header is not a Barista log header for this file".into()
        });
        return Ok(contents);
    }
    let mut pos = HEADER as usize;
    contents.valid_len = HEADER;
    while pos < bytes.len() {
        let Some(head) = bytes.get(pos..pos + RECORD_HEADER) else {
            contents.damage = Some(format!("a record header at byte {pos} is incomplete"));
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let checksum = u64::from_le_bytes(head[8..16].try_into().unwrap_or([0; 8]));
        let start = pos + RECORD_HEADER;
        let Some(payload) = (len <= MAX_PAYLOAD).then(|| bytes.get(start..start + len)).flatten() else {
            contents.damage = Some(format!("the record at byte {pos} is incomplete ({len} bytes announced)"));
            break;
        };
        if xxhash_rust::xxh3::xxh3_64(payload) != checksum {
            contents.damage = Some(format!("the record at byte {pos} does not match its checksum"));
            break;
        }
        match decode_payload(config, payload) {
            Ok(record) => contents.records.push(record),
            Err(why) => {
                // Its checksum holds: this is not a torn write but a record this index cannot
                // take (another configuration, or a bug): never cut it as a crash's tail.
                contents.damage = Some(format!("the record at byte {pos} does not decode: {why}"));
                contents.damage_inside = true;
                break;
            }
        }
        pos = start + len;
        contents.valid_len = pos as u64;
    }
    if contents.damage.is_some() && !contents.damage_inside {
        let next = contents.records.last().map_or(0, |(first, ops)| first + ops.len() as u64);
        contents.damage_inside = whole_record_after(config, &bytes, contents.valid_len as usize + 1, next);
    }
    Ok(contents)
}

/// Whether a whole record (length in bounds, checksum holding, content decoding) numbered at
/// or after `next` starts anywhere at or after `from`: then the damage before it is not the
/// torn tail of a crash but damage in the middle of the log.
fn whole_record_after(config: &IndexConfig, bytes: &[u8], from: usize, next: u64) -> bool {
    (from..bytes.len().saturating_sub(RECORD_HEADER)).any(|pos| {
        let head = &bytes[pos..pos + RECORD_HEADER];
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let start = pos + RECORD_HEADER;
        len >= 12
            && head[4..8] == [0, 0, 0, 0]
            && bytes.len() - start >= len
            && xxhash_rust::xxh3::xxh3_64(&bytes[start..start + len]).to_le_bytes() == head[8..16]
            && decode_payload(config, &bytes[start..start + len]).is_ok_and(|(first, _)| first >= next)
    })
}

/// Why an append failed, and whether the file is back to where it was.
#[derive(Debug)]
pub struct AppendError {
    /// The failure.
    pub error: Error,
    /// Whether the file was cut back to its previous length (and synced): if not, the failed
    /// records may still be on disk and the log must not take more writes.
    pub rolled_back: bool,
}

/// The log file being appended to.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    path: PathBuf,
    number: u64,
    len: u64,
    syncs: u64,
}

impl LogWriter {
    /// Creates log file `number` in `dir` (it must not exist), with its header, durably.
    pub fn create(dir: &Path, number: u64) -> Result<LogWriter> {
        let path = dir.join(file_name(number));
        let mut header = Vec::with_capacity(HEADER as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&number.to_le_bytes());
        header.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&header).to_le_bytes());
        let mut file = File::options().append(true).create_new(true).open(&path).map_err(|e| Error::write(&path, e))?;
        if let Err(e) = file.write_all(&header).and_then(|()| file.sync_all()) {
            // Ours (just created): remove it rather than leave a headless log behind.
            let _ = std::fs::remove_file(&path);
            return Err(Error::write(&path, e));
        }
        if let Err(e) = sync_dir(dir) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(LogWriter { file, path, number, len: HEADER, syncs: 0 })
    }

    /// Its number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == HEADER
    }

    /// Data syncs so far (one per group commit).
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Appends `bytes` (whole records) and syncs them (`fdatasync`). On failure the file is cut
    /// back to its previous length and synced, so nothing of the failed records remains.
    pub fn append_synced(&mut self, bytes: &[u8]) -> std::result::Result<(), AppendError> {
        let written = self.file.write_all(bytes).and_then(|()| self.file.sync_data());
        self.syncs += 1;
        match written {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                let rolled_back = self.file.set_len(self.len).and_then(|()| self.file.sync_all()).is_ok();
                Err(AppendError { error: Error::write(&self.path, e), rolled_back })
            }
        }
    }
}

/// Cuts a log file back to `len` bytes (its last whole record) and syncs it; a file whose
/// header is damaged is removed.
pub fn cut(path: &Path, len: u64) -> Result<()> {
    if len < HEADER {
        return std::fs::remove_file(path).map_err(|e| Error::write(path, e));
    }
    let file = File::options().write(true).open(path).map_err(|e| Error::write(path, e))?;
    file.set_len(len).and_then(|()| file.sync_all()).map_err(|e| Error::write(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ElementType, GraphParams, StoredRung};
    use crate::rung::Rung;

    fn config() -> IndexConfig {
        IndexConfig {
            model: "m".into(),
            profile: "{}".into(),
            rungs: vec![
                StoredRung { rung: Rung::new(1, 2), element: ElementType::I8 },
                StoredRung { rung: Rung::new(2, 3), element: ElementType::F16 },
            ],
            graph: GraphParams::on(0),
        }
    }

    fn upsert(c: &IndexConfig, id: &str, x: f32) -> Op {
        let meta = Some(format!("{{\"x\": {x}}}"));
        Op::Upsert(
            NewDocument::new(c, id.into(), Some(format!("text {id}")), meta, vec![vec![x, 1.0], vec![x, 2.0, 3.0]])
                .unwrap()
                .with_title((x > 0.0).then(|| format!("title of {id}")))
                .unwrap(),
        )
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let c = config();
        let mut log = LogWriter::create(dir.path(), 3).unwrap();
        assert!(LogWriter::create(dir.path(), 3).is_err(), "log files are never overwritten");
        let first = vec![upsert(&c, "a", 0.5), Op::delete("b").unwrap()];
        let second = vec![upsert(&c, "é", -1.25)];
        let mut bytes = Vec::new();
        encode_record(&mut bytes, 1, &first);
        encode_record(&mut bytes, 3, &second);
        log.append_synced(&bytes).unwrap();
        let path = dir.path().join(file_name(3));
        let read_back = read(&path, 3, &c).unwrap();
        assert_eq!(read_back.records, vec![(1, first.clone()), (3, second)]);
        assert_eq!((read_back.valid_len, read_back.damage), (log.len(), None));

        // A crash in the middle of the next record: everything before it stays.
        let mut torn = Vec::new();
        encode_record(&mut torn, 4, &first);
        let whole = std::fs::read(&path).unwrap();
        for cut_at in [1, RECORD_HEADER, torn.len() - 1] {
            std::fs::write(&path, [whole.as_slice(), &torn[..cut_at]].concat()).unwrap();
            let r = read(&path, 3, &c).unwrap();
            assert_eq!(r.records.len(), 2, "cut at {cut_at}");
            assert_eq!(r.valid_len, whole.len() as u64);
            assert!(r.damage.unwrap().contains("incomplete"));
        }
        // A flipped byte inside a record is caught by its checksum.
        let mut flipped = whole.clone();
        flipped[HEADER as usize + RECORD_HEADER + 20] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let r = read(&path, 3, &c).unwrap();
        assert!(r.records.is_empty() && r.damage.unwrap().contains("checksum"));
        cut(&path, r.valid_len).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), HEADER);
        // Another file's header, or none.
        std::fs::write(&path, &whole).unwrap();
        assert!(read(&path, 4, &c).unwrap().damage.unwrap().contains("header"));
        std::fs::write(&path, &whole[..10]).unwrap();
        assert!(read(&path, 3, &c).unwrap().damage.unwrap().contains("incomplete"));
        assert_eq!(parse_name(&file_name(12)), Some(12));
        assert_eq!(parse_name("wal-x.log"), None);
    }

    #[test]
    fn records_checked_against_another_configuration_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let c = config();
        let mut log = LogWriter::create(dir.path(), 1).unwrap();
        let mut bytes = Vec::new();
        encode_record(&mut bytes, 1, &[upsert(&c, "a", 0.5)]);
        log.append_synced(&bytes).unwrap();
        let mut other = config();
        other.rungs.pop();
        let r = read(&dir.path().join(file_name(1)), 1, &other).unwrap();
        assert!(r.damage.unwrap().contains("does not decode"), "never trusted");
    }
}
