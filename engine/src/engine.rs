//! [`Engine`]: the library face of Barista — an index directory and the model that fills it,
//! searched coarse to fine. `&self` everywhere, `Send + Sync`, no global state.

use crate::encoder::{Encoder, EncoderOptions};
use crate::error::{Error, Result};
use crate::model::profile::{Profile, ProfileSpec};
use crate::search::adaptive::{self, StopRule, Trace};
use crate::search::cascade::{self, QuerySource, check_vectors, ms};
use crate::search::plan::{IndexShape, StagePlan};
use crate::search::request::{SearchHit, SearchRequest, SearchResponse};
use crate::text::TextKind;
use barista_index::{ElementType, GraphParams, Index, IndexConfig, IndexWriter, NewDocument, Rung, StoredRung};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// A document to index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Document {
    /// External id (unique; adding an existing id replaces that document).
    pub id: String,
    /// The text to embed and store.
    pub text: String,
    /// A title, embedded before the text (BEIR convention) and stored in the metadata as
    /// `"title"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Any JSON object, stored and returned with hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

impl Document {
    /// The text the encoder sees.
    pub fn passage(&self) -> String {
        match self.title.as_deref().map(str::trim) {
            Some(title) if !title.is_empty() => format!("{title} {}", self.text),
            _ => self.text.clone(),
        }
    }

    fn stored_metadata(&self) -> Result<Option<String>> {
        let mut metadata = match &self.metadata {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Object(m)) => Some(m.clone()),
            Some(_) => {
                return Err(Error::InvalidRequest(format!("document {:?}: metadata must be a JSON object", self.id)));
            }
        };
        if let Some(title) = &self.title {
            metadata.get_or_insert_with(Default::default).entry("title").or_insert_with(|| title.clone().into());
        }
        Ok(metadata.map(|m| serde_json::Value::Object(m).to_string()))
    }
}

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
    /// The rung the HNSW graph is built on (default: the second largest, strong enough that a
    /// few hundred graph candidates hold the final top hits).
    pub graph_rung: Option<Rung>,
    /// HNSW links per node.
    pub max_connections: usize,
    /// HNSW construction candidate list size.
    pub ef_construction: usize,
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
            graph_rung: None,
            max_connections: graph.max_connections,
            ef_construction: graph.ef_construction,
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
    /// Documents deleted (replacements included).
    pub deleted: usize,
    /// Live documents after the write.
    pub live: u64,
    /// The committed generation.
    pub generation: u64,
}

/// Settings key of the stopping rule of a profile.
fn stop_key(profile: &str) -> String {
    format!("barista.cascade.stop.{profile}")
}

struct Inner {
    encoder: Encoder,
    index: Index,
    writer: Mutex<Option<IndexWriter>>,
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
        let graph_rung = options.graph_rung.unwrap_or(rungs[rungs.len().saturating_sub(2)]);
        let graph = rungs.iter().position(|r| *r == graph_rung).ok_or_else(|| {
            Error::InvalidRequest(format!("the graph rung {graph_rung} is not among the stored rungs"))
        })?;
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
                rung: graph,
                max_connections: options.max_connections,
                ef_construction: options.ef_construction,
            },
        };
        let index = Index::create(dir, config)?;
        Ok(Engine { inner: Arc::new(Inner { encoder, index, writer: Mutex::new(None) }) })
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
        Ok(Engine { inner: Arc::new(Inner { encoder, index, writer: Mutex::new(None) }) })
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
        let snapshot = self.inner.index.snapshot();
        let config = snapshot.config();
        IndexShape {
            rungs: config.rungs.iter().map(|r| r.rung).collect(),
            graph_rung: config.graph_rung(),
            docs: snapshot.len(),
        }
    }

    /// The plan a request runs (named profile or explicit stages; the last stage keeps `k`).
    pub fn plan_for(&self, request: &SearchRequest) -> Result<StagePlan> {
        let shape = self.shape();
        let mut plan = match &request.stages {
            Some(stages) => StagePlan { stages: stages.clone() },
            None => StagePlan::profile(request.profile.as_deref().unwrap_or("balanced"), &shape, request.k)?,
        };
        if let Some(last) = plan.stages.last_mut() {
            last.keep = request.k;
        }
        plan.validate(&shape)?;
        Ok(plan)
    }

    /// The fitted stopping rule of a profile, if the index has one.
    pub fn stop_rule(&self, profile: &str) -> Option<StopRule> {
        let snapshot = self.inner.index.snapshot();
        snapshot.manifest().setting(&stop_key(profile)).and_then(|json| serde_json::from_str(json).ok())
    }

    /// Searches (see [`SearchRequest`]).
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse> {
        let start = Instant::now();
        let _caller = self.inner.encoder.enter();
        if request.k == 0 || request.k > 10_000 {
            return Err(Error::InvalidRequest(format!("k must be between 1 and 10000, not {}", request.k)));
        }
        let plan = self.plan_for(request)?;
        let rule = match (request.adaptive, &request.stages) {
            (Some(false), _) => None,
            (adaptive, _) => {
                let profile = request.profile.as_deref().unwrap_or("balanced");
                let rule = self.stop_rule(profile).filter(|r| r.fits(&plan));
                if adaptive == Some(true) && rule.is_none() {
                    return Err(Error::InvalidRequest(format!(
                        "adaptive stopping needs thresholds calibrated for this plan; run `barista calibrate` for profile {profile}"
                    )));
                }
                rule
            }
        };
        let outcome = self.run_cascade(request, &plan, rule.as_ref(), false)?;
        let snapshot = self.inner.index.snapshot();
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
        plan: &StagePlan,
        rule: Option<&StopRule>,
        trace: bool,
    ) -> Result<cascade::Outcome> {
        let snapshot = self.inner.index.snapshot();
        let shape = self.shape();
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
            snapshot: &snapshot,
            shape: &shape,
            plan,
            k: request.k,
            stop: rule,
            fork: self.inner.encoder.fork(),
            trace,
            allowed: masks.as_deref(),
        };
        let mut outcome = cascade.run(&mut source)?;
        outcome.timings.encode_ms += tokenize_ms;
        if let Some(first) = outcome.reports.first_mut() {
            first.encode_ms += tokenize_ms;
        }
        Ok(outcome)
    }

    fn writer(&self) -> Result<MutexGuard<'_, Option<IndexWriter>>> {
        let mut guard = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.inner.index.writer()?);
        }
        Ok(guard)
    }

    /// Encodes documents into index entries (no lock held).
    fn prepare(&self, docs: &[Document]) -> Result<Vec<NewDocument>> {
        let config = self.inner.index.snapshot().config().clone();
        let rungs: Vec<Rung> = config.rungs.iter().map(|r| r.rung).collect();
        for d in docs {
            if d.id.is_empty() {
                return Err(Error::InvalidRequest("a document id must not be empty".into()));
            }
        }
        let passages: Vec<String> = docs.iter().map(Document::passage).collect();
        let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
        let embedded = self.inner.encoder.encode(&refs, TextKind::Passage, &rungs)?;
        docs.iter()
            .enumerate()
            .map(|(i, d)| {
                Ok(NewDocument {
                    id: d.id.clone(),
                    text: Some(d.text.clone()),
                    metadata: d.stored_metadata()?,
                    vectors: (0..rungs.len()).map(|r| embedded.vector(i, r).to_vec()).collect(),
                })
            })
            .collect()
    }

    /// Adds (or replaces) documents and commits: when this returns, they are durable and
    /// searchable. All or nothing: an invalid document rejects the whole batch.
    pub fn add(&self, docs: &[Document]) -> Result<WriteReport> {
        self.stage(docs)?;
        self.commit_with(&|_, _, _| {})
    }

    /// Encodes and buffers documents without committing (for bulk loads; see
    /// [`Engine::commit_with`]). All or nothing.
    pub fn stage(&self, docs: &[Document]) -> Result<usize> {
        let prepared = self.prepare(docs)?;
        let mut guard = self.writer()?;
        let writer = guard.as_mut().expect("writer opened above");
        // Validate everything before buffering anything.
        let config = self.inner.index.snapshot().config().clone();
        for d in &prepared {
            for (v, s) in d.vectors.iter().zip(&config.rungs) {
                if v.len() != s.rung.dim || v.iter().any(|x| !x.is_finite()) {
                    return Err(Error::InvalidRequest(format!("document {:?} encodes to an invalid vector", d.id)));
                }
            }
        }
        for d in prepared {
            writer.add(d)?;
        }
        Ok(writer.pending())
    }

    /// Deletes documents by id and commits; returns how many existed.
    pub fn delete(&self, ids: &[&str]) -> Result<WriteReport> {
        let mut guard = self.writer()?;
        let writer = guard.as_mut().expect("writer opened above");
        let mut found = 0;
        for id in ids {
            if writer.delete(id)? {
                found += 1;
            }
        }
        let info = writer.commit()?;
        Ok(WriteReport { added: info.added, deleted: found, live: info.live, generation: info.generation })
    }

    /// Commits buffered documents, reporting progress (`(step, done, total)`) of the graph build.
    pub fn commit_with(&self, progress: barista_index::writer::Progress<'_>) -> Result<WriteReport> {
        let mut guard = self.writer()?;
        let writer = guard.as_mut().expect("writer opened above");
        let added = writer.pending();
        let info = writer.commit_with(progress)?;
        Ok(WriteReport { added, deleted: info.deleted, live: info.live, generation: info.generation })
    }

    /// Merges all segments into one.
    pub fn compact(&self, progress: barista_index::writer::Progress<'_>) -> Result<WriteReport> {
        let mut guard = self.writer()?;
        let writer = guard.as_mut().expect("writer opened above");
        let info = writer.compact_with(progress)?;
        Ok(WriteReport { added: 0, deleted: 0, live: info.live, generation: info.generation })
    }

    /// A stored document by id.
    pub fn get(&self, id: &str) -> Result<Option<Document>> {
        let snapshot = self.inner.index.snapshot();
        let Some(address) = snapshot.lookup(id)? else { return Ok(None) };
        let stored = snapshot.doc(address)?;
        let mut metadata: Option<serde_json::Value> = match stored.metadata {
            Some(m) => Some(
                serde_json::from_str(m)
                    .map_err(|e| Error::InvalidRequest(format!("stored metadata of {id:?}: {e}")))?,
            ),
            None => None,
        };
        let title = metadata.as_mut().and_then(|m| m.get("title")).and_then(|t| t.as_str()).map(str::to_string);
        Ok(Some(Document {
            id: stored.id.to_string(),
            text: stored.text.unwrap_or_default().to_string(),
            title,
            metadata,
        }))
    }

    /// Fits adaptive-stopping thresholds for `profile` on training queries with judgements and
    /// stores them in the index (committed). `target` is the share of the full cascade's nDCG@10
    /// to keep (e.g. 0.99).
    pub fn calibrate(
        &self,
        profile: &str,
        queries: &[(String, String)],
        qrels: &BTreeMap<String, BTreeMap<String, i32>>,
        target: f64,
    ) -> Result<StopRule> {
        let k = 10;
        let request = SearchRequest::text("calibration").with_k(k).with_profile(profile);
        let plan = self.plan_for(&request)?;
        if plan.stages.len() < 3 {
            return Err(Error::InvalidRequest(format!(
                "profile {profile} has {} stages: nothing to stop early",
                plan.stages.len()
            )));
        }
        let snapshot = self.inner.index.snapshot();
        let mut traces = Vec::new();
        for (id, text) in queries {
            let Some(judged) = qrels.get(id) else { continue };
            let request = SearchRequest { query: Some(text.clone()), ..request.clone() };
            let outcome = self.run_cascade(&request, &plan, None, true)?;
            let stages = outcome
                .trace
                .iter()
                .map(|hits| hits.iter().take(k).map(|h| snapshot.doc(h.address).map(|d| d.id.to_string())).collect())
                .collect::<barista_index::Result<Vec<Vec<String>>>>()?;
            traces.push(Trace { stages, qrels: judged.clone() });
        }
        if traces.is_empty() {
            return Err(Error::InvalidRequest("none of the calibration queries has relevance judgements".into()));
        }
        let rule = adaptive::fit(&plan, &traces, k, target);
        let json = serde_json::to_string(&rule).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let mut guard = self.writer()?;
        let writer = guard.as_mut().expect("writer opened above");
        writer.set_setting(&stop_key(profile), &json);
        writer.commit()?;
        Ok(rule)
    }
}
