//! The graph file: a segment's HNSW links stored flat, searched in place through a memory map.
//!
//! ```text
//! header (4,096 bytes, little-endian):
//!   "BRSTGRF1", version u32 (1), 0 u32,
//!   count u32 (rows of the segment), dim u32, layer u32 (the rung's), m u32, m0 u32,
//!   levels u32 (≥ 1), entry u32, max_norm f32 (bits), nodes u32 (rows in the graph),
//!   groups u32, copies u32, sections u32,
//!   per section: offset u64, bytes u64,
//!   xxh3-64 of everything before it; zero padding
//! section 0: level 0, count rows of 1 + m0 u32: [links | flags << 16, link…]
//! sections 1 + 2(l − 1), 2 + 2(l − 1), for each level l ≥ 1: its rows' document numbers
//!   (ascending u32), then its rows of 1 + m u32
//! the last three: duplicate groups — representatives (ascending u32), offsets (groups + 1
//!   u32), copies (u32)
//! ```
//!
//! Every section starts on a 64-byte boundary. A row's first word holds its number of links
//! (low 16 bits) and flags (bit 16: the row represents a group of exact copies and
//! near-copies of its vector, listed in the duplicate groups; bit 17: the row is itself such a
//! member and not in the graph).
//! The manifest records the file's length and xxh3-64; the whole file is verified before its
//! graph is first used.

use crate::error::{Error, Result};
use crate::files::{FileRecord, HashingWriter, Reader};
use std::path::Path;

const MAGIC: &[u8; 8] = b"BRSTGRF1";
const VERSION: u32 = 1;
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
}

fn words(v: &[u32]) -> &[u8] {
    // SAFETY: u32 has no padding and any byte view of it is valid; u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), size_of_val(v)) }
}

impl GraphData {
    fn sections(&self) -> Vec<&[u32]> {
        let mut s: Vec<&[u32]> = vec![&self.level0];
        for (ids, rows) in &self.upper {
            s.push(ids);
            s.push(rows);
        }
        s.push(&self.reps);
        s.push(&self.offsets);
        s.push(&self.copies);
        s
    }

    /// Writes the file `dir/name` (which must not exist), synced; returns its record.
    pub fn write(&self, dir: &Path, name: &str) -> Result<FileRecord> {
        let sections = self.sections();
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        for v in [VERSION, 0, self.count, self.dim, self.layer, self.m, self.m0] {
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
            let bytes = size_of_val(*s) as u64;
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
            w.write(words(s))?;
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
        if version != VERSION {
            return Err(damaged(format!("graph file version {version} is not {VERSION}")));
        }
        let _ = field()?;
        let (c, d, l, m, m0) = (field()?, field()?, field()?, field()?, field()?);
        let (levels, entry, norm_bits, nodes) = (field()?, field()?, field()?, field()?);
        let (groups, copies, sections) = (field()?, field()?, field()?);
        if (c, d, l) != (count, dim, layer) {
            return Err(damaged(format!(
                "it indexes {c} rows of rung ({l},{d}), the segment has {count} rows of ({layer},{dim})"
            )));
        }
        if levels == 0 || levels as usize > MAX_LEVELS || sections != 2 * levels + 2 {
            return Err(damaged(format!("it has {levels} levels and {sections} sections")));
        }
        if m == 0 || m0 == 0 || m > LEN_MASK || m0 > LEN_MASK || nodes > count || (count > 0 && entry >= count) {
            return Err(damaged(format!("its parameters are inconsistent (m {m}, m0 {m0}, entry {entry})")));
        }
        let mut ranges = Vec::with_capacity(sections as usize);
        for _ in 0..sections {
            let offset = r.u64().ok_or_else(truncated)?;
            let len = r.u64().ok_or_else(truncated)?;
            let end = offset.checked_add(len).filter(|&e| e <= bytes.len() as u64);
            if end.is_none() || !offset.is_multiple_of(ALIGN) || offset < HEADER as u64 || !len.is_multiple_of(4) {
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
        let s = sections as usize;
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

#[cfg(target_endian = "big")]
compile_error!(
    "Barista's graph and vector files are little-endian and read in place: build for a little-endian target"
);
