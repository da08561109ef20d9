//! One immutable segment: its rung blocks, document store, id table and graph, opened from the
//! files its manifest record names.

use crate::config::IndexConfig;
use crate::error::{Error, Result};
use crate::filter::{Filter, KeyIndex, Mask, canonical, index_value};
use crate::graph::SegmentGraph;
use crate::ids::IdTable;
use crate::manifest::SegmentRecord;
use crate::scan::Kernels;
use crate::store::{DocStore, StoredDoc};
use crate::vectors::{RungBlock, VectorFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// File-name stem of segment `id`.
pub fn basename(id: u64) -> String {
    format!("seg-{id:06}")
}

/// An open segment (without its tombstones, which change between commits).
#[derive(Debug)]
pub struct Segment {
    id: u64,
    docs: u32,
    vectors: VectorFile,
    store: DocStore,
    ids: IdTable,
    /// Loaded on first use (or by [`Segment::load_graph`]): opening an index maps its files and
    /// reads nothing else it does not need.
    graph: OnceLock<SegmentGraph>,
    graph_loading: Mutex<()>,
    graph_source: GraphSource,
    /// Metadata values indexed per key, built on the first filter that uses the key.
    metadata: Mutex<HashMap<String, Arc<KeyIndex>>>,
}

#[derive(Debug)]
struct GraphSource {
    dir: PathBuf,
    records: Vec<crate::files::FileRecord>,
    dim: usize,
    max_norm: f32,
    kernels: Kernels,
}

impl Segment {
    /// Opens the segment a manifest record describes.
    pub fn open(dir: &Path, record: &SegmentRecord, config: &IndexConfig, kernels: Kernels) -> Result<Segment> {
        let count = record.docs as usize;
        let vectors = VectorFile::open(dir, &record.vectors, &config.rungs, count)?;
        let store = DocStore::open(dir, &record.store, count)?;
        let ids = IdTable::open(dir, &record.ids, count)?;
        Ok(Segment {
            id: record.id,
            docs: record.docs,
            vectors,
            store,
            ids,
            graph: OnceLock::new(),
            graph_loading: Mutex::new(()),
            graph_source: GraphSource::new(dir, record, config, kernels),
            metadata: Mutex::new(HashMap::new()),
        })
    }

    /// Assembles a segment that was just written (its graph, if it has one, already in memory).
    pub(crate) fn from_parts(
        dir: &Path,
        record: &SegmentRecord,
        config: &IndexConfig,
        graph: Option<SegmentGraph>,
        kernels: Kernels,
    ) -> Result<Segment> {
        let count = record.docs as usize;
        Ok(Segment {
            id: record.id,
            docs: record.docs,
            vectors: VectorFile::open(dir, &record.vectors, &config.rungs, count)?,
            store: DocStore::open(dir, &record.store, count)?,
            ids: IdTable::open(dir, &record.ids, count)?,
            graph: graph.map_or_else(OnceLock::new, OnceLock::from),
            graph_loading: Mutex::new(()),
            graph_source: GraphSource::new(dir, record, config, kernels),
            metadata: Mutex::new(HashMap::new()),
        })
    }

    /// Segment number.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Documents, deleted ones included.
    pub fn docs(&self) -> u32 {
        self.docs
    }

    /// The block of the `rung`-th stored rung.
    pub fn block(&self, rung: usize) -> RungBlock<'_> {
        self.vectors.block(rung)
    }

    /// A stored document.
    pub fn doc(&self, doc: u32) -> Result<StoredDoc<'_>> {
        self.store.get(doc)
    }

    /// The document numbers holding `id` (deleted ones included).
    pub fn find(&self, id: &str) -> Result<Vec<u32>> {
        let mut found = Vec::new();
        for doc in self.ids.candidates(id) {
            if self.store.get(doc)?.id == id {
                found.push(doc);
            }
        }
        Ok(found)
    }

    /// Whether the segment has a graph (segments below the graph's `min_docs` have none).
    pub fn has_graph(&self) -> bool {
        !self.graph_source.records.is_empty()
    }

    /// The graph, loaded (and verified) on first use; `None` for a segment without one.
    pub fn graph(&self) -> Result<Option<&SegmentGraph>> {
        if !self.has_graph() {
            return Ok(None);
        }
        if let Some(graph) = self.graph.get() {
            return Ok(Some(graph));
        }
        let _loading = self.graph_loading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(graph) = self.graph.get() {
            return Ok(Some(graph));
        }
        let g = &self.graph_source;
        if g.records.iter().any(|r| !g.dir.join(&r.name).exists()) && !g.dir.join(crate::manifest::MANIFEST).exists() {
            return Err(Error::Incompatible { path: g.dir.clone(), message: "the index directory is gone".into() });
        }
        if let Some(missing) = g.records.iter().find(|r| !g.dir.join(&r.name).exists())
            && crate::manifest::Manifest::read(&g.dir).is_ok_and(|m| !m.segments.iter().any(|s| s.id == self.id))
        {
            return Err(Error::InvalidInput(format!(
                "segment {} was replaced by a later commit (its graph {} is gone) before this snapshot loaded it; \
                 search a current snapshot (Index::reload, or open the index again)",
                self.id, missing.name
            )));
        }
        let graph = SegmentGraph::load(
            &g.dir,
            &basename(self.id),
            &g.records,
            g.dim,
            self.docs as usize,
            g.max_norm,
            g.kernels,
        )?;
        Ok(Some(self.graph.get_or_init(|| graph)))
    }

    /// The documents whose metadata matches every condition of `filter`.
    pub fn matching(&self, filter: &Filter) -> Result<Mask> {
        let docs = self.docs as usize;
        let mut mask = Mask::repeat(true, docs);
        for (key, values) in filter.conditions() {
            let index = self.key_index(key)?;
            let mut any = Mask::repeat(false, docs);
            for value in values {
                if let Some(bits) = index.get(&canonical(value)) {
                    any |= bits;
                }
            }
            mask &= any;
        }
        Ok(mask)
    }

    fn key_index(&self, key: &str) -> Result<Arc<KeyIndex>> {
        let mut cache = self.metadata.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = cache.get(key) {
            return Ok(Arc::clone(index));
        }
        let mut index = KeyIndex::new();
        for doc in 0..self.docs {
            if let Some(metadata) = self.store.get(doc)?.metadata {
                index_value(&mut index, self.docs as usize, doc, metadata, key);
            }
        }
        let index = Arc::new(index);
        cache.insert(key.to_string(), Arc::clone(&index));
        Ok(index)
    }

    /// Whether the graph is in memory.
    pub fn graph_loaded(&self) -> bool {
        self.graph.get().is_some()
    }
}

impl GraphSource {
    fn new(dir: &Path, record: &SegmentRecord, config: &IndexConfig, kernels: Kernels) -> GraphSource {
        GraphSource {
            dir: dir.to_path_buf(),
            records: record.graph.clone(),
            dim: config.graph_rung().dim,
            max_norm: record.graph_max_norm,
            kernels,
        }
    }
}
