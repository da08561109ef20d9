//! Durable, checksummed files.
//!
//! Every file of an index is written once under a fresh name, hashed while written (xxh3-64),
//! flushed to disk (`fsync`) and then recorded in the manifest with its length and checksum.
//! Reading checks the length against the manifest before mapping; small files are verified
//! against their checksum on open, large ones by [`verify`] (and by every compaction, which reads
//! them anyway).

use crate::error::{Error, Result};
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

/// What the manifest records about one file.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FileRecord {
    /// File name inside the index directory.
    pub name: String,
    /// Length in bytes.
    pub len: u64,
    /// xxh3-64 of the whole content.
    pub checksum: u64,
}

/// A file being written: buffered, hashed and counted; [`HashingWriter::finish`] syncs it. A
/// writer dropped before `finish` (an error on the way) removes its file, so a failed write
/// never leaves a half-written file under a name a retry needs.
pub struct HashingWriter {
    out: Option<BufWriter<File>>,
    hasher: Xxh3,
    len: u64,
    path: PathBuf,
    name: String,
}

impl Drop for HashingWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl HashingWriter {
    /// Creates `dir/name`, which must not exist yet (index files are never overwritten).
    pub fn create(dir: &Path, name: &str) -> Result<HashingWriter> {
        let path = dir.join(name);
        let file = File::options().write(true).create_new(true).open(&path).map_err(|e| Error::write(&path, e))?;
        Ok(HashingWriter {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            hasher: Xxh3::new(),
            len: 0,
            path,
            name: name.to_string(),
        })
    }

    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        match self.out.as_mut() {
            Some(out) => out.write_all(bytes).map_err(|e| Error::write(&self.path, e)),
            None => Err(Error::write(&self.path, std::io::Error::other("the file is already finished"))),
        }
    }

    /// Appends zero bytes until the length is a multiple of `align`.
    pub fn pad_to(&mut self, align: u64) -> Result<()> {
        let pad = self.len.next_multiple_of(align) - self.len;
        const ZEROS: [u8; 4096] = [0; 4096];
        let mut left = pad as usize;
        while left > 0 {
            let n = left.min(ZEROS.len());
            self.write(&ZEROS[..n])?;
            left -= n;
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flushes, fsyncs and returns the record for the manifest (on failure the file is
    /// removed).
    pub fn finish(mut self) -> Result<FileRecord> {
        let Some(out) = self.out.take() else {
            return Err(Error::write(&self.path, std::io::Error::other("the file is already finished")));
        };
        let synced = out.into_inner().map_err(|e| e.into_error()).and_then(|file| file.sync_all());
        if let Err(e) = synced {
            let _ = std::fs::remove_file(&self.path);
            return Err(Error::write(&self.path, e));
        }
        Ok(FileRecord { name: std::mem::take(&mut self.name), len: self.len, checksum: self.hasher.digest() })
    }
}

/// Writes a whole file durably (see [`HashingWriter`]).
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<FileRecord> {
    let mut w = HashingWriter::create(dir, name)?;
    w.write(bytes)?;
    w.finish()
}

/// Records an existing file (hashing its content) and fsyncs it; for files written by others
/// (the HNSW dump).
pub fn adopt_file(dir: &Path, name: &str) -> Result<FileRecord> {
    let path = dir.join(name);
    let mut file = File::open(&path).map_err(|e| Error::read(&path, e))?;
    file.sync_all().map_err(|e| Error::write(&path, e))?;
    let (len, checksum) = hash_reader(&mut file).map_err(|e| Error::read(&path, e))?;
    Ok(FileRecord { name: name.to_string(), len, checksum })
}

fn hash_reader(r: &mut impl Read) -> std::io::Result<(u64, u64)> {
    let mut hasher = Xxh3::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = r.read(&mut buffer)?;
        if n == 0 {
            return Ok((len, hasher.digest()));
        }
        hasher.update(&buffer[..n]);
        len += n as u64;
    }
}

/// Opens `dir/record.name` after checking that its length matches the record.
fn open_checked(dir: &Path, record: &FileRecord) -> Result<File> {
    let path = dir.join(&record.name);
    let file = File::open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::corrupt(&path, "the manifest lists this file but it is missing")
        } else {
            Error::read(&path, e)
        }
    })?;
    let len = file.metadata().map_err(|e| Error::read(&path, e))?.len();
    if len != record.len {
        return Err(Error::corrupt(&path, format!("it is {len} bytes long but the manifest recorded {}", record.len)));
    }
    Ok(file)
}

/// Maps a file read-only after checking its length (not its checksum: see [`verify`]).
pub fn map(dir: &Path, record: &FileRecord) -> Result<Mmap> {
    let file = open_checked(dir, record)?;
    // SAFETY: index files are immutable once written: new content gets a new name, or (a damaged
    // graph built again) a new file under the old name after the old one is unlinked, which
    // leaves existing mappings on the old file. The mapping never changes under us.
    unsafe { Mmap::map(&file) }.map_err(|e| Error::read(dir.join(&record.name), e))
}

/// The environment variable that turns [`advise_random`] off (`normal`, for comparisons) or
/// keeps it on (`random`, the default; case-insensitive; any other value is reported once and
/// keeps it on). Read once per process.
pub const MMAP_ADVICE_ENV: &str = "BARISTA_MMAP_ADVICE";

/// Tells the kernel that `len` bytes of `map` from `offset` are read at random (graph walks and
/// the reranking of their survivors): a page fault then reads that page only, not the 128 KiB
/// or more around it that sequential read-around would, so the pages a process maps, and under
/// a memory limit the page cache, hold the rows searches touch instead of their neighbours.
/// Qdrant's mmap vector storage gives the same advice (its global `madvise` setting). Advice
/// only: where the platform lacks it, the kernel refuses, or `BARISTA_MMAP_ADVICE=normal`,
/// nothing changes but memory and speed.
pub fn advise_random(map: &Mmap, offset: usize, len: usize) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| match std::env::var(MMAP_ADVICE_ENV) {
        Err(_) => true,
        Ok(v) if v.eq_ignore_ascii_case("random") => true,
        Ok(v) if v.eq_ignore_ascii_case("normal") => false,
        Ok(v) => {
            eprintln!("barista: {MMAP_ADVICE_ENV}={v:?} is neither `random` nor `normal`; keeping `random`");
            true
        }
    });
    if !on {
        return;
    }
    #[cfg(unix)]
    {
        let _ = map.advise_range(memmap2::Advice::Random, offset, len);
    }
    #[cfg(not(unix))]
    let _ = (map, offset, len);
}

/// Reads a whole (small) file and verifies its checksum.
pub fn read_verified(dir: &Path, record: &FileRecord) -> Result<Vec<u8>> {
    let mut file = open_checked(dir, record)?;
    let mut bytes = Vec::with_capacity(record.len as usize);
    file.read_to_end(&mut bytes).map_err(|e| Error::read(dir.join(&record.name), e))?;
    check_bytes(dir, record, &bytes)?;
    Ok(bytes)
}

/// Checks bytes (of a mapped or read file) against the record's checksum.
pub fn check_bytes(dir: &Path, record: &FileRecord, bytes: &[u8]) -> Result<()> {
    let checksum = xxhash_rust::xxh3::xxh3_64(bytes);
    if bytes.len() as u64 != record.len || checksum != record.checksum {
        return Err(Error::corrupt(
            dir.join(&record.name),
            format!("its checksum is {checksum:016x} but the manifest recorded {:016x}", record.checksum),
        ));
    }
    Ok(())
}

/// Reads a whole file from disk and checks length and checksum.
pub fn verify(dir: &Path, record: &FileRecord) -> Result<()> {
    let mut file = open_checked(dir, record)?;
    let path = dir.join(&record.name);
    let (len, checksum) = hash_reader(&mut file).map_err(|e| Error::read(&path, e))?;
    if len != record.len || checksum != record.checksum {
        return Err(Error::corrupt(
            path,
            format!("its checksum is {checksum:016x} but the manifest recorded {:016x}", record.checksum),
        ));
    }
    Ok(())
}

/// Makes renames and new files in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::write(dir, e))
}

/// A little-endian cursor over a byte slice that reports truncation instead of panicking.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_verify_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let record = write_file(dir.path(), "a.bin", b"hello index").unwrap();
        assert_eq!(record.len, 11);
        verify(dir.path(), &record).unwrap();
        assert_eq!(read_verified(dir.path(), &record).unwrap(), b"hello index");
        assert!(write_file(dir.path(), "a.bin", b"again").is_err(), "files are never overwritten");
        std::fs::write(dir.path().join("a.bin"), b"hello INDEX").unwrap();
        let err = verify(dir.path(), &record).unwrap_err().to_string();
        assert!(err.contains("a.bin is damaged") && err.contains("checksum"), "{err}");
        std::fs::write(dir.path().join("a.bin"), b"hello").unwrap();
        let err = map(dir.path(), &record).unwrap_err().to_string();
        assert!(err.contains("5 bytes long"), "{err}");
        std::fs::remove_file(dir.path().join("a.bin")).unwrap();
        assert!(map(dir.path(), &record).unwrap_err().to_string().contains("missing"));
    }

    #[test]
    fn reader_reports_truncation() {
        let mut r = Reader::new(&[1, 0, 0, 0, 2]);
        assert_eq!(r.u32(), Some(1));
        assert_eq!(r.u32(), None);
        assert_eq!(r.pos(), 4);
    }
}
