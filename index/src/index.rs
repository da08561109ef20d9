//! An index directory, opened for reading: committed snapshots and the search primitives over
//! them. Writing goes through [`crate::writer::IndexWriter`].

use crate::config::IndexConfig;
use crate::error::{Error, Result};
use crate::files::verify;
use crate::filter::{Filter, Mask};
use crate::manifest::{MANIFEST, Manifest, SegmentRecord};
use crate::scan::{Kernels, Prepared, Scored, score_key};
use crate::segment::Segment;
use crate::store::StoredDoc;
use crate::tombstones::{self, Tombstones};
use crate::vectors::RungBlock;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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

/// A segment of a snapshot with the tombstones of that snapshot.
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    pub(crate) record: SegmentRecord,
    pub(crate) segment: Arc<Segment>,
    pub(crate) tombstones: Arc<Tombstones>,
}

impl SegmentView {
    pub(crate) fn is_deleted(&self, doc: u32) -> bool {
        self.tombstones.get(doc as usize).is_some_and(|b| *b)
    }
}

/// One committed state of the index; cheap to share, never changes.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) manifest: Manifest,
    pub(crate) segments: Vec<SegmentView>,
    pub(crate) kernels: Kernels,
}

/// How to open an index.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// Read every file completely and check it against its checksum first (slow for large
    /// indexes; by default only small files and headers are verified on open).
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

    /// Opens an existing index.
    pub fn open(dir: &Path) -> Result<Index> {
        Index::open_with(dir, OpenOptions::default())
    }

    /// Opens an existing index with options.
    pub fn open_with(dir: &Path, options: OpenOptions) -> Result<Index> {
        let kernels = Kernels::default();
        let snapshot = load_snapshot(dir, None, kernels, options)?;
        Ok(Index {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                kernels,
                options: OpenOptions { verify: false, ..options },
                current: RwLock::new(Arc::new(snapshot)),
            }),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The current committed snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.shared.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Picks up commits made by another process; returns whether the snapshot changed.
    pub fn reload(&self) -> Result<bool> {
        let current = self.snapshot();
        let manifest = Manifest::read(self.dir())?;
        if manifest.generation == current.manifest.generation {
            return Ok(false);
        }
        let next = load_snapshot(self.dir(), Some(&current), self.shared.kernels, self.shared.options)?;
        self.install(next);
        Ok(true)
    }

    /// Makes `snapshot` current unless a newer generation already is (a slow `reload` racing a
    /// commit must never move the index back in time).
    pub(crate) fn install(&self, snapshot: Snapshot) {
        let mut current = self.shared.current.write().unwrap_or_else(|e| e.into_inner());
        if snapshot.manifest.generation >= current.manifest.generation {
            *current = Arc::new(snapshot);
        }
    }

    pub(crate) fn kernels(&self) -> Kernels {
        self.shared.kernels
    }

    /// Loads every segment's graph that is not in memory yet (see [`OpenOptions::lazy_graphs`]).
    pub fn load_graphs(&self) -> Result<()> {
        for view in &self.snapshot().segments {
            view.segment.graph()?;
        }
        Ok(())
    }

    /// Reads every file of the current snapshot and checks it against its checksum.
    pub fn verify(&self) -> Result<()> {
        let snapshot = self.snapshot();
        for record in snapshot.manifest.files() {
            verify(self.dir(), record)?;
        }
        Ok(())
    }
}

/// Opens the snapshot `dir/MANIFEST` describes, reusing unchanged segments of `previous`.
/// A commit by another process may delete files between reading the manifest and opening them,
/// so a missing file is retried with a fresh manifest a few times.
fn load_snapshot(dir: &Path, previous: Option<&Snapshot>, kernels: Kernels, options: OpenOptions) -> Result<Snapshot> {
    let mut attempts = 0;
    loop {
        let manifest = Manifest::read(dir)?;
        match open_segments(dir, &manifest, previous, kernels, options) {
            Ok(segments) => return Ok(Snapshot { manifest, segments, kernels }),
            Err(e) if attempts < 3 && Manifest::read(dir).is_ok_and(|m| m.generation != manifest.generation) => {
                attempts += 1;
                let _ = e;
            }
            Err(e) => return Err(e),
        }
    }
}

fn open_segments(
    dir: &Path,
    manifest: &Manifest,
    previous: Option<&Snapshot>,
    kernels: Kernels,
    options: OpenOptions,
) -> Result<Vec<SegmentView>> {
    if options.verify {
        for record in manifest.files() {
            verify(dir, record)?;
        }
    }
    let mut views = Vec::with_capacity(manifest.segments.len());
    for record in &manifest.segments {
        let reused_segment = previous.and_then(|p| p.segments.iter().find(|v| v.record.id == record.id)).is_some();
        let reused = previous.and_then(|p| p.segments.iter().find(|v| v.record.id == record.id));
        let segment = match reused {
            Some(view) => Arc::clone(&view.segment),
            None => Arc::new(Segment::open(dir, record, &manifest.config, kernels)?),
        };
        if !options.lazy_graphs && !reused_segment {
            segment.graph()?;
        }
        let tombstones = match (reused, &record.tombstones) {
            (Some(view), t) if view.record.tombstones == *t => Arc::clone(&view.tombstones),
            (_, None) => Arc::new(Tombstones::repeat(false, record.docs as usize)),
            (_, Some(t)) => Arc::new(tombstones::read(dir, t, record.docs as usize, record.deleted as usize)?),
        };
        views.push(SegmentView { record: record.clone(), segment, tombstones });
    }
    Ok(views)
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

    /// Live documents.
    pub fn len(&self) -> u64 {
        self.manifest.live_docs()
    }

    /// Whether there are no live documents.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
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
        self.segments.iter().map(|view| view.segment.matching(filter)).collect()
    }

    /// Up to `k` live documents with the largest inner product at the graph rung, found through
    /// each segment's HNSW graph (`ef` = candidate list size) and scored exactly.
    pub fn graph_search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        self.graph_search_in(query, k, ef, None)
    }

    /// [`Snapshot::graph_search`] among the documents `allowed` (one mask per segment, from
    /// [`Snapshot::filter_masks`]); a filter that starves the graph walk falls back to a scan.
    pub fn graph_search_in(&self, query: &[f32], k: usize, ef: usize, allowed: Option<&[Mask]>) -> Result<Vec<Hit>> {
        let rung = self.config().graph.rung;
        self.check_query(rung, query)?;
        self.check_masks(allowed)?;
        let mut hits = Vec::new();
        for (s, view) in self.segments.iter().enumerate() {
            let mask = allowed.map(|m| &m[s]);
            let eligible = match mask {
                None => view.record.live() as usize,
                Some(m) => m.iter_ones().filter(|&d| !view.is_deleted(d as u32)).count(),
            };
            let k = k.min(eligible);
            if k == 0 {
                continue;
            }
            let ef = ef.max(k).min(view.record.docs as usize);
            let keep = |doc: u32| !view.is_deleted(doc) && mask.is_none_or(|m| m[doc as usize]);
            let block = view.segment.block(rung);
            let mut found = view.segment.graph()?.search(&block, &self.kernels, query, k, ef, &keep);
            if found.len() < k {
                // Deletions or a selective filter can starve the graph walk: scan this segment
                // rather than return fewer hits than exist.
                found = self.kernels.best_k_range(&block, query, k, 0..view.record.docs, |d| !keep(d));
            }
            for Scored { score, doc } in found {
                hits.push(Hit { address: DocAddress { segment: s as u32, doc }, score });
            }
        }
        hits.sort_by(hit_order);
        hits.truncate(k);
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
            let block = view.segment.block(rung);
            let rows = block.count;
            let range = (rows * part / parts) as u32..(rows * (part + 1) / parts) as u32;
            let found = match (allowed.map(|m| &m[s]), view.record.deleted) {
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
                    || masks.iter().zip(&self.segments).any(|(m, v)| m.len() != v.record.docs as usize) =>
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
        Ok(view.segment.block(rung))
    }

    /// A document's stored fields.
    pub fn doc(&self, address: DocAddress) -> Result<StoredDoc<'_>> {
        let view = self
            .segments
            .get(address.segment as usize)
            .ok_or_else(|| Error::InvalidInput(format!("no segment {} in this snapshot", address.segment)))?;
        view.segment.doc(address.doc)
    }

    /// Whether a document is deleted in this snapshot.
    pub fn is_deleted(&self, address: DocAddress) -> bool {
        self.segments.get(address.segment as usize).is_none_or(|v| v.is_deleted(address.doc))
    }

    /// The live document with external id `id`.
    pub fn lookup(&self, id: &str) -> Result<Option<DocAddress>> {
        for (s, view) in self.segments.iter().enumerate().rev() {
            for doc in view.segment.find(id)? {
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
            (0..view.record.docs)
                .filter(move |&doc| !view.is_deleted(doc))
                .map(move |doc| DocAddress { segment: s as u32, doc })
        })
    }
}
