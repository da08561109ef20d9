//! `config.json` of a BERT-family model, checked for what the forward loop supports.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// The architecture facts Barista needs from a Hugging Face `config.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    /// `model_type`, e.g. `bert`.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Attention heads per block.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Activation of the feed-forward layer.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Number of learned absolute positions.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Epsilon of every layer norm.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// `absolute` (the only kind supported).
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path, model: &str) -> Result<BertConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|e| {
            Error::invalid_file(path, format!("{e}; a BERT config.json needs hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, max_position_embeddings and vocab_size"))
        })?;
        config.check(model)?;
        Ok(config)
    }

    fn check(&self, model: &str) -> Result<()> {
        let unsupported = |message: String| Err(Error::UnsupportedModel { model: model.to_string(), message });
        match self.model_type.as_deref() {
            None | Some("bert") => {}
            Some(other) => {
                return unsupported(format!(
                    "model_type is '{other}'; Barista runs BERT-family encoders (model_type 'bert') with absolute positions"
                ));
            }
        }
        match self.position_embedding_type.as_deref() {
            None | Some("absolute") => {}
            Some(other) => {
                return unsupported(format!("position_embedding_type '{other}' is not supported; only 'absolute' is"));
            }
        }
        if self.hidden_act != "gelu" {
            return unsupported(format!(
                "hidden_act '{}' is not supported; only the exact (erf) 'gelu' of BERT is",
                self.hidden_act
            ));
        }
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return unsupported(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_hidden_layers == 0
            || self.intermediate_size == 0
            || self.max_position_embeddings < 2
            || self.vocab_size == 0
        {
            return unsupported("the config describes an empty network".into());
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
