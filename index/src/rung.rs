//! Rungs: the (layer, dim) points of a 2D Matryoshka ladder.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One rung of the ladder: the pooled output of transformer block `layer` (0 = embeddings),
/// truncated to its first `dim` values.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(from = "(usize, usize)", into = "(usize, usize)")]
pub struct Rung {
    /// Transformer block whose output is pooled (1-based; 0 is the embedding output).
    pub layer: usize,
    /// Leading dimensions kept.
    pub dim: usize,
}

impl Rung {
    /// The rung `(layer, dim)`.
    pub const fn new(layer: usize, dim: usize) -> Rung {
        Rung { layer, dim }
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Rung {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
        let item = ObjectBuilder::new().schema_type(SchemaType::Type(Type::Integer)).minimum(Some(0));
        ArrayBuilder::new()
            .items(item)
            .min_items(Some(2))
            .max_items(Some(2))
            .description(Some("A rung as [layer, dim]"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Rung {}

impl From<(usize, usize)> for Rung {
    fn from((layer, dim): (usize, usize)) -> Rung {
        Rung { layer, dim }
    }
}

impl From<Rung> for (usize, usize) {
    fn from(r: Rung) -> (usize, usize) {
        (r.layer, r.dim)
    }
}

impl fmt::Display for Rung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({},{})", self.layer, self.dim)
    }
}

impl FromStr for Rung {
    type Err = String;
    /// Parses `L,D` (also `(L,D)` or `L:D`).
    fn from_str(s: &str) -> Result<Rung, String> {
        let inner = s.trim().trim_start_matches('(').trim_end_matches(')');
        let mut parts = inner.split([',', ':']).map(str::trim);
        let bad = || format!("'{s}' is not a rung: write LAYER,DIM, for example 4,128");
        let layer = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let dim = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Rung { layer, dim })
    }
}

/// Parses a ladder written as `L,D L,D …` (spaces or `;` between rungs).
pub fn parse_rungs(s: &str) -> Result<Vec<Rung>, String> {
    s.split([' ', ';']).filter(|p| !p.trim().is_empty()).map(Rung::from_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rungs_in_every_spelling() {
        assert_eq!("4,128".parse::<Rung>().unwrap(), Rung::new(4, 128));
        assert_eq!("(4, 128)".parse::<Rung>().unwrap(), Rung::new(4, 128));
        assert_eq!("4:128".parse::<Rung>().unwrap(), Rung::new(4, 128));
        assert!("4".parse::<Rung>().is_err());
        assert!("4,128,3".parse::<Rung>().is_err());
        assert!("a,b".parse::<Rung>().is_err());
        assert_eq!(parse_rungs("1,32 2,64;3,96").unwrap().len(), 3);
        assert_eq!(Rung::new(2, 64).to_string(), "(2,64)");
    }
}
