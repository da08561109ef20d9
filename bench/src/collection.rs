//! `barista-bench collection`: a reproducible collection of a million (or more) real passages
//! for the large-collection benchmarks, recombined from SciFact's abstracts.
//!
//! The recipe, in this order, skipping any text already emitted:
//!
//! 1. every abstract (id = its SciFact id);
//! 2. every sentence of every abstract (`ID#i`);
//! 3. every window of 2 to 4 consecutive sentences of an abstract (`ID#i-j`);
//! 4. then, until the target count, passages of 2 or 3 sentences drawn from different
//!    abstracts (`mix-N`), from a seeded SplitMix64 stream (seed 2410_13230 unless told).
//!
//! Every passage is real scientific prose that the real model encodes; the mixed ones read like
//! the multi-topic passages of web collections. The output is an MS MARCO `collection.tsv`
//! (`id<TAB>passage`), which `barista index --format msmarco` builds an index from.

use crate::cascade_bench::sentences;
use anyhow::{Context, Result, bail};
use barista_datasets::{DataSet, Reading};
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `barista-bench collection`.
#[derive(clap::Args)]
pub struct CollectionArgs {
    /// BEIR SciFact folder.
    #[arg(long, default_value = "../shared/datasets/scifact")]
    dataset: PathBuf,
    /// Passages to write.
    #[arg(long, default_value_t = 1_000_000)]
    docs: usize,
    /// Where to write `collection.tsv` (default: ~/.cache/barista/collections/scifact-<docs>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the mixed passages.
    #[arg(long, default_value_t = 2410_13230)]
    seed: u64,
}

/// SplitMix64 (Steele, Lea & Flood 2014): a small, fully specified generator, so the recipe
/// gives the same passages everywhere.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The default cache folder of a collection of `docs` passages.
pub fn default_dir(docs: usize) -> PathBuf {
    let base = std::env::var_os("BARISTA_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/barista")))
        .unwrap_or_else(|| PathBuf::from(".cache/barista"));
    base.join("collections").join(format!("scifact-{docs}"))
}

/// The passages of the recipe (see the module docs), as (id, text).
pub fn passages(data: &DataSet, docs: usize, seed: u64) -> Result<Vec<(String, String)>> {
    let mut abstracts = Vec::new();
    for d in data.documents(&Reading::strict())? {
        let d = d?;
        abstracts.push((d.id, d.text));
    }
    let split: Vec<Vec<String>> = abstracts.iter().map(|(_, text)| sentences(text)).collect();
    let mut seen = HashSet::with_capacity(docs);
    let mut out = Vec::with_capacity(docs);
    let mut emit = |id: String, text: String, out: &mut Vec<(String, String)>| {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if out.len() < docs && !text.is_empty() && seen.insert(xxhash_rust::xxh3::xxh3_128(text.as_bytes())) {
            out.push((id, text));
        }
    };
    for (id, text) in &abstracts {
        emit(id.clone(), text.clone(), &mut out);
    }
    for ((id, _), parts) in abstracts.iter().zip(&split) {
        for (i, s) in parts.iter().enumerate() {
            emit(format!("{id}#{i}"), s.clone(), &mut out);
        }
    }
    for width in 2..=4 {
        for ((id, _), parts) in abstracts.iter().zip(&split) {
            for i in 0..parts.len().saturating_sub(width - 1) {
                emit(format!("{id}#{i}-{}", i + width - 1), parts[i..i + width].join(" "), &mut out);
            }
        }
    }
    let pool: Vec<(usize, &String)> =
        split.iter().enumerate().flat_map(|(a, parts)| parts.iter().map(move |s| (a, s))).collect();
    if pool.len() < 2 {
        bail!("the data set has too few sentences to mix");
    }
    let mut rng = SplitMix64(seed);
    let mut n = 0u64;
    let mut attempts = 0u64;
    while out.len() < docs {
        attempts += 1;
        if attempts > 20 * docs as u64 + 1_000_000 {
            bail!("could not find {docs} distinct passages (got {})", out.len());
        }
        let parts = 2 + rng.below(2);
        let mut picked: Vec<(usize, &String)> = Vec::with_capacity(parts);
        while picked.len() < parts {
            let candidate = pool[rng.below(pool.len())];
            if picked.iter().all(|(a, _)| *a != candidate.0) {
                picked.push(candidate);
            }
        }
        let text = picked.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>().join(" ");
        emit(format!("mix-{n}"), text, &mut out);
        n += 1;
    }
    Ok(out)
}

pub fn run(args: &CollectionArgs) -> Result<()> {
    let data = DataSet::detect(&args.dataset)?;
    let dir = args.out.clone().unwrap_or_else(|| default_dir(args.docs));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let passages = passages(&data, args.docs, args.seed)?;
    let path = dir.join("collection.tsv");
    let tmp = dir.join("collection.tsv.tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let mut words = 0usize;
    for (id, text) in &passages {
        writeln!(out, "{id}\t{text}")?;
        words += text.split(' ').count();
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, &path)?;
    eprintln!(
        "{} passages ({:.1} words each on average) in {}",
        passages.len(),
        words as f64 / passages.len().max(1) as f64,
        path.display()
    );
    println!("{}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_its_reference_values() {
        // First outputs for seed 1234567 (from the reference implementation).
        let mut r = SplitMix64(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }
}
