//! The 2D Matryoshka profile: which (layer, dim) rungs a model was trained on, how token states
//! are pooled, how vectors are compared, and how long queries and passages may be.
//!
//! A profile is assembled from partial [`ProfileSpec`]s in order of precedence (explicit
//! settings, an explicitly named preset, the model folder's `2d_matryoshka.json`, a preset
//! matched by model id, the sentence-transformers files, defaults) and then validated against
//! the model's shape.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

pub use barista_index::rung::{Rung, parse_rungs};

/// How a layer's token states become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The state of the first token (`[CLS]`).
    Cls,
    /// The mean over all tokens of the text.
    Mean,
}

impl FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            other => Err(format!("unknown pooling '{other}': expected cls or mean")),
        }
    }
}

/// How two rung vectors are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// Raw inner product of the truncated vectors.
    Dot,
    /// Cosine: vectors are L2-normalised after truncation, then compared by inner product.
    Cosine,
}

impl FromStr for Similarity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "dot" => Ok(Similarity::Dot),
            "cosine" | "cos" => Ok(Similarity::Cosine),
            other => Err(format!("unknown similarity '{other}': expected dot or cosine")),
        }
    }
}

/// A partial profile: the fields one source specifies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// The ladder, small to large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rungs: Option<Vec<Rung>>,
    /// Pooling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    /// Similarity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<Similarity>,
    /// Maximum query length in tokens, counting `[CLS]` and `[SEP]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_max_length: Option<usize>,
    /// Maximum passage length in tokens, counting `[CLS]` and `[SEP]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passage_max_length: Option<usize>,
}

impl ProfileSpec {
    /// Fills every field `self` leaves open from `fallback`.
    pub fn or(self, fallback: ProfileSpec) -> ProfileSpec {
        ProfileSpec {
            rungs: self.rungs.or(fallback.rungs),
            pooling: self.pooling.or(fallback.pooling),
            similarity: self.similarity.or(fallback.similarity),
            query_max_length: self.query_max_length.or(fallback.query_max_length),
            passage_max_length: self.passage_max_length.or(fallback.passage_max_length),
        }
    }
}

/// Names of the built-in presets.
pub const PRESETS: &[&str] = &["ielabgroup/Starbucks-msmarco", "ielabgroup/Starbucks_STS"];

/// The built-in profile of a published 2D Matryoshka model, by Hugging Face id (case-insensitive).
pub fn preset(model_id: &str) -> Option<ProfileSpec> {
    let starbucks_rungs = vec![
        Rung::new(2, 32),
        Rung::new(4, 64),
        Rung::new(6, 128),
        Rung::new(8, 256),
        Rung::new(10, 512),
        Rung::new(12, 768),
    ];
    let id = model_id.split('@').next().unwrap_or(model_id).trim_end_matches('/');
    if id.eq_ignore_ascii_case("ielabgroup/Starbucks-msmarco") {
        Some(ProfileSpec {
            rungs: Some(starbucks_rungs),
            pooling: Some(Pooling::Cls),
            similarity: Some(Similarity::Dot),
            query_max_length: Some(32),
            passage_max_length: Some(196),
        })
    } else if id.eq_ignore_ascii_case("ielabgroup/Starbucks_STS") {
        Some(ProfileSpec {
            rungs: Some(starbucks_rungs),
            pooling: Some(Pooling::Mean),
            similarity: Some(Similarity::Cosine),
            query_max_length: None,
            passage_max_length: None,
        })
    } else {
        None
    }
}

/// A complete, validated profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The ladder, small to large; never empty.
    pub rungs: Vec<Rung>,
    /// Pooling.
    pub pooling: Pooling,
    /// Similarity.
    pub similarity: Similarity,
    /// Maximum query length in tokens (with special tokens).
    pub query_max_length: usize,
    /// Maximum passage length in tokens (with special tokens).
    pub passage_max_length: usize,
}

/// What a profile is checked against.
#[derive(Clone, Copy, Debug)]
pub struct ModelShape {
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Learned positions.
    pub max_positions: usize,
}

impl Profile {
    /// Completes `spec` with defaults and checks it against `shape`. `model` names the model in
    /// error messages.
    pub fn resolve(spec: ProfileSpec, shape: ModelShape, model: &str) -> Result<Profile> {
        let err = |message: String| Error::Profile { model: model.to_string(), message };
        let rungs = spec.rungs.ok_or_else(|| {
            err("no rungs are known for this model: add a 2d_matryoshka.json to its folder (see the README), \
                 name a preset, or list the rungs yourself (--rungs \"2,64 4,128 6,384\")"
                .to_string())
        })?;
        let passage_max_length = spec.passage_max_length.unwrap_or(shape.max_positions.min(512));
        let profile = Profile {
            rungs,
            pooling: spec.pooling.unwrap_or(Pooling::Mean),
            similarity: spec.similarity.unwrap_or(Similarity::Cosine),
            query_max_length: spec.query_max_length.unwrap_or(passage_max_length),
            passage_max_length,
        };
        profile.check(shape).map_err(err)?;
        Ok(profile)
    }

    fn check(&self, shape: ModelShape) -> Result<(), String> {
        if self.rungs.is_empty() {
            return Err("the rung list is empty: give at least one (layer, dim)".into());
        }
        for r in &self.rungs {
            check_rung(*r, shape)?;
        }
        for pair in self.rungs.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a == b {
                return Err(format!("rung {a} is listed twice"));
            }
            if b.layer < a.layer || b.dim < a.dim {
                return Err(format!(
                    "rungs must grow from small to large, but {b} follows {a}: each rung needs a layer and a dim \
                     at least as large as the one before"
                ));
            }
        }
        for (name, len) in
            [("query_max_length", self.query_max_length), ("passage_max_length", self.passage_max_length)]
        {
            if len < 2 {
                return Err(format!("{name} is {len}; it counts [CLS] and [SEP], so it must be at least 2"));
            }
            if len > shape.max_positions {
                return Err(format!("{name} is {len}, but the model has only {} positions", shape.max_positions));
            }
        }
        Ok(())
    }

    /// The deepest layer any rung needs.
    pub fn deepest_layer(&self) -> usize {
        self.rungs.iter().map(|r| r.layer).max().unwrap_or(0)
    }

    /// The largest rung.
    pub fn largest(&self) -> Rung {
        *self.rungs.last().expect("profiles have at least one rung")
    }
}

/// Checks that the model can produce rung `r`.
pub fn check_rung(r: Rung, shape: ModelShape) -> Result<(), String> {
    if r.layer > shape.layers {
        return Err(format!(
            "rung {r} uses layer {}, but the model has {} layers (1..={}; 0 is the embedding output)",
            r.layer, shape.layers, shape.layers
        ));
    }
    if r.dim == 0 || r.dim > shape.hidden {
        return Err(format!(
            "rung {r} keeps {} dims, but they must be between 1 and the hidden size {}",
            r.dim, shape.hidden
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: ModelShape = ModelShape { layers: 6, hidden: 384, max_positions: 512 };

    fn spec(rungs: &[(usize, usize)]) -> ProfileSpec {
        ProfileSpec { rungs: Some(rungs.iter().map(|&r| r.into()).collect()), ..Default::default() }
    }

    #[test]
    fn reads_the_json_file_format() {
        let json = r#"{"rungs": [[1, 32], [6, 384]], "pooling": "mean", "similarity": "cosine",
                       "query_max_length": 32, "passage_max_length": 256}"#;
        let s: ProfileSpec = serde_json::from_str(json).unwrap();
        let p = Profile::resolve(s, SHAPE, "m").unwrap();
        assert_eq!(p.rungs, vec![Rung::new(1, 32), Rung::new(6, 384)]);
        assert_eq!((p.query_max_length, p.passage_max_length), (32, 256));
        let typo = r#"{"rungs": [[1, 32]], "polling": "mean"}"#;
        assert!(serde_json::from_str::<ProfileSpec>(typo).is_err());
    }

    #[test]
    fn rejects_bad_profiles_with_clear_messages() {
        let bad = |s: ProfileSpec| Profile::resolve(s, SHAPE, "m").unwrap_err().to_string();
        assert!(bad(spec(&[(7, 64)])).contains("uses layer 7, but the model has 6 layers"));
        assert!(bad(spec(&[(6, 512)])).contains("hidden size 384"));
        assert!(bad(spec(&[(2, 0)])).contains("between 1 and"));
        assert!(bad(spec(&[(4, 128), (3, 256)])).contains("must grow"));
        assert!(bad(spec(&[(4, 128), (5, 64)])).contains("must grow"));
        assert!(bad(spec(&[(4, 128), (4, 128)])).contains("listed twice"));
        assert!(bad(spec(&[])).contains("empty"));
        assert!(bad(ProfileSpec::default()).contains("no rungs"));
        let long = ProfileSpec { query_max_length: Some(513), ..spec(&[(1, 32)]) };
        assert!(bad(long).contains("only 512 positions"));
        let short = ProfileSpec { passage_max_length: Some(1), ..spec(&[(1, 32)]) };
        assert!(bad(short).contains("at least 2"));
    }

    #[test]
    fn accepts_a_one_dimensional_ladder_and_layer_zero() {
        assert!(Profile::resolve(spec(&[(0, 32), (6, 128), (6, 384)]), SHAPE, "m").is_ok());
    }

    #[test]
    fn presets_match_the_published_models() {
        let msmarco = preset("ielabgroup/Starbucks-msmarco").unwrap();
        assert_eq!(msmarco.pooling, Some(Pooling::Cls));
        assert_eq!(msmarco.similarity, Some(Similarity::Dot));
        assert_eq!(msmarco.passage_max_length, Some(196));
        assert_eq!(msmarco.rungs.as_ref().unwrap().last(), Some(&Rung::new(12, 768)));
        let sts = preset("IELABGROUP/starbucks_sts").unwrap();
        assert_eq!((sts.pooling, sts.similarity), (Some(Pooling::Mean), Some(Similarity::Cosine)));
        assert!(preset("bert-base-uncased").is_none());
        let base = ModelShape { layers: 12, hidden: 768, max_positions: 512 };
        assert!(Profile::resolve(msmarco, base, "starbucks").is_ok());
    }

    #[test]
    fn precedence_fills_gaps_only() {
        let strong = ProfileSpec { pooling: Some(Pooling::Cls), ..Default::default() };
        let weak = ProfileSpec { pooling: Some(Pooling::Mean), similarity: Some(Similarity::Dot), ..spec(&[(1, 32)]) };
        let merged = strong.or(weak);
        assert_eq!(merged.pooling, Some(Pooling::Cls));
        assert_eq!(merged.similarity, Some(Similarity::Dot));
        assert!(merged.rungs.is_some());
    }
}
