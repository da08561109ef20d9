//! Reads BERT weights from safetensors (one file or shards; f32, f16 or bf16) through candle and
//! packs them for the kernels.

use super::config::BertConfig;
use super::source::ModelFiles;
use crate::encoder::forward::{BertWeights, Dims, LayerWeights, Norm};
use crate::error::{Error, Result};
use crate::kernels::Isa;
use crate::kernels::gemm::{PackedMatrix, WeightPrecision};
use barista_index::aligned::AlignedVec;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::str::FromStr;

/// Which precision to keep the weights in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsChoice {
    /// The precision the model was published in: exact, and the smallest exact footprint.
    #[default]
    Auto,
    /// Widen everything to f32.
    F32,
    /// Round to f16 (lossy when the file holds f32 or bf16).
    F16,
    /// Round to bf16 (lossy when the file holds f32 or f16).
    Bf16,
}

impl FromStr for WeightsChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "bf16" => Ok(Self::Bf16),
            other => Err(format!("unknown weight precision '{other}': expected auto, f32, f16 or bf16")),
        }
    }
}

/// Opened safetensors files and the name prefix of the BERT tensors in them.
struct Tensors {
    files: MmapedSafetensors,
    paths: Vec<PathBuf>,
    prefix: String,
}

impl Tensors {
    fn open(paths: &[PathBuf]) -> Result<Tensors> {
        // Check each file on its own first, so that an error names the file at fault.
        for path in paths {
            std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: as below.
            unsafe { MmapedSafetensors::new(path) }.map_err(|e| {
                Error::invalid_file(
                    path,
                    format!("cannot be read as safetensors ({e}): the file is truncated or damaged; download it again"),
                )
            })?;
        }
        // SAFETY: the files are mapped read-only; Barista never writes them, and a model that
        // changes under a running process is outside what any loader can defend against.
        let files = unsafe { MmapedSafetensors::multi(paths) }
            .map_err(|e| Error::invalid_file(paths[0].clone(), format!("cannot be read as safetensors ({e})")))?;
        let suffix = "embeddings.word_embeddings.weight";
        let prefix = files
            .tensors()
            .into_iter()
            .map(|(name, _)| name)
            .find_map(|name| name.strip_suffix(suffix).map(str::to_string))
            .ok_or_else(|| {
                Error::invalid_file(
                    paths[0].clone(),
                    format!("no tensor named *{suffix}: this is not a BERT checkpoint"),
                )
            })?;
        Ok(Tensors { files, paths: paths.to_vec(), prefix })
    }

    fn error(&self, message: String) -> Error {
        Error::invalid_file(self.paths[0].clone(), message)
    }

    fn dtype(&self, name: &str) -> Result<DType> {
        let full = format!("{}{name}", self.prefix);
        let view = self.files.get(&full).map_err(|_| self.error(format!("tensor {full} is missing")))?;
        DType::try_from(view.dtype()).map_err(|e| self.error(format!("tensor {full}: {e}")))
    }

    /// Loads tensor `name` (trying each alternative spelling) as f32, checking its shape and that
    /// every value is finite.
    fn load(&self, names: &[&str], shape: &[usize]) -> Result<Vec<f32>> {
        let full = names.iter().map(|n| format!("{}{n}", self.prefix)).find(|n| self.files.get(n).is_ok());
        let Some(full) = full else {
            return Err(self.error(format!("tensor {}{} is missing", self.prefix, names[0])));
        };
        let tensor = self.files.load(&full, &Device::Cpu).map_err(|e| self.error(format!("tensor {full}: {e}")))?;
        if tensor.dims() != shape {
            return Err(
                self.error(format!("tensor {full} has shape {:?}, but config.json implies {shape:?}", tensor.dims()))
            );
        }
        let values = tensor
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| self.error(format!("tensor {full}: {e}")))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(self.error(format!("tensor {full} holds NaN or infinite values: the file is damaged")));
        }
        Ok(values)
    }

    fn norm(&self, base: &str, h: usize) -> Result<Norm> {
        let gamma = self.load(&[&format!("{base}.weight"), &format!("{base}.gamma")], &[h])?;
        let beta = self.load(&[&format!("{base}.bias"), &format!("{base}.beta")], &[h])?;
        Ok(Norm { gamma: AlignedVec::from_slice(&gamma), beta: AlignedVec::from_slice(&beta) })
    }
}

/// A bias padded with zeros to a whole number of panels.
fn padded_bias(bias: &[f32], nr: usize) -> AlignedVec<f32> {
    let mut padded = AlignedVec::zeroed(bias.len().next_multiple_of(nr));
    padded[..bias.len()].copy_from_slice(bias);
    padded
}

/// Loads embeddings and blocks `1..=layers`, packed for `isa` in the chosen precision.
/// Returns the weights and the precision they are kept in.
pub(crate) fn load(
    files: &ModelFiles,
    config: &BertConfig,
    layers: usize,
    choice: WeightsChoice,
    isa: Isa,
) -> Result<(BertWeights, WeightPrecision)> {
    let t = Tensors::open(&files.weights)?;
    let (h, i_dim, v) = (config.hidden_size, config.intermediate_size, config.vocab_size);
    let nr = isa.panel_width();
    let precision = match choice {
        WeightsChoice::F32 => WeightPrecision::F32,
        WeightsChoice::F16 => WeightPrecision::F16,
        WeightsChoice::Bf16 => WeightPrecision::Bf16,
        WeightsChoice::Auto => match t.dtype("encoder.layer.0.attention.self.query.weight")? {
            DType::F16 => WeightPrecision::F16,
            DType::BF16 => WeightPrecision::Bf16,
            _ => WeightPrecision::F32,
        },
    };
    let word = t.load(&["embeddings.word_embeddings.weight"], &[v, h])?;
    let position = t.load(&["embeddings.position_embeddings.weight"], &[config.max_position_embeddings, h])?;
    let token_type = t.load(&["embeddings.token_type_embeddings.weight"], &[config.type_vocab_size, h])?;
    let embed_norm = t.norm("embeddings.LayerNorm", h)?;
    let mut blocks = Vec::with_capacity(layers);
    for l in 0..layers {
        let p = format!("encoder.layer.{l}");
        let linear = |name: &str, n: usize, k: usize| -> Result<(PackedMatrix, AlignedVec<f32>)> {
            let w = t.load(&[&format!("{p}.{name}.weight")], &[n, k])?;
            let b = t.load(&[&format!("{p}.{name}.bias")], &[n])?;
            Ok((PackedMatrix::pack_transposed(&w, n, k, nr, precision), padded_bias(&b, nr)))
        };
        let mut qkv_w = Vec::with_capacity(3 * h * h);
        let mut qkv_b = Vec::with_capacity(3 * h);
        for part in ["query", "key", "value"] {
            qkv_w.extend(t.load(&[&format!("{p}.attention.self.{part}.weight")], &[h, h])?);
            qkv_b.extend(t.load(&[&format!("{p}.attention.self.{part}.bias")], &[h])?);
        }
        let (attn_out, attn_out_bias) = linear("attention.output.dense", h, h)?;
        let (ffn_in, ffn_in_bias) = linear("intermediate.dense", i_dim, h)?;
        let (ffn_out, ffn_out_bias) = linear("output.dense", h, i_dim)?;
        blocks.push(LayerWeights {
            qkv: PackedMatrix::pack_transposed(&qkv_w, 3 * h, h, nr, precision),
            qkv_bias: padded_bias(&qkv_b, nr),
            attn_out,
            attn_out_bias,
            attn_norm: t.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
            ffn_in,
            ffn_in_bias,
            ffn_out,
            ffn_out_bias,
            ffn_norm: t.norm(&format!("{p}.output.LayerNorm"), h)?,
        });
    }
    let dims = Dims {
        hidden: h,
        heads: config.num_attention_heads,
        head_dim: config.head_dim(),
        intermediate: i_dim,
        eps: config.layer_norm_eps as f32,
    };
    Ok((BertWeights { dims, word, position, token_type, embed_norm, layers: blocks, isa }, precision))
}
