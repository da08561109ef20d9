//! Rung blocks: the vector file of a segment.
//!
//! ```text
//! header (4,096 bytes): "BRSTVEC1", version u32, rung count u32, document count u64,
//!                       per rung: layer u32, dim u32, element u32, 0 u32, offset u64, bytes u64,
//!                       xxh3-64 of everything before it; zero padding
//! block 0 (smallest rung): count × dim values, row-major, starting on a 4,096-byte boundary
//! block 1 …
//! ```
//!
//! Blocks come smallest rung first, so coarse work touches a small, contiguous prefix of the file.
//! An i8 block starts with its `dim` f32 scales (padded to 64 bytes), then the `count × dim`
//! bytes.

use crate::config::{ElementType, StoredRung};
use crate::error::{Error, Result};
use crate::files::{FileRecord, HashingWriter, Reader, advise_random, map};
use half::f16;
use memmap2::Mmap;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"BRSTVEC1";
const VERSION: u32 = 1;
/// Size of the header and alignment of every block.
pub const BLOCK_ALIGN: u64 = 4096;

/// The values of one rung block, in their stored type.
#[derive(Clone, Copy, Debug)]
pub enum BlockData<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// f16 values.
    F16(&'a [f16]),
    /// Quantised values: `value[i][j] ≈ scales[j] · data[i * dim + j]`.
    I8 {
        /// The bytes.
        data: &'a [i8],
        /// One scale per dimension.
        scales: &'a [f32],
    },
}

/// A `count × dim` block of one rung's vectors.
#[derive(Clone, Copy, Debug)]
pub struct RungBlock<'a> {
    /// The values.
    pub data: BlockData<'a>,
    /// Values per row.
    pub dim: usize,
    /// Rows.
    pub count: usize,
}

impl<'a> RungBlock<'a> {
    /// Row `i` as f32 (allocates for f16 blocks; for tests and tools, not hot paths).
    pub fn row_f32(&self, i: usize) -> Vec<f32> {
        match self.data {
            BlockData::F32(d) => d[i * self.dim..(i + 1) * self.dim].to_vec(),
            BlockData::F16(d) => d[i * self.dim..(i + 1) * self.dim].iter().map(|v| v.to_f32()).collect(),
            BlockData::I8 { data, scales } => {
                data[i * self.dim..(i + 1) * self.dim].iter().zip(scales).map(|(&v, s)| f32::from(v) * s).collect()
            }
        }
    }
}

/// Writes a vector file: `blocks[r]` holds `count × rungs[r].rung.dim` f32 values, stored as
/// `rungs[r].element`.
pub fn write(dir: &Path, name: &str, rungs: &[StoredRung], count: usize, blocks: &[&[f32]]) -> Result<FileRecord> {
    assert_eq!(rungs.len(), blocks.len(), "one block per stored rung");
    let mut header = Vec::with_capacity(BLOCK_ALIGN as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(rungs.len() as u32).to_le_bytes());
    header.extend_from_slice(&(count as u64).to_le_bytes());
    let mut offset = BLOCK_ALIGN;
    for (r, block) in rungs.iter().zip(blocks) {
        let bytes = block_bytes(r, count) as u64;
        assert_eq!(block.len(), count * r.rung.dim, "block of rung {} has the wrong length", r.rung);
        header.extend_from_slice(&(r.rung.layer as u32).to_le_bytes());
        header.extend_from_slice(&(r.rung.dim as u32).to_le_bytes());
        header.extend_from_slice(&(element_code(r.element)).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        header.extend_from_slice(&bytes.to_le_bytes());
        offset = (offset + bytes).next_multiple_of(BLOCK_ALIGN);
    }
    let checksum = xxhash_rust::xxh3::xxh3_64(&header);
    header.extend_from_slice(&checksum.to_le_bytes());
    if header.len() as u64 > BLOCK_ALIGN {
        return Err(Error::InvalidInput(format!("too many stored rungs ({})", rungs.len())));
    }
    let mut w = HashingWriter::create(dir, name)?;
    w.write(&header)?;
    w.pad_to(BLOCK_ALIGN)?;
    let mut buffer = Vec::new();
    for (r, block) in rungs.iter().zip(blocks) {
        match r.element {
            ElementType::F32 => {
                for chunk in block.chunks(1 << 16) {
                    buffer.clear();
                    buffer.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                    w.write(&buffer)?;
                }
            }
            ElementType::F16 => {
                for chunk in block.chunks(1 << 16) {
                    buffer.clear();
                    buffer.extend(chunk.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()));
                    w.write(&buffer)?;
                }
            }
            ElementType::I8 => {
                let dim = r.rung.dim;
                let scales = i8_scales(block, dim);
                buffer.clear();
                buffer.extend(scales.iter().flat_map(|s| s.to_le_bytes()));
                w.write(&buffer)?;
                w.pad_to(64)?;
                for rows in block.chunks(dim * 4096) {
                    buffer.clear();
                    for row in rows.chunks_exact(dim) {
                        buffer.extend(row.iter().zip(&scales).map(|(v, s)| quantize(*v, *s) as u8));
                    }
                    w.write(&buffer)?;
                }
            }
        }
        w.pad_to(BLOCK_ALIGN)?;
    }
    w.finish()
}

fn element_code(e: ElementType) -> u32 {
    match e {
        ElementType::F32 => 0,
        ElementType::F16 => 1,
        ElementType::I8 => 2,
    }
}

/// Bytes of a rung block (for i8: the scales, padded to 64, then the bytes).
fn block_bytes(r: &StoredRung, count: usize) -> usize {
    match r.element {
        ElementType::I8 => (r.rung.dim * 4).next_multiple_of(64) + count * r.rung.dim,
        other => count * r.rung.dim * other.size(),
    }
}

/// Per-dimension scales of a block for i8 storage: the largest magnitude maps to 127.
pub fn i8_scales(block: &[f32], dim: usize) -> Vec<f32> {
    let mut scales = vec![0f32; dim];
    for row in block.chunks_exact(dim) {
        for (s, v) in scales.iter_mut().zip(row) {
            *s = s.max(v.abs());
        }
    }
    scales.into_iter().map(i8_scale).collect()
}

/// The i8 scale of a dimension whose largest magnitude is `max_abs` (it maps to 127; an
/// all-zero dimension gets 1).
pub fn i8_scale(max_abs: f32) -> f32 {
    if max_abs > 0.0 { max_abs / 127.0 } else { 1.0 }
}

/// One value in i8 with scale `s`.
pub fn quantize(v: f32, s: f32) -> i8 {
    (v / s).round().clamp(-127.0, 127.0) as i8
}

/// A mapped vector file.
#[derive(Debug)]
pub struct VectorFile {
    map: Mmap,
    blocks: Vec<(usize, usize, ElementType, usize)>, // (offset, dim, element, bytes)
    count: usize,
    path: PathBuf,
}

impl VectorFile {
    /// Maps the file and checks its header against what the manifest says it holds.
    pub fn open(dir: &Path, record: &FileRecord, rungs: &[StoredRung], count: usize) -> Result<VectorFile> {
        let path = dir.join(&record.name);
        let map = map(dir, record)?;
        let damaged = |m: String| Error::corrupt(&path, m);
        let mut r = Reader::new(&map);
        if r.take(8) != Some(MAGIC.as_slice()) {
            return Err(damaged("it does not start with the vector file signature".into()));
        }
        let version = r.u32().ok_or_else(|| damaged("the header is truncated".into()))?;
        if version != VERSION {
            return Err(damaged(format!("vector file version {version} is not {VERSION}")));
        }
        let n = r.u32().ok_or_else(|| damaged("the header is truncated".into()))? as usize;
        let stored_count = r.u64().ok_or_else(|| damaged("the header is truncated".into()))?;
        if n != rungs.len() || stored_count != count as u64 {
            return Err(damaged(format!(
                "it holds {n} rungs × {stored_count} documents, the manifest expects {} × {count}",
                rungs.len()
            )));
        }
        let mut blocks = Vec::with_capacity(n);
        for expected in rungs {
            let mut field = || r.u32().ok_or_else(|| damaged("the header is truncated".into()));
            let (layer, dim, element, _) = (field()?, field()?, field()?, field()?);
            let offset = r.u64().ok_or_else(|| damaged("the header is truncated".into()))?;
            let bytes = r.u64().ok_or_else(|| damaged("the header is truncated".into()))?;
            let element = match element {
                0 => ElementType::F32,
                1 => ElementType::F16,
                2 => ElementType::I8,
                other => return Err(damaged(format!("unknown element type {other}"))),
            };
            if layer as usize != expected.rung.layer || dim as usize != expected.rung.dim || element != expected.element
            {
                return Err(damaged(format!(
                    "a block holds ({layer},{dim}) {element}, the manifest expects {} {}",
                    expected.rung, expected.element
                )));
            }
            let want = block_bytes(expected, count) as u64;
            let end = offset.checked_add(bytes);
            if bytes != want || !offset.is_multiple_of(BLOCK_ALIGN) || end.is_none_or(|e| e > map.len() as u64) {
                return Err(damaged(format!(
                    "the block of rung {} lies outside the file or has the wrong size",
                    expected.rung
                )));
            }
            blocks.push((offset as usize, dim as usize, element, bytes as usize));
        }
        let header_len = r.pos();
        let checksum = r.u64().ok_or_else(|| damaged("the header is truncated".into()))?;
        if xxhash_rust::xxh3::xxh3_64(&map[..header_len]) != checksum {
            return Err(damaged("the header checksum does not match".into()));
        }
        Ok(VectorFile { map, blocks, count, path })
    }

    /// Block `i` (in stored-rung order).
    pub fn block(&self, i: usize) -> RungBlock<'_> {
        let (offset, dim, element, bytes) = self.blocks[i];
        let raw = &self.map[offset..offset + bytes];
        // SAFETY: mappings are page-aligned and blocks start on 4,096-byte boundaries (checked on
        // open), so the pointer is aligned for f32 and f16; every bit pattern is a valid float.
        let data = unsafe {
            match element {
                ElementType::F32 => BlockData::F32(std::slice::from_raw_parts(raw.as_ptr().cast(), bytes / 4)),
                ElementType::F16 => BlockData::F16(std::slice::from_raw_parts(raw.as_ptr().cast(), bytes / 2)),
                ElementType::I8 => {
                    let scales_bytes = (dim * 4).next_multiple_of(64);
                    BlockData::I8 {
                        scales: std::slice::from_raw_parts(raw.as_ptr().cast(), dim),
                        data: std::slice::from_raw_parts(raw.as_ptr().add(scales_bytes).cast(), bytes - scales_bytes),
                    }
                }
            }
        };
        RungBlock { data, dim, count: self.count }
    }

    /// Advises the kernel that block `i` is read at random (it has a graph: walks and reranks
    /// touch scattered rows); see [`advise_random`]. An exhaustive scan of it then reads page by
    /// page when the pages are not cached.
    pub fn advise_random(&self, i: usize) {
        let (offset, _, _, bytes) = self.blocks[i];
        advise_random(&self.map, offset, bytes);
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rung::Rung;

    fn rungs() -> Vec<StoredRung> {
        vec![
            StoredRung { rung: Rung::new(1, 4), element: ElementType::F16 },
            StoredRung { rung: Rung::new(2, 8), element: ElementType::F32 },
            StoredRung { rung: Rung::new(3, 8), element: ElementType::I8 },
        ]
    }

    #[test]
    fn blocks_round_trip_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..24).map(|i| -(i as f32)).collect();
        let c: Vec<f32> = (0..24).map(|i| (i as f32 - 12.0) * 0.25).collect();
        let record = write(dir.path(), "v", &rungs(), 3, &[&a, &b, &c]).unwrap();
        let file = VectorFile::open(dir.path(), &record, &rungs(), 3).unwrap();
        let block0 = file.block(0);
        assert!(matches!(block0.data, BlockData::F16(d) if (d.as_ptr() as usize).is_multiple_of(4096)));
        assert_eq!(block0.row_f32(2), vec![4.0, 4.5, 5.0, 5.5]);
        assert_eq!(file.block(1).row_f32(1), b[8..16].to_vec());
        // i8: within half a quantisation step of the original.
        let block2 = file.block(2);
        assert!(matches!(block2.data, BlockData::I8 { scales, .. } if scales.len() == 8));
        for row in 0..3 {
            for (got, want) in block2.row_f32(row).iter().zip(&c[row * 8..(row + 1) * 8]) {
                assert!((got - want).abs() <= 3.0 / 127.0 / 2.0 + 1e-6, "{got} vs {want}");
            }
        }
        // The manifest's expectations are enforced.
        assert!(VectorFile::open(dir.path(), &record, &rungs(), 4).unwrap_err().to_string().contains("damaged"));
        let mut other = rungs();
        other[0].element = ElementType::F32;
        assert!(VectorFile::open(dir.path(), &record, &other, 3).is_err());
    }
}
