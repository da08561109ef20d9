//! # barista-engine
//!
//! The heart of Barista: a 2D Matryoshka text encoder that runs BERT-family models with its own
//! forward loop (so a query can stop after a few layers and resume later), and — in later
//! releases — the cascade search and the library API built on it.
//!
//! ```no_run
//! use barista_engine::{Encoder, EncoderOptions, Rung};
//!
//! # fn main() -> barista_engine::Result<()> {
//! let encoder = Encoder::load("../shared/models/minilm-l6-2d", &EncoderOptions::default())?;
//! // Documents: one pass, every rung of the profile.
//! let docs = encoder.encode_passages(&["Matryoshka embeddings nest small vectors in large ones."])?;
//! assert_eq!(docs.rungs(), encoder.profile().rungs.as_slice());
//! // Queries: progressive. A cheap small vector first...
//! let mut query = encoder.query("what is a matryoshka embedding")?;
//! let coarse = query.rung(Rung::new(2, 64))?;
//! // ...then continue the same encoding to the full model, reusing layers 1 and 2.
//! let fine = query.rung(Rung::new(6, 384))?;
//! assert_eq!((coarse.len(), fine.len()), (64, 384));
//! # Ok(()) }
//! ```

pub mod encoder;
pub mod engine;
pub mod error;
pub(crate) mod kernels;
pub mod metrics;
pub mod model;
pub mod search;
pub mod text;

pub use encoder::{Embeddings, Encoder, EncoderOptions, QueryState, normalize};
pub use engine::{CreateOptions, Document, Engine, OpenOptions, WriteReport};
pub use error::{Error, Result};
pub use kernels::Isa;
pub use kernels::gemm::WeightPrecision;
pub use model::profile::{Pooling, Profile, ProfileSpec, Rung, Similarity};
pub use model::weights::WeightsChoice;
pub use search::plan::{Shortlist, Stage, StagePlan};
pub use search::request::{RungVector, SearchHit, SearchRequest, SearchResponse};
pub use text::{TextKind, Tokens};
