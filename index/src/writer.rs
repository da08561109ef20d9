//! Writing: the write-ahead log with group commit, the mutable segment, and the background
//! flushes and merges that turn it into immutable segments (the design of Qdrant's WAL and
//! appendable segment, tantivy's and Lucene's merge policies and near-real-time readers).
//!
//! **A write** ([`IndexWriter::write`]) is a request's operations, each document already
//! checked ([`NewDocument`]). Concurrent requests form a group: the first to arrive leads it
//! and appends every waiting request's record to the log in one write and one `fdatasync`
//! (group commit), applies them to the mutable segment and publishes a new snapshot; then
//! every request of the group returns. Acknowledged means synced in the log and visible to the
//! next search. If the append or the sync fails, the log is cut back to where it was and every
//! request of the group gets the error: a failed request leaves no trace, in memory or on
//! disk.
//!
//! **A flush** (background, by size or age) writes a frozen mutable segment as an immutable
//! one (vectors, store, ids, a graph if it is large enough), writes new tombstone files for
//! segments that lost documents, and commits a manifest whose `log_applied` covers its
//! records; the log files it covered are removed. **A merge** (background, chosen by
//! [`MergePolicy`]) rewrites a few segments as one without their deleted documents; deletions
//! that arrive while it runs are carried over to the merged segment when it commits. Searches
//! keep their snapshot throughout: a merge or flush never changes a result in flight.
//!
//! **A bulk segment** ([`IndexWriter::add_segment`], `barista index`) skips the log: its
//! documents are written as one segment and committed with the manifest.
//!
//! Every manifest commit writes new files and then atomically replaces `MANIFEST` (see
//! [`crate::manifest`]); a crash at any point leaves the last committed manifest plus the log,
//! whose replay restores every acknowledged write. Files the manifest does not name (a crash's
//! leftovers, replaced tombstones, merged segments) are removed when the writer opens and after
//! every commit. Only one writer per index exists at a time (`LOCK`, an OS file lock that a
//! crashed process releases).

use crate::config::IndexConfig;
use crate::document::NewDocument;
use crate::error::{Error, Result};
use crate::graph::{self, build::BuildParams};
use crate::index::{Index, Snapshot};
use crate::manifest::{GraphRecord, MANIFEST, Manifest, SegmentRecord};
use crate::merge::{Candidate, MergePolicy};
use crate::mutable::MutableSegment;
use crate::recovery::{self, LogFile, LogSummary};
use crate::segment::{Segment, basename};
use crate::state::{DiskSegment, State};
use crate::store::StoredDoc;
use crate::tombstones::{self, Tombstones};
use crate::vectors::{self, BlockData};
use crate::wal::{self, LogWriter, Op};
use crate::{ids, store};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Name of the writer lock file.
pub const LOCK: &str = "LOCK";

/// Rows of a mutable segment when nothing else is said (see [`WriterOptions::flush_docs`]).
pub(crate) const DEFAULT_CAPACITY: usize = 4_096;

/// Progress of a long step: `(what, done, total)`.
pub type Progress<'a> = &'a dyn Fn(&str, usize, usize);

/// How the writer flushes and merges.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Documents a mutable segment holds before it is flushed (default 4,096).
    pub flush_docs: usize,
    /// Bytes (vectors as kept in memory, ids, texts, metadata) a mutable segment holds before
    /// it is flushed (default 64 MiB).
    pub flush_bytes: usize,
    /// Age of its first write after which a mutable segment is flushed (default 30 s): it
    /// bounds the log a restart replays.
    pub flush_age: Duration,
    /// Frozen mutable segments allowed to wait for their flush; past it writes are refused
    /// ([`Error::Busy`]) until a flush catches up (default 4).
    pub max_frozen: usize,
    /// Which segments merge.
    pub merge: MergePolicy,
    /// Run flushes and merges on background threads (default). Without, they happen only when
    /// [`IndexWriter::flush`], [`IndexWriter::merge`] or [`IndexWriter::compact`] is called
    /// (tests and tools that want every step on their own thread).
    pub background: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            flush_docs: DEFAULT_CAPACITY,
            flush_bytes: 64 << 20,
            flush_age: Duration::from_secs(30),
            max_frozen: 4,
            merge: MergePolicy::default(),
            background: true,
        }
    }
}

/// What a manifest commit (a bulk segment, a compaction, a setting) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// The new generation.
    pub generation: u64,
    /// Documents written in a new segment.
    pub added: usize,
    /// Committed documents newly deleted (or replaced).
    pub deleted: usize,
    /// Segments after the commit (mutable ones included).
    pub segments: usize,
    /// Live documents after the commit.
    pub live: u64,
}

/// What a write did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteInfo {
    /// Sequence number of its first operation in the log.
    pub first_seq: u64,
    /// Documents added (or replacing another).
    pub added: usize,
    /// Operations whose id had a live document, which they deleted or replaced.
    pub existed: usize,
    /// Live documents right after the write.
    pub live: u64,
}

/// What the writer is doing and holds; for `barista info`, `GET /stats` and tests.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct WriterStats {
    /// Committed generation.
    pub generation: u64,
    /// Logged operations that are in segments.
    pub log_applied: u64,
    /// Logged operations so far (the sequence number of the last one).
    pub log_last: u64,
    /// Log files kept and their bytes.
    pub log_files: usize,
    /// Bytes of the log files kept.
    pub log_bytes: u64,
    /// Documents in mutable segments (written since the last flush), deleted ones included.
    pub mutable_documents: usize,
    /// Mutable segments frozen and waiting for their flush.
    pub flushes_waiting: usize,
    /// Flushes done since the writer opened.
    pub flushes: u64,
    /// Merges running now (0 or 1).
    pub merges_running: usize,
    /// Merges done since the writer opened.
    pub merges: u64,
    /// Segments given graphs since the writer opened, outside flushes and merges: graphs
    /// built (missing, or found damaged) or given the i8 copy of their rows.
    pub graph_builds: u64,
    /// Group commits (one log append and one sync each) since the writer opened.
    pub group_commits: u64,
    /// Requests those group commits carried.
    pub requests: u64,
    /// The last background failure (a flush or merge that will be retried), if any.
    pub last_error: Option<String>,
    /// What opening found in the log.
    pub recovery: LogSummary,
}

/// What the writer's lock protects: the state and the log.
struct Live {
    state: State,
    log: LogWriter,
    /// Older log files kept until a flush covers them.
    logs: Vec<LogFile>,
    /// Segment numbers whose files are being written (garbage collection leaves them alone).
    reserved: HashSet<u64>,
}

#[derive(Default)]
struct Group {
    next_ticket: u64,
    waiting: Vec<(u64, Vec<Op>)>,
    /// Someone is appending a group, or writes are paused.
    busy: bool,
    done: HashMap<u64, Result<WriteInfo>>,
}

#[derive(Default)]
struct Wake {
    stop: bool,
    flush: bool,
    merge: bool,
}

#[derive(Default)]
struct Counters {
    flushes: AtomicU64,
    merges: AtomicU64,
    graph_builds: AtomicU64,
    merges_running: AtomicUsize,
    group_commits: AtomicU64,
    requests: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct Inner {
    index: Index,
    options: WriterOptions,
    _lock: File,
    live: Mutex<Live>,
    group: Mutex<Group>,
    group_done: Condvar,
    wake: Mutex<Wake>,
    wake_cv: Condvar,
    stopping: AtomicBool,
    /// Held while flushing one frozen mutable segment (flushes go oldest first, one at a time).
    flushing: Mutex<()>,
    /// Held while merging (one merge at a time).
    merging: Mutex<()>,
    poisoned: Mutex<Option<String>>,
    counters: Counters,
    recovery: LogSummary,
}

/// The only writer of an index (holds its lock). `Send + Sync`: every method takes `&self`,
/// concurrent writes share group commits. Dropping it stops the background work (a merge in
/// progress is abandoned, its files removed) and releases the lock.
pub struct IndexWriter {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for IndexWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexWriter").field("index", &self.inner.index).finish()
    }
}

impl Index {
    /// Takes the index's writer lock with the default [`WriterOptions`].
    pub fn writer(&self) -> Result<IndexWriter> {
        self.writer_with(WriterOptions::default())
    }

    /// Takes the index's writer lock, replays the log (cutting a torn tail), removes files the
    /// manifest does not name, and starts the background flushes and merges.
    ///
    /// # Errors
    /// [`Error::Locked`] if another writer holds the index; damage in the log or the segments.
    pub fn writer_with(&self, options: WriterOptions) -> Result<IndexWriter> {
        let path = self.dir().join(LOCK);
        let file =
            File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::write(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path }),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::write(&path, e)),
        }
        let options =
            WriterOptions { flush_docs: options.flush_docs.max(1), max_frozen: options.max_frozen.max(1), ..options };
        let previous = self.snapshot();
        let recovered =
            recovery::recover(self.dir(), Some(&previous), self.kernels(), self.options(), options.flush_docs, true)?;
        let mut state = recovered.state;
        let applied = state.manifest.log_applied;
        // Replayed writes wait for their flush like any other; new ones go to a new log file.
        if state.active.ops > 0 {
            state.freeze(0);
        }
        let number = recovered.logs.iter().map(|l| l.number).max().unwrap_or(0) + 1;
        let log = LogWriter::create(self.dir(), number)?;
        let logs = recovered.logs.into_iter().filter(|l| l.last_seq > applied).collect();
        let live = Live { state, log, logs, reserved: HashSet::new() };
        let inner = Arc::new(Inner {
            index: self.clone(),
            options,
            _lock: file,
            live: Mutex::new(live),
            group: Mutex::new(Group::default()),
            group_done: Condvar::new(),
            wake: Mutex::new(Wake::default()),
            wake_cv: Condvar::new(),
            stopping: AtomicBool::new(false),
            flushing: Mutex::new(()),
            merging: Mutex::new(()),
            poisoned: Mutex::new(None),
            counters: Counters::default(),
            recovery: recovered.summary.clone(),
        });
        {
            let live = inner.lock_live();
            inner.collect_garbage(&live);
            inner.index.install(live.state.snapshot());
        }
        self.set_writing(true);
        self.set_log_summary(recovered.summary);
        let mut threads = Vec::new();
        if inner.options.background {
            for (name, work) in [("barista-flush", flusher as fn(&Inner)), ("barista-merge", merger as fn(&Inner))] {
                let worker = Arc::clone(&inner);
                let spawned = std::thread::Builder::new().name(name.into()).spawn(move || work(&worker));
                match spawned {
                    Ok(handle) => threads.push(handle),
                    Err(e) => {
                        let writer = IndexWriter { inner, threads };
                        drop(writer);
                        return Err(Error::write(self.dir(), e));
                    }
                }
            }
            // Replayed writes start flushing at once.
            inner.wake(|w| w.flush = true);
        }
        Ok(IndexWriter { inner, threads })
    }
}

impl Drop for IndexWriter {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.wake(|w| w.stop = true);
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        self.inner.index.set_writing(false);
    }
}

impl IndexWriter {
    /// The index being written.
    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    /// The options it runs with.
    pub fn options(&self) -> &WriterOptions {
        &self.inner.options
    }

    /// Writes one request's operations, atomically: when this returns `Ok` they are synced in
    /// the log (durable) and visible to every new snapshot; when it returns an error nothing of
    /// them happened, in memory or on disk. Concurrent calls share one log append and sync.
    ///
    /// # Errors
    /// I/O failures of the log (a full disk: [`Error::is_storage_full`]), [`Error::Busy`] when
    /// flushes are behind, damage found while looking up replaced documents, and
    /// [`Error::Unusable`] once the log could not be rolled back after a failure.
    pub fn write(&self, ops: Vec<Op>) -> Result<WriteInfo> {
        self.inner.check_usable()?;
        if ops.is_empty() {
            let live = self.inner.lock_live();
            return Ok(WriteInfo { first_seq: live.state.next_seq, live: live.state.live(), ..Default::default() });
        }
        let inner = &self.inner;
        let ticket = {
            let mut group = inner.lock_group();
            let ticket = group.next_ticket;
            group.next_ticket += 1;
            group.waiting.push((ticket, ops));
            ticket
        };
        let mut group = inner.lock_group();
        loop {
            if let Some(result) = group.done.remove(&ticket) {
                return result;
            }
            if !group.busy {
                // Lead a group of everything waiting (our own request among it).
                group.busy = true;
                let batch = std::mem::take(&mut group.waiting);
                drop(group);
                let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.commit_group(&batch)))
                    .unwrap_or_else(|_| {
                        inner.poison("a group commit panicked, a bug: its writes may or may not be in the log".into());
                        let error = inner.check_usable().err().unwrap_or(Error::Cancelled);
                        batch.iter().map(|(t, _)| (*t, Err(error.duplicate()))).collect()
                    });
                group = inner.lock_group();
                group.done.extend(results);
                group.busy = false;
                inner.group_done.notify_all();
                continue;
            }
            group = inner.group_done.wait(group).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Writes `docs` as one new segment and commits it, bypassing the log (bulk loading: `barista
    /// index`). Documents replace live ones with their ids; within `docs` the last copy of an id
    /// wins. Writes in the mutable segment are flushed first, so the new segment is the newest
    /// state of its ids. All or nothing.
    pub fn add_segment(&self, docs: &[NewDocument], progress: Progress<'_>) -> Result<CommitInfo> {
        self.inner.check_usable()?;
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            last.insert(&d.id, i);
        }
        let kept: Vec<&NewDocument> =
            docs.iter().enumerate().filter(|(i, d)| last[d.id.as_str()] == *i).map(|(_, d)| d).collect();
        if kept.is_empty() {
            return Ok(self.inner.commit_info(0, 0));
        }
        let inner = &self.inner;
        let config = inner.config();
        for d in &kept {
            d.check_fits(&config)?;
        }
        let id = inner.reserve();
        let blocks: Vec<Vec<f32>> =
            (0..config.rungs.len()).map(|r| kept.iter().flat_map(|d| d.vectors[r].iter().copied()).collect()).collect();
        let fields = kept.iter().map(|d| StoredDoc {
            id: &d.id,
            title: d.title.as_deref(),
            text: d.text.as_deref(),
            metadata: d.metadata.as_deref(),
        });
        let written =
            write_segment(inner.index.dir(), id, &config, fields, &blocks, inner.index.kernels(), progress, &|| {
                inner.stopping.load(Ordering::Relaxed)
            });
        drop(blocks);
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                inner.release(id, true);
                return Err(e);
            }
        };
        let paused = inner.pause_writes();
        let result = (|| {
            inner.flush_all()?;
            let mut live = inner.lock_live();
            let mut disk = live.state.disk.clone();
            let mut deleted = 0;
            for d in &kept {
                for (s, doc) in live.state.disk_copies(&d.id)? {
                    let seg = &mut disk[s];
                    if !seg.tombstones.get(doc as usize).is_some_and(|b| *b) {
                        Arc::make_mut(&mut seg.tombstones).set(doc as usize, true);
                        seg.deleted += 1;
                        deleted += 1;
                    }
                }
            }
            // The graph rungs may have changed while the segment was written
            // (`set_graph_rungs`): it keeps the graphs the current configuration names.
            let current = live.state.config().clone();
            let mut record = written;
            record.graphs.retain(|g| current.graph.rungs.contains(&(g.rung as usize)));
            let segment = Segment::open(inner.index.dir(), &record, &current)?;
            segment.load_new_graphs()?;
            let docs_count = record.docs as usize;
            disk.push(DiskSegment {
                tombstones: Arc::new(Tombstones::repeat(false, docs_count)),
                deleted: 0,
                segment: Arc::new(segment),
                record,
            });
            let applied = live.state.manifest.log_applied;
            inner.commit_disk(&mut live, disk, applied, |_| {}, |_| {})?;
            Ok::<_, Error>((docs_count, deleted))
        })();
        drop(paused);
        inner.release(id, result.is_err());
        let (added, deleted) = result?;
        inner.wake(|w| w.merge = true);
        Ok(inner.commit_info(added, deleted))
    }

    /// Writes every mutable segment out as an immutable one now (normally the background
    /// does, by size and age).
    pub fn flush(&self) -> Result<CommitInfo> {
        self.inner.check_usable()?;
        self.inner.flush_all()?;
        self.inner.wake(|w| w.merge = true);
        Ok(self.inner.commit_info(0, 0))
    }

    /// Runs the merges the policy asks for now (normally the background does); returns how
    /// many ran.
    pub fn merge(&self, progress: Progress<'_>) -> Result<usize> {
        self.inner.check_usable()?;
        let mut merges = 0;
        while self.inner.merge_once(None, progress)? {
            merges += 1;
        }
        Ok(merges)
    }

    /// Flushes, then merges segments until every segment that can be is merged and no deleted
    /// documents remain (a full merge: `barista compact`, `POST /admin/compact`): into one
    /// segment up to the merge policy's `max_docs` live documents (default 1,000,000), into
    /// segments of at most that size past it, so that memory stays bounded (see
    /// [`MergePolicy::choose_compaction`]). Writes go on meanwhile; those that arrive during it
    /// stay in the mutable segment.
    pub fn compact(&self) -> Result<CommitInfo> {
        self.compact_with(&|_, _, _| {})
    }

    /// [`IndexWriter::compact`], reporting progress.
    pub fn compact_with(&self, progress: Progress<'_>) -> Result<CommitInfo> {
        self.inner.check_usable()?;
        self.inner.flush_all()?;
        // Each merge removes a segment or a segment's deletions, and segments this compaction made
        // are not rewritten again for deletions arriving meanwhile (the background merges take
        // those): 2 × segments bounds the passes.
        let before: HashSet<u64> = self.inner.lock_live().state.disk.iter().map(|d| d.record.id).collect();
        let passes = 2 * before.len();
        for _ in 0..passes {
            if !self.inner.merge_once(Some(&before), progress)? {
                break;
            }
        }
        Ok(self.inner.commit_info(0, 0))
    }

    /// Sets which stored rungs carry HNSW graphs (`rungs`: positions in the ladder; any order,
    /// repeats ignored) and commits it. Graphs on rungs no longer named leave the manifest (their
    /// files are removed once no snapshot maps them); segments large enough for a graph
    /// (`GraphParams::min_docs`) get one on each newly named rung from the background builder's
    /// next pass, or at once through [`IndexWriter::build_graphs`]. Until then searches scan them. Waits for a
    /// running flush or merge to finish first.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a rung the index does not store; I/O errors from the commit,
    /// which then changes nothing.
    pub fn set_graph_rungs(&self, rungs: &[usize]) -> Result<CommitInfo> {
        let inner = &self.inner;
        inner.check_usable()?;
        let mut rungs = rungs.to_vec();
        rungs.sort_unstable();
        rungs.dedup();
        let _merging = inner.merging.lock().unwrap_or_else(|e| e.into_inner());
        let _flushing = inner.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let mut live = inner.lock_live();
        let mut config = live.state.config().clone();
        if config.graph.rungs == rungs {
            drop(live);
            return Ok(inner.commit_info(0, 0));
        }
        config.graph.rungs = rungs;
        config.validate().map_err(|e| Error::InvalidInput(format!("cannot put graphs there: {e}")))?;
        let dir = inner.index.dir();
        // Every segment is opened again: its graphs are numbered by the configuration's rungs.
        let disk = live
            .state
            .disk
            .iter()
            .map(|d| {
                let mut record = d.record.clone();
                record.graphs.retain(|g| config.graph.rungs.contains(&(g.rung as usize)));
                let segment = Segment::open(dir, &record, &config)?;
                segment.load_graphs()?;
                Ok(DiskSegment {
                    record,
                    segment: Arc::new(segment),
                    tombstones: Arc::clone(&d.tombstones),
                    deleted: d.deleted,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let applied = live.state.manifest.log_applied;
        inner.commit_disk(&mut live, disk, applied, |m| m.config = config, |_| {})?;
        drop(live);
        Ok(inner.commit_info(0, 0))
    }

    /// Builds now every graph that a segment should have and lacks (after
    /// [`IndexWriter::set_graph_rungs`], or in an index upgraded from format 2), and gives
    /// graphs on f16 / f32 rungs written without the i8 copy of their rows that copy (the links
    /// kept), one segment at a time, each committed as it is done; returns how many segments
    /// got graphs or copies.
    pub fn build_graphs(&self, progress: Progress<'_>) -> Result<usize> {
        self.inner.check_usable()?;
        let mut built = 0;
        while self.inner.graph_once(progress)? {
            built += 1;
        }
        Ok(built)
    }

    /// Sets a setting of a layer above and commits it with the manifest.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<CommitInfo> {
        self.inner.check_usable()?;
        let mut live = self.inner.lock_live();
        let disk = live.state.disk.clone();
        let applied = live.state.manifest.log_applied;
        let edit = |m: &mut Manifest| {
            m.settings.retain(|(k, _)| k != key);
            m.settings.push((key.to_string(), value.to_string()));
        };
        self.inner.commit_disk(&mut live, disk, applied, edit, |_| {})?;
        drop(live);
        Ok(self.inner.commit_info(0, 0))
    }

    /// What the writer holds and does.
    pub fn stats(&self) -> WriterStats {
        let inner = &self.inner;
        let live = inner.lock_live();
        let state = &live.state;
        let mutable: usize = state.frozen.iter().chain(std::iter::once(&state.active)).map(|m| m.rows()).sum();
        let dir = inner.index.dir();
        let log_bytes: u64 = live
            .logs
            .iter()
            .map(|l| std::fs::metadata(dir.join(wal::file_name(l.number))).map_or(0, |m| m.len()))
            .sum::<u64>()
            + live.log.len();
        let c = &inner.counters;
        WriterStats {
            generation: state.manifest.generation,
            log_applied: state.manifest.log_applied,
            log_last: state.next_seq - 1,
            log_files: live.logs.len() + 1,
            log_bytes,
            mutable_documents: mutable,
            flushes_waiting: state.frozen.len(),
            flushes: c.flushes.load(Ordering::Relaxed),
            merges_running: c.merges_running.load(Ordering::Relaxed),
            merges: c.merges.load(Ordering::Relaxed),
            graph_builds: c.graph_builds.load(Ordering::Relaxed),
            group_commits: c.group_commits.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            last_error: c.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            recovery: inner.recovery.clone(),
        }
    }

    /// The current snapshot (as [`Index::snapshot`]).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.index.snapshot()
    }
}

impl Inner {
    fn lock_live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_group(&self) -> MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn config(&self) -> IndexConfig {
        self.lock_live().state.config().clone()
    }

    fn wake(&self, set: impl FnOnce(&mut Wake)) {
        set(&mut self.wake.lock().unwrap_or_else(|e| e.into_inner()));
        self.wake_cv.notify_all();
    }

    fn check_usable(&self) -> Result<()> {
        match &*self.poisoned.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Ok(()),
            Some(why) => Err(Error::Unusable(format!(
                "this index writer takes no more work: {why}. Restart the process (or reopen the index): opening \
                 recovers the last committed state and the log"
            ))),
        }
    }

    fn poison(&self, why: String) {
        self.poisoned.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(why);
    }

    fn set_last_error(&self, error: Option<String>) {
        *self.counters.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    fn commit_info(&self, added: usize, deleted: usize) -> CommitInfo {
        let live = self.lock_live();
        let snapshot = self.index.snapshot();
        CommitInfo {
            generation: live.state.manifest.generation,
            added,
            deleted,
            segments: snapshot.segment_count(),
            live: live.state.live(),
        }
    }

    /// Blocks group commits (waiting for the one in progress) until the returned guard is
    /// dropped (also when what runs meanwhile panics).
    fn pause_writes(&self) -> WritesPaused<'_> {
        let mut group = self.lock_group();
        while group.busy {
            group = self.group_done.wait(group).unwrap_or_else(|e| e.into_inner());
        }
        group.busy = true;
        WritesPaused { inner: self }
    }

    /// A number for a new segment whose files are about to be written.
    fn reserve(&self) -> u64 {
        let mut live = self.lock_live();
        let id = live.state.next_segment;
        live.state.next_segment += 1;
        live.reserved.insert(id);
        id
    }

    /// Ends a reservation; `failed` removes the files written under it (unless the writer
    /// cannot tell whether a manifest names them: then they stay for the next writer to judge).
    fn release(&self, id: u64, failed: bool) {
        let mut live = self.lock_live();
        live.reserved.remove(&id);
        if failed && self.check_usable().is_ok() {
            remove_segment_files(self.index.dir(), id, &live.state.manifest);
        }
    }

    /// The group commit (see the module docs); one result per request, in order.
    fn commit_group(&self, batch: &[(u64, Vec<Op>)]) -> Vec<(u64, Result<WriteInfo>)> {
        let mut out = Vec::with_capacity(batch.len());
        if let Err(e) = self.check_usable() {
            return batch.iter().map(|(t, _)| (*t, Err(e.duplicate()))).collect();
        }
        let mut live = self.lock_live();
        // 1. Each request fits this index and the log, and the committed copies each operation
        //    replaces (the only step that reads files) are found.
        let mut accepted = Vec::with_capacity(batch.len());
        for (ticket, ops) in batch {
            let checked = check_request(live.state.config(), ops)
                .and_then(|()| ops.iter().map(|op| live.state.disk_copies(op.id())).collect::<Result<Vec<_>>>());
            match checked {
                Ok(copies) => accepted.push((*ticket, ops, copies)),
                Err(e) => out.push((*ticket, Err(e))),
            }
        }
        if accepted.is_empty() {
            return out;
        }
        // 2. Room in the mutable segment.
        let upserts = |ops: &[Op]| ops.iter().filter(|op| matches!(op, Op::Upsert(_))).count();
        let rows: usize = accepted.iter().map(|(_, ops, _)| upserts(ops)).sum();
        let bytes: usize = accepted
            .iter()
            .flat_map(|(_, ops, _)| ops.iter())
            .map(|op| match op {
                Op::Upsert(d) => d.size(),
                Op::Delete(_) => 0,
            })
            .sum();
        if !live.state.fits(rows, bytes, self.options.flush_bytes)
            && let Err(e) = self.freeze(&mut live, rows)
        {
            out.extend(accepted.iter().map(|(t, _, _)| (*t, Err(e.duplicate()))));
            return out;
        }
        // 3. One append, one sync.
        let mut buffer = Vec::new();
        let mut firsts = Vec::with_capacity(accepted.len());
        let mut seq = live.state.next_seq;
        for (_, ops, _) in &accepted {
            wal::encode_record(&mut buffer, seq, ops);
            firsts.push(seq);
            seq += ops.len() as u64;
        }
        if let Err(failure) = live.log.append_synced(&buffer) {
            if !failure.rolled_back {
                self.poison(format!(
                    "the log could not be cut back after a failed write ({}), so it may hold writes that were refused",
                    failure.error
                ));
            }
            out.extend(accepted.iter().map(|(t, _, _)| (*t, Err(failure.error.duplicate()))));
            return out;
        }
        self.counters.group_commits.fetch_add(1, Ordering::Relaxed);
        self.counters.requests.fetch_add(accepted.len() as u64, Ordering::Relaxed);
        // 4. Apply (nothing can fail from here on) and publish.
        let mut results = Vec::with_capacity(accepted.len());
        for ((ticket, ops, copies), first) in accepted.iter().zip(firsts) {
            let mut existed = 0;
            for (i, (op, copies)) in ops.iter().zip(copies).enumerate() {
                if live.state.apply(first + i as u64, op, copies) {
                    existed += 1;
                }
            }
            results.push((*ticket, WriteInfo { first_seq: first, added: upserts(ops), existed, live: 0 }));
        }
        let live_docs = live.state.live();
        out.extend(results.into_iter().map(|(t, info)| (t, Ok(WriteInfo { live: live_docs, ..info }))));
        self.index.install(live.state.snapshot());
        // 5. A full mutable segment starts its flush now.
        let active = &live.state.active;
        if (active.rows() >= self.options.flush_docs || active.table.bytes() >= self.options.flush_bytes)
            && live.state.frozen.len() < self.options.max_frozen
        {
            let _ = self.freeze(&mut live, 0);
        }
        out
    }

    /// Freezes the active mutable segment and switches to a new log file (see
    /// [`State::freeze`]).
    fn freeze(&self, live: &mut Live, rows: usize) -> Result<()> {
        if live.state.active.ops == 0 {
            // Nothing logged into it: just make it large enough.
            if live.state.active.table.capacity() < rows {
                live.state.freeze(rows);
                live.state.frozen.pop_back();
            }
            return Ok(());
        }
        if live.state.frozen.len() >= self.options.max_frozen {
            let last = self.counters.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return Err(Error::Busy(format!(
                "{} mutable segments are waiting for their flush{}; retry shortly",
                live.state.frozen.len(),
                last.map_or(String::new(), |e| format!(" (the last flush failed: {e})"))
            )));
        }
        let next = LogWriter::create(self.index.dir(), live.log.number() + 1)?;
        let old = std::mem::replace(&mut live.log, next);
        live.logs.push(LogFile { number: old.number(), last_seq: live.state.active.last_seq });
        live.state.freeze(rows);
        self.wake(|w| w.flush = true);
        Ok(())
    }

    /// Freezes the active mutable segment (if it took writes) and flushes every frozen one.
    fn flush_all(&self) -> Result<()> {
        {
            let mut live = self.lock_live();
            if live.state.active.ops > 0 {
                // Flush first if the queue is full, then freeze.
                while live.state.frozen.len() >= self.options.max_frozen {
                    drop(live);
                    self.flush_one()?;
                    live = self.lock_live();
                }
                self.freeze(&mut live, 0)?;
            }
        }
        while self.flush_one()? {}
        Ok(())
    }

    /// Flushes the oldest frozen mutable segment; returns whether there was one.
    fn flush_one(&self) -> Result<bool> {
        let _flushing = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let (table, rows, applied) = {
            let mut live = self.lock_live();
            let Some(m) = live.state.frozen.front() else { return Ok(false) };
            let taken = (Arc::clone(&m.table), m.rows(), m.last_seq);
            live.reserved.insert(taken.0.id());
            taken
        };
        let id = table.id();
        let config = self.config();
        let written = if rows > 0 {
            match write_from_memory(self.index.dir(), &table, rows, &config, self.index.kernels(), &|| {
                self.stopping.load(Ordering::Relaxed)
            }) {
                Ok(w) => Some(w),
                Err(e) => {
                    self.release(id, true);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let mut live = self.lock_live();
        let result = (|| {
            let mut disk = live.state.disk.clone();
            if let Some(record) = written {
                let front = live
                    .state
                    .frozen
                    .front()
                    .filter(|m| m.table.id() == id)
                    .ok_or_else(|| Error::Unusable(format!("segment {id} was flushed twice (a bug)")))?;
                let mut tombstones = (*front.tombstones).clone();
                tombstones.truncate(rows);
                let deleted = front.deleted;
                let segment = Segment::open(self.index.dir(), &record, &config)?;
                segment.load_new_graphs()?;
                disk.push(DiskSegment {
                    record,
                    segment: Arc::new(segment),
                    tombstones: Arc::new(tombstones),
                    deleted,
                });
            }
            let applied = applied.max(live.state.manifest.log_applied);
            // The flushed mutable segment leaves the state in the same step as its segment
            // enters it: no snapshot ever holds both.
            self.commit_disk(
                &mut live,
                disk,
                applied,
                |_| {},
                |live| {
                    live.state.frozen.pop_front();
                    live.logs.retain(|l| l.last_seq > applied);
                },
            )
        })();
        live.reserved.remove(&id);
        match result {
            Ok(()) => {
                self.counters.flushes.fetch_add(1, Ordering::Relaxed);
                drop(live);
                self.wake(|w| w.merge = true);
                Ok(true)
            }
            Err(e) => {
                if self.check_usable().is_ok() {
                    remove_segment_files(self.index.dir(), id, &live.state.manifest);
                }
                Err(e)
            }
        }
    }

    /// One merge: the policy's choice, or compaction's (`compaction`: the segments that existed
    /// when the compaction started). Returns whether one ran.
    fn merge_once(&self, compaction: Option<&HashSet<u64>>, progress: Progress<'_>) -> Result<bool> {
        let _merging = self.merging.lock().unwrap_or_else(|e| e.into_inner());
        let (sources, id, config) = {
            let mut live = self.lock_live();
            let disk = &live.state.disk;
            let candidates: Vec<Candidate> =
                disk.iter().map(|d| Candidate { id: d.record.id, docs: d.record.docs, deleted: d.deleted }).collect();
            let chosen = match compaction {
                Some(before) => self.options.merge.choose_compaction(&candidates, &|id| before.contains(&id)),
                None => self.options.merge.choose(&candidates),
            };
            let Some(chosen) = chosen else { return Ok(false) };
            let sources: Vec<DiskSegment> = disk.iter().filter(|d| chosen.contains(&d.record.id)).cloned().collect();
            let config = live.state.config().clone();
            let id = live.state.next_segment;
            live.state.next_segment += 1;
            live.reserved.insert(id);
            (sources, id, config)
        };
        self.counters.merges_running.fetch_add(1, Ordering::Relaxed);
        let built = build_merged(self.index.dir(), id, &config, &sources, self.index.kernels(), progress, &|| {
            self.stopping.load(Ordering::Relaxed)
        });
        let result = built.and_then(|(record, maps)| {
            // Mapped and verified (its graphs hashed) before the state lock: writes go on meanwhile.
            let segment = Segment::open(self.index.dir(), &record, &config)?;
            segment.load_new_graphs()?;
            let mut live = self.lock_live();
            let docs = record.docs as usize;
            let mut tombstones = Tombstones::repeat(false, docs);
            let mut deleted = 0;
            // Deletions since the merge started move to the merged segment.
            for (source, map) in sources.iter().zip(&maps) {
                let now = live.state.disk.iter().find(|d| d.record.id == source.record.id);
                for (doc, &new) in map.iter().enumerate() {
                    let gone = now.is_none_or(|d| d.tombstones.get(doc).is_some_and(|b| *b));
                    if gone && new != u32::MAX && !tombstones[new as usize] {
                        tombstones.set(new as usize, true);
                        deleted += 1;
                    }
                }
            }
            let merged = DiskSegment { record, segment: Arc::new(segment), tombstones: Arc::new(tombstones), deleted };
            let ids: HashSet<u64> = sources.iter().map(|s| s.record.id).collect();
            let mut disk = Vec::with_capacity(live.state.disk.len());
            let mut placed = false;
            for d in &live.state.disk {
                if ids.contains(&d.record.id) {
                    if !placed {
                        disk.push(merged.clone());
                        placed = true;
                    }
                } else {
                    disk.push(d.clone());
                }
            }
            if !placed {
                disk.push(merged);
            }
            let applied = live.state.manifest.log_applied;
            let committed = self.commit_disk(&mut live, disk, applied, |_| {}, |_| {});
            live.reserved.remove(&id);
            if committed.is_err() && self.check_usable().is_ok() {
                remove_segment_files(self.index.dir(), id, &live.state.manifest);
            }
            committed
        });
        self.counters.merges_running.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.counters.merges.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                self.release(id, true);
                Err(e)
            }
        }
    }

    /// Builds the missing graphs of one segment that should have them (a segment upgraded from
    /// an older format, whose hnsw_rs graph this build does not read, or one whose graph rungs
    /// changed), builds again the graphs found damaged, or adds the i8 copy of the rows to
    /// graphs written without one; returns whether there was one. Searches scan such a segment
    /// meanwhile (or walk the graph it had).
    fn graph_once(&self, progress: Progress<'_>) -> Result<bool> {
        let _merging = self.merging.lock().unwrap_or_else(|e| e.into_inner());
        let (record, damaged, config) = {
            let mut live = self.lock_live();
            let config = live.state.config().clone();
            let lacking = |d: &&DiskSegment| lacks_graphs(&config, &d.record, &d.segment);
            let Some((record, damaged)) =
                live.state.disk.iter().find(lacking).map(|d| (d.record.clone(), d.segment.damaged_rungs()))
            else {
                return Ok(false);
            };
            // Its new files must survive garbage collection until the manifest names them.
            live.reserved.insert(record.id);
            (record, damaged, config)
        };
        self.counters.merges_running.fetch_add(1, Ordering::Relaxed);
        let dir = self.index.dir();
        let built = build_graphs(dir, &record, &damaged, &config, self.index.kernels(), progress, &|| {
            self.stopping.load(Ordering::Relaxed)
        });
        let result = match built {
            Err(e) => Err(e),
            Ok((graphs, added)) => {
                // `added`: the files written (a graph built again may match its old record byte
                // for byte: the build is deterministic).
                // Mapped and verified (the new graphs hashed) before the state lock; the segment's
                // files are those of `record` (only its deletions may change meanwhile, and they
                // live beside the segment, not in it).
                let opened = (|| {
                    let with = SegmentRecord { graphs: graphs.clone(), ..record.clone() };
                    let segment = Segment::open(dir, &with, &config)?;
                    // Its other graphs may turn out damaged (then the next pass builds them
                    // again); the ones just written must not.
                    segment.load_graphs()?;
                    if let Some(d) = segment.damaged_graphs().into_iter().find(|d| added.contains(&d.file)) {
                        return Err(Error::corrupt(dir.join(&d.file), d.reason));
                    }
                    Ok::<_, Error>(segment)
                })();
                let mut live = self.lock_live();
                let committed = opened.and_then(|segment| {
                    // Gone meanwhile (every document deleted): the files are garbage.
                    let Some(at) = live.state.disk.iter().position(|d| d.record.id == record.id) else {
                        return Ok(());
                    };
                    let mut disk = live.state.disk.clone();
                    let mut with = disk[at].record.clone();
                    with.graphs = graphs;
                    disk[at] = DiskSegment {
                        record: with,
                        segment: Arc::new(segment),
                        tombstones: Arc::clone(&disk[at].tombstones),
                        deleted: disk[at].deleted,
                    };
                    let applied = live.state.manifest.log_applied;
                    self.commit_disk(&mut live, disk, applied, |_| {}, |_| {})?;
                    if !added.is_empty() {
                        self.counters.graph_builds.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                });
                if committed.is_err() && self.check_usable().is_ok() {
                    for name in added {
                        let _ = std::fs::remove_file(dir.join(name));
                    }
                }
                committed
            }
        };
        {
            let mut live = self.lock_live();
            live.reserved.remove(&record.id);
            if result.is_ok() {
                // The files this replaced (graphs written again with their rows) were reserved
                // with the segment during the commit's collection.
                self.collect_garbage(&live);
            }
        }
        self.counters.merges_running.fetch_sub(1, Ordering::Relaxed);
        result.map(|()| true)
    }

    /// Commits a manifest naming the live segments of `disk` (writing tombstone files for those
    /// with new deletions), with `applied` and `edit`'s changes (a setting, the graph rungs),
    /// and takes it up: the state, then
    /// `taken_up` (which finishes the state change, e.g. drops a flushed mutable segment), then
    /// one new snapshot and garbage collection. On failure nothing changes and what it wrote is
    /// removed — unless it cannot tell whether the new manifest is in place, in which case the
    /// writer refuses further work rather than guess.
    fn commit_disk(
        &self,
        live: &mut Live,
        mut disk: Vec<DiskSegment>,
        applied: u64,
        edit: impl FnOnce(&mut Manifest),
        taken_up: impl FnOnce(&mut Live),
    ) -> Result<()> {
        let dir = self.index.dir();
        let base = Arc::clone(&live.state.manifest);
        let mut manifest = (*base).clone();
        manifest.format_version = crate::manifest::FORMAT_VERSION;
        manifest.generation += 1;
        manifest.log_applied = applied;
        manifest.next_segment = live.state.next_segment;
        edit(&mut manifest);
        disk.retain(|d| d.live() > 0);
        let mut written = Vec::new();
        let prepared = (|| {
            for d in &mut disk {
                if d.dirty() {
                    let name = format!("{}.del-{}", basename(d.record.id), manifest.generation);
                    written.push(name.clone());
                    let record = tombstones::write(dir, &name, &d.tombstones)?;
                    d.record.tombstones = Some(record);
                    d.record.deleted = d.deleted;
                }
            }
            manifest.segments = disk.iter().map(|d| d.record.clone()).collect();
            Ok::<(), Error>(())
        })();
        let committed = prepared.and_then(|()| match manifest.commit(dir) {
            Ok(()) => Ok(()),
            // The rename may have happened before the failure (e.g. the final directory sync).
            Err(e) => match Manifest::read(dir) {
                Ok(m) if m.generation == manifest.generation => Ok(()),
                Ok(_) => Err(e),
                Err(unreadable) => {
                    self.poison(format!(
                        "committing generation {} failed ({e}) and the manifest cannot be read back ({unreadable}), \
                         so whether it took effect is unknown",
                        manifest.generation
                    ));
                    written.clear();
                    Err(e)
                }
            },
        });
        if let Err(e) = committed {
            for name in written {
                let _ = std::fs::remove_file(dir.join(name));
            }
            return Err(e);
        }
        live.state.disk = disk;
        live.state.manifest = Arc::new(manifest);
        taken_up(live);
        self.index.install(live.state.snapshot());
        self.collect_garbage(live);
        Ok(())
    }

    /// Removes files of this index that nothing names: not the manifest, not a log file still
    /// needed, not a segment being written (crash leftovers, failed commits, replaced
    /// tombstones, merged segments, flushed logs). Files that are not Barista's are left
    /// alone. Best effort: what cannot be removed now is removed by a later pass.
    fn collect_garbage(&self, live: &Live) {
        let dir = self.index.dir();
        let keep: HashSet<&str> = live.state.manifest.files().map(|f| f.name.as_str()).collect();
        let reserved: Vec<String> = live.reserved.iter().map(|&id| format!("{}.", basename(id))).collect();
        let logs: HashSet<u64> = live.logs.iter().map(|l| l.number).chain([live.log.number()]).collect();
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let garbage = if let Some(number) = wal::parse_name(name) {
                !logs.contains(&number)
            } else if name.starts_with("seg-") {
                !keep.contains(name) && !reserved.iter().any(|r| name.starts_with(r.as_str()))
            } else {
                name == "MANIFEST.tmp"
            };
            if garbage && name != MANIFEST && name != LOCK {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Checks that a request's documents were made for this index and that its log record stays
/// readable (at most [`wal::MAX_PAYLOAD`] bytes).
fn check_request(config: &IndexConfig, ops: &[Op]) -> Result<()> {
    let mut bytes = 12usize;
    for op in ops {
        bytes += 5 + op.id().len();
        if let Op::Upsert(doc) = op {
            doc.check_fits(config)?;
            bytes += 13 + doc.size() + 4 * doc.vectors.len();
        }
    }
    if bytes > wal::MAX_PAYLOAD {
        return Err(Error::InvalidInput(format!(
            "one write may hold at most {} MiB (ids, texts, metadata and vectors); this one holds {} MiB: split it",
            wal::MAX_PAYLOAD >> 20,
            bytes >> 20
        )));
    }
    Ok(())
}

/// Writes stay paused while this lives (see [`Inner::pause_writes`]).
struct WritesPaused<'a> {
    inner: &'a Inner,
}

impl Drop for WritesPaused<'_> {
    fn drop(&mut self) {
        self.inner.lock_group().busy = false;
        self.inner.group_done.notify_all();
    }
}

/// The background flusher: flushes frozen mutable segments, and the active one once it is
/// older than `flush_age`; a failure is recorded and retried with a growing pause.
fn flusher(inner: &Inner) {
    let mut pause = Duration::from_millis(100);
    loop {
        {
            let mut wake = inner.wake.lock().unwrap_or_else(|e| e.into_inner());
            if !wake.flush && !wake.stop {
                wake =
                    inner.wake_cv.wait_timeout(wake, Duration::from_millis(500)).unwrap_or_else(|e| e.into_inner()).0;
            }
            if wake.stop {
                return;
            }
            wake.flush = false;
        }
        if inner.check_usable().is_err() {
            // A writer that could not roll its log back must not rotate or flush past it.
            continue;
        }
        {
            let mut live = inner.lock_live();
            let active = &live.state.active;
            if active.first_write.is_some_and(|t| t.elapsed() >= inner.options.flush_age)
                && live.state.frozen.len() < inner.options.max_frozen
            {
                let _ = inner.freeze(&mut live, 0);
            }
        }
        loop {
            match inner.flush_one() {
                Ok(true) => {
                    pause = Duration::from_millis(100);
                    inner.set_last_error(None);
                }
                Ok(false) => break,
                Err(Error::Cancelled) => return,
                Err(e) => {
                    inner.set_last_error(Some(format!("flush: {e}")));
                    sleep_unless_stopped(inner, pause);
                    pause = (pause * 2).min(Duration::from_secs(30));
                    break;
                }
            }
        }
    }
}

/// The background merger: runs the policy's merges after flushes and merges.
fn merger(inner: &Inner) {
    let mut pause = Duration::from_millis(100);
    loop {
        {
            let mut wake = inner.wake.lock().unwrap_or_else(|e| e.into_inner());
            if !wake.merge && !wake.stop {
                wake = inner.wake_cv.wait_timeout(wake, Duration::from_secs(5)).unwrap_or_else(|e| e.into_inner()).0;
            }
            if wake.stop {
                return;
            }
            wake.merge = false;
        }
        if inner.check_usable().is_err() {
            continue;
        }
        loop {
            match inner.merge_once(None, &|_, _, _| {}) {
                Ok(true) => pause = Duration::from_millis(100),
                Ok(false) => break,
                Err(Error::Cancelled) => return,
                Err(e) => {
                    inner.set_last_error(Some(format!("merge: {e}")));
                    sleep_unless_stopped(inner, pause);
                    pause = (pause * 2).min(Duration::from_secs(60));
                    break;
                }
            }
        }
        loop {
            match inner.graph_once(&|_, _, _| {}) {
                Ok(true) => pause = Duration::from_millis(100),
                Ok(false) => break,
                Err(Error::Cancelled) => return,
                Err(e) => {
                    inner.set_last_error(Some(format!("graph: {e}")));
                    sleep_unless_stopped(inner, pause);
                    pause = (pause * 2).min(Duration::from_secs(60));
                    break;
                }
            }
        }
    }
}

fn sleep_unless_stopped(inner: &Inner, pause: Duration) {
    let deadline = Instant::now() + pause;
    let mut wake = inner.wake.lock().unwrap_or_else(|e| e.into_inner());
    while !wake.stop && Instant::now() < deadline {
        wake = inner.wake_cv.wait_timeout(wake, deadline - Instant::now()).unwrap_or_else(|e| e.into_inner()).0;
    }
}

/// Removes the files of segment `id` unless the manifest names them.
fn remove_segment_files(dir: &Path, id: u64, manifest: &Manifest) {
    let prefix = format!("{}.", basename(id));
    if manifest.segments.iter().any(|s| s.id == id) {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Writes the first `rows` rows of a mutable segment as segment files (same number).
fn write_from_memory(
    dir: &Path,
    table: &MutableSegment,
    rows: usize,
    config: &IndexConfig,
    kernels: crate::scan::Kernels,
    cancel: &dyn Fn() -> bool,
) -> Result<SegmentRecord> {
    let blocks: Vec<Vec<f32>> = (0..config.rungs.len()).map(|r| f32_rows(&table.block(r, rows))).collect();
    let docs: Vec<StoredDoc<'_>> = (0..rows as u32)
        .map(|row| {
            table.doc(row).ok_or_else(|| Error::Unusable(format!("row {row} of segment {} is missing", table.id())))
        })
        .collect::<Result<_>>()?;
    write_segment(dir, table.id(), config, docs.iter().copied(), &blocks, kernels, &|_, _, _| {}, cancel)
}

/// A block's values as f32 (exact for f32 and f16; i8 rows dequantised).
fn f32_rows(block: &vectors::RungBlock<'_>) -> Vec<f32> {
    match block.data {
        BlockData::F32(d) => d.to_vec(),
        BlockData::F16(d) => d.iter().map(|v| v.to_f32()).collect(),
        BlockData::I8 { data, scales } => data
            .chunks_exact(block.dim)
            .flat_map(|row| row.iter().zip(scales).map(|(&v, s)| f32::from(v) * s))
            .collect(),
    }
}

/// Writes the live documents of `sources` (as of their tombstones when the merge started) as
/// segment `id`; returns it and, per source, each document's new number (`u32::MAX`: dropped).
#[allow(clippy::type_complexity)]
fn build_merged(
    dir: &Path,
    id: u64,
    config: &IndexConfig,
    sources: &[DiskSegment],
    kernels: crate::scan::Kernels,
    progress: Progress<'_>,
    cancel: &dyn Fn() -> bool,
) -> Result<(SegmentRecord, Vec<Vec<u32>>)> {
    // A merge rewrites every document under fresh checksums: first make sure the data it
    // copies is intact, or damage would be laundered into a "valid" segment.
    for s in sources {
        crate::files::verify(dir, &s.record.vectors)?;
        crate::files::verify(dir, &s.record.store)?;
    }
    let live: usize = sources.iter().map(|s| s.live() as usize).sum();
    let mut maps = Vec::with_capacity(sources.len());
    let mut blocks: Vec<Vec<f32>> = config.rungs.iter().map(|r| Vec::with_capacity(live * r.rung.dim)).collect();
    let mut docs = Vec::with_capacity(live);
    let mut next = 0u32;
    for s in sources {
        if cancel() {
            return Err(Error::Cancelled);
        }
        let keep: Vec<u32> =
            (0..s.record.docs).filter(|&d| !s.tombstones.get(d as usize).is_some_and(|b| *b)).collect();
        let mut map = vec![u32::MAX; s.record.docs as usize];
        for &doc in &keep {
            map[doc as usize] = next;
            next += 1;
            docs.push(s.segment.doc(doc)?);
        }
        for (r, block) in blocks.iter_mut().enumerate() {
            let source = s.segment.block(r);
            let dim = source.dim;
            for &doc in &keep {
                let (a, b) = (doc as usize * dim, (doc as usize + 1) * dim);
                match source.data {
                    BlockData::F32(d) => block.extend_from_slice(&d[a..b]),
                    BlockData::F16(d) => block.extend(d[a..b].iter().map(|v| v.to_f32())),
                    BlockData::I8 { data, scales } => {
                        block.extend(data[a..b].iter().zip(scales).map(|(&v, s)| f32::from(v) * s))
                    }
                }
            }
        }
        maps.push(map);
    }
    let record = write_segment(dir, id, config, docs.iter().copied(), &blocks, kernels, progress, cancel)?;
    Ok((record, maps))
}

/// Writes segment `id` from documents and per-rung f32 blocks: vectors, store, ids, and its
/// graphs if it has at least the graph's `min_docs` documents. Returns its record.
#[allow(clippy::too_many_arguments)]
fn write_segment<'a>(
    dir: &Path,
    id: u64,
    config: &IndexConfig,
    docs: impl ExactSizeIterator<Item = StoredDoc<'a>> + Clone,
    blocks: &[Vec<f32>],
    kernels: crate::scan::Kernels,
    progress: Progress<'_>,
    cancel: &dyn Fn() -> bool,
) -> Result<SegmentRecord> {
    let count = docs.len();
    let name = basename(id);
    let refs: Vec<&[f32]> = blocks.iter().map(Vec::as_slice).collect();
    let vectors = vectors::write(dir, &format!("{name}.vec"), &config.rungs, count, &refs)?;
    let store = store::write(dir, &format!("{name}.docs"), docs.clone())?;
    let ids = ids::write(dir, &format!("{name}.ids"), docs.map(|d| d.id))?;
    let mut record =
        SegmentRecord { id, docs: count as u32, deleted: 0, vectors, store, ids, graphs: Vec::new(), tombstones: None };
    record.graphs = build_graphs(dir, &record, &[], config, kernels, progress, cancel)?.0;
    Ok(record)
}

/// Whether the segment `record` describes lacks a graph it should have (one on each graph rung,
/// from the graph's `min_docs`), has one without the i8 copy of its rows, or has one found
/// damaged: work for the graph builder.
pub(crate) fn lacks_graphs(config: &IndexConfig, record: &SegmentRecord, segment: &Segment) -> bool {
    config.graph.wanted(record.docs as usize)
        && config.graph.rungs.iter().any(|&r| !record.graphs.iter().any(|g| g.rung as usize == r))
        || record.graphs.iter().any(|g| lacks_rows(config, g))
        || !segment.damaged_rungs().is_empty()
}

/// Whether graph `g` lacks the i8 copy of its rows that its rung's storage calls for (written
/// before graph files carried rows).
fn lacks_rows(config: &IndexConfig, g: &GraphRecord) -> bool {
    config.rungs.get(g.rung as usize).is_some_and(|r| graph::needs_rows(&g.file.name, r.element))
}

/// The graphs segment `record` should have and lacks (none below the graph's `min_docs`),
/// built from its vector file as stored and written beside it, the i8 copy of the rows for
/// graphs written without one (built again when such a file does not open), and the graphs on
/// the stored rungs `damaged` built again when their files still fail their checks (the
/// damaged file is removed first: its name is the new file's); returns all its graphs and the
/// names of the files it wrote. On failure the files it wrote are removed.
fn build_graphs(
    dir: &Path,
    record: &SegmentRecord,
    damaged: &[u32],
    config: &IndexConfig,
    kernels: crate::scan::Kernels,
    progress: Progress<'_>,
    cancel: &dyn Fn() -> bool,
) -> Result<(Vec<GraphRecord>, Vec<String>)> {
    let mut graphs = record.graphs.clone();
    let mut missing: Vec<usize> =
        config.graph.rungs.iter().copied().filter(|&r| !graphs.iter().any(|g| g.rung as usize == r)).collect();
    if !config.graph.wanted(record.docs as usize) {
        missing.clear();
    }
    let bare: Vec<usize> = (0..graphs.len()).filter(|&i| lacks_rows(config, &graphs[i])).collect();
    // Graphs found damaged that still are (the flag may predate a rebuild by another writer):
    // never trusted, built again under the same name.
    let mut unreadable: Vec<(usize, String)> = Vec::new();
    for g in graphs.iter().filter(|g| damaged.contains(&g.rung) && !lacks_rows(config, g)) {
        let rung = config.rungs[g.rung as usize].rung;
        match graph::SegmentGraph::open(dir, &g.file, record.docs, rung) {
            Ok(_) => {}
            Err(e @ Error::Corrupt { .. }) => {
                unreadable
                    .push((g.rung as usize, format!("graph {rung} built again, as {} is damaged: {e}", g.file.name)));
                match std::fs::remove_file(dir.join(&g.file.name)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::write(dir.join(&g.file.name), e));
                    }
                    _ => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
    if missing.is_empty() && bare.is_empty() && unreadable.is_empty() {
        return Ok((graphs, Vec::new()));
    }
    let vectors = vectors::VectorFile::open(dir, &record.vectors, &config.rungs, record.docs as usize)?;
    let params = BuildParams {
        m: config.graph.max_connections,
        ef_construction: config.graph.ef_construction,
        threads: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        seed: 0x0005_eed2_d3a7,
    };
    let mut written: Vec<String> = Vec::new();
    let result = (|| {
        // Graphs written before graph files carried rows: the same links, with the i8 copy. A
        // file that does not open (damaged, or gone) is not trusted: it is built again, the
        // reason named in the progress step.
        for i in bare {
            let r = graphs[i].rung as usize;
            let rung = config.rungs[r].rung;
            let old = match graph::SegmentGraph::open(dir, &graphs[i].file, record.docs, rung) {
                Ok(old) => old,
                Err(e) => {
                    unreadable
                        .push((r, format!("graph {rung} built again, as {} did not open: {e}", graphs[i].file.name)));
                    continue;
                }
            };
            progress(&format!("graph {rung}: i8 rows"), 0, 1);
            let mut data = old.data();
            data.rows = graph::layout::WalkRows::of(&vectors.block(r));
            let name = graph::file_name(&basename(record.id), rung, data.rows.is_some());
            written.push(name.clone());
            graphs[i].file = data.write(dir, &name)?;
            progress(&format!("graph {rung}: i8 rows"), 1, 1);
        }
        graphs.retain(|g| !unreadable.iter().any(|(r, _)| g.rung as usize == *r));
        let steps = missing.into_iter().map(|r| (r, format!("graph {}", config.rungs[r].rung)));
        for (r, step) in steps.chain(unreadable) {
            let rung = config.rungs[r].rung;
            let data = graph::build::build(
                vectors.block(r),
                kernels,
                rung.layer,
                &params,
                &|done, total| progress(&step, done, total),
                cancel,
            )?;
            let name = graph::file_name(&basename(record.id), rung, data.rows.is_some());
            written.push(name.clone());
            let file = data.write(dir, &name)?;
            graphs.push(GraphRecord { rung: r as u32, file });
        }
        Ok::<(), Error>(())
    })();
    if let Err(e) = result {
        for name in written {
            let _ = std::fs::remove_file(dir.join(name));
        }
        return Err(e);
    }
    graphs.sort_by_key(|g| g.rung);
    Ok((graphs, written))
}
