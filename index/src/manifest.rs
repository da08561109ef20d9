//! The manifest: the one small file that says what the index is — its configuration, its
//! segments and every file they use, with lengths and checksums. A commit writes a new manifest
//! next to the old one and renames it over `MANIFEST`; whatever the manifest does not name is
//! not part of the index.

use crate::config::IndexConfig;
use crate::error::{Error, Result};
use crate::files::{FileRecord, Reader, sync_dir};
use std::path::Path;

/// File name of the manifest.
pub const MANIFEST: &str = "MANIFEST";
const MANIFEST_TMP: &str = "MANIFEST.tmp";
const MAGIC: &[u8; 8] = b"BRSTAMF1";
/// Version of the on-disk format this build writes. It also reads version 2 (graphs written by
/// hnsw_rs, which this build does not read: such segments are scanned until the writer builds
/// their graphs again, in the background) and version 1 (before the write-ahead log), and
/// upgrades them at the next commit.
pub const FORMAT_VERSION: u32 = 3;

/// One graph of a segment.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct GraphRecord {
    /// The stored rung it is built on (an index into the configuration's rungs).
    pub rung: u32,
    /// Its file (see `graph::layout`).
    pub file: FileRecord,
}

/// One immutable segment and the files it uses.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SegmentRecord {
    /// Segment number (names its files).
    pub id: u64,
    /// Documents in the segment, deleted ones included.
    pub docs: u32,
    /// Documents deleted (set in the tombstones).
    pub deleted: u32,
    /// Rung blocks.
    pub vectors: FileRecord,
    /// Ids, texts and metadata.
    pub store: FileRecord,
    /// Id lookup table.
    pub ids: FileRecord,
    /// Its HNSW graphs, one per graph rung it has one for (none below the graph's `min_docs`,
    /// nor while the writer has yet to build them).
    pub graphs: Vec<GraphRecord>,
    /// Tombstones, once the segment has deletions.
    pub tombstones: Option<FileRecord>,
}

impl SegmentRecord {
    /// Every file the segment uses.
    pub fn files(&self) -> impl Iterator<Item = &FileRecord> {
        [&self.vectors, &self.store, &self.ids]
            .into_iter()
            .chain(self.graphs.iter().map(|g| &g.file))
            .chain(self.tombstones.iter())
    }

    /// Live documents.
    pub fn live(&self) -> u32 {
        self.docs - self.deleted
    }

    /// The files that hold the segment's documents (all but its graphs, which are derived
    /// from its stored rows: a damaged graph is reported and built again, not fatal).
    pub fn data_files(&self) -> impl Iterator<Item = &FileRecord> {
        [&self.vectors, &self.store, &self.ids].into_iter().chain(self.tombstones.iter())
    }
}

/// The committed state of an index.
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Manifest {
    /// Format version that wrote it.
    pub format_version: u32,
    /// Commit counter: every commit increments it.
    pub generation: u64,
    /// Fixed configuration.
    pub config: IndexConfig,
    /// Segments, oldest first.
    pub segments: Vec<SegmentRecord>,
    /// Number the next segment gets.
    pub next_segment: u64,
    /// Settings owned by the layers above (e.g. calibrated cascade thresholds), as JSON.
    pub settings: Vec<(String, String)>,
    /// Every logged write numbered up to this is in the segments (and their tombstones):
    /// opening replays the write-ahead log from the next one.
    pub log_applied: u64,
}

impl Manifest {
    /// The manifest of a new, empty index.
    pub fn new(config: IndexConfig) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            generation: 0,
            config,
            segments: Vec::new(),
            next_segment: 1,
            settings: Vec::new(),
            log_applied: 0,
        }
    }

    /// Reads and validates `dir/MANIFEST`.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Incompatible {
                    path: dir.to_path_buf(),
                    message: "no index here (there is no MANIFEST file); create one with `barista index`".into(),
                });
            }
            Err(_) if dir.is_file() => {
                return Err(Error::Incompatible {
                    path: dir.to_path_buf(),
                    message: "this is a file, not an index directory; pass the directory `barista index --out` \
                              created"
                        .into(),
                });
            }
            Err(e) => return Err(Error::read(&path, e)),
        };
        let mut r = Reader::new(&bytes);
        let damaged = |m: &str| Error::corrupt(&path, m.to_string());
        if r.take(8) != Some(MAGIC.as_slice()) {
            return Err(damaged("it does not start with the Barista manifest signature"));
        }
        let version = r.u32().ok_or_else(|| damaged("it is truncated"))?;
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(Error::Incompatible {
                path: dir.to_path_buf(),
                message: format!(
                    "the index uses format version {version}, this Barista reads version {FORMAT_VERSION}; rebuild the \
                     index with this version"
                ),
            });
        }
        let _reserved = r.u32().ok_or_else(|| damaged("it is truncated"))?;
        let len = r.u64().ok_or_else(|| damaged("it is truncated"))?;
        let checksum = r.u64().ok_or_else(|| damaged("it is truncated"))?;
        let payload = r.take(len as usize).ok_or_else(|| damaged("it is shorter than its header says"))?;
        if r.pos() != bytes.len() {
            return Err(damaged("it has trailing bytes"));
        }
        if xxhash_rust::xxh3::xxh3_64(payload) != checksum {
            return Err(damaged("its checksum does not match its content"));
        }
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let manifest: Manifest = match version {
            1 => rkyv::from_bytes::<v1::Manifest, rkyv::rancor::Error>(&aligned).map(|m| m.upgrade().upgrade()),
            2 => rkyv::from_bytes::<v2::Manifest, rkyv::rancor::Error>(&aligned).map(v2::Manifest::upgrade),
            _ => rkyv::from_bytes::<Manifest, rkyv::rancor::Error>(&aligned),
        }
        .map_err(|e| damaged(&format!("its content does not decode ({e})")))?;
        manifest.config.validate().map_err(|e| damaged(&format!("its configuration is invalid ({e})")))?;
        manifest.check_segments().map_err(|m| damaged(&m))?;
        Ok(manifest)
    }

    /// Writes this manifest durably and atomically replaces `dir/MANIFEST` with it.
    pub fn commit(&self, dir: &Path) -> Result<()> {
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map_err(|e| Error::InvalidInput(format!("the manifest cannot be encoded: {e}")))?;
        let mut bytes = Vec::with_capacity(32 + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let tmp = dir.join(MANIFEST_TMP);
        let _ = std::fs::remove_file(&tmp);
        let mut file =
            std::fs::File::options().write(true).create_new(true).open(&tmp).map_err(|e| Error::write(&tmp, e))?;
        std::io::Write::write_all(&mut file, &bytes).map_err(|e| Error::write(&tmp, e))?;
        file.sync_all().map_err(|e| Error::write(&tmp, e))?;
        drop(file);
        // The new segment files' directory entries must be durable before the manifest names them.
        sync_dir(dir)?;
        std::fs::rename(&tmp, dir.join(MANIFEST)).map_err(|e| Error::write(dir.join(MANIFEST), e))?;
        sync_dir(dir)
    }

    fn check_segments(&self) -> Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        for s in &self.segments {
            if s.deleted > s.docs || s.docs == 0 {
                return Err(format!("segment {} records {} deleted of {} documents", s.id, s.deleted, s.docs));
            }
            if s.id == 0 || s.id >= self.next_segment || !ids.insert(s.id) {
                return Err(format!("segment id {} is repeated or out of range", s.id));
            }
            let mut rungs: Vec<u32> = s.graphs.iter().map(|g| g.rung).collect();
            rungs.dedup();
            let known = rungs.iter().all(|r| self.config.graph.rungs.contains(&(*r as usize)));
            if rungs.len() != s.graphs.len() || !known || (s.deleted > 0) != s.tombstones.is_some() {
                return Err(format!("segment {} does not list its files consistently", s.id));
            }
        }
        Ok(())
    }

    /// Names of every file the manifest references.
    pub fn files(&self) -> impl Iterator<Item = &FileRecord> {
        self.segments.iter().flat_map(SegmentRecord::files)
    }

    /// A setting stored by a layer above.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Live documents over all segments.
    pub fn live_docs(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.live())).sum()
    }
}

/// The manifest of format version 2 (graphs written by hnsw_rs), read and upgraded.
mod v2 {
    use crate::config::{GraphParams, IndexConfig, StoredRung};
    use crate::files::FileRecord;

    #[derive(Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub(super) struct SegmentRecord {
        pub id: u64,
        pub docs: u32,
        pub deleted: u32,
        pub vectors: FileRecord,
        pub store: FileRecord,
        pub ids: FileRecord,
        pub graph: Vec<FileRecord>,
        pub graph_max_norm: f32,
        pub tombstones: Option<FileRecord>,
    }

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub(super) struct Graph {
        pub rung: usize,
        pub max_connections: usize,
        pub ef_construction: usize,
        pub min_docs: u64,
    }

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub(super) struct Config {
        pub model: String,
        pub profile: String,
        pub rungs: Vec<StoredRung>,
        pub graph: Graph,
    }

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub(super) struct Manifest {
        pub format_version: u32,
        pub generation: u64,
        pub config: Config,
        pub segments: Vec<SegmentRecord>,
        pub next_segment: u64,
        pub settings: Vec<(String, String)>,
        pub log_applied: u64,
    }

    impl Manifest {
        /// The same state in the current format, without the hnsw_rs graphs (their files are
        /// no longer named, so the writer removes them, and builds the graphs again).
        pub(super) fn upgrade(self) -> super::Manifest {
            let g = self.config.graph;
            let _ = self.format_version;
            super::Manifest {
                format_version: super::FORMAT_VERSION,
                generation: self.generation,
                config: IndexConfig {
                    model: self.config.model,
                    profile: self.config.profile,
                    rungs: self.config.rungs,
                    graph: GraphParams {
                        rungs: vec![g.rung],
                        max_connections: g.max_connections,
                        ef_construction: g.ef_construction,
                        min_docs: g.min_docs,
                    },
                },
                segments: self
                    .segments
                    .into_iter()
                    .map(|s| {
                        let _ = (s.graph, s.graph_max_norm);
                        super::SegmentRecord {
                            id: s.id,
                            docs: s.docs,
                            deleted: s.deleted,
                            vectors: s.vectors,
                            store: s.store,
                            ids: s.ids,
                            graphs: Vec::new(),
                            tombstones: s.tombstones,
                        }
                    })
                    .collect(),
                next_segment: self.next_segment,
                settings: self.settings,
                log_applied: self.log_applied,
            }
        }
    }
}

/// The manifest of format version 1 (before the write-ahead log), read and upgraded.
mod v1 {
    use super::v2;
    #[cfg(test)]
    use crate::config::IndexConfig;
    use crate::config::StoredRung;

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub(super) struct Graph {
        rung: usize,
        max_connections: usize,
        ef_construction: usize,
    }

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub(super) struct Config {
        model: String,
        profile: String,
        rungs: Vec<StoredRung>,
        graph: Graph,
    }

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub(super) struct Manifest {
        format_version: u32,
        generation: u64,
        config: Config,
        segments: Vec<v2::SegmentRecord>,
        next_segment: u64,
        settings: Vec<(String, String)>,
    }

    impl Manifest {
        /// The same state in format 2: nothing was logged.
        pub(super) fn upgrade(self) -> v2::Manifest {
            let g = self.config.graph;
            let _ = self.format_version;
            v2::Manifest {
                format_version: 2,
                generation: self.generation,
                config: v2::Config {
                    model: self.config.model,
                    profile: self.config.profile,
                    rungs: self.config.rungs,
                    graph: v2::Graph {
                        rung: g.rung,
                        max_connections: g.max_connections,
                        ef_construction: g.ef_construction,
                        min_docs: crate::config::DEFAULT_GRAPH_MIN_DOCS,
                    },
                },
                segments: self.segments,
                next_segment: self.next_segment,
                settings: self.settings,
                log_applied: 0,
            }
        }
    }

    #[cfg(test)]
    pub(super) fn example(config: &IndexConfig, generation: u64) -> Manifest {
        Manifest {
            format_version: 1,
            generation,
            config: Config {
                model: config.model.clone(),
                profile: config.profile.clone(),
                rungs: config.rungs.clone(),
                graph: Graph {
                    rung: config.graph.rungs[0],
                    max_connections: config.graph.max_connections,
                    ef_construction: config.graph.ef_construction,
                },
            },
            segments: Vec::new(),
            next_segment: 1,
            settings: vec![("k".into(), "v".into())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ElementType, GraphParams, StoredRung};
    use crate::rung::Rung;

    fn config() -> IndexConfig {
        IndexConfig {
            model: "m".into(),
            profile: "{}".into(),
            rungs: vec![StoredRung { rung: Rung::new(1, 32), element: ElementType::F16 }],
            graph: GraphParams::default(),
        }
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::new(config());
        m.generation = 7;
        m.settings.push(("cascade".into(), "{\"x\":1}".into()));
        m.commit(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
        assert!(!dir.path().join(MANIFEST_TMP).exists());

        let path = dir.path().join(MANIFEST);
        let good = std::fs::read(&path).unwrap();
        for (what, bytes) in [
            ("flipped byte", {
                let mut b = good.clone();
                let last = b.len() - 3;
                b[last] ^= 0x40;
                b
            }),
            ("truncated", good[..good.len() - 5].to_vec()),
            ("not a manifest", b"hello".to_vec()),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let err = Manifest::read(dir.path()).unwrap_err().to_string();
            assert!(err.contains("MANIFEST is damaged"), "{what}: {err}");
        }
        std::fs::remove_file(&path).unwrap();
        assert!(Manifest::read(dir.path()).unwrap_err().to_string().contains("no index here"));
        let file = dir.path().join("collection.tsv");
        std::fs::write(&file, "1\ttext\n").unwrap();
        let error = Manifest::read(&file).unwrap_err().to_string();
        assert!(error.contains("collection.tsv: this is a file, not an index directory"), "{error}");
    }

    #[test]
    fn version_2_manifests_are_read_without_their_hnsw_rs_graphs() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| FileRecord { name: name.into(), len: 1, checksum: 2 };
        let old = v2::Manifest {
            format_version: 2,
            generation: 4,
            config: v2::Config {
                model: "m".into(),
                profile: "{}".into(),
                rungs: config().rungs,
                graph: v2::Graph { rung: 0, max_connections: 24, ef_construction: 100, min_docs: 7 },
            },
            segments: vec![v2::SegmentRecord {
                id: 1,
                docs: 10,
                deleted: 0,
                vectors: file("seg-000001.vec"),
                store: file("seg-000001.docs"),
                ids: file("seg-000001.ids"),
                graph: vec![file("seg-000001.hnsw.graph"), file("seg-000001.hnsw.data")],
                graph_max_norm: 1.0,
                tombstones: None,
            }],
            next_segment: 2,
            settings: Vec::new(),
            log_applied: 9,
        };
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&old).unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        std::fs::write(dir.path().join(MANIFEST), &bytes).unwrap();
        let m = Manifest::read(dir.path()).unwrap();
        assert_eq!((m.format_version, m.generation, m.log_applied), (FORMAT_VERSION, 4, 9));
        assert_eq!(
            m.config.graph,
            GraphParams { rungs: vec![0], max_connections: 24, ef_construction: 100, min_docs: 7 }
        );
        assert!(m.segments[0].graphs.is_empty(), "hnsw_rs graphs are not read");
        assert_eq!(m.files().count(), 3);
    }

    #[test]
    fn version_1_manifests_are_read_and_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let old = v1::example(&config(), 5);
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&old).unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        std::fs::write(dir.path().join(MANIFEST), &bytes).unwrap();
        let m = Manifest::read(dir.path()).unwrap();
        assert_eq!((m.format_version, m.generation, m.log_applied), (FORMAT_VERSION, 5, 0));
        assert_eq!(m.config, config());
        assert_eq!(m.setting("k"), Some("v"));
        bytes[8] = 9;
        std::fs::write(dir.path().join(MANIFEST), &bytes).unwrap();
        assert!(Manifest::read(dir.path()).unwrap_err().to_string().contains("format version 9"));
    }
}
