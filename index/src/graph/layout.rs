//! The graph file: a segment's HNSW links stored flat, searched in place through a memory map.
//!
//! ```text
//! header (4,096 bytes, little-endian):
//!   "BRSTGRF1", version u32 (2 with rows; a file without is written as 1, as earlier builds
//!   wrote and read it), flags u32 (version 2: bit 0, the file carries rows; other bits are
//!   refused),
//!   count u32 (rows of the segment), dim u32, layer u32 (the rung's), m u32, m0 u32,
//!   levels u32 (≥ 1), entry u32, max_norm f32 (bits), nodes u32 (rows in the graph),
//!   groups u32, copies u32, sections u32,
//!   per section: offset u64, bytes u64,
//!   xxh3-64 of everything before it; zero padding
//! section 0: level 0, count rows of 1 + m0 u32: [links | flags << 16, link…]
//! sections 1 + 2(l − 1), 2 + 2(l − 1), for each level l ≥ 1: its rows' document numbers
//!   (ascending u32), then its rows of 1 + m u32
//! then three: duplicate groups — representatives (ascending u32), offsets (groups + 1
//!   u32), copies (u32)
//! with flag bit 0 only, two more: the rows the walk scores, an i8 copy of the rung —
//!   per-dimension scales (dim f32), then count × dim i8 values (`value ≈ scale · byte`)
//! ```
//!
//! A graph on a rung stored in f16 or f32 carries the i8 copy (its name ends `.i8.graph`, see
//! [`super::file_name`]): a walk reads half (f32: a quarter) of the stored bytes per row,
//! so a server's working set is the graph and the copy, and only the few rows the walk returns
//! are read from the vector file to be rescored (scalar quantisation with rescoring, as
//! Qdrant's quantised vectors kept in memory with the originals on disk). A graph on an i8 rung
//! walks the stored rows and carries none.
//!
//! Every section starts on a 64-byte boundary. A row's first word holds its number of links
//! (low 16 bits) and flags (bit 16: the row represents a group of exact copies and
//! near-copies of its vector, listed in the duplicate groups; bit 17: the row is itself such a
//! member and not in the graph).
//! The manifest records the file's length and xxh3-64; the whole file is verified before its
//! graph is first used.

use crate::error::{Error, Result};
use crate::files::{FileRecord, HashingWriter, Reader};
use crate::vectors::{BlockData, RungBlock, i8_scale, quantize};
use std::path::Path;

const MAGIC: &[u8; 8] = b"BRSTGRF1";
const VERSION: u32 = 2;
/// Header flag: the file carries the rows its walks score.
const HAS_ROWS: u32 = 1;
/// Size of the header.
const HEADER: usize = 4096;
/// Alignment of every section.
const ALIGN: u64 = 64;
/// Most levels a graph may have.
pub const MAX_LEVELS: usize = 16;
/// Flag: the row's vector has copies (see the duplicate groups).
pub const HAS_COPIES: u32 = 1 << 16;
/// Flag: the row is a copy of another row's vector and is reached through it.
pub const IS_COPY: u32 = 1 << 17;
/// The link count of a row's first word.
pub const LEN_MASK: u32 = 0xffff;

/// Everything a graph file holds, in memory (what the builder produces).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GraphData {
    /// Rows of the segment.
    pub count: u32,
    /// Dimensions of the rung.
    pub dim: u32,
    /// The rung's layer.
    pub layer: u32,
    /// Links per row above level 0.
    pub m: u32,
    /// Links per row on level 0.
    pub m0: u32,
    /// Where searches start.
    pub entry: u32,
    /// The MIPS reduction's constant (largest norm among the rows, times 1 + 1e-6).
    pub max_norm: f32,
    /// Rows in the graph (one per distinct vector).
    pub nodes: u32,
    /// Level 0: `count × (1 + m0)` words.
    pub level0: Vec<u32>,
    /// Levels 1…: (ascending document numbers, rows of `1 + m` words in the same order).
    pub upper: Vec<(Vec<u32>, Vec<u32>)>,
    /// Representatives of duplicate groups (ascending).
    pub reps: Vec<u32>,
    /// `reps.len() + 1` offsets into `copies`.
    pub offsets: Vec<u32>,
    /// The copies of each group.
    pub copies: Vec<u32>,
    /// The i8 copy of the rung's rows that walks score (graphs on f16 and f32 rungs).
    pub rows: Option<WalkRows>,
}

/// An i8 copy of a rung block's `count × dim` rows: `value[i][j] ≈ scales[j] · data[i·dim + j]`,
/// the largest magnitude of each dimension mapped to 127 (the i8 storage of
/// [`crate::vectors`], whose nDCG@10 and top 10 BENCHMARKS.md compares with f16 and f32).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WalkRows {
    /// One scale per dimension.
    pub scales: Vec<f32>,
    /// The values, row after row.
    pub data: Vec<i8>,
}

impl WalkRows {
    /// The i8 copy of `block`; `None` for a block already stored in i8 (walks read it as is).
    pub fn of(block: &RungBlock<'_>) -> Option<WalkRows> {
        let dim = block.dim;
        let row = |i: usize, out: &mut [f32]| match block.data {
            BlockData::F32(d) => out.copy_from_slice(&d[i * dim..(i + 1) * dim]),
            BlockData::F16(d) => out.iter_mut().zip(&d[i * dim..(i + 1) * dim]).for_each(|(o, v)| *o = v.to_f32()),
            BlockData::I8 { .. } => {}
        };
        if matches!(block.data, BlockData::I8 { .. }) {
            return None;
        }
        let mut values = vec![0f32; dim];
        let mut max = vec![0f32; dim];
        for i in 0..block.count {
            row(i, &mut values);
            max.iter_mut().zip(&values).for_each(|(m, v)| *m = m.max(v.abs()));
        }
        let scales: Vec<f32> = max.into_iter().map(i8_scale).collect();
        let mut data = vec![0i8; block.count * dim];
        for (i, out) in data.chunks_exact_mut(dim.max(1)).enumerate() {
            row(i, &mut values);
            for ((o, &v), &s) in out.iter_mut().zip(&values).zip(&scales) {
                *o = quantize(v, s);
            }
        }
        Some(WalkRows { scales, data })
    }
}

fn bytes_of<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: called for u32, f32 and i8, which have no padding and any byte view of which is
    // valid; u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), size_of_val(v)) }
}

impl GraphData {
    fn sections(&self) -> Vec<&[u8]> {
        let mut s: Vec<&[u8]> = vec![bytes_of(&self.level0)];
        for (ids, rows) in &self.upper {
            s.push(bytes_of(ids));
            s.push(bytes_of(rows));
        }
        s.push(bytes_of(&self.reps));
        s.push(bytes_of(&self.offsets));
        s.push(bytes_of(&self.copies));
        if let Some(rows) = &self.rows {
            s.push(bytes_of(&rows.scales));
            s.push(bytes_of(&rows.data));
        }
        s
    }

    /// Writes the file `dir/name` (which must not exist), synced; returns its record.
    pub fn write(&self, dir: &Path, name: &str) -> Result<FileRecord> {
        let sections = self.sections();
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        // A file without rows is written as version 1, which builds before rows existed read.
        let (version, flags) = if self.rows.is_some() { (VERSION, HAS_ROWS) } else { (1, 0) };
        for v in [version, flags, self.count, self.dim, self.layer, self.m, self.m0] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        let levels = 1 + self.upper.len() as u32;
        for v in [levels, self.entry, self.max_norm.to_bits(), self.nodes].into_iter().chain([
            self.reps.len() as u32,
            self.copies.len() as u32,
            sections.len() as u32,
        ]) {
            header.extend_from_slice(&v.to_le_bytes());
        }
        let mut offset = HEADER as u64;
        for s in &sections {
            let bytes = s.len() as u64;
            header.extend_from_slice(&offset.to_le_bytes());
            header.extend_from_slice(&bytes.to_le_bytes());
            offset = (offset + bytes).next_multiple_of(ALIGN);
        }
        let checksum = xxhash_rust::xxh3::xxh3_64(&header);
        header.extend_from_slice(&checksum.to_le_bytes());
        if header.len() > HEADER {
            return Err(Error::InvalidInput(format!("a graph of {levels} levels does not fit the file header")));
        }
        header.resize(HEADER, 0);
        let mut w = HashingWriter::create(dir, name)?;
        w.write(&header)?;
        for s in &sections {
            w.write(s)?;
            w.pad_to(ALIGN)?;
        }
        w.finish()
    }
}

/// Where a parsed graph file's parts are (byte ranges into the mapped file).
#[derive(Clone, Debug)]
pub struct Layout {
    /// Rows of the segment.
    pub count: u32,
    /// Dimensions of the rung.
    pub dim: u32,
    /// The rung's layer.
    pub layer: u32,
    /// Links per row above level 0.
    pub m: u32,
    /// Links per row on level 0.
    pub m0: u32,
    /// Where searches start.
    pub entry: u32,
    /// The MIPS reduction's constant.
    pub max_norm: f32,
    /// Rows in the graph.
    pub nodes: u32,
    /// Level 0 rows (byte offset, length).
    pub level0: (usize, usize),
    /// Per level above 0: its document numbers and its rows (byte offset, length each).
    pub upper: Vec<((usize, usize), (usize, usize))>,
    /// Duplicate groups' representatives (byte offset, length).
    pub reps: (usize, usize),
    /// Duplicate groups' offsets into the copies (byte offset, length).
    pub offsets: (usize, usize),
    /// Duplicate groups' copies (byte offset, length).
    pub copies: (usize, usize),
    /// The rows walks score, if the file carries them: scales and values (byte offset, length
    /// each).
    pub rows: Option<((usize, usize), (usize, usize))>,
}

impl Layout {
    /// Parses and checks a graph file's header against what the segment says it holds; `path`
    /// names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path, count: u32, dim: u32, layer: u32) -> Result<Layout> {
        let damaged = |m: String| Error::corrupt(path, m);
        let truncated = || damaged("its header is truncated".into());
        let mut r = Reader::new(bytes);
        if r.take(8) != Some(MAGIC.as_slice()) {
            return Err(damaged("it does not start with the graph file signature".into()));
        }
        let mut field = || r.u32().ok_or_else(truncated);
        let version = field()?;
        if version == 0 || version > VERSION {
            return Err(damaged(format!(
                "graph file version {version} is not one this build reads (1 to {VERSION}; a newer Barista wrote it?)"
            )));
        }
        let flags = field()?;
        if version >= 2 && flags & !HAS_ROWS != 0 {
            return Err(damaged(format!(
                "its flags {flags:#x} name features this build does not know (a newer Barista wrote it?)"
            )));
        }
        let has_rows = version >= 2 && flags & HAS_ROWS != 0;
        let row_sections = if has_rows { 2 } else { 0 };
        let (c, d, l, m, m0) = (field()?, field()?, field()?, field()?, field()?);
        let (levels, entry, norm_bits, nodes) = (field()?, field()?, field()?, field()?);
        let (groups, copies, sections) = (field()?, field()?, field()?);
        if (c, d, l) != (count, dim, layer) {
            return Err(damaged(format!(
                "it indexes {c} rows of rung ({l},{d}), the segment has {count} rows of ({layer},{dim})"
            )));
        }
        if levels == 0 || levels as usize > MAX_LEVELS || sections != 2 * levels + 2 + row_sections {
            return Err(damaged(format!("it has {levels} levels and {sections} sections")));
        }
        if m == 0 || m0 == 0 || m > LEN_MASK || m0 > LEN_MASK || nodes > count || (count > 0 && entry >= count) {
            return Err(damaged(format!("its parameters are inconsistent (m {m}, m0 {m0}, entry {entry})")));
        }
        let mut ranges = Vec::with_capacity(sections as usize);
        for i in 0..sections {
            let offset = r.u64().ok_or_else(truncated)?;
            let len = r.u64().ok_or_else(truncated)?;
            let end = offset.checked_add(len).filter(|&e| e <= bytes.len() as u64);
            // Every section holds 4-byte words but the i8 values (the last when there are rows).
            let words = !(has_rows && i + 1 == sections);
            if end.is_none()
                || !offset.is_multiple_of(ALIGN)
                || offset < HEADER as u64
                || (words && !len.is_multiple_of(4))
            {
                return Err(damaged(format!("a section ({offset}, {len} bytes) lies outside the file")));
            }
            ranges.push((offset as usize, len as usize));
        }
        let header_len = r.pos();
        let checksum = r.u64().ok_or_else(truncated)?;
        if xxhash_rust::xxh3::xxh3_64(&bytes[..header_len]) != checksum {
            return Err(damaged("its header checksum does not match".into()));
        }
        let want = |range: (usize, usize), words: u64, what: &str| -> Result<()> {
            if range.1 as u64 != words * 4 {
                return Err(damaged(format!("its {what} section has {} bytes, not {}", range.1, words * 4)));
            }
            Ok(())
        };
        want(ranges[0], u64::from(count) * u64::from(1 + m0), "level-0")?;
        let mut upper = Vec::with_capacity(levels as usize - 1);
        for level in 1..levels as usize {
            let (ids, rows) = (ranges[2 * level - 1], ranges[2 * level]);
            let n = ids.1 as u64 / 4;
            want(rows, n * u64::from(1 + m), &format!("level-{level}"))?;
            upper.push((ids, rows));
        }
        let s = sections as usize - row_sections as usize;
        let rows = if has_rows {
            let (scales, values) = (ranges[s], ranges[s + 1]);
            want(scales, u64::from(dim), "row scales")?;
            if values.1 as u64 != u64::from(count) * u64::from(dim) {
                return Err(damaged(format!("its rows section has {} bytes, not {count} × {dim}", values.1)));
            }
            Some((scales, values))
        } else {
            None
        };
        want(ranges[s - 3], u64::from(groups), "duplicate representatives")?;
        want(ranges[s - 2], u64::from(groups) + 1, "duplicate offsets")?;
        want(ranges[s - 1], u64::from(copies), "duplicate")?;
        Ok(Layout {
            count,
            dim,
            layer,
            m,
            m0,
            entry,
            max_norm: f32::from_bits(norm_bits),
            nodes,
            level0: ranges[0],
            upper,
            reps: ranges[s - 3],
            offsets: ranges[s - 2],
            copies: ranges[s - 1],
            rows,
        })
    }
}

/// The u32 words of `range` of a mapped file (native byte order: the format is little-endian
/// and Barista builds only for little-endian targets).
///
/// # Panics
/// When `range` does not lie inside `bytes` or the words are not 4-byte aligned; neither
/// happens for ranges from [`Layout::parse`] on a memory map (page-aligned, every section
/// offset a multiple of 64).
pub fn section(bytes: &[u8], range: (usize, usize)) -> &[u32] {
    let raw = &bytes[range.0..range.0 + range.1];
    assert!((raw.as_ptr() as usize).is_multiple_of(4), "graph section not 4-byte aligned");
    // SAFETY: aligned (checked above), in bounds (sliced), and every bit pattern is a valid u32.
    unsafe { std::slice::from_raw_parts(raw.as_ptr().cast(), raw.len() / 4) }
}

/// The f32 values of `range` (see [`section`]; the same alignment holds).
pub fn section_f32(bytes: &[u8], range: (usize, usize)) -> &[f32] {
    let words = section(bytes, range);
    // SAFETY: the same memory as `words`, and every bit pattern is a valid f32.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast(), words.len()) }
}

/// The i8 values of `range`.
///
/// # Panics
/// When `range` does not lie inside `bytes`.
pub fn section_i8(bytes: &[u8], range: (usize, usize)) -> &[i8] {
    let raw = &bytes[range.0..range.0 + range.1];
    // SAFETY: i8 has the size and alignment of u8 and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(raw.as_ptr().cast(), raw.len()) }
}

#[cfg(target_endian = "big")]
compile_error!(
    "Barista's graph and vector files are little-endian and read in place: build for a little-endian target"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rows: bool) -> GraphData {
        GraphData {
            count: 3,
            dim: 2,
            layer: 1,
            m: 2,
            m0: 4,
            entry: 0,
            max_norm: 1.0,
            nodes: 3,
            level0: vec![2, 1, 2, 0, 0, 2, 0, 2, 0, 0, 2, 0, 1, 0, 0],
            upper: Vec::new(),
            reps: Vec::new(),
            offsets: vec![0],
            copies: Vec::new(),
            rows: rows.then(|| WalkRows { scales: vec![0.5, 0.25], data: vec![1, -2, 3, 4, -127, 127] }),
        }
    }

    fn written(d: &GraphData) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        d.write(dir.path(), "g.graph").unwrap();
        std::fs::read(dir.path().join("g.graph")).unwrap()
    }

    /// Sets the header's version, flags and its checksum (a header of `sections` sections).
    fn with_version(mut bytes: Vec<u8>, version: u32, flags: u32, sections: usize) -> Vec<u8> {
        bytes[8..12].copy_from_slice(&version.to_le_bytes());
        bytes[12..16].copy_from_slice(&flags.to_le_bytes());
        let end = 8 + 14 * 4 + 16 * sections;
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..end]);
        bytes[end..end + 8].copy_from_slice(&sum.to_le_bytes());
        bytes
    }

    #[test]
    fn rows_are_written_and_parsed_and_version_1_files_still_read() {
        let path = Path::new("g.graph");
        let with = written(&data(true));
        let l = Layout::parse(&with, path, 3, 2, 1).unwrap();
        let (scales, values) = l.rows.unwrap();
        assert_eq!(section_f32(&with, scales), &[0.5, 0.25]);
        assert_eq!(section_i8(&with, values), &[1, -2, 3, 4, -127, 127]);
        assert_eq!(with[8..16], [2, 0, 0, 0, 1, 0, 0, 0], "version 2 with rows");
        // Without rows it is written as version 1 (no flags), as builds before rows wrote it
        // and read it, and it parses without rows.
        let old = written(&data(false));
        assert_eq!(old[8..16], [1, 0, 0, 0, 0, 0, 0, 0]);
        let l = Layout::parse(&old, path, 3, 2, 1).unwrap();
        assert!(l.rows.is_none());
        assert_eq!(section(&old, l.level0), data(false).level0.as_slice());
        // A version, or a flag, this build does not know is refused with what to do.
        let future = with_version(written(&data(false)), 3, 0, 4);
        let err = Layout::parse(&future, path, 3, 2, 1).unwrap_err().to_string();
        assert!(err.contains("version 3") && err.contains("newer"), "{err}");
        let flagged = with_version(written(&data(true)), 2, 3, 6);
        let err = Layout::parse(&flagged, path, 3, 2, 1).unwrap_err().to_string();
        assert!(err.contains("flags 0x3") && err.contains("newer"), "{err}");
    }

    #[test]
    fn rows_of_the_wrong_size_are_reported() {
        let mut d = data(true);
        d.rows.as_mut().unwrap().data.pop();
        let err = Layout::parse(&written(&d), Path::new("g.graph"), 3, 2, 1).unwrap_err().to_string();
        assert!(err.contains("rows section has 5 bytes, not 3 × 2"), "{err}");
    }
}
