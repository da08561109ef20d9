//! The public data sets Barista can fetch by name: the BEIR collection (one zip each, with the
//! MD5 sums the BEIR authors publish) and MS MARCO passage ranking with its dev-small, TREC DL
//! 2019 and TREC DL 2020 query sets (the MD5 sums ir_datasets and Anserini publish).
//!
//! [`resolve`] takes what a user typed: a folder that exists is read in place; a known name is
//! installed into the [`Cache`] on first use (downloaded, checked, unpacked atomically) and read
//! from there afterwards, offline included.

use crate::download::{Cache, Progress, Remote, fetch};
use crate::{DataSet, Error, Format, MsMarcoFiles, Result, archive};
use std::path::{Path, PathBuf};

const BEIR_BASE: &str = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets";
const MSMARCO_BASE: &str = "https://msmarco.z22.web.core.windows.net/msmarcoranking";

/// BEIR data sets with public zips, and the MD5 of each zip (from the BEIR README).
const BEIR: &[(&str, &str)] = &[
    ("arguana", "8ad3e3c2a5867cdced806d6503f29b99"),
    ("climate-fever", "8b66f0a9126c521bae2bde127b4dc99d"),
    ("cqadupstack", "4e41456d7df8ee7760a7f866133bda78"),
    ("dbpedia-entity", "c2a39eb420a3164af735795df012ac2c"),
    ("fever", "5a818580227bfb4b35bb6fa46d9b6c03"),
    ("fiqa", "17918ed23cd04fb15047f73e6c3bd9d9"),
    ("hotpotqa", "f412724f78b0d91183a0e86805e16114"),
    ("msmarco", "444067daf65d982533ea17ebd59501e4"),
    ("nfcorpus", "a89dba18a62ef92f7d323ec890a0d38d"),
    ("nq", "d4d3d2e48787a744b6f6e691ff534307"),
    ("quora", "18fb154900ba42a600f84b839c173167"),
    ("scidocs", "38121350fc3a4d2f48850f6aff52e4a9"),
    ("scifact", "5f7d1de60b170fc8027bb7898e2efca1"),
    ("trec-covid", "ce62140cb23feb9becf6270d0d1fe6d1"),
    ("webis-touche2020", "46f650ba5a527fc69e0a6521c5a23563"),
];

/// The CQADupStack forums (each its own BEIR data set inside the one zip).
const CQADUPSTACK: &[&str] = &[
    "android",
    "english",
    "gaming",
    "gis",
    "mathematica",
    "physics",
    "programmers",
    "stats",
    "tex",
    "unix",
    "webmasters",
    "wordpress",
];

/// Where one file of an MS MARCO-style data set comes from.
#[derive(Clone, Debug)]
pub enum Part {
    /// A file of the unpacked collection archive.
    InCollection(String),
    /// A plain remote file.
    Plain(Remote),
    /// A gzip-compressed remote file.
    Gzip(Remote),
}

/// How a named data set is installed.
#[derive(Clone, Debug)]
pub enum Recipe {
    /// A BEIR zip holding the folder `<zip stem>/` (and, for CQADupStack, one folder per forum;
    /// `subfolder` picks one).
    BeirZip {
        /// The zip.
        zip: Remote,
        /// The folder inside the unpacked zip that holds the data set, if not its root.
        subfolder: Option<String>,
    },
    /// A `.tar.gz` collection archive holding `collection.tsv`, plus queries and qrels.
    MsMarco {
        /// The collection archive, unpacked once and shared by every query set.
        collection: Remote,
        /// The queries (`qid<TAB>query`).
        queries: Part,
        /// The judgements (TREC qrels).
        qrels: Part,
    },
}

/// A data set known by name.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// How to install it.
    pub recipe: Recipe,
}

fn msmarco_collection() -> Remote {
    Remote::new(&format!("{MSMARCO_BASE}/collectionandqueries.tar.gz"), "31644046b18952c1386cd4564ba2ae69")
}

/// Every data set this catalog can install.
pub fn entries() -> Vec<Entry> {
    let mut out = Vec::new();
    for &(name, md5) in BEIR {
        let zip = Remote::new(&format!("{BEIR_BASE}/{name}.zip"), md5);
        if name == "cqadupstack" {
            for forum in CQADUPSTACK {
                out.push(Entry {
                    name: format!("cqadupstack/{forum}"),
                    description: format!("BEIR CQADupStack, the {forum} forum"),
                    recipe: Recipe::BeirZip { zip: zip.clone(), subfolder: Some(forum.to_string()) },
                });
            }
        } else {
            out.push(Entry {
                name: name.to_string(),
                description: format!("BEIR {name}"),
                recipe: Recipe::BeirZip { zip, subfolder: None },
            });
        }
    }
    out.push(Entry {
        name: "msmarco-passage-dev-small".into(),
        description: "MS MARCO passage ranking: 8.8M passages, the 6,980 dev-small queries".into(),
        recipe: Recipe::MsMarco {
            collection: msmarco_collection(),
            queries: Part::InCollection("queries.dev.small.tsv".into()),
            qrels: Part::InCollection("qrels.dev.small.tsv".into()),
        },
    });
    for (year, queries_md5, qrels_md5) in [
        (2019, "eda71eccbe4d251af83150abe065368c", "2f4be390198da108f6845c822e5ada14"),
        (2020, "00a406fb0d14ed3752d70d1e4eb98600", "0355ccee7509ac0463e8278186cdd8d1"),
    ] {
        out.push(Entry {
            name: format!("trec-dl-{year}-passage"),
            description: format!("TREC Deep Learning {year} passage ranking over the MS MARCO passages (graded)"),
            recipe: Recipe::MsMarco {
                collection: msmarco_collection(),
                queries: Part::Gzip(Remote::new(
                    &format!("{MSMARCO_BASE}/msmarco-test{year}-queries.tsv.gz"),
                    queries_md5,
                )),
                qrels: Part::Plain(Remote::new(
                    &format!("https://trec.nist.gov/data/deep/{year}qrels-pass.txt"),
                    qrels_md5,
                )),
            },
        });
    }
    out
}

/// The entry called `name`, if any.
pub fn lookup(name: &str) -> Option<Entry> {
    entries().into_iter().find(|e| e.name == name)
}

/// What the user named: an existing folder (read in `format`, or detected) or a catalog name
/// (installed into `cache` when missing).
pub fn resolve(what: &str, format: Option<Format>, cache: &Cache, progress: Progress<'_>) -> Result<DataSet> {
    let path = Path::new(what);
    if path.exists() {
        return match format {
            Some(format) => DataSet::open(path, format),
            None => DataSet::detect(path),
        };
    }
    match lookup(what) {
        Some(entry) => install(&entry, cache, progress),
        None => {
            let names: Vec<String> = entries().into_iter().map(|e| e.name).collect();
            Err(Error::Unknown(format!(
                "'{what}' is neither a folder nor a known data set; give a BEIR or MS MARCO folder, or one of: {}",
                names.join(", ")
            )))
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), error: source }
}

/// Unpacks `archive` into `cache/datasets/<folder>` through a temporary folder renamed into
/// place, so that a folder that exists is always complete. Deletes the archive afterwards.
fn unpack_once(cache: &Cache, folder: &str, archive: &Path, unpack: fn(&Path, &Path) -> Result<()>) -> Result<PathBuf> {
    let root = cache.datasets();
    let target = root.join(folder);
    if target.is_dir() {
        return Ok(target);
    }
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let staging = root.join(format!(".partial-{folder}"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    unpack(archive, &staging).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&staging);
    })?;
    std::fs::rename(&staging, &target).map_err(io(&target))?;
    let _ = std::fs::remove_file(archive);
    Ok(target)
}

/// Installs `entry` into `cache` unless it is there already, and opens it.
pub fn install(entry: &Entry, cache: &Cache, progress: Progress<'_>) -> Result<DataSet> {
    match &entry.recipe {
        Recipe::BeirZip { zip, subfolder } => {
            let stem = zip.file.trim_end_matches(".zip");
            let unpacked = cache.datasets().join(stem);
            if !unpacked.is_dir() {
                // BEIR zips hold one folder named after the data set: unpack beside it (unless
                // an interrupted earlier run already did).
                let contents = format!("{stem}.zip-contents");
                let outer = if cache.datasets().join(&contents).is_dir() {
                    cache.datasets().join(&contents)
                } else {
                    let archive = fetch(zip, cache, progress)?;
                    unpack_once(cache, &contents, &archive, archive::unzip)?
                };
                let inner = outer.join(stem);
                let from = if inner.is_dir() { inner } else { outer.clone() };
                std::fs::rename(&from, &unpacked).map_err(io(&unpacked))?;
                let _ = std::fs::remove_dir_all(&outer);
            }
            let dir = match subfolder {
                Some(sub) => unpacked.join(sub),
                None => unpacked,
            };
            DataSet::open(&dir, Format::Beir)
        }
        Recipe::MsMarco { collection, queries, qrels } => {
            let stem = collection.file.trim_end_matches(".tar.gz").trim_end_matches(".tgz");
            let unpacked = cache.datasets().join(stem);
            if !unpacked.is_dir() {
                let archive = fetch(collection, cache, progress)?;
                unpack_once(cache, stem, &archive, archive::untar_gz)?;
            }
            let own = cache.datasets().join(&entry.name);
            let queries = part(queries, &unpacked, &own, "queries.tsv", cache, progress)?;
            let qrels = part(qrels, &unpacked, &own, "qrels.tsv", cache, progress)?;
            let files = MsMarcoFiles { collection: unpacked.join("collection.tsv"), queries, qrels };
            for path in [&files.collection, &files.queries, &files.qrels] {
                if !path.is_file() {
                    return Err(Error::Io {
                        path: path.clone(),
                        error: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "the unpacked archive lacks this file; delete the folder to unpack it again",
                        ),
                    });
                }
            }
            Ok(DataSet::MsMarco(files))
        }
    }
}

/// The local path of one part of an MS MARCO-style data set, fetching it when needed.
fn part(
    part: &Part,
    collection: &Path,
    own: &Path,
    name: &str,
    cache: &Cache,
    progress: Progress<'_>,
) -> Result<PathBuf> {
    let (remote, gzip) = match part {
        Part::InCollection(file) => return Ok(collection.join(file)),
        Part::Plain(remote) => (remote, false),
        Part::Gzip(remote) => (remote, true),
    };
    let target = own.join(name);
    if target.is_file() {
        return Ok(target);
    }
    let downloaded = fetch(remote, cache, progress)?;
    std::fs::create_dir_all(own).map_err(io(own))?;
    let partial = own.join(format!("{name}.partial"));
    if gzip {
        archive::gunzip(&downloaded, &partial)?;
    } else {
        std::fs::copy(&downloaded, &partial).map_err(io(&partial))?;
    }
    std::fs::rename(&partial, &target).map_err(io(&target))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_well_formed() {
        let entries = entries();
        assert!(entries.len() > 25);
        for e in &entries {
            let remotes: Vec<&Remote> = match &e.recipe {
                Recipe::BeirZip { zip, .. } => vec![zip],
                Recipe::MsMarco { collection, queries, qrels } => {
                    let mut r = vec![collection];
                    for p in [queries, qrels] {
                        if let Part::Plain(x) | Part::Gzip(x) = p {
                            r.push(x);
                        }
                    }
                    r
                }
            };
            for r in remotes {
                assert!(r.url.starts_with("https://"), "{}", r.url);
                assert!(r.md5.len() == 32 && r.md5.chars().all(|c| c.is_ascii_hexdigit()), "{}: {}", e.name, r.md5);
            }
        }
        assert!(lookup("scifact").is_some() && lookup("trec-dl-2019-passage").is_some());
        assert!(lookup("cqadupstack/tex").is_some() && lookup("nonsense").is_none());
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let cache = Cache::new(tempfile::tempdir().unwrap().path());
        let err = resolve("scifactt", None, &cache, &|_, _, _| {}).unwrap_err().to_string();
        assert!(err.contains("'scifactt' is neither a folder") && err.contains("trec-dl-2019-passage"), "{err}");
    }
}
