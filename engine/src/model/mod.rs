//! A model: its files, architecture, 2D profile, tokenizer and weights.

pub mod config;
pub mod profile;
pub mod source;
pub(crate) mod weights;

use crate::error::{Error, Result};
use config::BertConfig;
use profile::{ModelShape, Pooling, Profile, ProfileSpec, preset};
use serde::Deserialize;
use source::ModelFiles;
use std::path::Path;

/// Reads `2d_matryoshka.json`.
fn read_profile_file(path: &Path) -> Result<ProfileSpec> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::invalid_file(
            path,
            format!(
                "{e}; expected {{\"rungs\": [[layer, dim], ...], \"pooling\": \"cls\"|\"mean\", \"similarity\": \
                 \"dot\"|\"cosine\", \"query_max_length\": N, \"passage_max_length\": N}} (all but rungs optional)"
            ),
        )
    })
}

/// What the sentence-transformers files say: pooling (or why it cannot be used) and max length.
struct SentenceTransformers {
    pooling: std::result::Result<Option<Pooling>, String>,
    max_length: Option<usize>,
}

fn read_sentence_transformers(files: &ModelFiles) -> Result<SentenceTransformers> {
    #[derive(Deserialize)]
    struct PoolingConfig {
        #[serde(default)]
        pooling_mode_cls_token: bool,
        #[serde(default)]
        pooling_mode_mean_tokens: bool,
        #[serde(default)]
        pooling_mode_max_tokens: bool,
        #[serde(default)]
        pooling_mode_mean_sqrt_len_tokens: bool,
        #[serde(default)]
        pooling_mode_weightedmean_tokens: bool,
        #[serde(default)]
        pooling_mode_lasttoken: bool,
    }
    #[derive(Deserialize)]
    struct StConfig {
        max_seq_length: Option<usize>,
    }
    let pooling = match &files.st_pooling {
        None => Ok(None),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let c: PoolingConfig = serde_json::from_str(&text).map_err(|e| Error::invalid_file(path, e.to_string()))?;
            let others = c.pooling_mode_max_tokens
                || c.pooling_mode_mean_sqrt_len_tokens
                || c.pooling_mode_weightedmean_tokens
                || c.pooling_mode_lasttoken;
            match (c.pooling_mode_cls_token, c.pooling_mode_mean_tokens, others) {
                (true, false, false) => Ok(Some(Pooling::Cls)),
                (false, true, false) => Ok(Some(Pooling::Mean)),
                _ => Err(format!("the sentence-transformers pooling in {} is not plain cls or mean", path.display())),
            }
        }
    };
    let max_length = match &files.st_config {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let c: StConfig = serde_json::from_str(&text).map_err(|e| Error::invalid_file(path, e.to_string()))?;
            c.max_seq_length
        }
    };
    Ok(SentenceTransformers { pooling, max_length })
}

/// Assembles the profile from every source, in order of precedence: `explicit` settings, the
/// preset named by `preset_name`, the folder's `2d_matryoshka.json`, a preset matching the Hub id,
/// the sentence-transformers files, then defaults (mean pooling, cosine, the model's length).
pub(crate) fn assemble_profile(
    files: &ModelFiles,
    config: &BertConfig,
    explicit: &ProfileSpec,
    preset_name: Option<&str>,
) -> Result<Profile> {
    let named = match preset_name {
        None => ProfileSpec::default(),
        Some(name) => preset(name).ok_or_else(|| Error::Profile {
            model: files.name.clone(),
            message: format!("unknown preset '{name}'; the built-in presets are {}", profile::PRESETS.join(", ")),
        })?,
    };
    let from_file = files.matryoshka.as_deref().map(read_profile_file).transpose()?.unwrap_or_default();
    let from_id = files.hub_id.as_deref().and_then(preset).unwrap_or_default();
    let st = read_sentence_transformers(files)?;
    let mut spec = explicit.clone().or(named).or(from_file).or(from_id);
    if spec.pooling.is_none() {
        spec.pooling = st.pooling.map_err(|message| Error::Profile {
            model: files.name.clone(),
            message: format!("{message}; set the pooling explicitly (cls or mean)"),
        })?;
    }
    spec = spec.or(ProfileSpec {
        passage_max_length: st.max_length.map(|m| m.min(config.max_position_embeddings)),
        ..Default::default()
    });
    let shape = ModelShape {
        layers: config.num_hidden_layers,
        hidden: config.hidden_size,
        max_positions: config.max_position_embeddings,
    };
    Profile::resolve(spec, shape, &files.name)
}
