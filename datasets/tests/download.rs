//! Installing data sets by name over real HTTP: a loopback server serves archives built from
//! the shared SciFact and DL19 files, as the public hosts would.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use barista_datasets::Reading;
use barista_datasets::catalog::{Entry, Part, Recipe, install};
use barista_datasets::download::{Cache, Remote, md5_of_file};
use barista_datasets::{DataSet, Format};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the server answers for a path: a status and a body, and optionally a Content-Length
/// that lies (to imitate a connection that breaks off).
#[derive(Clone)]
struct Reply {
    status: u16,
    body: Vec<u8>,
    claimed_len: Option<usize>,
}

struct Server {
    base: String,
    requests: Arc<AtomicUsize>,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let (count, table) = (requests.clone(), routes.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let reply = table.lock().unwrap().get(&path).cloned().unwrap_or(Reply {
                    status: 404,
                    body: b"not found".to_vec(),
                    claimed_len: None,
                });
                let head = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    reply.status,
                    reply.claimed_len.unwrap_or(reply.body.len())
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&reply.body);
            }
        });
        Server { base, requests, routes }
    }

    fn serve(&self, path: &str, body: Vec<u8>) -> Remote {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_string(), Reply { status: 200, body: body.clone(), claimed_len: None });
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, &body).unwrap();
        Remote::new(&format!("{}{path}", self.base), &md5_of_file(&file).unwrap())
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

const SCIFACT: &str = "../../shared/datasets/scifact";
const DL19: &str = "../../shared/datasets/msmarco-dl19-subset";

/// The first `n` lines of a shared file.
fn head(path: &str, n: usize) -> String {
    std::fs::read_to_string(path).unwrap().lines().take(n).map(|l| format!("{l}\n")).collect()
}

/// A BEIR zip like the public ones: `mini/corpus.jsonl`, `mini/queries.jsonl`, `mini/qrels/test.tsv`.
fn mini_beir_zip() -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut buffer = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buffer);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, text) in [
        ("mini/corpus.jsonl", head(&format!("{SCIFACT}/corpus.jsonl"), 20)),
        ("mini/queries.jsonl", head(&format!("{SCIFACT}/queries.jsonl"), 50)),
        ("mini/qrels/test.tsv", head(&format!("{SCIFACT}/qrels/test.tsv"), 30)),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    buffer.into_inner()
}

fn beir_entry(zip: Remote) -> Entry {
    Entry { name: "mini".into(), description: "test".into(), recipe: Recipe::BeirZip { zip, subfolder: None } }
}

fn quiet(_: &str, _: u64, _: Option<u64>) {}

#[test]
fn installs_a_beir_zip_over_http_then_works_from_the_cache() {
    let server = Server::start();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let entry = beir_entry(server.serve("/datasets/mini.zip", mini_beir_zip()));
    let data = install(&entry, &cache, &quiet).unwrap();
    assert_eq!(data.format(), Format::Beir);
    assert_eq!(data.documents(&Reading::strict()).unwrap().count(), 20);
    assert!(
        data.queries(&Reading::strict()).unwrap().len() == 50
            && data.judged_queries("test", &Reading::strict()).is_ok()
    );
    assert_eq!(server.requests(), 1);
    // The archive is gone once unpacked, and a second install reads the cache only.
    assert!(!cache.downloads().join("mini.zip").exists());
    let again = install(&entry, &cache, &quiet).unwrap();
    assert_eq!(again.documents(&Reading::strict()).unwrap().count(), 20);
    assert_eq!(server.requests(), 1);
}

#[test]
fn a_checksum_mismatch_keeps_nothing() {
    let server = Server::start();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let mut zip = server.serve("/mini.zip", mini_beir_zip());
    zip.md5 = "0".repeat(32);
    let err = install(&beir_entry(zip), &cache, &quiet).unwrap_err().to_string();
    assert!(err.contains("published MD5 is 0000") && err.contains("nothing was kept"), "{err}");
    let left: Vec<_> = std::fs::read_dir(cache.downloads()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!cache.datasets().join("mini").exists());
}

#[test]
fn a_damaged_file_in_the_cache_is_reported_not_used() {
    let server = Server::start();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let zip = server.serve("/mini.zip", mini_beir_zip());
    std::fs::create_dir_all(cache.downloads()).unwrap();
    std::fs::write(cache.downloads().join("mini.zip"), b"truncated").unwrap();
    let err = install(&beir_entry(zip), &cache, &quiet).unwrap_err().to_string();
    assert!(err.contains("damaged or another version") && err.contains("delete it"), "{err}");
    assert_eq!(server.requests(), 0);
}

#[test]
fn offline_missing_and_broken_downloads_say_what_to_do() {
    let server = Server::start();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    // Nothing listens on a port that was just released.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let offline = Remote::new(&format!("http://127.0.0.1:{port}/scifact.zip"), &"a".repeat(32));
    let err = install(&beir_entry(offline), &cache, &quiet).unwrap_err().to_string();
    assert!(err.contains("Offline?") && err.contains("downloads/scifact.zip"), "{err}");

    let missing = Remote::new(&format!("{}/nope.zip", server.base), &"a".repeat(32));
    let err = install(&beir_entry(missing), &cache, &quiet).unwrap_err().to_string();
    assert!(err.contains("HTTP 404"), "{err}");

    let body = mini_beir_zip();
    let cut = Reply { status: 200, body: body[..100].to_vec(), claimed_len: Some(body.len()) };
    server.routes.lock().unwrap().insert("/cut.zip".into(), cut);
    let broken = Remote::new(&format!("{}/cut.zip", server.base), &"a".repeat(32));
    let err = install(&beir_entry(broken), &cache, &quiet).unwrap_err().to_string();
    assert!(err.contains("100 of") || err.contains("broke off"), "{err}");
    assert_eq!(std::fs::read_dir(cache.downloads()).unwrap().count(), 0);
}

#[test]
fn installs_an_ms_marco_style_set_from_a_collection_archive_and_two_files() {
    let server = Server::start();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let collection_tsv = head(&format!("{DL19}/collection.tsv"), 40);
    let mut tar_gz = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut tar_gz, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, text) in [("collection.tsv", collection_tsv.as_str()), ("queries.dev.small.tsv", "1\tq\n")] {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, text.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    let mut queries_gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    queries_gz.write_all(std::fs::read(format!("{DL19}/queries.tsv")).unwrap().as_slice()).unwrap();
    let entry = Entry {
        name: "dl".into(),
        description: "test".into(),
        recipe: Recipe::MsMarco {
            collection: server.serve("/collectionandqueries.tar.gz", tar_gz),
            queries: Part::Gzip(server.serve("/test2019-queries.tsv.gz", queries_gz.finish().unwrap())),
            qrels: Part::Plain(
                server.serve("/2019qrels-pass.txt", std::fs::read(format!("{DL19}/qrels.tsv")).unwrap()),
            ),
        },
    };
    let data = install(&entry, &cache, &quiet).unwrap();
    let DataSet::MsMarco(files) = &data else { panic!("not MS MARCO") };
    assert!(files.collection.starts_with(cache.datasets().join("collectionandqueries")));
    assert_eq!(data.documents(&Reading::strict()).unwrap().count(), 40);
    let (queries, qrels) = data.judged_queries("test", &Reading::strict()).unwrap();
    assert_eq!((queries.len(), qrels.len()), (43, 43));
    assert_eq!(server.requests(), 3);
    install(&entry, &cache, &quiet).unwrap();
    assert_eq!(server.requests(), 3);
    assert!(Path::new(&files.qrels).ends_with("dl/qrels.tsv"));
}
