//! # barista-engine
//!
//! The heart of Barista: a 2D Matryoshka text encoder that runs BERT-family models with its own
//! forward loop (so a query can stop after a few layers and resume later), and the coarse-to-fine
//! search built on it: a shortlist at a cheap rung, then the *same* query encoding continued to
//! larger rungs that rescore the survivors, stopping as soon as the ranking is settled.
//!
//! ## Library API for RAG services
//!
//! [`Engine`] is an index directory plus the model that fills it. Every method takes `&self`;
//! an `Engine` is `Send + Sync` and cheap to clone; there is no global state.
//!
//! ```
//! use barista_engine::{CreateOptions, Document, Engine, SearchRequest};
//!
//! # fn main() -> barista_engine::Result<()> {
//! let dir = tempfile::tempdir().expect("a temporary directory");
//! let engine = Engine::create(dir.path(), &CreateOptions::new("../../shared/models/minilm-l6-2d"))?;
//! engine.add(&[
//!     Document { id: "a".into(), text: "Mitochondria are the powerhouse of the cell.".into(), title: None, metadata: None },
//!     Document { id: "b".into(), text: "The Eiffel Tower is in Paris.".into(), title: None, metadata: None },
//! ])?; // durable and searchable when this returns
//!
//! let response = engine.search(&SearchRequest::text("where do cells get energy").with_k(1))?;
//! assert_eq!(response.hits[0].id, "a");
//! // What ran: the shortlist and each rescoring stage, with their rungs and timings.
//! for stage in &response.stages {
//!     println!("{} at {}: {} → {} in {:.3} ms", stage.method, stage.rung, stage.candidates, stage.kept, stage.search_ms);
//! }
//! engine.delete(&["b"])?;
//! # Ok(()) }
//! ```
//!
//! ## The encoder alone
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

pub mod document;
pub mod encoder;
pub mod engine;
pub mod error;
pub(crate) mod kernels;
pub mod metrics;
pub mod model;
pub mod search;
pub mod text;

pub use barista_index::Rung;
pub use document::{Document, DocumentBatch};
pub use encoder::{Embeddings, Encoder, EncoderOptions, QueryState, normalize};
pub use engine::{CreateOptions, Engine, IndexStats, OpenOptions, RungRows, WriteReport};
pub use error::{Error, Result};
pub use kernels::Isa;
pub use kernels::gemm::WeightPrecision;
pub use model::profile::{Pooling, Profile, ProfileSpec, Similarity};
pub use model::weights::WeightsChoice;
pub use search::graph_rung::{RungQuality, choose_graph_rung};
pub use search::plan::{Shortlist, Stage, StagePlan};
pub use search::request::{RungVector, SearchHit, SearchRequest, SearchResponse};
pub use text::{TextKind, Tokens};
