//! An index directory, opened for reading: committed snapshots and the search primitives over
//! them. Writing goes through [`crate::writer::IndexWriter`].

use crate::config::IndexConfig;
use crate::error::{Error, Result};
use crate::files::verify;
use crate::filter::{Filter, Mask};
use crate::graph::SegmentGraph;
use crate::manifest::{MANIFEST, Manifest, SegmentRecord};
use crate::mutable::MutableSegment;
use crate::recovery::{self, LogSummary};
use crate::scan::{Kernels, Prepared, Scored, score_key};
use crate::segment::{DamagedGraph, Segment};
use crate::store::StoredDoc;
use crate::tombstones::Tombstones;
use crate::vectors::RungBlock;
use crate::writer::DEFAULT_CAPACITY;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock};

/// Where a document lives in a snapshot: a segment (by position) and a document number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocAddress {
    /// Position of the segment in the snapshot.
    pub segment: u32,
    /// Document number inside the segment.
    pub doc: u32,
}

/// A scored document.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Where it is.
    pub address: DocAddress,
    /// Its score (inner product at some rung; higher is better).
    pub score: f32,
}

/// Best-first: higher score, then lower address (a total order).
pub fn hit_order(a: &Hit, b: &Hit) -> Ordering {
    score_key(b.score).total_cmp(&score_key(a.score)).then(a.address.cmp(&b.address))
}

/// Keeps the `k` best hits (by [`hit_order`]), unordered, in linear time.
pub fn select_hits(hits: &mut Vec<Hit>, k: usize) {
    if hits.len() > k {
        if k > 0 {
            hits.select_nth_unstable_by(k - 1, hit_order);
        }
        hits.truncate(k);
    }
}

/// Where a segment's rows live.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// An immutable segment's files (mapped).
    Disk(Arc<Segment>),
    /// A mutable segment in memory (its first `docs` rows).
    Memory(Arc<MutableSegment>),
}

/// A segment as one snapshot sees it: its rows and its deletions at that moment.
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    /// Segment number.
    pub(crate) id: u64,
    /// Rows (deleted ones included).
    pub(crate) docs: u32,
    /// Rows deleted.
    pub(crate) deleted: u32,
    pub(crate) source: Source,
    pub(crate) tombstones: Arc<Tombstones>,
}

impl SegmentView {
    pub(crate) fn is_deleted(&self, doc: u32) -> bool {
        self.tombstones.get(doc as usize).is_some_and(|b| *b)
    }

    pub(crate) fn live(&self) -> u32 {
        self.docs - self.deleted
    }

    pub(crate) fn block(&self, rung: usize) -> RungBlock<'_> {
        match &self.source {
            Source::Disk(s) => s.block(rung),
            Source::Memory(m) => m.block(rung, self.docs as usize),
        }
    }

    pub(crate) fn doc(&self, doc: u32) -> Result<StoredDoc<'_>> {
        match &self.source {
            Source::Disk(s) => s.doc(doc),
            Source::Memory(m) => m.doc(doc).filter(|_| doc < self.docs).ok_or_else(|| {
                Error::InvalidInput(format!("document {doc} is out of range ({} documents)", self.docs))
            }),
        }
    }

    /// Rows holding `id`, deleted ones included.
    pub(crate) fn find(&self, id: &str) -> Result<Vec<u32>> {
        match &self.source {
            Source::Disk(s) => s.find(id),
            Source::Memory(m) => Ok(m.find(id, self.docs as usize)),
        }
    }

    pub(crate) fn matching(&self, filter: &Filter) -> Result<Mask> {
        match &self.source {
            Source::Disk(s) => s.matching(filter),
            Source::Memory(m) => Ok(m.matching(filter, self.docs as usize)),
        }
    }

    /// The segment's graph on the `slot`-th graph rung, if it has one.
    pub(crate) fn graph(&self, slot: usize) -> Result<Option<&SegmentGraph>> {
        match &self.source {
            Source::Disk(s) => s.graph(slot),
            Source::Memory(_) => Ok(None),
        }
    }

    /// Maps every graph of the segment.
    fn load_graphs(&self) -> Result<()> {
        match &self.source {
            Source::Disk(s) => s.load_graphs(),
            Source::Memory(_) => Ok(()),
        }
    }
}

/// Below this many rows per unit of `ef`, scanning a segment costs less than walking its graph:
/// a walk scores about `ef × 30` rows scattered over the file (each a cache miss), a scan streams
/// every row. Set from timings of the shared model's (3,96) i8 rung at a million passages (an
/// earlier run, see BENCHMARKS.md, "Millions of documents"), where walk and scan read the same
/// i8 rows; both costs scale with the row's bytes, so the ratio carries over to other i8 rungs.
/// On an f16 or f32 rung a walk reads the graph's i8 copy while a scan reads the stored rows
/// (2 or 4 bytes per value), so there the threshold errs toward scanning by up to 2× or 4×.
pub const SCAN_ROWS_PER_EF: usize = 64;

/// Whether a segment of `rows` rows is cheaper to scan than to walk with `ef`.
pub fn scan_is_cheaper(rows: usize, ef: usize) -> bool {
    rows < ef.saturating_mul(SCAN_ROWS_PER_EF)
}

/// One state of the index, as a search sees it from start to end: the committed segments with
/// their deletions, and the documents written since the last flush; cheap to share, never
/// changes.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) segments: Vec<SegmentView>,
    pub(crate) kernels: Kernels,
}

/// How to open an index.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// Read every file completely and check it against its checksum first (slow for large
    /// indexes; by default only small files and headers are verified on open). A damaged
    /// document file refuses the open; a damaged graph is reported
    /// ([`Snapshot::damaged_graphs`]) and its segment scanned.
    pub verify: bool,
    /// Leave the HNSW graphs on disk until the first search needs them (by default they are
    /// loaded, and verified, while opening).
    pub lazy_graphs: bool,
}

struct Shared {
    dir: PathBuf,
    kernels: Kernels,
    options: OpenOptions,
    current: RwLock<Arc<Snapshot>>,
    /// Whether a writer of this process owns the state (then it publishes every change and
    /// [`Index::reload`] has nothing to pick up).
    writing: AtomicBool,
    /// What the last open or reload found in the log.
    log: Mutex<LogSummary>,
}

/// An open index directory. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Index {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("dir", &self.shared.dir).finish()
    }
}

impl Index {
    /// Creates a new, empty index in `dir` (created if needed; it must hold no index yet and no
    /// other files).
    pub fn create(dir: &Path, config: IndexConfig) -> Result<Index> {
        config.validate()?;
        std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
        if dir.join(MANIFEST).exists() {
            return Err(Error::Incompatible {
                path: dir.to_path_buf(),
                message: "an index already exists here; open it, or choose another directory".into(),
            });
        }
        let mut entries = std::fs::read_dir(dir).map_err(|e| Error::read(dir, e))?;
        if entries.next().is_some() {
            return Err(Error::Incompatible {
                path: dir.to_path_buf(),
                message: "the directory is not empty; an index needs a directory of its own".into(),
            });
        }
        Manifest::new(config).commit(dir)?;
        if let Some(parent) = std::fs::canonicalize(dir).ok().and_then(|d| d.parent().map(Path::to_path_buf)) {
            crate::files::sync_dir(&parent)?;
        }
        Index::open(dir)
    }

    /// Opens an existing index (for reading: the write-ahead log is replayed in memory, nothing
    /// on disk changes; see [`Index::writer`] for writing).
    pub fn open(dir: &Path) -> Result<Index> {
        Index::open_with(dir, OpenOptions::default())
    }

    /// Opens an existing index with options.
    pub fn open_with(dir: &Path, options: OpenOptions) -> Result<Index> {
        let kernels = Kernels::default();
        let recovered = recovery::recover(dir, None, kernels, options, DEFAULT_CAPACITY, false)?;
        Ok(Index {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                kernels,
                options: OpenOptions { verify: false, ..options },
                current: RwLock::new(Arc::new(recovered.state.snapshot())),
                writing: AtomicBool::new(false),
                log: Mutex::new(recovered.summary),
            }),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The current snapshot: take it once per request and use it throughout.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.shared.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Picks up what another process committed or logged since this index was opened; returns
    /// whether anything changed. With a writer open in this process there is nothing to pick
    /// up: it publishes every change itself.
    pub fn reload(&self) -> Result<bool> {
        if self.shared.writing.load(AtomicOrdering::Acquire) {
            return Ok(false);
        }
        let current = self.snapshot();
        let manifest = Manifest::read(self.dir())?;
        let logs = recovery::log_lengths(self.dir())?;
        let seen = self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).files.clone();
        if manifest.generation == current.manifest.generation && logs == seen {
            return Ok(false);
        }
        let recovered = recovery::recover(
            self.dir(),
            Some(&current),
            self.shared.kernels,
            self.shared.options,
            DEFAULT_CAPACITY,
            false,
        )?;
        self.install(recovered.state.snapshot());
        *self.shared.log.lock().unwrap_or_else(|e| e.into_inner()) = recovered.summary;
        Ok(true)
    }

    /// Makes `snapshot` current.
    pub(crate) fn install(&self, snapshot: Snapshot) {
        *self.shared.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }

    /// Marks the state as owned by this process's writer (or no longer).
    pub(crate) fn set_writing(&self, writing: bool) {
        self.shared.writing.store(writing, AtomicOrdering::Release);
    }

    pub(crate) fn options(&self) -> OpenOptions {
        self.shared.options
    }

    pub(crate) fn kernels(&self) -> Kernels {
        self.shared.kernels
    }

    /// What the log held when this index was last opened or reloaded.
    pub fn log_summary(&self) -> LogSummary {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_log_summary(&self, summary: LogSummary) {
        *self.shared.log.lock().unwrap_or_else(|e| e.into_inner()) = summary;
    }

    /// Loads every segment's graph that is not in memory yet (see [`OpenOptions::lazy_graphs`]).
    pub fn load_graphs(&self) -> Result<()> {
        for view in &self.snapshot().segments {
            view.load_graphs()?;
        }
        Ok(())
    }

    /// Reads every file of the current snapshot and checks it against its checksum. Graphs
    /// are verified as they are loaded (one loaded earlier was hashed then, and is not read
    /// again): a damaged one is not an error but recorded ([`Snapshot::damaged_graphs`]), its
    /// segment scanned, as a graph is derived from the stored rows.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the first damaged document file (vectors, store, ids,
    /// deletions); I/O errors.
    pub fn verify(&self) -> Result<()> {
        let snapshot = self.snapshot();
        for record in snapshot.manifest.segments.iter().flat_map(SegmentRecord::data_files) {
            verify(self.dir(), record)?;
        }
        self.load_graphs()
    }
}

/// What one segment of a snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SegmentInfo {
    /// Segment number.
    pub id: u64,
    /// Documents, deleted ones included.
    pub documents: u32,
    /// Deleted (or replaced) documents.
    pub deleted: u32,
    /// Whether it is a mutable segment in memory (written since the last flush).
    pub in_memory: bool,
    /// The rungs it has an HNSW graph on (none below the graph's `min_docs`: such segments are
    /// scanned).
    pub graphs: Vec<crate::Rung>,
    /// Its graphs found damaged so far (loaded at open, by a verification, or by a search):
    /// not used, the segment is scanned instead until a writer builds them again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged_graphs: Vec<DamagedGraph>,
    /// Bytes: its files on disk, or what it holds in memory.
    pub bytes: u64,
}

impl Snapshot {
    /// The committed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The index configuration.
    pub fn config(&self) -> &IndexConfig {
        &self.manifest.config
    }

    /// Live documents (committed and written since the last flush).
    pub fn len(&self) -> u64 {
        self.segments.iter().map(|v| u64::from(v.live())).sum()
    }

    /// Whether there are no live documents.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The graphs found damaged so far (at open, by [`Index::verify`] or [`Index::load_graphs`],
    /// or by a search that needed one), every segment's: they are not used, their segments
    /// are scanned (same results, slower) until a writer builds them again.
    pub fn damaged_graphs(&self) -> Vec<DamagedGraph> {
        self.segments
            .iter()
            .flat_map(|v| match &v.source {
                Source::Disk(s) => s.damaged_graphs(),
                Source::Memory(_) => Vec::new(),
            })
            .collect()
    }

    /// Committed segments that lack a graph they should have, whose graph lacks the i8 copy of
    /// its rows, or whose graph was found damaged: the work [`crate::IndexWriter::build_graphs`]
    /// (or a writer's background builder) would do now. Graphs not loaded yet (a lazy open) are
    /// not known to be damaged.
    pub fn segments_lacking_graphs(&self) -> usize {
        self.segments
            .iter()
            .filter(|v| match &v.source {
                Source::Disk(s) => self
                    .manifest
                    .segments
                    .iter()
                    .find(|r| r.id == v.id)
                    .is_some_and(|r| crate::writer::lacks_graphs(self.config(), r, s)),
                Source::Memory(_) => false,
            })
            .count()
    }

    /// Number of segments (mutable ones included).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// What each segment holds, committed ones first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .map(|v| {
                let graph_rungs = self.config().graph_rungs();
                let (in_memory, graphs, damaged_graphs, bytes) = match &v.source {
                    Source::Disk(s) => {
                        let record = self.manifest.segments.iter().find(|r| r.id == v.id);
                        let bytes = record.map_or(0, |r| r.files().map(|f| f.len).sum());
                        let graphs = s.graph_slots().map(|slot| graph_rungs[slot]).collect();
                        (false, graphs, s.damaged_graphs(), bytes)
                    }
                    Source::Memory(m) => (true, Vec::new(), Vec::new(), m.bytes() as u64),
                };
                SegmentInfo {
                    id: v.id,
                    documents: v.docs,
                    deleted: v.deleted,
                    in_memory,
                    graphs,
                    damaged_graphs,
                    bytes,
                }
            })
            .collect()
    }

    /// Checks a query vector for the `rung`-th stored rung.
    pub fn check_query(&self, rung: usize, query: &[f32]) -> Result<()> {
        let stored = self.config().rungs.get(rung).ok_or_else(|| {
            Error::InvalidInput(format!(
                "rung index {rung} is out of range ({} stored rungs)",
                self.config().rungs.len()
            ))
        })?;
        if query.len() != stored.rung.dim {
            return Err(Error::InvalidInput(format!(
                "a query vector for rung {} needs {} values, not {}",
                stored.rung,
                stored.rung.dim,
                query.len()
            )));
        }
        if let Some(bad) = query.iter().find(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(format!("query vectors must be finite, found {bad}")));
        }
        Ok(())
    }

    /// The documents of each segment that match `filter` (live or not), for the `*_in` searches.
    pub fn filter_masks(&self, filter: &Filter) -> Result<Vec<Mask>> {
        self.segments.iter().map(|view| view.matching(filter)).collect()
    }

    /// Up to `k` live documents with the largest inner product at the `rung`-th stored rung,
    /// best first, found through each segment's HNSW graph on that rung (`ef` = candidate list
    /// size) and scored exactly. Segments without a graph there are scanned.
    pub fn graph_search_on(&self, rung: usize, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        let mut hits = self.graph_search_in(rung, query, k, ef, None, 0, 1, false)?;
        hits.sort_by(hit_order);
        Ok(hits)
    }

    /// [`Snapshot::graph_search_on`] the index's first graph rung.
    pub fn graph_search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        let rung = self
            .config()
            .graph
            .rungs
            .first()
            .copied()
            .ok_or_else(|| Error::InvalidInput("the index has no graph rung: use an exact search".into()))?;
        self.graph_search_on(rung, query, k, ef)
    }

    /// [`Snapshot::graph_search_on`] among the documents `allowed` (one mask per segment, from
    /// [`Snapshot::filter_masks`]; a filter that starves the graph walk falls back to a scan),
    /// over the segments `s` with `s % parts == part` (so that threads can share the work;
    /// each part's hits are its best `k`, unordered). With `by_cost`, segments so small that
    /// scanning them costs less than a walk (see [`scan_is_cheaper`]) are scanned too.
    #[allow(clippy::too_many_arguments)]
    pub fn graph_search_in(
        &self,
        rung: usize,
        query: &[f32],
        k: usize,
        ef: usize,
        allowed: Option<&[Mask]>,
        part: usize,
        parts: usize,
        by_cost: bool,
    ) -> Result<Vec<Hit>> {
        self.check_query(rung, query)?;
        self.check_masks(allowed)?;
        let slot = self.config().graph.rungs.iter().position(|&r| r == rung);
        let mut hits = Vec::new();
        for (s, view) in self.segments.iter().enumerate().filter(|(s, _)| s % parts.max(1) == part) {
            let mask = allowed.map(|m| &m[s]);
            let eligible = match mask {
                None => view.live() as usize,
                Some(m) => m.iter_ones().filter(|&d| !view.is_deleted(d as u32)).count(),
            };
            let k = k.min(eligible);
            if k == 0 {
                continue;
            }
            let ef = ef.max(k).min(view.docs as usize);
            let keep = |doc: u32| !view.is_deleted(doc) && mask.is_none_or(|m| m[doc as usize]);
            let block = view.block(rung);
            let graph = match slot {
                Some(slot) if !(by_cost && scan_is_cheaper(view.docs as usize, ef)) => view.graph(slot)?,
                _ => None,
            };
            let mut found = match graph {
                Some(graph) => graph.search(&block, &self.kernels, query, k, ef, &keep),
                None => Vec::new(),
            };
            if found.len() < k {
                // No graph (small, mutable or not built yet), or deletions or a selective filter
                // starved the walk: scan this segment rather than return fewer hits than exist.
                found = self.kernels.best_k_range(&block, query, k, 0..view.docs, |d| !keep(d));
            }
            for Scored { score, doc } in found {
                hits.push(Hit { address: DocAddress { segment: s as u32, doc }, score });
            }
        }
        select_hits(&mut hits, k);
        Ok(hits)
    }

    /// The exact top `k` live documents by inner product at the `rung`-th stored rung
    /// (a scan of every row: the ground truth).
    pub fn exact_search(&self, rung: usize, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.exact_search_part(rung, query, k, 0, 1)
    }

    /// [`Snapshot::exact_search`] over the `part`-th of `parts` near-equal slices of every
    /// segment's rows, so that callers can split one scan across threads and merge the parts
    /// (each part's best `k` contain the overall best `k`).
    pub fn exact_search_part(
        &self,
        rung: usize,
        query: &[f32],
        k: usize,
        part: usize,
        parts: usize,
    ) -> Result<Vec<Hit>> {
        let mut hits = self.shortlist_part(rung, query, k, part, parts, None)?;
        hits.sort_by(hit_order);
        Ok(hits)
    }

    /// Like [`Snapshot::exact_search_part`] among the `allowed` documents (if given), with the
    /// `k` best in no particular order (cheaper when `k` is large and the next step rescores them
    /// anyway).
    pub fn shortlist_part(
        &self,
        rung: usize,
        query: &[f32],
        k: usize,
        part: usize,
        parts: usize,
        allowed: Option<&[Mask]>,
    ) -> Result<Vec<Hit>> {
        self.check_query(rung, query)?;
        self.check_masks(allowed)?;
        if parts == 0 || part >= parts {
            return Err(Error::InvalidInput(format!("part {part} of {parts} does not exist")));
        }
        let mut hits = Vec::new();
        for (s, view) in self.segments.iter().enumerate() {
            let block = view.block(rung);
            let rows = block.count;
            let range = (rows * part / parts) as u32..(rows * (part + 1) / parts) as u32;
            let found = match (allowed.map(|m| &m[s]), view.deleted) {
                (None, 0) => self.kernels.best_k_range(&block, query, k, range, |_| false),
                (None, _) => self.kernels.best_k_range(&block, query, k, range, |doc| view.is_deleted(doc)),
                (Some(mask), _) => self
                    .kernels
                    .best_k_range(&block, query, k, range, |doc| !mask[doc as usize] || view.is_deleted(doc)),
            };
            for Scored { score, doc } in found {
                hits.push(Hit { address: DocAddress { segment: s as u32, doc }, score });
            }
        }
        select_hits(&mut hits, k);
        Ok(hits)
    }

    fn check_masks(&self, allowed: Option<&[Mask]>) -> Result<()> {
        match allowed {
            Some(masks)
                if masks.len() != self.segments.len()
                    || masks.iter().zip(&self.segments).any(|(m, v)| m.len() != v.docs as usize) =>
            {
                Err(Error::InvalidInput("the filter masks do not belong to this snapshot".into()))
            }
            _ => Ok(()),
        }
    }

    /// Replaces each hit's score by its exact inner product at the `rung`-th stored rung.
    pub fn rescore(&self, rung: usize, query: &[f32], hits: &mut [Hit]) -> Result<()> {
        self.check_query(rung, query)?;
        let mut docs = Vec::with_capacity(256);
        let mut scores = Vec::with_capacity(256);
        // One prepared query per segment (i8 blocks have their own scales), however the
        // hits interleave the segments.
        let mut prepared: Vec<Option<Prepared<'_>>> = (0..self.segments.len()).map(|_| None).collect();
        let mut start = 0;
        while start < hits.len() {
            // A run of hits in the same segment is scored with one gather.
            let segment = hits[start].address.segment;
            let end = start + hits[start..].iter().take_while(|h| h.address.segment == segment).count();
            let block = self.block(segment, rung)?;
            docs.clear();
            docs.extend(hits[start..end].iter().map(|h| h.address.doc));
            if let Some(bad) = docs.iter().find(|&&d| d as usize >= block.count) {
                return Err(Error::InvalidInput(format!("no document {bad} in segment {segment} of this snapshot")));
            }
            scores.resize(docs.len(), 0.0);
            let query = prepared[segment as usize].get_or_insert_with(|| self.kernels.prepare(&block, query));
            self.kernels.score_rows_prepared(&block, query, &docs, &mut scores);
            for (hit, &score) in hits[start..end].iter_mut().zip(&scores) {
                hit.score = score;
            }
            start = end;
        }
        Ok(())
    }

    /// The block of the `rung`-th stored rung of segment `segment`.
    pub fn block(&self, segment: u32, rung: usize) -> Result<RungBlock<'_>> {
        let view = self
            .segments
            .get(segment as usize)
            .ok_or_else(|| Error::InvalidInput(format!("no segment {segment} in this snapshot")))?;
        if rung >= self.config().rungs.len() {
            return Err(Error::InvalidInput(format!("rung index {rung} is out of range")));
        }
        Ok(view.block(rung))
    }

    /// A document's stored fields.
    pub fn doc(&self, address: DocAddress) -> Result<StoredDoc<'_>> {
        let view = self
            .segments
            .get(address.segment as usize)
            .ok_or_else(|| Error::InvalidInput(format!("no segment {} in this snapshot", address.segment)))?;
        view.doc(address.doc)
    }

    /// Whether a document is deleted in this snapshot.
    pub fn is_deleted(&self, address: DocAddress) -> bool {
        self.segments.get(address.segment as usize).is_none_or(|v| v.is_deleted(address.doc))
    }

    /// The live document with external id `id`.
    pub fn lookup(&self, id: &str) -> Result<Option<DocAddress>> {
        for (s, view) in self.segments.iter().enumerate().rev() {
            for doc in view.find(id)? {
                if !view.is_deleted(doc) {
                    return Ok(Some(DocAddress { segment: s as u32, doc }));
                }
            }
        }
        Ok(None)
    }

    /// Live documents, segment by segment.
    pub fn live_addresses(&self) -> impl Iterator<Item = DocAddress> + '_ {
        self.segments.iter().enumerate().flat_map(|(s, view)| {
            (0..view.docs)
                .filter(move |&doc| !view.is_deleted(doc))
                .map(move |doc| DocAddress { segment: s as u32, doc })
        })
    }
}
