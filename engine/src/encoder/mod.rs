//! The 2D Matryoshka encoder: texts in, rung vectors out.
//!
//! * [`Encoder::encode`] embeds many texts in one pass up to the deepest requested layer,
//!   keeping every requested rung: texts are sorted by length and packed into batches with no
//!   padding at all, and batches are spread over worker threads.
//! * [`Encoder::query`] starts a progressive [`QueryState`]: it runs only the layers a rung
//!   needs, keeps its hidden state, and continues to deeper layers later without recomputing.
//!
//! Both paths run the same kernels in the same order, so a text gets bit-identical vectors alone,
//! in any batch, progressively or in one pass.

pub(crate) mod forward;
mod pooling;

pub use pooling::normalize;

use crate::error::{Error, Result};
use crate::kernels::Isa;
use crate::kernels::gemm::WeightPrecision;
use crate::kernels::team::{Caller, Fork, Serial, Team};
use crate::model::assemble_profile;
use crate::model::config::BertConfig;
use crate::model::profile::{ModelShape, Profile, ProfileSpec, Rung, check_rung};
use crate::model::source::{ModelSource, resolve};
use crate::model::weights::{self, WeightsChoice};
use crate::text::{TextKind, TextTokenizer, Tokens, check_tokens};
use forward::{BertWeights, Scratch, Workspace, embed, run_layers};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How to load and run an encoder.
#[derive(Clone, Debug, Default)]
pub struct EncoderOptions {
    /// Profile settings that override every other source.
    pub profile: ProfileSpec,
    /// A built-in preset to use (see [`crate::model::profile::PRESETS`]).
    pub preset: Option<String>,
    /// Weight storage precision.
    pub weights: WeightsChoice,
    /// Instruction set (default: the best this CPU has).
    pub isa: Option<Isa>,
    /// Worker threads for batches of texts (default: every core).
    pub threads: Option<usize>,
    /// Threads that split one query's layers (default: up to 2).
    pub query_threads: Option<usize>,
    /// Never download: use local folders and the local Hub cache only.
    pub offline: bool,
}

/// A loaded model, ready to encode. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Encoder {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    fingerprint: String,
    config: BertConfig,
    profile: Profile,
    tokenizer: TextTokenizer,
    weights: BertWeights,
    precision: WeightPrecision,
    threads: usize,
    /// Splits single queries across threads (it runs a query alone when another holds it).
    team: Option<Team>,
    workspaces: Mutex<Vec<Workspace>>,
}

/// Tokens packed per batch (bounded so activations stay cache-friendly).
const BATCH_TOKENS: usize = 2048;
/// Texts per batch at most.
const BATCH_TEXTS: usize = 256;

impl Encoder {
    /// Loads a model from a folder or a Hugging Face Hub id.
    pub fn load(model: &str, options: &EncoderOptions) -> Result<Encoder> {
        let files = resolve(&ModelSource::parse(model)?, options.offline)?;
        let config = BertConfig::from_file(&files.config, &files.name)?;
        let profile = assemble_profile(&files, &config, &options.profile, options.preset.as_deref())?;
        let tokenizer = TextTokenizer::load(
            &files.tokenizer,
            profile.query_max_length,
            profile.passage_max_length,
            config.vocab_size,
            config.type_vocab_size,
            config.max_position_embeddings,
        )?;
        let isa = options.isa.unwrap_or_else(Isa::best);
        if !isa.is_supported() {
            return Err(Error::InvalidRequest(format!(
                "this CPU does not support the {isa} instruction set; supported: {:?}",
                Isa::supported()
            )));
        }
        let (weights, precision) = weights::load(&files, &config, profile.deepest_layer(), options.weights, isa)?;
        let fingerprint = crate::model::fingerprint(&files)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = options.threads.unwrap_or(cores).max(1);
        let query_threads = options.query_threads.unwrap_or(cores.min(2)).max(1);
        let team = if query_threads > 1 { Some(Team::new(query_threads).map_err(Error::Thread)?) } else { None };
        Ok(Encoder {
            inner: Arc::new(Inner {
                name: files.name,
                fingerprint,
                config,
                profile,
                tokenizer,
                weights,
                precision,
                threads,
                team,
                workspaces: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The model's name (its folder or Hub id).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A fingerprint of the model (its config, tokenizer and weight layout): indexes record it
    /// so that vectors from different models are never mixed.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Marks the calling thread as serving one query (see [`Team::enter`]) until the guard is
    /// dropped; `None` without a team.
    pub(crate) fn enter(&self) -> Option<Caller<'_>> {
        self.inner.team.as_ref().map(Team::enter)
    }

    /// The thread team that splits one query's work.
    pub(crate) fn fork(&self) -> &dyn Fork {
        match &self.inner.team {
            Some(team) => team,
            None => &Serial,
        }
    }

    /// The validated 2D profile.
    pub fn profile(&self) -> &Profile {
        &self.inner.profile
    }

    /// The model's `config.json`.
    pub fn config(&self) -> &BertConfig {
        &self.inner.config
    }

    /// Hidden size: the largest possible rung dim.
    pub fn hidden_size(&self) -> usize {
        self.inner.config.hidden_size
    }

    /// Transformer blocks loaded (the profile's deepest layer).
    pub fn layers(&self) -> usize {
        self.inner.weights.layers.len()
    }

    /// The precision the weights are kept in.
    pub fn weight_precision(&self) -> WeightPrecision {
        self.inner.precision
    }

    /// Bytes of packed transformer weights (what a query streams through).
    pub fn weight_bytes(&self) -> usize {
        self.inner
            .weights
            .layers
            .iter()
            .map(|l| l.qkv.bytes() + l.attn_out.bytes() + l.ffn_in.bytes() + l.ffn_out.bytes())
            .sum()
    }

    /// The instruction set the kernels run with.
    pub fn isa(&self) -> Isa {
        self.inner.weights.isa
    }

    /// Checks that this encoder can produce `rung`.
    pub fn check_rung(&self, rung: Rung) -> Result<()> {
        let shape = ModelShape {
            layers: self.layers(),
            hidden: self.hidden_size(),
            max_positions: self.inner.config.max_position_embeddings,
        };
        check_rung(rung, shape).map_err(|e| {
            if rung.layer > self.layers() && rung.layer <= self.inner.config.num_hidden_layers {
                Error::InvalidRequest(format!("{e}: only the layers up to the profile's deepest rung are loaded"))
            } else {
                Error::InvalidRequest(e)
            }
        })
    }

    /// Tokenizes a text the way it will be encoded.
    pub fn tokenize(&self, text: &str, kind: TextKind) -> Result<Tokens> {
        self.inner.tokenizer.encode(text, kind)
    }

    /// Tokenizes many texts (in parallel).
    pub fn tokenize_batch(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Tokens>> {
        self.inner.tokenizer.encode_batch(texts, kind)
    }

    /// Starts a progressive query encoding (tokenized and embedded, no block run yet).
    pub fn query(&self, text: &str) -> Result<QueryState> {
        self.query_tokens(self.tokenize(text, TextKind::Query)?)
    }

    /// Starts a progressive encoding of already tokenized text.
    pub fn query_tokens(&self, tokens: Tokens) -> Result<QueryState> {
        let c = &self.inner.config;
        check_tokens(&tokens, c.vocab_size, c.type_vocab_size, c.max_position_embeddings)?;
        let h = self.hidden_size();
        let mut hidden = vec![0.0; tokens.len() * h];
        let offsets = [0, tokens.len()];
        embed(&self.inner.weights, &tokens.ids, &tokens.type_ids, &offsets, &mut hidden);
        let mut pooled = vec![0.0; h];
        pooling::pool(&hidden, &offsets, h, self.inner.profile.pooling, &mut pooled);
        Ok(QueryState { encoder: self.clone(), tokens, hidden, pooled: vec![pooled], interrupted: false })
    }

    /// Embeds passages at every rung of the profile.
    pub fn encode_passages(&self, texts: &[&str]) -> Result<Embeddings> {
        self.encode(texts, TextKind::Passage, &self.inner.profile.rungs)
    }

    /// Embeds `texts` in one pass up to the deepest of `rungs`, keeping each rung's vectors.
    pub fn encode(&self, texts: &[&str], kind: TextKind, rungs: &[Rung]) -> Result<Embeddings> {
        let tokens = self.inner.tokenizer.encode_batch(texts, kind)?;
        self.encode_tokens(&tokens, rungs)
    }

    /// Embeds already tokenized texts (see [`Encoder::encode`]).
    pub fn encode_tokens(&self, texts: &[Tokens], rungs: &[Rung]) -> Result<Embeddings> {
        for &rung in rungs {
            self.check_rung(rung)?;
        }
        let c = &self.inner.config;
        for (i, tokens) in texts.iter().enumerate() {
            check_tokens(tokens, c.vocab_size, c.type_vocab_size, c.max_position_embeddings)
                .map_err(|e| Error::InvalidRequest(format!("text {i}: {e}")))?;
        }
        let mut layers: Vec<usize> = rungs.iter().map(|r| r.layer).collect();
        layers.sort_unstable();
        layers.dedup();
        let h = self.hidden_size();
        // pooled[slot][text * h..]: the pooled state of layer `layers[slot]` for every text.
        let mut pooled: Vec<Vec<f32>> = layers.iter().map(|_| vec![0.0; texts.len() * h]).collect();
        if !texts.is_empty() && !layers.is_empty() {
            self.run_batches(texts, &layers, &mut pooled);
        }
        let similarity = self.inner.profile.similarity;
        let blocks = rungs
            .iter()
            .map(|&rung| {
                let slot = layers.binary_search(&rung.layer).unwrap_or_default();
                let mut block = vec![0.0; texts.len() * rung.dim];
                for (t, out) in block.chunks_exact_mut(rung.dim).enumerate() {
                    pooling::rung_vector(&pooled[slot][t * h..(t + 1) * h], rung, similarity, out);
                }
                block
            })
            .collect();
        Ok(Embeddings {
            rungs: rungs.to_vec(),
            count: texts.len(),
            blocks,
            token_counts: texts.iter().map(Tokens::len).collect(),
        })
    }

    /// Runs every text through the layers in `layers` (sorted), writing pooled states.
    fn run_batches(&self, texts: &[Tokens], layers: &[usize], pooled: &mut [Vec<f32>]) {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut batches = Vec::new();
        let (mut start, mut tokens) = (0, 0);
        for (pos, &i) in order.iter().enumerate() {
            let len = texts[i].len();
            if pos > start && (tokens + len > BATCH_TOKENS || pos - start >= BATCH_TEXTS) {
                batches.push(start..pos);
                (start, tokens) = (pos, 0);
            }
            tokens += len;
        }
        batches.push(start..order.len());

        let h = self.hidden_size();
        let next = AtomicUsize::new(0);
        let output = Mutex::new(pooled);
        let work = || {
            let mut ws = self.take_workspace();
            let mut x = Scratch::default();
            let mut local: Vec<Vec<f32>> = Vec::new();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(b) else { break };
                let members = &order[batch.clone()];
                let batch_pooled = self.run_batch(texts, members, layers, &mut ws, &mut x, &mut local);
                let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
                for (slot, states) in batch_pooled.iter().enumerate() {
                    for (j, &text) in members.iter().enumerate() {
                        out[slot][text * h..(text + 1) * h].copy_from_slice(&states[j * h..(j + 1) * h]);
                    }
                }
            }
            self.return_workspace(ws);
        };
        let workers = self.inner.threads.min(batches.len());
        if workers <= 1 {
            work();
        } else {
            std::thread::scope(|scope| {
                for _ in 1..workers {
                    scope.spawn(work);
                }
                work();
            });
        }
    }

    /// One packed batch: embeds, runs the layers, pools the requested ones into `local`.
    fn run_batch<'l>(
        &self,
        texts: &[Tokens],
        members: &[usize],
        layers: &[usize],
        ws: &mut Workspace,
        x: &mut Scratch,
        local: &'l mut Vec<Vec<f32>>,
    ) -> &'l [Vec<f32>] {
        let h = self.hidden_size();
        let w = &self.inner.weights;
        let pooling_kind = self.inner.profile.pooling;
        let mut offsets = Vec::with_capacity(members.len() + 1);
        offsets.push(0);
        let (mut ids, mut type_ids) = (Vec::new(), Vec::new());
        for &m in members {
            ids.extend_from_slice(&texts[m].ids);
            type_ids.extend_from_slice(&texts[m].type_ids);
            offsets.push(ids.len());
        }
        local.resize_with(layers.len(), Vec::new);
        for buffer in local.iter_mut() {
            buffer.resize(members.len() * h, 0.0);
        }
        let x = x.get(ids.len() * h);
        embed(w, &ids, &type_ids, &offsets, x);
        if layers[0] == 0 {
            pooling::pool(x, &offsets, h, pooling_kind, &mut local[0]);
        }
        let deepest = *layers.last().unwrap_or(&0);
        run_layers(w, x, &offsets, 0..deepest, ws, &Serial, &mut |layer, states| {
            if let Ok(slot) = layers.binary_search(&layer) {
                pooling::pool(states, &offsets, h, pooling_kind, &mut local[slot]);
            }
        });
        local
    }

    fn take_workspace(&self) -> Workspace {
        self.inner.workspaces.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default()
    }

    fn return_workspace(&self, ws: Workspace) {
        self.inner.workspaces.lock().unwrap_or_else(|e| e.into_inner()).push(ws);
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("model", &self.inner.name)
            .field("profile", &self.inner.profile)
            .field("weights", &self.inner.precision)
            .field("isa", &self.inner.weights.isa)
            .finish()
    }
}

/// Vectors of many texts at several rungs, stored per rung as one contiguous `count × dim` block.
#[derive(Clone, Debug)]
pub struct Embeddings {
    rungs: Vec<Rung>,
    count: usize,
    blocks: Vec<Vec<f32>>,
    token_counts: Vec<usize>,
}

impl Embeddings {
    /// The rungs, in the order they were requested.
    pub fn rungs(&self) -> &[Rung] {
        &self.rungs
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no texts.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Vector of text `text` at the `rung_index`-th rung.
    pub fn vector(&self, text: usize, rung_index: usize) -> &[f32] {
        let dim = self.rungs[rung_index].dim;
        &self.blocks[rung_index][text * dim..(text + 1) * dim]
    }

    /// All texts' vectors at the `rung_index`-th rung, row-major (`len() × dim`).
    pub fn block(&self, rung_index: usize) -> &[f32] {
        &self.blocks[rung_index]
    }

    /// Tokens each text was encoded with (after truncation).
    pub fn token_counts(&self) -> &[usize] {
        &self.token_counts
    }
}

/// A query being encoded progressively: layers run on demand and the hidden state is kept, so
/// going deeper never recomputes earlier layers.
pub struct QueryState {
    encoder: Encoder,
    tokens: Tokens,
    /// `tokens × hidden` output of layer `pooled.len() - 1`.
    hidden: Vec<f32>,
    /// Pooled state of every layer computed so far (index = layer).
    pooled: Vec<Vec<f32>>,
    /// Set while layers run: still set afterwards only if a panic interrupted them, leaving
    /// `hidden` half-updated.
    interrupted: bool,
}

impl QueryState {
    /// The query's tokens.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The deepest layer computed so far (0 = embeddings only).
    pub fn layer(&self) -> usize {
        self.pooled.len() - 1
    }

    /// Runs the blocks up to `layer` (nothing if already there).
    pub fn advance_to(&mut self, layer: usize) -> Result<()> {
        if layer > self.encoder.layers() {
            return Err(Error::InvalidRequest(format!(
                "cannot encode to layer {layer}: {} layers are loaded (the profile's deepest rung is {})",
                self.encoder.layers(),
                self.encoder.profile().largest()
            )));
        }
        if self.interrupted {
            return Err(Error::InvalidRequest(
                "this query's encoding was interrupted by a panic; start a new query".into(),
            ));
        }
        let from = self.layer();
        if layer <= from {
            return Ok(());
        }
        self.interrupted = true;
        let _caller = self.encoder.enter();
        let inner = &self.encoder.inner;
        let h = self.encoder.hidden_size();
        let mut ws = self.encoder.take_workspace();
        let offsets = [0, self.tokens.len()];
        let fork: &dyn Fork = match &inner.team {
            Some(team) => team,
            None => &Serial,
        };
        let pooled = &mut self.pooled;
        run_layers(&inner.weights, &mut self.hidden, &offsets, from..layer, &mut ws, fork, &mut |_, states| {
            let mut v = vec![0.0; h];
            pooling::pool(states, &offsets, h, inner.profile.pooling, &mut v);
            pooled.push(v);
        });
        self.interrupted = false;
        self.encoder.return_workspace(ws);
        Ok(())
    }

    /// The query's vector at `rung`, running more layers first if needed.
    pub fn rung(&mut self, rung: Rung) -> Result<Vec<f32>> {
        let mut out = vec![0.0; rung.dim];
        self.rung_into(rung, &mut out)?;
        Ok(out)
    }

    /// Like [`QueryState::rung`], writing into `out` (length `rung.dim`).
    pub fn rung_into(&mut self, rung: Rung, out: &mut [f32]) -> Result<()> {
        self.encoder.check_rung(rung)?;
        if out.len() != rung.dim {
            return Err(Error::InvalidRequest(format!(
                "output has {} values but rung {rung} has {}",
                out.len(),
                rung.dim
            )));
        }
        self.advance_to(rung.layer)?;
        pooling::rung_vector(&self.pooled[rung.layer], rung, self.encoder.profile().similarity, out);
        Ok(())
    }

    /// The pooled (untruncated, unnormalised) state of `layer`, if computed.
    pub fn pooled(&self, layer: usize) -> Option<&[f32]> {
        self.pooled.get(layer).map(Vec::as_slice)
    }
}
