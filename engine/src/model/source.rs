//! Where a model's files come from: a local folder, or a Hugging Face Hub id downloaded into the
//! local cache (`HF_HOME`, by default `~/.cache/huggingface`).

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A model reference as a user writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A local folder.
    Folder(PathBuf),
    /// A Hugging Face Hub model id (`owner/name`), optionally at a revision (`owner/name@rev`).
    Hub {
        /// The id.
        id: String,
        /// Branch, tag or commit; `main` when absent.
        revision: Option<String>,
    },
}

impl ModelSource {
    /// Reads `--model`: an existing folder, else something shaped like a hub id.
    pub fn parse(model: &str) -> Result<ModelSource> {
        let path = Path::new(model);
        if path.is_dir() {
            return Ok(ModelSource::Folder(path.to_path_buf()));
        }
        if path.exists() {
            return Err(Error::ModelNotFound(format!(
                "--model {model} is a file; pass the folder that holds config.json, tokenizer.json and the safetensors weights"
            )));
        }
        let looks_like_path =
            model.starts_with(['.', '/', '~']) || model.contains('\\') || model.matches('/').count() > 1;
        let (id, revision) = match model.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => (id, Some(rev.to_string())),
            _ => (model, None),
        };
        let valid_id = !id.is_empty()
            && id
                .split('/')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
        if looks_like_path || !valid_id {
            return Err(Error::ModelNotFound(format!(
                "no model folder at {model}: pass an existing folder (with config.json, tokenizer.json and \
                 model.safetensors) or a Hugging Face model id such as ielabgroup/Starbucks-msmarco"
            )));
        }
        Ok(ModelSource::Hub { id: id.to_string(), revision })
    }
}

/// A model's files, resolved to local paths.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    /// How the user named the model (folder or id), for messages.
    pub name: String,
    /// The Hub id, when the model came from the Hub (used to match presets).
    pub hub_id: Option<String>,
    /// `config.json`.
    pub config: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Safetensors files: one, or the shards named by `model.safetensors.index.json`.
    pub weights: Vec<PathBuf>,
    /// `2d_matryoshka.json`, when present.
    pub matryoshka: Option<PathBuf>,
    /// The sentence-transformers pooling config (`1_Pooling/config.json`), when present.
    pub st_pooling: Option<PathBuf>,
    /// `sentence_bert_config.json`, when present.
    pub st_config: Option<PathBuf>,
}

const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

/// Finds (and, for Hub ids, downloads) a model's files.
pub fn resolve(source: &ModelSource, offline: bool) -> Result<ModelFiles> {
    match source {
        ModelSource::Folder(dir) => resolve_folder(dir),
        ModelSource::Hub { id, revision } => resolve_hub(id, revision.as_deref(), offline),
    }
}

fn resolve_folder(dir: &Path) -> Result<ModelFiles> {
    let name = dir.display().to_string();
    let required = |file: &str| -> Result<PathBuf> {
        let path = dir.join(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::ModelNotFound(format!(
                "model folder {name} has no {file}; a model folder needs config.json, tokenizer.json and model.safetensors (or sharded safetensors with {WEIGHTS_INDEX})"
            )))
        }
    };
    let optional = |file: &str| Some(dir.join(file)).filter(|p| p.is_file());
    let config = required("config.json")?;
    let tokenizer = required("tokenizer.json")?;
    let weights = if let Some(single) = optional(WEIGHTS) {
        vec![single]
    } else if let Some(index) = optional(WEIGHTS_INDEX) {
        shard_names(&index)?.into_iter().map(|s| required(&s)).collect::<Result<_>>()?
    } else {
        let hint = if dir.join("pytorch_model.bin").exists() {
            " (it has pytorch_model.bin: convert it to safetensors, e.g. with the `safetensors` convert script)"
        } else {
            ""
        };
        return Err(Error::ModelNotFound(format!(
            "model folder {name} has neither {WEIGHTS} nor {WEIGHTS_INDEX}{hint}"
        )));
    };
    let st_pooling = st_pooling_path(dir, |f| optional(f));
    Ok(ModelFiles {
        name,
        hub_id: None,
        config,
        tokenizer,
        weights,
        matryoshka: optional("2d_matryoshka.json"),
        st_pooling,
        st_config: optional("sentence_bert_config.json"),
    })
}

/// The shard file names listed in a safetensors index.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let parsed: Index = serde_json::from_str(&text)
        .map_err(|e| Error::invalid_file(index, format!("{e}; expected a safetensors index with a weight_map")))?;
    let shards: BTreeSet<String> = parsed.weight_map.into_values().collect();
    if shards.is_empty() || shards.iter().any(|s| !is_inside(s)) {
        return Err(Error::invalid_file(index, "weight_map must name shard files inside the model folder"));
    }
    Ok(shards.into_iter().collect())
}

/// Locates the sentence-transformers pooling config through `modules.json`, or at `1_Pooling/`.
fn st_pooling_path(dir: &Path, optional: impl Fn(&str) -> Option<PathBuf>) -> Option<PathBuf> {
    #[derive(Deserialize)]
    struct Module {
        path: String,
        #[serde(rename = "type")]
        kind: String,
    }
    let from_modules = optional("modules.json")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| serde_json::from_str::<Vec<Module>>(&text).ok())
        .and_then(|modules| modules.into_iter().find(|m| m.kind.ends_with("models.Pooling")))
        .filter(|m| is_inside(&m.path))
        .and_then(|m| optional(&format!("{}/config.json", m.path)));
    from_modules.or_else(|| optional("1_Pooling/config.json")).filter(|p| p.starts_with(dir))
}

/// Whether a relative path from a model file stays inside the model folder.
fn is_inside(relative: &str) -> bool {
    !relative.starts_with('/') && relative.split(['/', '\\']).all(|c| !c.is_empty() && c != "." && c != "..")
}

/// The Hugging Face cache root: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
#[cfg(feature = "hub")]
fn hub_cache() -> hf_hub::Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(path) => hf_hub::Cache::new(PathBuf::from(path)),
        None => hf_hub::Cache::from_env(),
    }
}

#[cfg(feature = "hub")]
fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

/// The files a model may have that Barista reads, beyond config.json, tokenizer.json and weights.
#[cfg(feature = "hub")]
const OPTIONAL: [&str; 5] =
    ["2d_matryoshka.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json", WEIGHTS_INDEX];

#[cfg(feature = "hub")]
fn resolve_hub(id: &str, revision: Option<&str>, offline: bool) -> Result<ModelFiles> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};

    let revision = revision.unwrap_or("main").to_string();
    let cache = hub_cache();
    let repo_dir = cache.path().join(Repo::new(id.to_string(), RepoType::Model).folder_name());
    let offline = offline || std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let what_to_do = format!(
        "If this machine is offline, download the model where there is network (`huggingface-cli download {id}`) and \
         either copy the Hugging Face cache here (HF_HOME / HF_HUB_CACHE; Barista looked in {}) or pass the model's \
         folder with --model",
        cache.path().display()
    );

    // 1. Pin one commit, so that every file comes from the same snapshot.
    let mut online_error = None;
    let mut remote = None;
    if offline {
        online_error = Some("downloads are off (offline)".to_string());
    } else {
        let mut builder = ApiBuilder::from_cache(cache.clone()).with_progress(false);
        if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
            builder = builder.with_endpoint(endpoint);
        }
        if let Ok(token) = std::env::var("HF_TOKEN") {
            builder = builder.with_token(Some(token));
        }
        match builder.build() {
            Err(e) => online_error = Some(format!("could not start a Hub client: {e}")),
            Ok(api) => match api.repo(Repo::with_revision(id.to_string(), RepoType::Model, revision.clone())).info() {
                Ok(info) => remote = Some((api, info)),
                Err(e) => online_error = Some(format!("could not reach the Hub: {e}")),
            },
        }
    }
    let sha = match &remote {
        Some((_, info)) => info.sha.clone(),
        None if is_commit(&revision) => revision.clone(),
        None => std::fs::read_to_string(repo_dir.join("refs").join(&revision)).map(|s| s.trim().to_string()).map_err(
            |_| {
                Error::ModelNotFound(format!(
                    "{id}@{revision} is not in the local Hugging Face cache and {}. {what_to_do}",
                    online_error.clone().unwrap_or_default()
                ))
            },
        )?,
    };
    let snapshot = repo_dir.join("snapshots").join(&sha);

    // 2. Fetch what the snapshot has (or find it in the cache).
    let fetch = |file: &str| -> std::result::Result<Option<PathBuf>, String> {
        let cached = snapshot.join(file);
        if cached.is_file() {
            return Ok(Some(cached));
        }
        match &remote {
            None => Ok(None),
            Some((api, info)) => {
                if !info.siblings.iter().any(|s| s.rfilename == file) {
                    return Ok(None);
                }
                let pinned = api.repo(Repo::with_revision(id.to_string(), RepoType::Model, sha.clone()));
                pinned.get(file).map(Some).map_err(|e| format!("could not download {file} of {id}@{sha}: {e}"))
            }
        }
    };
    let required = |file: &str| -> Result<PathBuf> {
        match fetch(file) {
            Ok(Some(path)) => Ok(path),
            Ok(None) if remote.is_some() => Err(Error::ModelNotFound(format!(
                "{id}@{revision} has no {file}; Barista needs config.json, tokenizer.json and safetensors weights"
            ))),
            Ok(None) => Err(Error::ModelNotFound(format!(
                "{file} of {id}@{revision} is not in the local cache ({}) and {}. {what_to_do}",
                snapshot.display(),
                online_error.clone().unwrap_or_default()
            ))),
            Err(e) => Err(Error::ModelNotFound(format!("{e}. {what_to_do}"))),
        }
    };
    let optional = |file: &str| -> Result<Option<PathBuf>> {
        fetch(file).map_err(|e| Error::ModelNotFound(format!("{e}. {what_to_do}")))
    };
    let config = required("config.json")?;
    let tokenizer = required("tokenizer.json")?;
    let weights = match optional(WEIGHTS)? {
        Some(path) => vec![path],
        None => match optional(WEIGHTS_INDEX)? {
            Some(index) => shard_names(&index)?.iter().map(|s| required(s)).collect::<Result<_>>()?,
            None => required(WEIGHTS).map(|p| vec![p])?,
        },
    };
    let mut found = std::collections::BTreeMap::new();
    for file in OPTIONAL {
        found.insert(file, optional(file)?);
    }
    if let Some((_, _)) = &remote {
        // Let later offline loads of `id@revision` find this snapshot, as the Python client does.
        if !is_commit(&revision) {
            let refs = repo_dir.join("refs");
            let _ = std::fs::create_dir_all(&refs).and_then(|()| std::fs::write(refs.join(&revision), &sha));
        }
    }
    let st_pooling = match found.get("modules.json").cloned().flatten() {
        Some(_) => st_pooling_path(&snapshot, |f| optional(f).ok().flatten()),
        None => found.get("1_Pooling/config.json").cloned().flatten(),
    };
    Ok(ModelFiles {
        name: id.to_string(),
        hub_id: Some(id.to_string()),
        config,
        tokenizer,
        weights,
        matryoshka: found.get("2d_matryoshka.json").cloned().flatten(),
        st_pooling,
        st_config: found.get("sentence_bert_config.json").cloned().flatten(),
    })
}

#[cfg(not(feature = "hub"))]
fn resolve_hub(id: &str, _revision: Option<&str>, _offline: bool) -> Result<ModelFiles> {
    Err(Error::ModelNotFound(format!(
        "no model folder named {id}, and this build of Barista cannot download from the Hugging Face Hub (built \
         without the `hub` feature): download the model yourself and pass its folder with --model"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_folders_from_hub_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_str().unwrap();
        assert_eq!(ModelSource::parse(dir).unwrap(), ModelSource::Folder(tmp.path().into()));
        assert_eq!(
            ModelSource::parse("ielabgroup/Starbucks-msmarco").unwrap(),
            ModelSource::Hub { id: "ielabgroup/Starbucks-msmarco".into(), revision: None }
        );
        assert_eq!(
            ModelSource::parse("org/model@v1.0").unwrap(),
            ModelSource::Hub { id: "org/model".into(), revision: Some("v1.0".into()) }
        );
        assert!(ModelSource::parse("./missing/folder").unwrap_err().to_string().contains("no model folder"));
        assert!(ModelSource::parse("/no/such/model/dir").is_err());
        assert!(ModelSource::parse("bad id with spaces").is_err());
    }

    #[test]
    fn a_folder_without_weights_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("config.json"), "{}").unwrap();
        std::fs::write(tmp.path().join("tokenizer.json"), "{}").unwrap();
        std::fs::write(tmp.path().join("pytorch_model.bin"), "").unwrap();
        let err = resolve_folder(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("model.safetensors") && err.contains("convert"), "{err}");
        std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
        assert!(resolve_folder(tmp.path()).unwrap_err().to_string().contains("has no tokenizer.json"));
    }

    #[test]
    fn shard_indexes_are_read_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let index = tmp.path().join(WEIGHTS_INDEX);
        std::fs::write(&index, r#"{"metadata": {}, "weight_map": {"a": "s-2.safetensors", "b": "s-1.safetensors", "c": "s-1.safetensors"}}"#).unwrap();
        assert_eq!(shard_names(&index).unwrap(), vec!["s-1.safetensors", "s-2.safetensors"]);
        std::fs::write(&index, r#"{"weight_map": {"a": "../../etc/passwd"}}"#).unwrap();
        assert!(shard_names(&index).is_err());
        std::fs::write(&index, "not json").unwrap();
        assert!(shard_names(&index).unwrap_err().to_string().contains(WEIGHTS_INDEX));
    }
}
