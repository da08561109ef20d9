//! One immutable segment: its rung blocks, document store, id table and graph, opened from the
//! files its manifest record names.

use crate::config::IndexConfig;
use crate::error::{Error, Result};
use crate::filter::{Filter, KeyIndex, Mask, canonical, index_value};
use crate::graph::SegmentGraph;
use crate::ids::IdTable;
use crate::manifest::SegmentRecord;
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
    /// One per graph rung of the configuration (empty where the segment has no graph on it),
    /// mapped and verified on first use (or by [`Segment::load_graphs`] at open): opening an
    /// index maps its files and reads nothing else it does not need.
    graphs: Vec<OnceLock<Loaded>>,
    graph_loading: Mutex<()>,
    graph_source: GraphSource,
    /// Metadata values indexed per key, built on the first filter that uses the key.
    metadata: Mutex<HashMap<String, Arc<KeyIndex>>>,
}

/// A graph slot once its file was looked at.
#[derive(Debug)]
enum Loaded {
    Graph(SegmentGraph),
    /// The file failed its checks (checksum, length, header, or missing): never used; the
    /// segment is scanned and a writer builds the graph again from the stored rows.
    Damaged(DamagedGraph),
}

impl Loaded {
    fn usable(&self) -> Option<&SegmentGraph> {
        match self {
            Loaded::Graph(graph) => Some(graph),
            Loaded::Damaged(_) => None,
        }
    }
}

/// A graph file that failed its checks. A graph is derived from the segment's stored rows, so
/// it is not needed for correct results: searches scan the segment instead, and a writer builds
/// it again ([`crate::IndexWriter::build_graphs`], or the background builder of a writing
/// process).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DamagedGraph {
    /// The segment.
    pub segment: u64,
    /// The graph's rung.
    pub rung: crate::rung::Rung,
    /// The graph file's name in the index directory.
    pub file: String,
    /// What did not match.
    pub reason: String,
}

impl std::fmt::Display for DamagedGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the graph {} of segment {} on {} is damaged ({}): searches scan that segment instead (slower, \
             same results) until a writer builds the graph again from the stored rows",
            self.file, self.segment, self.rung, self.reason
        )
    }
}

#[derive(Debug)]
struct GraphSource {
    dir: PathBuf,
    /// Per configured graph rung: its file, if the segment has a graph there.
    records: Vec<Option<crate::files::FileRecord>>,
    /// Per configured graph rung: its index among the stored rungs, and the rung.
    stored: Vec<u32>,
    rungs: Vec<crate::rung::Rung>,
}

impl Segment {
    /// Opens the segment a manifest record describes.
    pub fn open(dir: &Path, record: &SegmentRecord, config: &IndexConfig) -> Result<Segment> {
        let count = record.docs as usize;
        let vectors = VectorFile::open(dir, &record.vectors, &config.rungs, count)?;
        let store = DocStore::open(dir, &record.store, count)?;
        let ids = IdTable::open(dir, &record.ids, count)?;
        let graph_source = GraphSource::new(dir, record, config);
        for (slot, &rung) in config.graph.rungs.iter().enumerate() {
            if graph_source.records[slot].is_some() {
                vectors.advise_random(rung);
            }
        }
        Ok(Segment {
            id: record.id,
            docs: record.docs,
            vectors,
            store,
            ids,
            graphs: graph_source.records.iter().map(|_| OnceLock::new()).collect(),
            graph_loading: Mutex::new(()),
            graph_source,
            metadata: Mutex::new(HashMap::new()),
        })
    }

    /// The graph rung positions (in the configuration's graph rungs) this segment has a graph
    /// on.
    pub fn graph_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.graph_source.records.iter().enumerate().filter(|(_, r)| r.is_some()).map(|(i, _)| i)
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

    /// Whether the segment has a graph on the `slot`-th graph rung of the configuration.
    pub fn has_graph(&self, slot: usize) -> bool {
        self.graph_source.records.get(slot).is_some_and(Option::is_some)
    }

    /// The graph on the `slot`-th graph rung, mapped (and verified) on first use; `None` for a
    /// segment without one there, or whose graph file is damaged ([`Segment::damaged_graphs`]
    /// reports it): the caller scans.
    ///
    /// # Errors
    /// The graph was replaced by a later commit before this snapshot loaded it (search a
    /// current snapshot), or reading it failed for a reason other than damage (I/O).
    pub fn graph(&self, slot: usize) -> Result<Option<&SegmentGraph>> {
        let Some(Some(record)) = self.graph_source.records.get(slot) else { return Ok(None) };
        if let Some(loaded) = self.graphs[slot].get() {
            return Ok(Loaded::usable(loaded));
        }
        let _loading = self.graph_loading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(loaded) = self.graphs[slot].get() {
            return Ok(Loaded::usable(loaded));
        }
        let g = &self.graph_source;
        let mut record = record.clone();
        if !g.dir.join(&record.name).exists() {
            if !g.dir.join(crate::manifest::MANIFEST).exists() {
                return Err(Error::Incompatible { path: g.dir.clone(), message: "the index directory is gone".into() });
            }
            let manifest = crate::manifest::Manifest::read(&g.dir)?;
            let gone = |what: &str| {
                Error::InvalidInput(format!(
                    "{what} by a later commit (its graph {} is gone) before this snapshot loaded it; \
                     search a current snapshot (Index::reload, or open the index again)",
                    record.name
                ))
            };
            let Some(now) = manifest.segments.iter().find(|s| s.id == self.id) else {
                return Err(gone(&format!("segment {} was replaced", self.id)));
            };
            // A later commit rewrote the graph of this same segment and rung (given the
            // i8 copy of its rows): its links index the same immutable rows, so it serves.
            match now.graphs.iter().find(|r| r.rung == g.stored[slot]) {
                Some(rewritten) => record = rewritten.file.clone(),
                None => {
                    return Err(gone(&format!("the graph of segment {} on {} was dropped", self.id, g.rungs[slot])));
                }
            }
        }
        let loaded = match SegmentGraph::open(&g.dir, &record, self.docs, g.rungs[slot]) {
            Ok(graph) => Loaded::Graph(graph),
            Err(Error::Corrupt { message, .. }) => Loaded::Damaged(DamagedGraph {
                segment: self.id,
                rung: g.rungs[slot],
                file: record.name.clone(),
                reason: message,
            }),
            Err(e) => return Err(e),
        };
        Ok(Loaded::usable(self.graphs[slot].get_or_init(|| loaded)))
    }

    /// The graphs of this segment found damaged so far (by [`Segment::load_graphs`], or by the
    /// first search that needed one): they are not used.
    pub fn damaged_graphs(&self) -> Vec<DamagedGraph> {
        self.graphs
            .iter()
            .filter_map(|loaded| match loaded.get() {
                Some(Loaded::Damaged(damaged)) => Some(damaged.clone()),
                _ => None,
            })
            .collect()
    }

    /// The positions among the stored rungs of the graphs found damaged so far.
    pub(crate) fn damaged_rungs(&self) -> Vec<u32> {
        let g = &self.graph_source;
        (0..self.graphs.len())
            .filter(|&slot| matches!(self.graphs[slot].get(), Some(Loaded::Damaged(_))))
            .map(|slot| g.stored[slot])
            .collect()
    }

    /// Whether this segment has exactly the graphs `record` lists (a segment whose graphs were
    /// built after it was committed is opened again).
    pub fn has_graphs_of(&self, record: &SegmentRecord) -> bool {
        let mine = self.graph_source.records.iter().flatten();
        mine.clone().count() == record.graphs.len() && mine.zip(&record.graphs).all(|(a, b)| *a == b.file)
    }

    /// Maps and verifies every graph of the segment now; a damaged one is recorded
    /// ([`Segment::damaged_graphs`]) and the segment scanned, as a graph is derived data.
    ///
    /// # Errors
    /// As [`Segment::graph`].
    pub fn load_graphs(&self) -> Result<()> {
        for slot in 0..self.graphs.len() {
            self.graph(slot)?;
        }
        Ok(())
    }

    /// [`Segment::load_graphs`] for graphs just written: one that fails its checks is an
    /// error (the disk did not keep what was written), not a segment to scan.
    pub(crate) fn load_new_graphs(&self) -> Result<()> {
        self.load_graphs()?;
        match self.damaged_graphs().into_iter().next() {
            None => Ok(()),
            Some(d) => Err(Error::corrupt(self.graph_source.dir.join(&d.file), d.reason)),
        }
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

    /// Whether every graph of the segment is mapped.
    pub fn graph_loaded(&self) -> bool {
        self.graph_slots().all(|slot| self.graphs[slot].get().is_some())
    }
}

impl GraphSource {
    fn new(dir: &Path, record: &SegmentRecord, config: &IndexConfig) -> GraphSource {
        let records = config
            .graph
            .rungs
            .iter()
            .map(|&r| record.graphs.iter().find(|g| g.rung as usize == r).map(|g| g.file.clone()))
            .collect();
        let stored = config.graph.rungs.iter().map(|&r| r as u32).collect();
        GraphSource { dir: dir.to_path_buf(), records, stored, rungs: config.graph_rungs() }
    }
}
