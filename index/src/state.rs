//! The live state of an index: the committed segments with their current deletions, and the
//! mutable segments that hold what the write-ahead log added since the last flush.
//!
//! One function applies a logged operation ([`State::apply`]): the writer after the group's
//! log append is synced, and opening after a crash when it replays the log. Applying is split in
//! two so that nothing can fail once the log holds the record: [`State::disk_copies`] (the only
//! step that reads files, run before the append) finds the live committed copies an operation
//! deletes; [`State::apply`] then changes memory only.
//!
//! At most one live copy of an id exists at any time (an upsert deletes every other copy), so
//! the order of segments never decides which copy a lookup finds.

use crate::config::IndexConfig;
use crate::error::{Error, Result};
use crate::index::{OpenOptions, SegmentView, Snapshot, Source};
use crate::manifest::{Manifest, SegmentRecord};
use crate::mutable::MutableSegment;
use crate::scan::Kernels;
use crate::segment::Segment;
use crate::tombstones::{self, Tombstones};
use crate::wal::{LogContents, Op};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A committed segment and its deletions as of now (ahead of its committed tombstone file
/// until the next manifest commit).
#[derive(Debug, Clone)]
pub(crate) struct DiskSegment {
    /// As committed.
    pub(crate) record: SegmentRecord,
    pub(crate) segment: Arc<Segment>,
    pub(crate) tombstones: Arc<Tombstones>,
    pub(crate) deleted: u32,
}

impl DiskSegment {
    pub(crate) fn live(&self) -> u32 {
        self.record.docs - self.deleted
    }

    /// Whether deletions happened since the committed tombstones (deletions only accumulate).
    pub(crate) fn dirty(&self) -> bool {
        self.deleted != self.record.deleted
    }
}

/// A mutable segment and the writer's bookkeeping for it.
#[derive(Debug)]
pub(crate) struct MemSegment {
    pub(crate) table: Arc<MutableSegment>,
    /// One bit per row of the capacity.
    pub(crate) tombstones: Arc<Tombstones>,
    pub(crate) deleted: u32,
    /// Live rows by id.
    pub(crate) ids: HashMap<String, u32>,
    /// Operations applied while it was the active one (upserts and deletes).
    pub(crate) ops: u64,
    /// Sequence number of the last of them.
    pub(crate) last_seq: u64,
    /// When its first operation was applied (its age decides a flush).
    pub(crate) first_write: Option<Instant>,
}

impl MemSegment {
    fn new(id: u64, config: &IndexConfig, capacity: usize) -> MemSegment {
        MemSegment {
            table: Arc::new(MutableSegment::new(id, config, capacity)),
            tombstones: Arc::new(Tombstones::repeat(false, capacity)),
            deleted: 0,
            ids: HashMap::new(),
            ops: 0,
            last_seq: 0,
            first_write: None,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.table.rows()
    }

    pub(crate) fn live(&self) -> usize {
        self.rows() - self.deleted as usize
    }

    fn view(&self) -> SegmentView {
        SegmentView {
            id: self.table.id(),
            docs: self.rows() as u32,
            deleted: self.deleted,
            source: Source::Memory(Arc::clone(&self.table)),
            tombstones: Arc::clone(&self.tombstones),
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) kernels: Kernels,
    /// The committed manifest.
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) disk: Vec<DiskSegment>,
    /// Mutable segments waiting to be flushed, oldest first.
    pub(crate) frozen: VecDeque<MemSegment>,
    /// The mutable segment receiving writes.
    pub(crate) active: MemSegment,
    /// Sequence number of the next logged operation.
    pub(crate) next_seq: u64,
    /// Number of the next segment (mutable segments take theirs when created).
    pub(crate) next_segment: u64,
    /// Rows of a new mutable segment.
    pub(crate) capacity: usize,
}

impl State {
    /// The committed state `manifest` describes, with an empty mutable segment; segments of
    /// `previous` that the manifest still names are shared, not reopened.
    pub(crate) fn open(
        dir: &Path,
        manifest: Manifest,
        previous: Option<&Snapshot>,
        kernels: Kernels,
        options: OpenOptions,
        capacity: usize,
    ) -> Result<State> {
        if options.verify {
            // Graphs are verified as they load, below: a damaged one is reported and its
            // segment scanned, not fatal.
            for record in manifest.segments.iter().flat_map(SegmentRecord::data_files) {
                crate::files::verify(dir, record)?;
            }
        }
        let mut disk = Vec::with_capacity(manifest.segments.len());
        for record in &manifest.segments {
            // A segment's graphs are numbered by the configuration's graph rungs: reused only
            // while those are the same.
            let same_rungs = |p: &&Snapshot| p.config().graph.rungs == manifest.config.graph.rungs;
            let previous_segment = previous.filter(same_rungs).and_then(|p| {
                p.segments.iter().find_map(|v| match &v.source {
                    Source::Disk(s) if v.id == record.id && s.has_graphs_of(record) => Some(Arc::clone(s)),
                    _ => None,
                })
            });
            // One with a graph found damaged is opened again, its graphs checked now: the file
            // may have been built again under the same record (the build is deterministic), or
            // still be damaged (then it is found again, for a writer to build).
            let damaged = previous_segment.as_ref().is_some_and(|s| !s.damaged_graphs().is_empty());
            let segment = match previous_segment {
                Some(segment) if !damaged => segment,
                _ => {
                    let segment = Arc::new(Segment::open(dir, record, &manifest.config)?);
                    if !options.lazy_graphs || options.verify || damaged {
                        segment.load_graphs()?;
                    }
                    segment
                }
            };
            // Deletions are read from the committed file (a previous snapshot may hold more, from
            // the log, which is replayed on top).
            let tombstones = match &record.tombstones {
                None => Arc::new(Tombstones::repeat(false, record.docs as usize)),
                Some(t) => Arc::new(tombstones::read(dir, t, record.docs as usize, record.deleted as usize)?),
            };
            disk.push(DiskSegment { record: record.clone(), segment, tombstones, deleted: record.deleted });
        }
        let next_segment = manifest.next_segment;
        let active = MemSegment::new(next_segment, &manifest.config, capacity);
        Ok(State {
            kernels,
            next_seq: manifest.log_applied + 1,
            manifest: Arc::new(manifest),
            disk,
            frozen: VecDeque::new(),
            active,
            next_segment: next_segment + 1,
            capacity,
        })
    }

    pub(crate) fn config(&self) -> &IndexConfig {
        &self.manifest.config
    }

    /// The live committed copies of `id`: (position in `disk`, document).
    pub(crate) fn disk_copies(&self, id: &str) -> Result<Vec<(usize, u32)>> {
        let mut copies = Vec::new();
        for (s, d) in self.disk.iter().enumerate() {
            for doc in d.segment.find(id)? {
                if !d.tombstones.get(doc as usize).is_some_and(|b| *b) {
                    copies.push((s, doc));
                }
            }
        }
        Ok(copies)
    }

    /// Whether the active mutable segment can take `rows` more documents of `bytes` bytes
    /// without passing its capacity or `max_bytes`.
    pub(crate) fn fits(&self, rows: usize, bytes: usize, max_bytes: usize) -> bool {
        let a = &self.active;
        a.rows() + rows <= a.table.capacity() && (a.rows() == 0 || a.table.bytes() + bytes <= max_bytes)
    }

    /// Freezes the active mutable segment (it waits for its flush, still searched) and starts a
    /// new one with room for at least `rows` documents.
    pub(crate) fn freeze(&mut self, rows: usize) {
        let id = self.next_segment;
        self.next_segment += 1;
        let fresh = MemSegment::new(id, &self.manifest.config, self.capacity.max(rows));
        let old = std::mem::replace(&mut self.active, fresh);
        self.frozen.push_back(old);
    }

    /// Applies operation `seq` (see the module docs); `disk` is what [`State::disk_copies`]
    /// found for its id. Returns whether a live copy of the id existed.
    pub(crate) fn apply(&mut self, seq: u64, op: &Op, disk: &[(usize, u32)]) -> bool {
        let mut existed = false;
        for &(s, doc) in disk {
            let d = &mut self.disk[s];
            if !d.tombstones.get(doc as usize).is_some_and(|b| *b) {
                Arc::make_mut(&mut d.tombstones).set(doc as usize, true);
                d.deleted += 1;
                existed = true;
            }
        }
        for m in self.frozen.iter_mut().chain(std::iter::once(&mut self.active)) {
            if let Some(row) = m.ids.remove(op.id()) {
                Arc::make_mut(&mut m.tombstones).set(row as usize, true);
                m.deleted += 1;
                existed = true;
            }
        }
        if let Op::Upsert(doc) = op {
            let row = match self.active.table.push(doc) {
                Ok(row) => row,
                Err(_) => {
                    // Callers make room first; should they not, grow rather than lose the write.
                    self.freeze(1);
                    self.active.table.push(doc).unwrap_or_default()
                }
            };
            self.active.ids.insert(doc.id.clone(), row);
        }
        self.active.ops += 1;
        self.active.last_seq = seq;
        self.active.first_write.get_or_insert_with(Instant::now);
        self.next_seq = self.next_seq.max(seq + 1);
        existed
    }

    /// Replays the records of a log file that come after the committed state and after what
    /// was replayed before (`expected` is the next sequence number due; records before it are
    /// skipped). A gap in the numbering means a record is missing: the log is damaged.
    pub(crate) fn replay(&mut self, contents: &LogContents, path: &Path, expected: &mut u64) -> Result<()> {
        for (first, ops) in &contents.records {
            let first = *first;
            let end = first + ops.len() as u64;
            if end <= *expected {
                continue;
            }
            if first > *expected {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "it continues at logged write {first} but write {} is missing (a log file was lost or \
                         damaged)",
                        *expected
                    ),
                ));
            }
            let rows = ops.iter().filter(|op| matches!(op, Op::Upsert(_))).count();
            if !self.fits(rows, 0, usize::MAX) {
                self.freeze(rows);
            }
            for (i, op) in ops.iter().enumerate() {
                let seq = first + i as u64;
                if seq < *expected {
                    continue;
                }
                let copies = self.disk_copies(op.id())?;
                self.apply(seq, op, &copies);
            }
            *expected = end;
        }
        Ok(())
    }

    /// Live documents.
    pub(crate) fn live(&self) -> u64 {
        let disk: u64 = self.disk.iter().map(|d| u64::from(d.live())).sum();
        let memory: usize = self.frozen.iter().chain(std::iter::once(&self.active)).map(MemSegment::live).sum();
        disk + memory as u64
    }

    /// Everything as of now, for readers.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut segments: Vec<SegmentView> = self
            .disk
            .iter()
            .map(|d| SegmentView {
                id: d.record.id,
                docs: d.record.docs,
                deleted: d.deleted,
                source: Source::Disk(Arc::clone(&d.segment)),
                tombstones: Arc::clone(&d.tombstones),
            })
            .collect();
        segments.extend(
            self.frozen.iter().chain(std::iter::once(&self.active)).filter(|m| m.rows() > 0).map(MemSegment::view),
        );
        Snapshot { manifest: Arc::clone(&self.manifest), segments, kernels: self.kernels }
    }
}
