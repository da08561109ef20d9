//! Writing: adds, updates and deletes buffered in memory, then committed atomically and durably.
//!
//! A commit writes the buffered documents as a new immutable segment (vectors, store, ids,
//! graph), writes new tombstone files for segments that lost documents, fsyncs all of them,
//! then replaces `MANIFEST` by an atomic rename and fsyncs the directory. A crash at any point
//! leaves either the previous manifest (and some unreferenced files, removed by the next writer)
//! or the new one. Only one writer per index exists at a time (`LOCK`, an OS file lock that a
//! crashed process releases).

use crate::config::IndexConfig;
use crate::error::{Error, Result};
use crate::graph::SegmentGraph;
use crate::index::{Index, SegmentView, Snapshot};
use crate::manifest::{MANIFEST, Manifest, SegmentRecord};
use crate::segment::{Segment, basename};
use crate::store::StoredDoc;
use crate::tombstones::{self, Tombstones};
use crate::vectors::{self, BlockData};
use crate::{ids, store};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Name of the writer lock file.
pub const LOCK: &str = "LOCK";

/// A document to add: its fields and one vector per stored rung (in stored-rung order).
#[derive(Clone, Debug, PartialEq)]
pub struct NewDocument {
    /// External id (non-empty); adding an id that exists replaces that document.
    pub id: String,
    /// Text to store, if any.
    pub text: Option<String>,
    /// Metadata to store (JSON), if any.
    pub metadata: Option<String>,
    /// One vector per stored rung.
    pub vectors: Vec<Vec<f32>>,
}

/// Progress of a long step: `(what, done, total)`.
pub type Progress<'a> = &'a dyn Fn(&str, usize, usize);

/// What a commit did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// The new generation.
    pub generation: u64,
    /// Documents written in a new segment.
    pub added: usize,
    /// Committed documents newly deleted (or replaced).
    pub deleted: usize,
    /// Segments after the commit.
    pub segments: usize,
    /// Live documents after the commit.
    pub live: u64,
}

#[derive(Default)]
struct Pending {
    docs: Vec<Option<PendingDoc>>,
    by_id: HashMap<String, usize>,
    /// Per stored rung, the vectors of `docs` in order (including removed ones' slots).
    vectors: Vec<Vec<f32>>,
}

struct PendingDoc {
    id: String,
    text: Option<String>,
    metadata: Option<String>,
}

/// The only writer of an index (holds its lock).
pub struct IndexWriter {
    index: Index,
    _lock: File,
    pending: Pending,
    /// Committed documents to delete at the next commit, by segment id.
    deletes: BTreeMap<u64, Tombstones>,
    settings: Vec<(String, String)>,
    /// Set when a commit reached the disk but this process could not take up the new state:
    /// the writer refuses further work until it is reopened.
    poisoned: Option<String>,
}

impl Index {
    /// Takes the index's writer lock.
    pub fn writer(&self) -> Result<IndexWriter> {
        let path = self.dir().join(LOCK);
        let file =
            File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::write(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path }),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::write(&path, e)),
        }
        // Another process may have committed since this index was opened.
        self.reload()?;
        let writer = IndexWriter {
            index: self.clone(),
            _lock: file,
            pending: Pending::default(),
            deletes: BTreeMap::new(),
            settings: Vec::new(),
            poisoned: None,
        };
        writer.collect_garbage(&self.snapshot().manifest);
        Ok(writer)
    }
}

impl IndexWriter {
    /// The index being written.
    pub fn index(&self) -> &Index {
        &self.index
    }

    fn config(&self) -> IndexConfig {
        self.index.snapshot().manifest.config.clone()
    }

    /// Buffers a document (replacing any document with the same id at the next commit).
    /// Invalid documents are rejected whole and change nothing.
    pub fn add(&mut self, doc: NewDocument) -> Result<()> {
        let config = self.config();
        if doc.id.is_empty() {
            return Err(Error::InvalidInput("a document id must not be empty".into()));
        }
        let longest =
            [doc.id.len(), doc.text.as_ref().map_or(0, String::len), doc.metadata.as_ref().map_or(0, String::len)];
        if longest.iter().any(|&n| n > u32::MAX as usize) {
            return Err(Error::InvalidInput(format!("document {:?}: a stored field exceeds 4 GiB", doc.id)));
        }
        if doc.vectors.len() != config.rungs.len() {
            return Err(Error::InvalidInput(format!(
                "document {:?} has {} vectors; the index stores {} rungs",
                doc.id,
                doc.vectors.len(),
                config.rungs.len()
            )));
        }
        for (r, (v, stored)) in doc.vectors.iter().zip(&config.rungs).enumerate() {
            if v.len() != stored.rung.dim {
                return Err(Error::InvalidInput(format!(
                    "document {:?}: the vector for rung {} has {} values, not {}",
                    doc.id,
                    stored.rung,
                    v.len(),
                    stored.rung.dim
                )));
            }
            let limit = match stored.element {
                crate::config::ElementType::F32 | crate::config::ElementType::I8 => f32::MAX,
                crate::config::ElementType::F16 => half::f16::MAX.to_f32(),
            };
            if let Some(bad) = v.iter().find(|x| !x.is_finite() || x.abs() > limit) {
                return Err(Error::InvalidInput(format!(
                    "document {:?}: the vector for rung {} holds {bad}, which rung storage ({}) cannot represent",
                    doc.id, stored.rung, stored.element
                )));
            }
            if r == config.graph.rung
                && v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>() >= f64::from(f32::MAX) / 4.0
            {
                return Err(Error::InvalidInput(format!(
                    "document {:?}: the vector for rung {} is too large for the graph (its squared norm overflows f32)",
                    doc.id, stored.rung
                )));
            }
        }
        self.check_usable()?;
        // Look everything up before changing anything.
        let committed = self.committed_copies(&doc.id)?;
        self.remove_pending(&doc.id);
        self.mark_deleted(committed);
        if self.pending.vectors.len() != config.rungs.len() {
            self.pending.vectors = vec![Vec::new(); config.rungs.len()];
        }
        for (block, v) in self.pending.vectors.iter_mut().zip(&doc.vectors) {
            block.extend_from_slice(v);
        }
        self.pending.by_id.insert(doc.id.clone(), self.pending.docs.len());
        self.pending.docs.push(Some(PendingDoc { id: doc.id, text: doc.text, metadata: doc.metadata }));
        Ok(())
    }

    /// Deletes the document `id` at the next commit; returns whether it existed.
    pub fn delete(&mut self, id: &str) -> Result<bool> {
        self.check_usable()?;
        let committed = self.committed_copies(id)?;
        let pending = self.remove_pending(id);
        let marked = self.mark_deleted(committed);
        Ok(pending || marked)
    }

    fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            None => Ok(()),
            Some(why) => Err(Error::InvalidInput(format!("this writer is unusable ({why}); reopen the index"))),
        }
    }

    fn remove_pending(&mut self, id: &str) -> bool {
        match self.pending.by_id.remove(id) {
            Some(slot) => {
                self.pending.docs[slot] = None;
                true
            }
            None => false,
        }
    }

    /// Every live committed copy of `id` (segment id, segment position, document).
    fn committed_copies(&self, id: &str) -> Result<Vec<(u64, usize, u32)>> {
        let snapshot = self.index.snapshot();
        let mut copies = Vec::new();
        for (position, view) in snapshot.segments.iter().enumerate() {
            for doc in view.segment.find(id)? {
                let already =
                    self.deletes.get(&view.record.id).is_some_and(|bits| bits.get(doc as usize).is_some_and(|b| *b));
                if !view.is_deleted(doc) && !already {
                    copies.push((view.record.id, position, doc));
                }
            }
        }
        Ok(copies)
    }

    /// Marks committed copies for deletion at the next commit; returns whether there were any.
    fn mark_deleted(&mut self, copies: Vec<(u64, usize, u32)>) -> bool {
        let snapshot = self.index.snapshot();
        let any = !copies.is_empty();
        for (segment, position, doc) in copies {
            let view = &snapshot.segments[position];
            let bits = self.deletes.entry(segment).or_insert_with(|| (*view.tombstones).clone());
            bits.set(doc as usize, true);
        }
        any
    }

    /// Documents buffered for the next commit.
    pub fn pending(&self) -> usize {
        self.pending.by_id.len()
    }

    /// Whether anything would change at the next commit.
    pub fn has_changes(&self) -> bool {
        self.pending() > 0 || !self.deletes.is_empty() || !self.settings.is_empty()
    }

    /// Sets a setting of a layer above (stored in the manifest at the next commit).
    pub fn set_setting(&mut self, key: &str, value: &str) {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_string(), value.to_string()));
    }

    /// Commits everything buffered (see the module docs).
    pub fn commit(&mut self) -> Result<CommitInfo> {
        self.commit_with(&|_, _, _| {})
    }

    /// Commits, reporting progress of the slow steps.
    ///
    /// If this fails before the new manifest is in place, nothing changed: the files it wrote
    /// are removed and the buffered changes stay, so the commit can be retried. Once the manifest
    /// is renamed the commit has happened, whatever follows.
    pub fn commit_with(&mut self, progress: Progress<'_>) -> Result<CommitInfo> {
        self.check_usable()?;
        let base = self.index.snapshot();
        let (manifest, new_segment, added, deleted) = match self.prepare_commit(&base, progress) {
            Ok(prepared) => prepared,
            Err(e) => {
                self.collect_garbage(&base.manifest);
                return Err(e);
            }
        };
        self.switch(&base, manifest, new_segment)?;
        self.pending = Pending::default();
        self.deletes.clear();
        self.settings.clear();
        let m = &self.index.snapshot().manifest;
        Ok(CommitInfo { generation: m.generation, added, deleted, segments: m.segments.len(), live: m.live_docs() })
    }

    /// Writes the new segment and tombstones; returns the manifest that would commit them.
    #[allow(clippy::type_complexity)]
    fn prepare_commit(
        &self,
        base: &Snapshot,
        progress: Progress<'_>,
    ) -> Result<(Manifest, Option<(SegmentRecord, SegmentGraph)>, usize, usize)> {
        let dir = self.index.dir().to_path_buf();
        let mut manifest = base.manifest.clone();
        manifest.generation += 1;
        for (key, value) in &self.settings {
            manifest.settings.retain(|(k, _)| k != key);
            manifest.settings.push((key.clone(), value.clone()));
        }
        // 1. The new segment.
        let mut new_segment = None;
        let docs: Vec<usize> =
            self.pending.docs.iter().enumerate().filter(|(_, d)| d.is_some()).map(|(i, _)| i).collect();
        let added = docs.len();
        if added > 0 {
            let id = manifest.next_segment;
            manifest.next_segment += 1;
            let fields = docs.iter().map(|&i| {
                let d = self.pending.docs[i].as_ref().expect("filtered above");
                StoredDoc { id: &d.id, text: d.text.as_deref(), metadata: d.metadata.as_deref() }
            });
            let blocks: Vec<Vec<f32>> = manifest
                .config
                .rungs
                .iter()
                .zip(&self.pending.vectors)
                .map(|(r, all)| {
                    docs.iter().flat_map(|&i| &all[i * r.rung.dim..(i + 1) * r.rung.dim]).copied().collect()
                })
                .collect();
            let (record, graph) =
                write_segment(&dir, id, &manifest.config, fields, &blocks, self.index.kernels(), progress)?;
            manifest.segments.push(record.clone());
            new_segment = Some((record, graph));
        }
        // 2. Tombstones.
        let mut deleted = 0;
        for (segment_id, bits) in &self.deletes {
            let Some(record) = manifest.segments.iter_mut().find(|r| r.id == *segment_id) else { continue };
            let before = record.deleted as usize;
            let now = bits.count_ones();
            if now <= before {
                continue;
            }
            deleted += now - before;
            record.deleted = now as u32;
            let name = format!("{}.del-{}", basename(record.id), manifest.generation);
            record.tombstones = Some(tombstones::write(&dir, &name, bits)?);
        }
        manifest.segments.retain(|r| r.live() > 0);
        Ok((manifest, new_segment, added, deleted))
    }

    /// Commits `manifest` (the point of no return) and takes up the new state.
    fn switch(
        &mut self,
        base: &Snapshot,
        manifest: Manifest,
        new_segment: Option<(SegmentRecord, SegmentGraph)>,
    ) -> Result<()> {
        let dir = self.index.dir().to_path_buf();
        if let Err(e) = manifest.commit(&dir) {
            // The rename may have happened before the failure (e.g. the final directory sync).
            let on_disk = Manifest::read(&dir).map(|m| m.generation).unwrap_or(base.manifest.generation);
            if on_disk != manifest.generation {
                self.collect_garbage(&base.manifest);
                return Err(e);
            }
        }
        match self.snapshot_after(base, &manifest, new_segment) {
            Ok(next) => self.index.install(next),
            Err(e) => {
                let why = format!(
                    "generation {} was committed, but this process could not open it: {e}",
                    manifest.generation
                );
                self.poisoned = Some(why.clone());
                return Err(Error::InvalidInput(why));
            }
        }
        self.collect_garbage(&manifest);
        Ok(())
    }

    fn snapshot_after(
        &self,
        previous: &Snapshot,
        manifest: &Manifest,
        new_segment: Option<(SegmentRecord, SegmentGraph)>,
    ) -> Result<Snapshot> {
        let dir = self.index.dir();
        let kernels = self.index.kernels();
        let mut fresh = new_segment
            .map(|(record, graph)| (record.id, Segment::from_parts(dir, &record, &manifest.config, graph, kernels)));
        let mut segments = Vec::with_capacity(manifest.segments.len());
        for record in &manifest.segments {
            let segment = match previous.segments.iter().find(|v| v.record.id == record.id) {
                Some(view) => Arc::clone(&view.segment),
                None => match fresh.take() {
                    Some((id, segment)) if id == record.id => Arc::new(segment?),
                    _ => Arc::new(Segment::open(dir, record, &manifest.config, self.index.kernels())?),
                },
            };
            let tombstones = match (&record.tombstones, self.deletes.get(&record.id)) {
                (None, _) => Arc::new(Tombstones::repeat(false, record.docs as usize)),
                (Some(_), Some(bits)) => Arc::new(bits.clone()),
                (Some(file), None) => match previous.segments.iter().find(|v| v.record.id == record.id) {
                    Some(view) if view.record.tombstones == record.tombstones => Arc::clone(&view.tombstones),
                    _ => Arc::new(tombstones::read(dir, file, record.docs as usize, record.deleted as usize)?),
                },
            };
            segments.push(SegmentView { record: record.clone(), segment, tombstones });
        }
        Ok(Snapshot { manifest: manifest.clone(), segments, kernels: self.index.kernels() })
    }

    /// Merges every segment into one, dropping deleted documents (commits pending changes first).
    pub fn compact(&mut self) -> Result<CommitInfo> {
        self.compact_with(&|_, _, _| {})
    }

    /// [`IndexWriter::compact`], reporting progress.
    pub fn compact_with(&mut self, progress: Progress<'_>) -> Result<CommitInfo> {
        if self.has_changes() {
            self.commit_with(progress)?;
        }
        let snapshot = self.index.snapshot();
        let unchanged = snapshot.segments.len() <= 1 && snapshot.segments.iter().all(|v| v.record.deleted == 0);
        if unchanged {
            let m = &snapshot.manifest;
            return Ok(CommitInfo {
                generation: m.generation,
                segments: m.segments.len(),
                live: m.live_docs(),
                ..Default::default()
            });
        }
        let dir = self.index.dir().to_path_buf();
        // Compaction rewrites every document under fresh checksums: first make sure the data it
        // copies is intact, or damage would be laundered into a "valid" segment.
        for record in snapshot.manifest.segments.iter() {
            crate::files::verify(&dir, &record.vectors)?;
            crate::files::verify(&dir, &record.store)?;
        }
        let prepared = (|| -> Result<(Manifest, SegmentRecord, SegmentGraph)> {
            let mut manifest = snapshot.manifest.clone();
            manifest.generation += 1;
            let config = manifest.config.clone();
            let live: Vec<_> = snapshot.live_addresses().collect();
            let mut blocks: Vec<Vec<f32>> =
                config.rungs.iter().map(|r| Vec::with_capacity(live.len() * r.rung.dim)).collect();
            for (r, block) in blocks.iter_mut().enumerate() {
                for address in &live {
                    let source = snapshot.block(address.segment, r)?;
                    let (start, end) = (address.doc as usize * source.dim, (address.doc as usize + 1) * source.dim);
                    match source.data {
                        BlockData::F32(d) => block.extend_from_slice(&d[start..end]),
                        BlockData::F16(d) => block.extend(d[start..end].iter().map(|v| v.to_f32())),
                        BlockData::I8 { data, scales } => {
                            block.extend(data[start..end].iter().zip(scales).map(|(&v, s)| f32::from(v) * s))
                        }
                    }
                }
            }
            let docs: Vec<StoredDoc<'_>> = live.iter().map(|a| snapshot.doc(*a)).collect::<Result<_>>()?;
            let id = manifest.next_segment;
            manifest.next_segment += 1;
            let (record, graph) =
                write_segment(&dir, id, &config, docs.iter().copied(), &blocks, self.index.kernels(), progress)?;
            manifest.segments = vec![record.clone()];
            Ok((manifest, record, graph))
        })();
        let (manifest, record, graph) = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.collect_garbage(&snapshot.manifest);
                return Err(e);
            }
        };
        // Nothing of the old snapshot is reused: every segment is new.
        let empty =
            Snapshot { manifest: snapshot.manifest.clone(), segments: Vec::new(), kernels: self.index.kernels() };
        self.switch(&empty, manifest, Some((record, graph)))?;
        let m = &self.index.snapshot().manifest;
        Ok(CommitInfo {
            generation: m.generation,
            added: 0,
            deleted: 0,
            segments: m.segments.len(),
            live: m.live_docs(),
        })
    }

    /// Removes files of this index that the manifest does not reference (left by crashes, failed
    /// commits, replaced tombstones and compacted segments). Files that are not Barista's are
    /// left alone. Best effort: a file that cannot be removed now is removed by a later pass.
    fn collect_garbage(&self, manifest: &Manifest) {
        let dir = self.index.dir();
        let keep: std::collections::HashSet<&str> = manifest.files().map(|f| f.name.as_str()).collect();
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let ours = name.starts_with("seg-") || name == "MANIFEST.tmp";
            if ours && !keep.contains(name) && name != MANIFEST && name != LOCK {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Writes segment `id` from documents and per-rung f32 blocks; returns its record and graph.
fn write_segment<'a>(
    dir: &Path,
    id: u64,
    config: &IndexConfig,
    docs: impl ExactSizeIterator<Item = StoredDoc<'a>> + Clone,
    blocks: &[Vec<f32>],
    kernels: crate::scan::Kernels,
    progress: Progress<'_>,
) -> Result<(SegmentRecord, SegmentGraph)> {
    let count = docs.len();
    let name = basename(id);
    let refs: Vec<&[f32]> = blocks.iter().map(Vec::as_slice).collect();
    let vectors = vectors::write(dir, &format!("{name}.vec"), &config.rungs, count, &refs)?;
    let store = store::write(dir, &format!("{name}.docs"), docs.clone())?;
    let ids = ids::write(dir, &format!("{name}.ids"), docs.map(|d| d.id))?;
    // The graph indexes the vectors as stored (rounded to f16 if the rung is stored in f16).
    let graph_rung = config.graph.rung;
    let dim = config.rungs[graph_rung].rung.dim;
    let source = &blocks[graph_rung];
    let graph_vectors: Vec<f32> = match config.rungs[graph_rung].element {
        crate::config::ElementType::I8 => {
            let scales = vectors::i8_scales(source, dim);
            source
                .chunks_exact(dim)
                .flat_map(|row| row.iter().zip(&scales).map(|(v, s)| f32::from(vectors::quantize(*v, *s)) * s))
                .collect()
        }
        crate::config::ElementType::F32 => blocks[graph_rung].clone(),
        crate::config::ElementType::F16 => {
            blocks[graph_rung].iter().map(|v| half::f16::from_f32(*v).to_f32()).collect()
        }
    };
    let mut graph = SegmentGraph::build(&graph_vectors, dim, &config.graph, kernels, &|done, total| {
        progress("graph", done, total)
    })?;
    let graph_files = graph.save(dir, &name)?;
    let record = SegmentRecord {
        id,
        docs: count as u32,
        deleted: 0,
        vectors,
        store,
        ids,
        graph: graph_files,
        graph_max_norm: graph.max_norm(),
        tombstones: None,
    };
    Ok((record, graph))
}
