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
        };
        writer.collect_garbage(&self.snapshot().manifest)?;
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
        if doc.vectors.len() != config.rungs.len() {
            return Err(Error::InvalidInput(format!(
                "document {:?} has {} vectors; the index stores {} rungs",
                doc.id,
                doc.vectors.len(),
                config.rungs.len()
            )));
        }
        for (v, stored) in doc.vectors.iter().zip(&config.rungs) {
            if v.len() != stored.rung.dim {
                return Err(Error::InvalidInput(format!(
                    "document {:?}: the vector for rung {} has {} values, not {}",
                    doc.id,
                    stored.rung,
                    v.len(),
                    stored.rung.dim
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::InvalidInput(format!(
                    "document {:?}: the vector for rung {} is not finite",
                    doc.id, stored.rung
                )));
            }
        }
        self.remove_pending(&doc.id);
        self.mark_committed_deleted(&doc.id)?;
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
        let pending = self.remove_pending(id);
        let committed = self.mark_committed_deleted(id)?;
        Ok(pending || committed)
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

    /// Marks the live committed copy of `id` for deletion; returns whether there was one.
    fn mark_committed_deleted(&mut self, id: &str) -> Result<bool> {
        let snapshot = self.index.snapshot();
        let Some(address) = snapshot.lookup(id)? else { return Ok(false) };
        let view = &snapshot.segments[address.segment as usize];
        let bits = self.deletes.entry(view.record.id).or_insert_with(|| (*view.tombstones).clone());
        let was = bits.replace(address.doc as usize, true);
        Ok(!was)
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
    pub fn commit_with(&mut self, progress: Progress<'_>) -> Result<CommitInfo> {
        let snapshot = self.index.snapshot();
        let dir = self.index.dir().to_path_buf();
        let mut manifest = snapshot.manifest.clone();
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
            if now == before {
                continue;
            }
            deleted += now - before;
            record.deleted = now as u32;
            record.tombstones = if now == 0 {
                None
            } else {
                let name = format!("{}.del-{}", basename(record.id), manifest.generation);
                Some(tombstones::write(&dir, &name, bits)?)
            };
        }
        manifest.segments.retain(|r| r.live() > 0);
        // 3. The atomic switch.
        manifest.commit(&dir)?;
        // 4. The new snapshot for this process.
        let next = self.snapshot_after(&snapshot, &manifest, new_segment)?;
        self.index.install(next);
        self.pending = Pending::default();
        self.deletes.clear();
        self.settings.clear();
        self.collect_garbage(&manifest)?;
        Ok(CommitInfo {
            generation: manifest.generation,
            added,
            deleted,
            segments: manifest.segments.len(),
            live: manifest.live_docs(),
        })
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
                (Some(_), None) => match previous.segments.iter().find(|v| v.record.id == record.id) {
                    Some(view) => Arc::clone(&view.tombstones),
                    None => Arc::new(Tombstones::repeat(false, record.docs as usize)),
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
                }
            }
        }
        let docs: Vec<StoredDoc<'_>> = live.iter().map(|a| snapshot.doc(*a)).collect::<Result<_>>()?;
        let id = manifest.next_segment;
        manifest.next_segment += 1;
        let (record, graph) =
            write_segment(&dir, id, &config, docs.iter().copied(), &blocks, self.index.kernels(), progress)?;
        manifest.segments = vec![record.clone()];
        manifest.commit(&dir)?;
        let next = self.snapshot_after(
            &Snapshot { manifest: manifest.clone(), segments: Vec::new(), kernels: self.index.kernels() },
            &manifest,
            Some((record, graph)),
        )?;
        self.index.install(next);
        self.collect_garbage(&manifest)?;
        Ok(CommitInfo {
            generation: manifest.generation,
            added: 0,
            deleted: 0,
            segments: manifest.segments.len(),
            live: manifest.live_docs(),
        })
    }

    /// Removes files of this index that the manifest does not reference (left by crashes, replaced
    /// tombstones and compacted segments). Files that are not Barista's are left alone.
    fn collect_garbage(&self, manifest: &Manifest) -> Result<()> {
        let dir = self.index.dir();
        let keep: std::collections::HashSet<&str> = manifest.files().map(|f| f.name.as_str()).collect();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::read(dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let ours = name.starts_with("seg-") || name == "MANIFEST.tmp";
            if ours && !keep.contains(name) && name != MANIFEST && name != LOCK {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
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
    let graph_vectors: Vec<f32> = match config.rungs[graph_rung].element {
        crate::config::ElementType::F32 => blocks[graph_rung].clone(),
        crate::config::ElementType::F16 => {
            blocks[graph_rung].iter().map(|v| half::f16::from_f32(*v).to_f32()).collect()
        }
    };
    let graph =
        SegmentGraph::build(&graph_vectors, dim, &config.graph, kernels, &|done, total| progress("graph", done, total));
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
