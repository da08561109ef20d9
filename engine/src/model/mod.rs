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

/// The sentence-transformers pooling, read only when no other source set the pooling.
fn read_st_pooling(path: &Path) -> Result<Pooling> {
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
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let c: PoolingConfig = serde_json::from_str(&text).map_err(|e| Error::invalid_file(path, e.to_string()))?;
    let others = c.pooling_mode_max_tokens
        || c.pooling_mode_mean_sqrt_len_tokens
        || c.pooling_mode_weightedmean_tokens
        || c.pooling_mode_lasttoken;
    match (c.pooling_mode_cls_token, c.pooling_mode_mean_tokens, others) {
        (true, false, false) => Ok(Pooling::Cls),
        (false, true, false) => Ok(Pooling::Mean),
        _ => Err(Error::invalid_file(
            path,
            "its sentence-transformers pooling is not plain cls or mean; set the pooling explicitly (cls or mean)",
        )),
    }
}

/// `max_seq_length` of `sentence_bert_config.json`, read only when no other source set a length.
fn read_st_max_length(path: &Path) -> Result<Option<usize>> {
    #[derive(Deserialize)]
    struct StConfig {
        max_seq_length: Option<usize>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let c: StConfig = serde_json::from_str(&text).map_err(|e| Error::invalid_file(path, e.to_string()))?;
    Ok(c.max_seq_length)
}

/// Where each profile field came from, for error messages.
#[derive(Default)]
struct Sources(Vec<(&'static str, String)>);

impl Sources {
    fn note(&mut self, spec: &ProfileSpec, source: &str) {
        let fields = [
            ("rungs", spec.rungs.is_some()),
            ("pooling", spec.pooling.is_some()),
            ("similarity", spec.similarity.is_some()),
            ("query_max_length", spec.query_max_length.is_some()),
            ("passage_max_length", spec.passage_max_length.is_some()),
        ];
        for (field, set) in fields {
            if set && !self.0.iter().any(|(f, _)| *f == field) {
                self.0.push((field, source.to_string()));
            }
        }
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(f, s)| format!("{f} from {s}")).collect();
        if parts.is_empty() { String::new() } else { format!(" (settings: {})", parts.join("; ")) }
    }
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
    let mut sources = Sources::default();
    sources.note(explicit, "flags");
    if let Some(name) = preset_name {
        sources.note(&named, &format!("preset {name}"));
    }
    if let Some(path) = &files.matryoshka {
        sources.note(&from_file, &path.display().to_string());
    }
    if let Some(id) = &files.hub_id {
        sources.note(&from_id, &format!("the built-in preset for {id}"));
    }
    let mut spec = explicit.clone().or(named).or(from_file).or(from_id);
    if spec.pooling.is_none()
        && let Some(path) = &files.st_pooling
    {
        spec.pooling = Some(read_st_pooling(path)?);
        sources.note(&spec, &path.display().to_string());
    }
    if spec.passage_max_length.is_none()
        && let Some(path) = &files.st_config
    {
        spec.passage_max_length = read_st_max_length(path)?.map(|m| m.min(config.max_position_embeddings));
        sources.note(&spec, &path.display().to_string());
    }
    let shape = ModelShape {
        layers: config.num_hidden_layers,
        hidden: config.hidden_size,
        max_positions: config.max_position_embeddings,
    };
    Profile::resolve(spec, shape, &files.name).map_err(|e| match e {
        Error::Profile { model, message } => {
            Error::Profile { model, message: format!("{message}{}", sources.describe()) }
        }
        other => other,
    })
}

/// xxh3-64 over `config.json`, `tokenizer.json` and each weight file's safetensors header (names,
/// dtypes, shapes, offsets): cheap, and different for any other model or export.
pub(crate) fn fingerprint(files: &ModelFiles) -> Result<String> {
    use std::io::Read;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for path in [&files.config, &files.tokenizer] {
        hasher.update(&std::fs::read(path).map_err(|e| Error::io(path, e))?);
    }
    for path in &files.weights {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(|e| Error::io(path, e))?;
        let header_len = u64::from_le_bytes(len).min(100 << 20);
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
        hasher.update(&len);
        hasher.update(&header);
    }
    Ok(format!("{:016x}", hasher.digest()))
}
