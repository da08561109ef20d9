//! The mutable segment: documents written since the last flush, held in memory and searched at
//! once (Qdrant's "appendable segment", Lucene's in-memory buffer made searchable).
//!
//! Every row is appended once and never changes; a snapshot sees the first `rows` rows it was
//! published with, while the writer keeps appending after them (see [`crate::append`]). Rung
//! blocks are kept as the scan kernels read them: an f16 rung in f16 (exactly the values its
//! segment file will hold), every other rung in f32 (i8 rungs are quantised only when the
//! segment is flushed, with scales fitted to all its rows), so a search scores these rows
//! exactly at every rung the cascade asks for. Deletions are the writer's tombstones, as for
//! any segment. When it reaches its capacity (or age) the writer freezes it and a background
//! flush writes it as an immutable segment.

use crate::append::{AppendBuffer, Full};
use crate::config::{ElementType, IndexConfig};
use crate::document::NewDocument;
use crate::filter::{Filter, Mask, canonical};
use crate::ids::id_hash;
use crate::store::StoredDoc;
use crate::vectors::{BlockData, RungBlock};
use half::f16;
use serde_json::{Map, Value};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
enum MemBlock {
    F32(AppendBuffer<f32>),
    F16(AppendBuffer<f16>),
}

#[derive(Debug)]
struct MemDoc {
    id: String,
    title: Option<String>,
    text: Option<String>,
    metadata: Option<String>,
    fields: Option<Map<String, Value>>,
}

/// See the module docs.
#[derive(Debug)]
pub struct MutableSegment {
    id: u64,
    capacity: usize,
    dims: Vec<usize>,
    blocks: Vec<MemBlock>,
    hashes: AppendBuffer<u64>,
    docs: Box<[OnceLock<MemDoc>]>,
    /// Bytes of ids, texts and metadata appended.
    field_bytes: AtomicUsize,
}

impl MutableSegment {
    /// An empty segment numbered `id` (the number its flushed files will have), with room for
    /// `capacity` documents of an index configured with `config`.
    pub(crate) fn new(id: u64, config: &IndexConfig, capacity: usize) -> MutableSegment {
        let blocks = config
            .rungs
            .iter()
            .map(|r| match r.element {
                ElementType::F16 => MemBlock::F16(AppendBuffer::with_capacity(capacity * r.rung.dim)),
                ElementType::F32 | ElementType::I8 => MemBlock::F32(AppendBuffer::with_capacity(capacity * r.rung.dim)),
            })
            .collect();
        MutableSegment {
            id,
            capacity,
            dims: config.rungs.iter().map(|r| r.rung.dim).collect(),
            blocks,
            hashes: AppendBuffer::with_capacity(capacity),
            docs: (0..capacity).map(|_| OnceLock::new()).collect(),
            field_bytes: AtomicUsize::new(0),
        }
    }

    /// Segment number.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Rows appended.
    pub fn rows(&self) -> usize {
        self.hashes.len()
    }

    /// Rows it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of ids, texts and metadata held.
    pub fn field_bytes(&self) -> usize {
        self.field_bytes.load(Ordering::Relaxed)
    }

    /// Bytes held in memory (vectors as kept, plus fields).
    pub fn bytes(&self) -> usize {
        let vectors: usize = self
            .blocks
            .iter()
            .map(|b| match b {
                MemBlock::F32(v) => v.len() * 4,
                MemBlock::F16(v) => v.len() * 2,
            })
            .sum();
        vectors + self.rows() * 8 + self.field_bytes()
    }

    /// Appends a document; returns its row. Only the writer appends (one at a time).
    pub(crate) fn push(&self, doc: &NewDocument) -> Result<u32, Full> {
        let row = self.rows();
        if row >= self.capacity {
            return Err(Full);
        }
        for ((block, v), &dim) in self.blocks.iter().zip(&doc.vectors).zip(&self.dims) {
            debug_assert_eq!(v.len(), dim);
            match block {
                MemBlock::F32(b) => b.push(v)?,
                MemBlock::F16(b) => {
                    let rounded: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
                    b.push(&rounded)?;
                }
            }
        }
        let stored = MemDoc {
            id: doc.id.clone(),
            title: doc.title.clone(),
            text: doc.text.clone(),
            metadata: doc.metadata.clone(),
            fields: doc.fields.clone(),
        };
        let bytes = stored.id.len()
            + stored.title.as_ref().map_or(0, String::len)
            + stored.text.as_ref().map_or(0, String::len)
            + stored.metadata.as_ref().map_or(0, String::len);
        // Fields first, then the hash: a row exists for readers once its hash is published.
        let _ = self.docs[row].set(stored);
        self.field_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.hashes.push(&[id_hash(&doc.id)])?;
        Ok(row as u32)
    }

    /// The first `rows` rows of the `rung`-th stored rung.
    pub fn block(&self, rung: usize, rows: usize) -> RungBlock<'_> {
        let dim = self.dims[rung];
        let rows = rows.min(self.rows());
        let data = match &self.blocks[rung] {
            MemBlock::F32(b) => BlockData::F32(b.prefix(rows * dim)),
            MemBlock::F16(b) => BlockData::F16(b.prefix(rows * dim)),
        };
        RungBlock { data, dim, count: rows }
    }

    /// The stored fields of row `row` (which must be below [`MutableSegment::rows`]).
    pub fn doc(&self, row: u32) -> Option<StoredDoc<'_>> {
        self.docs.get(row as usize)?.get().map(|d| StoredDoc {
            id: &d.id,
            title: d.title.as_deref(),
            text: d.text.as_deref(),
            metadata: d.metadata.as_deref(),
        })
    }

    /// The rows among the first `rows` holding `id` (deleted ones included).
    pub fn find(&self, id: &str, rows: usize) -> Vec<u32> {
        let hash = id_hash(id);
        self.hashes
            .prefix(rows)
            .iter()
            .enumerate()
            .filter(|&(row, &h)| h == hash && self.doc(row as u32).is_some_and(|d| d.id == id))
            .map(|(row, _)| row as u32)
            .collect()
    }

    /// Which of the first `rows` rows match every condition of `filter` (deleted ones
    /// included), as one bit per row.
    pub fn matching(&self, filter: &Filter, rows: usize) -> Mask {
        let rows = rows.min(self.rows());
        let wanted: Vec<(&str, Vec<String>)> = filter
            .conditions()
            .iter()
            .map(|(k, values)| (k.as_str(), values.iter().map(canonical).collect()))
            .collect();
        let mut mask = Mask::repeat(false, rows);
        for row in 0..rows {
            let fields = self.docs[row].get().and_then(|d| d.fields.as_ref());
            let matches = wanted.iter().all(|(key, values)| {
                let Some(value) = fields.and_then(|f| f.get(*key)) else { return false };
                let hit = |v: &Value| values.contains(&canonical(v));
                hit(value) || matches!(value, Value::Array(items) if items.iter().any(hit))
            });
            mask.set(row, matches);
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GraphParams, StoredRung};
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

    #[test]
    fn rows_are_stored_as_the_kernels_read_them() {
        let c = config();
        let m = MutableSegment::new(7, &c, 2);
        let doc = |id: &str, meta: &str, x: f32| {
            NewDocument::new(&c, id.into(), None, Some(meta.into()), vec![vec![x, 1.0], vec![x, 0.1, 3.0]]).unwrap()
        };
        assert_eq!(m.push(&doc("a", r#"{"tag": ["x", "y"]}"#, 0.5)).unwrap(), 0);
        let before = m.block(1, 1);
        assert_eq!(m.push(&doc("b", r#"{"tag": "y"}"#, 0.25)).unwrap(), 1);
        assert_eq!(m.push(&doc("c", "{}", 0.0)), Err(Full));
        assert_eq!(before.count, 1, "a published view keeps its rows");
        assert!(matches!(m.block(0, 2).data, BlockData::F32(v) if v == [0.5, 1.0, 0.25, 1.0]));
        assert!(matches!(m.block(1, 2).data, BlockData::F16(v) if v[1] == f16::from_f32(0.1)));
        assert_eq!(m.find("b", 2), vec![1]);
        assert!(m.find("b", 1).is_empty(), "rows beyond the view are not seen");
        assert_eq!(m.doc(0).unwrap().metadata, Some(r#"{"tag": ["x", "y"]}"#));
        let f = |j: Value| Filter::from_json(j.as_object().unwrap()).unwrap();
        assert_eq!(m.matching(&f(serde_json::json!({"tag": "x"})), 2).iter_ones().collect::<Vec<_>>(), vec![0]);
        assert_eq!(m.matching(&f(serde_json::json!({"tag": "y"})), 2).count_ones(), 2);
        assert_eq!(m.matching(&f(serde_json::json!({"other": "y"})), 2).count_ones(), 0);
        assert!(m.bytes() > 0 && m.field_bytes() > 0);
    }
}
