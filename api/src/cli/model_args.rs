//! The flags every command that loads a model shares.

use anyhow::Context;
use barista_engine::model::profile::parse_rungs;
use barista_engine::{Encoder, EncoderOptions, Isa, Pooling, ProfileSpec, Rung, Similarity, WeightsChoice};

/// Which model to load and how.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Model folder, or Hugging Face model id (downloaded into the local cache when online).
    #[arg(long, env = "BARISTA_MODEL")]
    pub model: String,
    /// Override the 2D ladder: rungs as "LAYER,DIM LAYER,DIM …", small to large.
    #[arg(long = "rungs", value_parser = parse_ladder, value_name = "RUNGS")]
    pub ladder: Option<Ladder>,
    /// Override the pooling: cls or mean.
    #[arg(long)]
    pub pooling: Option<Pooling>,
    /// Override the similarity: dot, or cosine (L2-normalise after truncation).
    #[arg(long)]
    pub similarity: Option<Similarity>,
    /// Override the maximum query length in tokens (with [CLS] and [SEP]).
    #[arg(long, value_name = "TOKENS")]
    pub query_max_length: Option<usize>,
    /// Override the maximum passage length in tokens (with [CLS] and [SEP]).
    #[arg(long, value_name = "TOKENS")]
    pub passage_max_length: Option<usize>,
    /// Use a built-in profile preset (ielabgroup/Starbucks-msmarco, ielabgroup/Starbucks_STS).
    #[arg(long)]
    pub preset: Option<String>,
    /// Weight storage: auto (as published, exact), f32, or f16/bf16 (lossy for f32 models).
    #[arg(long, default_value = "auto")]
    pub weights: WeightsChoice,
    /// Instruction set for the kernels (avx512, avx2, scalar); default: the best available.
    #[arg(long)]
    pub isa: Option<Isa>,
    /// Worker threads for batches of texts (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Never download from the Hugging Face Hub; use local folders and the local cache.
    #[arg(long, env = "BARISTA_OFFLINE", value_parser = clap::builder::BoolishValueParser::new())]
    pub offline: bool,
    /// Threads that split one query's layers (default: up to 2; 1 turns the split off).
    #[arg(long)]
    pub query_threads: Option<usize>,
}

/// A whole ladder given as one flag value.
#[derive(Clone, Debug)]
pub struct Ladder(pub Vec<Rung>);

fn parse_ladder(s: &str) -> Result<Ladder, String> {
    let rungs = parse_rungs(s)?;
    if rungs.is_empty() {
        return Err("give at least one rung, for example \"2,64 4,128 6,384\"".into());
    }
    Ok(Ladder(rungs))
}

impl ModelArgs {
    /// Loads the encoder these flags describe.
    pub fn load(&self) -> anyhow::Result<Encoder> {
        Encoder::load(&self.model, &self.encoder_options())
            .with_context(|| format!("could not load the model {}", self.model))
    }

    /// The encoder options these flags describe.
    pub fn encoder_options(&self) -> EncoderOptions {
        EncoderOptions {
            profile: ProfileSpec {
                rungs: self.ladder.as_ref().map(|l| l.0.clone()),
                pooling: self.pooling,
                similarity: self.similarity,
                query_max_length: self.query_max_length,
                passage_max_length: self.passage_max_length,
            },
            preset: self.preset.clone(),
            weights: self.weights,
            isa: self.isa,
            threads: self.threads,
            query_threads: self.query_threads,
            offline: self.offline,
        }
    }
}
