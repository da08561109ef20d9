//! [`Engine`]: the library face of Barista — an index directory and the model that fills it,
//! searched coarse to fine. `&self` everywhere, `Send + Sync`, no global state.

use crate::document::{Document, DocumentBatch};
use crate::encoder::{Encoder, EncoderOptions};
use crate::error::{Error, Result};
use crate::model::profile::{Profile, ProfileSpec};
use crate::search::adaptive::{self, StopRule, Trace};
use crate::search::cascade::{self, QuerySource, check_vectors, ms};
use crate::search::graph_rung::RungQuality;
use crate::search::plan::{IndexShape, StagePlan};
use crate::search::request::{SearchHit, SearchRequest, SearchResponse};
use crate::text::TextKind;
use barista_index::{
    DocAddress, ElementType, GraphParams, Index, IndexConfig, IndexWriter, LogSummary, NewDocument, Op, Rung,
    SegmentInfo, Snapshot, StoredRung, WriterOptions, WriterStats,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How to create an index for a model.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Model folder or Hugging Face id.
    pub model: String,
    /// How to load it (profile overrides, threads…).
    pub encoder: EncoderOptions,
    /// Element type of the largest rung's block, which final scores and the `exact` profile
    /// use (f16: half of f32 at no measured loss).
    pub element: ElementType,
    /// Element type of every smaller rung's block, which only shortlist and rescore (i8 with
    /// per-dimension scales: a quarter of f32, same nDCG@10 on SciFact; see BENCHMARKS.md).
    pub coarse_element: ElementType,
    /// Rungs to store (default: every rung of the profile).
    pub rungs: Option<Vec<Rung>>,
    /// The rungs HNSW graphs are built on (default: the largest rung. On the shared model a
    /// walk there for the final top 10 beats every smaller rung's shortlist: at 300,000
    /// passages it keeps 0.991 of the exhaustive top 10 at 0.03× its time, where a (5,256)
    /// shortlist keeps 0.975 at 0.11× and a (3,96) one 0.866 at 0.15×; see BENCHMARKS.md,
    /// "Millions of documents". For another model, [`Engine::rung_quality`] on sample queries
    /// and [`crate::choose_graph_rung`] measure which rung pays).
    pub graph_rungs: Vec<Rung>,
    /// HNSW links per node.
    pub max_connections: usize,
    /// HNSW construction candidate list size.
    pub ef_construction: usize,
    /// Segments with fewer documents get no graph (they are scanned).
    pub graph_min_docs: u64,
    /// How writes are flushed and merged.
    pub writer: WriterOptions,
}

impl CreateOptions {
    /// Defaults for `model`.
    pub fn new(model: impl Into<String>) -> CreateOptions {
        let graph = GraphParams::default();
        CreateOptions {
            model: model.into(),
            encoder: EncoderOptions::default(),
            element: ElementType::F16,
            coarse_element: ElementType::I8,
            rungs: None,
            graph_rungs: Vec::new(),
            max_connections: graph.max_connections,
            ef_construction: graph.ef_construction,
            graph_min_docs: graph.min_docs,
            writer: WriterOptions::default(),
        }
    }
}

/// How to open an existing index.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Load the model from here instead of where the index says it came from (it must be the
    /// same model: its fingerprint is checked).
    pub model: Option<String>,
    /// Encoder settings (threads, ISA…; the profile always comes from the index).
    pub encoder: EncoderOptions,
    /// Leave HNSW graphs on disk until the first graph search.
    pub lazy_graphs: bool,
    /// Take the index's writer now (a server: the log is recovered, leftovers of a crash are
    /// removed and background flushes start at once) instead of at the first write.
    pub write: bool,
    /// How writes are flushed and merged.
    pub writer: WriterOptions,
}

/// Identity of the model an index was built with, as stored in its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Where to load it from (absolute folder or Hub id).
    pub source: String,
    /// Fingerprint of its config, tokenizer and weight headers.
    pub fingerprint: String,
}

/// What a write did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WriteReport {
    /// Documents added or replaced.
    pub added: usize,
    /// Documents that existed and were deleted or replaced.
    pub deleted: usize,
    /// Live documents after the write.
    pub live: u64,
    /// Where the write is in the index's history: the write-ahead log's sequence number of its
    /// first operation (a later write has a larger one); for a bulk commit, the committed
    /// generation.
    pub sequence: u64,
}

/// What an index holds and what its writer is doing (`barista info`, `GET /stats`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IndexStats {
    /// Live documents.
    pub documents: u64,
    /// Deleted documents still held by segments (dropped by merges).
    pub deleted: u64,
    /// The committed generation.
    pub generation: u64,
    /// The segments: committed ones, then the mutable ones written since the last flush.
    pub segments: Vec<SegmentInfo>,
    /// The writer's log, flushes and merges (when this process writes the index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer: Option<WriterStats>,
    /// What opening found in the write-ahead log (when this process only reads it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogSummary>,
}

/// The vectors of a batch of documents at one rung, embedded elsewhere (see
/// [`Engine::add_embedded`]): `rows × rung.dim` values, row-major, one row per document in
/// batch order.
#[derive(Clone, Debug, PartialEq)]
pub struct RungRows {
    /// The rung.
    pub rung: Rung,
    /// The rows, concatenated.
    pub values: Vec<f32>,
}

/// For a cosine model, vectors embedded elsewhere must be what the encoder gives: L2-normalised
/// after truncation to each rung (the encoder's rows are within ~1e-6 of length 1; 1e-3 leaves
/// room for another build's rounding, not for unnormalised vectors, which would score above 1).
fn check_unit_length(id: &str, rows: &[&RungRows], vectors: &[Vec<f32>]) -> Result<()> {
    for (r, v) in rows.iter().zip(vectors) {
        let length = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
        if (length - 1.0).abs() > 1e-3 {
            return Err(Error::InvalidRequest(format!(
                "document {id:?}: its vector at rung {} has length {length:.4}, but the index's model compares by \
                 cosine: give each rung's vector L2-normalised after truncation, as the encoder embeds passages",
                r.rung
            )));
        }
    }
    Ok(())
}

/// Settings key of the stopping rule of a profile.
fn stop_key(profile: &str) -> String {
    format!("barista.cascade.stop.{profile}")
}

struct Inner {
    encoder: Encoder,
    index: Index,
    writer_options: WriterOptions,
    writer: Mutex<Option<Arc<IndexWriter>>>,
    /// Documents staged for the next bulk commit.
    staged: Mutex<Vec<NewDocument>>,
}

impl Inner {
    fn new(encoder: Encoder, index: Index, writer_options: WriterOptions) -> Arc<Inner> {
        Arc::new(Inner { encoder, index, writer_options, writer: Mutex::new(None), staged: Mutex::new(Vec::new()) })
    }
}

/// An index and its model. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("index", &self.inner.index).field("encoder", &self.inner.encoder).finish()
    }
}

impl Engine {
    /// Creates a new index in `dir` for a model.
    pub fn create(dir: &Path, options: &CreateOptions) -> Result<Engine> {
        let encoder = Encoder::load(&options.model, &options.encoder)?;
        let profile = encoder.profile().clone();
        let rungs = options.rungs.clone().unwrap_or_else(|| profile.rungs.clone());
        for r in &rungs {
            encoder.check_rung(*r)?;
        }
        let wanted = if options.graph_rungs.is_empty() {
            vec![*rungs.last().ok_or_else(|| Error::InvalidRequest("an index needs at least one rung".into()))?]
        } else {
            options.graph_rungs.clone()
        };
        let mut graph_rungs = wanted
            .iter()
            .map(|g| {
                rungs
                    .iter()
                    .position(|r| r == g)
                    .ok_or_else(|| Error::InvalidRequest(format!("the graph rung {g} is not among the stored rungs")))
            })
            .collect::<Result<Vec<usize>>>()?;
        graph_rungs.sort_unstable();
        graph_rungs.dedup();
        let source = match std::fs::canonicalize(&options.model) {
            Ok(path) if path.is_dir() => path.to_string_lossy().into_owned(),
            _ => options.model.clone(),
        };
        let record = ModelRecord { source, fingerprint: encoder.fingerprint().to_string() };
        let config = IndexConfig {
            model: serde_json::to_string(&record).map_err(|e| Error::InvalidRequest(e.to_string()))?,
            profile: serde_json::to_string(&profile).map_err(|e| Error::InvalidRequest(e.to_string()))?,
            rungs: rungs
                .iter()
                .enumerate()
                .map(|(i, &rung)| StoredRung {
                    rung,
                    element: if i + 1 == rungs.len() { options.element } else { options.coarse_element },
                })
                .collect(),
            graph: GraphParams {
                rungs: graph_rungs,
                max_connections: options.max_connections,
                ef_construction: options.ef_construction,
                min_docs: options.graph_min_docs,
            },
        };
        let index = Index::create(dir, config)?;
        Ok(Engine { inner: Inner::new(encoder, index, options.writer.clone()) })
    }

    /// Opens an existing index and loads its model.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<Engine> {
        let index = Index::open_with(
            dir,
            barista_index::OpenOptions { lazy_graphs: options.lazy_graphs, ..Default::default() },
        )?;
        let config = index.snapshot().config().clone();
        let record: ModelRecord = serde_json::from_str(&config.model).map_err(|e| {
            Error::InvalidRequest(format!("{}: the index does not say which model made it ({e})", dir.display()))
        })?;
        let profile: Profile = serde_json::from_str(&config.profile).map_err(|e| {
            Error::InvalidRequest(format!("{}: the index's stored 2D profile does not parse ({e})", dir.display()))
        })?;
        let mut encoder_options = options.encoder.clone();
        encoder_options.preset = None;
        encoder_options.profile = ProfileSpec {
            rungs: Some(profile.rungs.clone()),
            pooling: Some(profile.pooling),
            similarity: Some(profile.similarity),
            query_max_length: Some(profile.query_max_length),
            passage_max_length: Some(profile.passage_max_length),
        };
        let source = options.model.clone().unwrap_or(record.source.clone());
        let encoder = Encoder::load(&source, &encoder_options).map_err(|e| {
            if options.model.is_none() {
                Error::ModelNotFound(format!(
                    "the index {} was built with the model at {}, which cannot be loaded now ({e}); pass --model with the \
                     same model's current location",
                    dir.display(),
                    record.source
                ))
            } else {
                e
            }
        })?;
        if encoder.fingerprint() != record.fingerprint {
            return Err(Error::InvalidRequest(format!(
                "{source} is not the model the index {} was built with (fingerprint {} instead of {}): its vectors \
                 would not be comparable; use the original model",
                dir.display(),
                encoder.fingerprint(),
                record.fingerprint
            )));
        }
        let engine = Engine { inner: Inner::new(encoder, index, options.writer.clone()) };
        if options.write {
            engine.writer()?;
        }
        Ok(engine)
    }

    /// The encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.inner.encoder
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    /// The shape plans are checked against, for the current snapshot.
    pub fn shape(&self) -> IndexShape {
        shape_of(&self.inner.index.snapshot())
    }

    /// The plan a request runs on the current snapshot (named profile or explicit stages; the
    /// last stage keeps `k`).
    pub fn plan_for(&self, request: &SearchRequest) -> Result<StagePlan> {
        plan_in(request, &shape_of(&self.inner.index.snapshot()))
    }

    /// The fitted stopping rule of a profile, if the index has one.
    pub fn stop_rule(&self, profile: &str) -> Option<StopRule> {
        stop_rule_in(&self.inner.index.snapshot(), profile)
    }

    /// Searches (see [`SearchRequest`]). The whole search — planning, the stopping rule, the
    /// cascade and fetching the hits — runs on one snapshot, whatever writes, flushes and
    /// merges do meanwhile.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse> {
        let start = Instant::now();
        let _caller = self.inner.encoder.enter();
        if request.k == 0 || request.k > 10_000 {
            return Err(Error::InvalidRequest(format!("k must be between 1 and 10000, not {}", request.k)));
        }
        let snapshot = self.inner.index.snapshot();
        let shape = shape_of(&snapshot);
        let plan = plan_in(request, &shape)?;
        let rule = match (request.adaptive, &request.stages) {
            (Some(false), _) => None,
            (adaptive, _) => {
                let profile = request.profile.as_deref().unwrap_or("balanced");
                let rule = stop_rule_in(&snapshot, profile).filter(|r| r.fits(&plan));
                if adaptive == Some(true) && rule.is_none() {
                    return Err(Error::InvalidRequest(format!(
                        "adaptive stopping needs thresholds calibrated for this plan; run `barista calibrate` for profile {profile}"
                    )));
                }
                rule
            }
        };
        let outcome = self.run_cascade(request, &snapshot, &shape, &plan, rule.as_ref(), false)?;
        let t = Instant::now();
        let mut hits = Vec::with_capacity(outcome.hits.len());
        for hit in &outcome.hits {
            let stored = snapshot.doc(hit.address)?;
            let metadata = match (request.include_metadata, stored.metadata) {
                (true, Some(m)) => Some(serde_json::from_str(m).map_err(|e| {
                    Error::InvalidRequest(format!("the stored metadata of {:?} does not parse: {e}", stored.id))
                })?),
                _ => None,
            };
            hits.push(SearchHit {
                id: stored.id.to_string(),
                score: hit.score,
                rung: outcome.rung,
                title: if request.include_text { stored.title.map(str::to_string) } else { None },
                text: if request.include_text { stored.text.map(str::to_string) } else { None },
                metadata,
            });
        }
        let mut timings = outcome.timings;
        timings.fetch_ms = ms(t);
        timings.total_ms = ms(start);
        Ok(SearchResponse { hits, stages: outcome.reports, stopped_early: outcome.stopped_early, timings })
    }

    fn run_cascade(
        &self,
        request: &SearchRequest,
        snapshot: &Snapshot,
        shape: &IndexShape,
        plan: &StagePlan,
        rule: Option<&StopRule>,
        trace: bool,
    ) -> Result<cascade::Outcome> {
        let t = Instant::now();
        let mut source = match (&request.query, &request.vectors) {
            (Some(text), None) => {
                if text.trim().is_empty() {
                    return Err(Error::InvalidRequest("the query is empty".into()));
                }
                QuerySource::Text(self.inner.encoder.query(text)?)
            }
            (None, Some(given)) => {
                check_vectors(given)?;
                QuerySource::Vectors { given, similarity: self.inner.encoder.profile().similarity }
            }
            (Some(_), Some(_)) => {
                return Err(Error::InvalidRequest("give either `query` or `vectors`, not both".into()));
            }
            (None, None) => return Err(Error::InvalidRequest("a search needs `query` (text) or `vectors`".into())),
        };
        let tokenize_ms = if request.query.is_some() { ms(t) } else { 0.0 };
        let masks = match &request.filter {
            Some(filter) if !filter.is_empty() => {
                Some(snapshot.filter_masks(&barista_index::Filter::from_json(filter)?)?)
            }
            _ => None,
        };
        let cascade = cascade::Cascade {
            snapshot,
            shape,
            plan,
            k: request.k,
            stop: rule,
            fork: self.inner.encoder.fork(),
            trace,
            allowed: masks.as_deref(),
            overlap_with: (request.overlap_encoding != Some(false)).then_some(&self.inner.encoder),
        };
        let mut outcome = cascade.run(&mut source)?;
        outcome.timings.encode_ms += tokenize_ms;
        if let Some(first) = outcome.reports.first_mut() {
            first.encode_ms += tokenize_ms;
        }
        Ok(outcome)
    }

    /// The index's writer, taken at the first write (or at open with [`OpenOptions::write`]).
    pub fn writer(&self) -> Result<Arc<IndexWriter>> {
        let mut guard = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(writer) = guard.as_ref() {
            return Ok(Arc::clone(writer));
        }
        let writer = Arc::new(self.inner.index.writer_with(self.inner.writer_options.clone())?);
        *guard = Some(Arc::clone(&writer));
        Ok(writer)
    }

    /// Encodes a checked batch into index entries (no lock held).
    fn encode(&self, batch: &DocumentBatch) -> Result<Vec<NewDocument>> {
        let config = self.inner.index.snapshot().config().clone();
        let rungs: Vec<Rung> = config.rungs.iter().map(|r| r.rung).collect();
        let passages: Vec<&str> = batch.docs.iter().map(|d| d.passage.as_str()).collect();
        let embedded = self.inner.encoder.encode(&passages, TextKind::Passage, &rungs)?;
        batch
            .docs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let vectors = (0..rungs.len()).map(|r| embedded.vector(i, r).to_vec()).collect();
                NewDocument::new(&config, d.id.clone(), Some(d.text.clone()), d.metadata.clone(), vectors)
                    .and_then(|doc| doc.with_title(d.title.clone()))
                    .map_err(|e| {
                        Error::InvalidRequest(format!("document {:?} encodes to vectors the index refuses: {e}", d.id))
                    })
            })
            .collect()
    }

    /// Index entries from documents and vectors embedded elsewhere (no lock held): every
    /// stored rung must be among `vectors`, with one row per document of `docs` (the batch
    /// refers to it by position).
    fn embedded(&self, docs: &[Document], batch: &DocumentBatch, vectors: &[RungRows]) -> Result<Vec<NewDocument>> {
        let config = self.inner.index.snapshot().config().clone();
        let mut rows: Vec<&RungRows> = Vec::with_capacity(config.rungs.len());
        for stored in &config.rungs {
            let rung = stored.rung;
            let given = vectors.iter().find(|v| v.rung == rung).ok_or_else(|| {
                let all: Vec<String> = config.rungs.iter().map(|r| r.rung.to_string()).collect();
                Error::InvalidRequest(format!(
                    "no vectors for the stored rung {rung}: embed the passages at every rung the index stores ({})",
                    all.join(" ")
                ))
            })?;
            if given.values.len() != docs.len() * rung.dim {
                return Err(Error::InvalidRequest(format!(
                    "the vectors for rung {rung} hold {} values, not {} documents × {} dimensions",
                    given.values.len(),
                    docs.len(),
                    rung.dim
                )));
            }
            rows.push(given);
        }
        let cosine = self.inner.encoder.profile().similarity == crate::Similarity::Cosine;
        batch
            .docs
            .iter()
            .map(|d| {
                let vectors: Vec<Vec<f32>> = rows
                    .iter()
                    .map(|r| r.values[d.position * r.rung.dim..(d.position + 1) * r.rung.dim].to_vec())
                    .collect();
                if cosine {
                    check_unit_length(&d.id, &rows, &vectors)?;
                }
                NewDocument::new(&config, d.id.clone(), Some(d.text.clone()), d.metadata.clone(), vectors)
                    .and_then(|doc| doc.with_title(d.title.clone()))
                    .map_err(|e| Error::InvalidRequest(e.to_string()))
            })
            .collect()
    }

    /// [`Engine::add`] with the vectors embedded elsewhere — another process or machine
    /// running the same model, such as the encoder workers of a distributed indexing
    /// pipeline: `vectors` holds, for every rung the index stores, one row per document of
    /// `docs` in order, as [`Encoder::encode`] of [`Document::passage`] with
    /// [`TextKind::Passage`] gives them (normalised for cosine models). Vectors of other rungs
    /// are ignored. Nothing can check that they come from the index's model: that is the
    /// caller's promise.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a stored rung without vectors, a row count that is not
    /// `docs.len()`, a non-finite value, a vector not of unit length (within 1e-3) for a
    /// cosine model, or any rule of [`DocumentBatch::check`]; nothing is written then.
    pub fn add_embedded(&self, docs: &[Document], vectors: &[RungRows]) -> Result<WriteReport> {
        let batch = DocumentBatch::check(docs)?;
        let entries = self.embedded(docs, &batch, vectors)?;
        let writer = self.writer()?;
        let info = writer.write(entries.into_iter().map(Op::Upsert).collect())?;
        Ok(WriteReport { added: info.added, deleted: info.existed, live: info.live, sequence: info.first_seq })
    }

    /// [`Engine::stage`] with the vectors embedded elsewhere, as [`Engine::add_embedded`]
    /// takes them (a later copy of an id replaces an earlier one). Returns the documents staged.
    ///
    /// # Errors
    /// As [`Engine::add_embedded`]; nothing is staged then.
    pub fn stage_embedded(&self, docs: &[Document], vectors: &[RungRows]) -> Result<usize> {
        let (batch, _repeated) = DocumentBatch::check_last_wins(docs)?;
        let entries = self.embedded(docs, &batch, vectors)?;
        let mut staged = self.inner.staged.lock().unwrap_or_else(|e| e.into_inner());
        staged.extend(entries);
        Ok(staged.len())
    }

    /// Adds (or replaces) documents: when this returns they are durable (in the write-ahead
    /// log) and searchable. All or nothing: an invalid document rejects the whole batch, and a
    /// failed write leaves no trace.
    pub fn add(&self, docs: &[Document]) -> Result<WriteReport> {
        self.add_batch(&DocumentBatch::check(docs)?)
    }

    /// [`Engine::add`] for a batch already checked.
    pub fn add_batch(&self, batch: &DocumentBatch) -> Result<WriteReport> {
        let encoded = self.encode(batch)?;
        let writer = self.writer()?;
        let info = writer.write(encoded.into_iter().map(Op::Upsert).collect())?;
        Ok(WriteReport { added: info.added, deleted: info.existed, live: info.live, sequence: info.first_seq })
    }

    /// Encodes and stages documents for the next bulk commit ([`Engine::commit_with`]), which
    /// writes them as one segment without the log (`barista index`). All or nothing; a later
    /// copy of an id replaces an earlier one. Returns the documents staged.
    pub fn stage(&self, docs: &[Document]) -> Result<usize> {
        let (batch, _repeated) = DocumentBatch::check_last_wins(docs)?;
        let encoded = self.encode(&batch)?;
        let mut staged = self.inner.staged.lock().unwrap_or_else(|e| e.into_inner());
        staged.extend(encoded);
        Ok(staged.len())
    }

    /// Writes the staged documents as one segment and commits it, reporting progress
    /// (`(step, done, total)`) of the graph build. If it fails, nothing changed and the
    /// documents stay staged.
    pub fn commit_with(&self, progress: barista_index::writer::Progress<'_>) -> Result<WriteReport> {
        let writer = self.writer()?;
        let mut staged = self.inner.staged.lock().unwrap_or_else(|e| e.into_inner());
        // A failed commit keeps the staged documents for a retry.
        let info = writer.add_segment(&staged, progress)?;
        staged.clear();
        Ok(WriteReport { added: info.added, deleted: info.deleted, live: info.live, sequence: info.generation })
    }

    /// Deletes documents by id; `deleted` counts those that existed. Durable when it returns.
    pub fn delete(&self, ids: &[&str]) -> Result<WriteReport> {
        let ops = ids
            .iter()
            .map(|id| Op::delete(*id).map_err(|e| Error::InvalidRequest(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let writer = self.writer()?;
        let info = writer.write(ops)?;
        Ok(WriteReport { added: 0, deleted: info.existed, live: info.live, sequence: info.first_seq })
    }

    /// Merges all segments into one (after flushing the mutable segment); past the merge
    /// policy's `max_docs` live documents into segments of at most that size (see
    /// [`barista_index::writer::IndexWriter::compact`]).
    pub fn compact(&self, progress: barista_index::writer::Progress<'_>) -> Result<WriteReport> {
        let info = self.writer()?.compact_with(progress)?;
        Ok(WriteReport { added: 0, deleted: 0, live: info.live, sequence: info.generation })
    }

    /// Sets the rungs that carry HNSW graphs (each must be a stored rung) and builds the graphs
    /// segments now lack on them (and the i8 copy of their rows to graphs written without
    /// one, and graphs found damaged built again), reporting progress; graphs on rungs no
    /// longer named are dropped. Returns the number of segments that got graphs or copies
    /// during the call (from it or from the writer's background builder meanwhile). Searches go on meanwhile (a
    /// segment without its graph is scanned). The plans' graph shortlist starts at the smallest
    /// graph rung (see [`crate::StagePlan::profile`]).
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a rung the index does not store or an empty list (an index
    /// without graphs: use `graph_min_docs` instead); index errors from the commits.
    pub fn set_graph_rungs(&self, rungs: &[Rung], progress: barista_index::writer::Progress<'_>) -> Result<usize> {
        if rungs.is_empty() {
            return Err(Error::InvalidRequest("name at least one graph rung".into()));
        }
        let positions = self.graph_rung_positions(rungs)?;
        let writer = self.writer()?;
        let before = writer.stats().graph_builds;
        writer.set_graph_rungs(&positions)?;
        writer.build_graphs(progress)?;
        // Counted by the writer: its background builder may take a segment first.
        Ok((writer.stats().graph_builds - before) as usize)
    }

    /// The positions in the stored ladder of `rungs` (graph rungs to be), checked without taking
    /// the writer: callers validate before they open for writing, so a refused request changes
    /// nothing on disk.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] naming the stored rungs when one of `rungs` is not stored.
    pub fn graph_rung_positions(&self, rungs: &[Rung]) -> Result<Vec<usize>> {
        let stored: Vec<Rung> = self.inner.index.snapshot().config().rungs.iter().map(|r| r.rung).collect();
        rungs
            .iter()
            .map(|g| {
                stored.iter().position(|r| r == g).ok_or_else(|| {
                    let list: Vec<String> = stored.iter().map(Rung::to_string).collect();
                    Error::InvalidRequest(format!(
                        "the graph rung {g} is not one of the index's stored rungs: {}",
                        list.join(" ")
                    ))
                })
            })
            .collect::<Result<Vec<usize>>>()
    }

    /// Measures, for sample query texts, how much of the final top 10 (the exhaustive search at
    /// the largest rung) each stored rung's own exhaustive top `N` holds, for each `N` in
    /// `depths` (see [`crate::search::graph_rung`]; [`crate::search::graph_rung::DEPTHS`] is the
    /// usual choice). Rows come smallest rung first; `progress(done, total)` after each query.
    /// Costs one exhaustive scan of every rung per query (about 0.07 s per query at a million
    /// documents with the shared model), on the calling thread.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] without queries, or for an empty index; encoder and index
    /// errors.
    pub fn rung_quality(
        &self,
        queries: &[String],
        depths: &[usize],
        progress: &dyn Fn(usize, usize),
    ) -> Result<Vec<RungQuality>> {
        let snapshot = self.inner.index.snapshot();
        if queries.is_empty() {
            return Err(Error::InvalidRequest("measuring the rungs needs at least one query".into()));
        }
        if snapshot.is_empty() {
            return Err(Error::InvalidRequest("the index holds no documents to measure the rungs on".into()));
        }
        let stored = &snapshot.config().rungs;
        let rungs: Vec<Rung> = stored.iter().map(|r| r.rung).collect();
        let largest = rungs.len() - 1;
        let deepest = depths.iter().copied().max().unwrap_or(10).max(100);
        let mut found = vec![vec![0usize; depths.len()]; rungs.len()];
        let mut top1 = vec![0.0; rungs.len()];
        let mut top100 = vec![0.0; rungs.len()];
        let mut with100 = vec![0usize; rungs.len()];
        let mut truths = 0usize;
        for (done, text) in queries.iter().enumerate() {
            let mut state = self.inner.encoder.query(text)?;
            let vectors: Vec<Vec<f32>> = rungs.iter().map(|&r| state.rung(r)).collect::<Result<_>>()?;
            let truth: HashSet<DocAddress> =
                snapshot.exact_search(largest, &vectors[largest], 10)?.iter().map(|h| h.address).collect();
            truths += truth.len();
            for (r, vector) in vectors.iter().enumerate() {
                let hits = snapshot.exact_search(r, vector, deepest)?;
                for (d, &depth) in depths.iter().enumerate() {
                    found[r][d] += hits.iter().take(depth).filter(|h| truth.contains(&h.address)).count();
                }
                top1[r] += f64::from(hits.first().map_or(0.0, |h| h.score));
                if let Some(hit) = hits.get(99) {
                    top100[r] += f64::from(hit.score);
                    with100[r] += 1;
                }
            }
            progress(done + 1, queries.len());
        }
        let q = queries.len() as f64;
        Ok(rungs
            .iter()
            .enumerate()
            .map(|(r, &rung)| RungQuality {
                rung,
                row_bytes: rung.dim,
                kept: depths
                    .iter()
                    .enumerate()
                    .map(|(d, &depth)| (depth, found[r][d] as f64 / truths.max(1) as f64))
                    .collect(),
                top1_score: top1[r] / q,
                top100_score: top100[r] / with100[r].max(1) as f64,
            })
            .collect())
    }

    /// Writes the mutable segment out as an immutable one now (normally the background does).
    pub fn flush(&self) -> Result<WriteReport> {
        let info = self.writer()?.flush()?;
        Ok(WriteReport { added: 0, deleted: 0, live: info.live, sequence: info.generation })
    }

    /// What the index holds, and what its writer is doing if this engine writes.
    pub fn stats(&self) -> IndexStats {
        let snapshot = self.inner.index.snapshot();
        let segments = snapshot.segments();
        let writer = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|w| w.stats());
        IndexStats {
            documents: snapshot.len(),
            deleted: segments.iter().map(|s| u64::from(s.deleted)).sum(),
            generation: snapshot.manifest().generation,
            segments,
            log: writer.is_none().then(|| self.inner.index.log_summary()),
            writer,
        }
    }

    /// Picks up what another process (the index's writer) committed or logged since this engine
    /// opened the index or last reloaded; returns whether anything changed. Cheap when nothing
    /// did (the manifest is read and the logs' lengths compared). A no-op returning `false` when
    /// this engine holds the writer: it publishes its own changes. Searches already running
    /// keep the snapshot they started on.
    ///
    /// Errors: the manifest or a log cannot be read or is damaged (the current snapshot stays).
    pub fn reload(&self) -> Result<bool> {
        Ok(self.inner.index.reload()?)
    }

    /// Whether each of `ids` is a live document, in order (one snapshot for all).
    pub fn contains(&self, ids: &[&str]) -> Result<Vec<bool>> {
        let snapshot = self.inner.index.snapshot();
        ids.iter().map(|id| Ok(snapshot.lookup(id)?.is_some())).collect()
    }

    /// A stored document by id.
    pub fn get(&self, id: &str) -> Result<Option<Document>> {
        let snapshot = self.inner.index.snapshot();
        let Some(address) = snapshot.lookup(id)? else { return Ok(None) };
        let stored = snapshot.doc(address)?;
        let metadata: Option<serde_json::Value> = match stored.metadata {
            Some(m) => Some(
                serde_json::from_str(m)
                    .map_err(|e| Error::InvalidRequest(format!("stored metadata of {id:?}: {e}")))?,
            ),
            None => None,
        };
        Ok(Some(Document {
            id: stored.id.to_string(),
            text: stored.text.unwrap_or_default().to_string(),
            title: stored.title.map(str::to_string),
            metadata,
        }))
    }

    /// Fits adaptive-stopping thresholds for `profile` on training queries with judgements and
    /// stores them in the index (committed). `target` is the share of the full cascade's nDCG@10
    /// to keep (e.g. 0.99). Every judged query counts, as in `barista bench`: one whose text is
    /// missing or blank has no results and scores 0.
    pub fn calibrate(
        &self,
        profile: &str,
        queries: &[(String, String)],
        qrels: &BTreeMap<String, BTreeMap<String, i32>>,
        target: f64,
    ) -> Result<StopRule> {
        self.calibrate_with(profile, queries, qrels, target, false)
    }

    /// [`Engine::calibrate`]; `drop_identical_ids` leaves out hits whose document id is the
    /// query's id before scoring, as BEIR's evaluation (and `barista bench` on BEIR data sets)
    /// does.
    pub fn calibrate_with(
        &self,
        profile: &str,
        queries: &[(String, String)],
        qrels: &BTreeMap<String, BTreeMap<String, i32>>,
        target: f64,
        drop_identical_ids: bool,
    ) -> Result<StopRule> {
        let k = 10;
        // One more hit, when the query itself is dropped, so that k remain.
        let request =
            SearchRequest::text("calibration").with_k(k + usize::from(drop_identical_ids)).with_profile(profile);
        let snapshot = self.inner.index.snapshot();
        let shape = shape_of(&snapshot);
        let plan = plan_in(&request, &shape)?;
        if plan.stages.len() < 3 {
            return Err(Error::InvalidRequest(format!(
                "profile {profile} has {} stages: nothing to stop early",
                plan.stages.len()
            )));
        }
        let texts: BTreeMap<&str, &str> = queries.iter().map(|(id, text)| (id.as_str(), text.as_str())).collect();
        let mut traces = Vec::new();
        // Every judged query counts, as in `barista bench`: one without a text, or with a blank
        // one, gets no results (and scores 0) rather than being left out.
        for (id, judged) in qrels {
            let stages = match texts.get(id.as_str()) {
                Some(text) if !text.trim().is_empty() => {
                    let request = SearchRequest { query: Some(text.to_string()), ..request.clone() };
                    let outcome = self.run_cascade(&request, &snapshot, &shape, &plan, None, true)?;
                    let ranked = outcome
                        .trace
                        .iter()
                        .map(|hits| {
                            let keep = k + usize::from(drop_identical_ids);
                            hits.iter().take(keep).map(|h| snapshot.doc(h.address).map(|d| d.id.to_string())).collect()
                        })
                        .collect::<barista_index::Result<Vec<Vec<String>>>>()?;
                    ranked
                        .into_iter()
                        .map(|mut ids| {
                            if drop_identical_ids {
                                ids.retain(|d| d != id);
                            }
                            ids.truncate(k);
                            ids
                        })
                        .collect()
                }
                _ => vec![Vec::new(); plan.stages.len()],
            };
            traces.push(Trace { query: id.clone(), stages, qrels: judged.clone() });
        }
        if traces.is_empty() || traces.iter().all(|t| t.stages.iter().all(Vec::is_empty)) {
            return Err(Error::InvalidRequest(
                "none of the calibration queries has both a text and relevance judgements".into(),
            ));
        }
        let rule = adaptive::fit(&plan, &traces, k, target);
        let json = serde_json::to_string(&rule).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        self.writer()?.set_setting(&stop_key(profile), &json)?;
        Ok(rule)
    }
}

/// The shape plans are checked against, for one snapshot.
fn shape_of(snapshot: &Snapshot) -> IndexShape {
    let config = snapshot.config();
    IndexShape {
        rungs: config.rungs.iter().map(|r| r.rung).collect(),
        graph_rungs: config.graph_rungs(),
        docs: snapshot.len(),
    }
}

/// The plan a request runs on an index of this shape.
fn plan_in(request: &SearchRequest, shape: &IndexShape) -> Result<StagePlan> {
    let mut plan = match &request.stages {
        Some(stages) => StagePlan { stages: stages.clone() },
        None => StagePlan::profile(request.profile.as_deref().unwrap_or("balanced"), shape, request.k)?,
    };
    if let Some(last) = plan.stages.last_mut() {
        last.keep = request.k;
    }
    plan.validate(shape)?;
    Ok(plan)
}

/// The fitted stopping rule of a profile stored in a snapshot's manifest.
fn stop_rule_in(snapshot: &Snapshot, profile: &str) -> Option<StopRule> {
    snapshot.manifest().setting(&stop_key(profile)).and_then(|json| serde_json::from_str(json).ok())
}
