//! `barista-bench`: Barista's benchmarks, each run side by side with the anchor users would
//! otherwise run, in one process invocation.

mod cascade_bench;
mod collection;
mod encoder_bench;
mod index_bench;
mod large_bench;
mod peers_bench;
mod writes_bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "barista-bench", version, about = "Benchmarks for Barista, side by side with their anchors")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A million-document (or larger) index as users meet it: open time, memory, each rung's
    /// shortlist quality, and the cascade's plans against the exhaustive search.
    Large(large_bench::LargeArgs),
    /// Expands an index of real passages to ten million documents (blends of pairs of real
    /// documents at every rung), segment by segment, resumable.
    Expand(large_bench::ExpandArgs),
    /// Writes a reproducible collection of real passages recombined from SciFact (default
    /// 1M) as an MS MARCO collection.tsv, for the large-collection benchmarks.
    Collection(collection::CollectionArgs),
    /// Encoder speed: query latency per rung layer and documents/s, against onnxruntime.
    Encoder(encoder_bench::Args),
    /// Quality of the cascade profiles against the exhaustive search on a data set (nDCG@10),
    /// with adaptive stopping calibrated on a training split.
    Cascade(cascade_bench::QualityArgs),
    /// The quality/cost frontier of stage plans on ~50k SciFact passages, with a plot.
    Frontier(cascade_bench::FrontierArgs),
    /// HNSW recall@10 and latency against exact search on SIFT10K, cosine and inner product.
    Hnsw(index_bench::HnswArgs),
    /// Time to open a large (synthetic, default 1M documents) index, and to load its graph.
    IndexOpen(index_bench::OpenArgs),
    /// Quality of rung blocks stored in f16 against f32 (nDCG@10, overlap) on SciFact.
    Storage(index_bench::StorageArgs),
    /// Barista's HNSW graph against FAISS and hnswlib on the same vectors (queries/s at a
    /// recall@10 target).
    Peers(peers_bench::PeersArgs),
    /// Live writes: single-document upserts over REST (1 and N clients) against `barista
    /// index` bulk indexing of the same texts; segments and search afterwards.
    Writes(writes_bench::WritesArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Collection(args) => collection::run(&args),
        Command::Large(args) => large_bench::large(&args),
        Command::Expand(args) => large_bench::expand(&args),
        Command::Encoder(args) => encoder_bench::run(&args),
        Command::Hnsw(args) => index_bench::hnsw(&args),
        Command::Cascade(args) => cascade_bench::quality(&args),
        Command::Frontier(args) => cascade_bench::frontier(&args),
        Command::IndexOpen(args) => index_bench::open(&args),
        Command::Storage(args) => index_bench::storage(&args),
        Command::Peers(args) => peers_bench::peers(&args),
        Command::Writes(args) => writes_bench::run(&args),
    }
}
