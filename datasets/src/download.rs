//! Fetching public files into a local cache, checked against their published MD5 sums.
//!
//! A file is downloaded to `<name>.partial`, hashed as it streams, and renamed into place only
//! when its checksum matches: an interrupted or damaged download never looks complete. A file
//! already in the cache is re-hashed before use and reported, never trusted, when it differs.
//! Offline, the error says where to put a file fetched by other means.

use crate::{Error, Result};
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A public file: where it is, its published MD5, and the name it gets in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// Its URL.
    pub url: String,
    /// Its MD5, 32 lower-case hex digits, as its publisher lists it.
    pub md5: String,
    /// The file name in the cache's `downloads/` folder.
    pub file: String,
}

impl Remote {
    /// A remote file named after the last segment of its URL.
    pub fn new(url: &str, md5: &str) -> Remote {
        let file = url.rsplit('/').next().unwrap_or(url).to_string();
        Remote { url: url.to_string(), md5: md5.to_ascii_lowercase(), file }
    }
}

/// Reports download progress: (file name, bytes so far, total bytes when known).
pub type Progress<'a> = &'a dyn Fn(&str, u64, Option<u64>);

/// The local cache: `downloads/` holds fetched files, `datasets/` the unpacked data sets.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The default cache: `$BARISTA_CACHE_DIR`, else `$XDG_CACHE_HOME/barista`, else
    /// `$HOME/.cache/barista`.
    pub fn default_location() -> Result<Cache> {
        let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = from("BARISTA_CACHE_DIR") {
            return Ok(Cache::new(dir));
        }
        if let Some(dir) = from("XDG_CACHE_HOME") {
            return Ok(Cache::new(dir.join("barista")));
        }
        match from("HOME") {
            Some(home) => Ok(Cache::new(home.join(".cache").join("barista"))),
            None => Err(Error::Download {
                url: String::new(),
                message: "no cache folder: set BARISTA_CACHE_DIR (or HOME) to where data sets may be kept".into(),
            }),
        }
    }

    /// The cache's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where downloaded files are kept.
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// Where unpacked data sets are kept.
    pub fn datasets(&self) -> PathBuf {
        self.root.join("datasets")
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), error: source }
}

/// The MD5 of a file, as lower-case hex.
pub fn md5_of_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Md5::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io(path))?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cached copy of `remote`, downloading it first when it is not there. The cached file is
/// checked against the published MD5 either way.
pub fn fetch(remote: &Remote, cache: &Cache, progress: Progress<'_>) -> Result<PathBuf> {
    let folder = cache.downloads();
    let path = folder.join(&remote.file);
    if path.is_file() {
        let actual = md5_of_file(&path)?;
        if actual != remote.md5 {
            return Err(Error::Download {
                url: remote.url.clone(),
                message: format!(
                    "the cached file {} has MD5 {actual}, but the published MD5 is {}: it is damaged or another \
                     version; delete it to download it again",
                    path.display(),
                    remote.md5
                ),
            });
        }
        return Ok(path);
    }
    std::fs::create_dir_all(&folder).map_err(io(&folder))?;
    let partial = folder.join(format!("{}.partial", remote.file));
    let result = download(remote, &partial, progress);
    match result {
        Ok(()) => {
            std::fs::rename(&partial, &path).map_err(io(&path))?;
            Ok(path)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn download(remote: &Remote, partial: &Path, progress: Progress<'_>) -> Result<()> {
    let fail = |message: String| Error::Download { url: remote.url.clone(), message };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .user_agent(concat!("barista/", env!("CARGO_PKG_VERSION")))
        .build();
    let response = match agent.get(&remote.url).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(code, _)) => {
            return Err(fail(format!("the server answered HTTP {code}; check the name, or fetch the file by hand")));
        }
        Err(ureq::Error::Transport(e)) => {
            let target = partial.with_file_name(&remote.file);
            return Err(fail(format!(
                "could not reach the server ({e}). Offline? Fetch the file elsewhere and put it at {} \
                 (MD5 {}), or pass a local data set folder instead of a name",
                target.display(),
                remote.md5
            )));
        }
    };
    let total = response.header("Content-Length").and_then(|v| v.parse::<u64>().ok());
    let mut reader = response.into_reader();
    let mut out = std::io::BufWriter::new(std::fs::File::create(partial).map_err(io(partial))?);
    let mut hasher = Md5::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut done = 0u64;
    loop {
        let n =
            reader.read(&mut buffer).map_err(|e| fail(format!("the download broke off after {done} bytes: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n]).map_err(io(partial))?;
        done += n as u64;
        progress(&remote.file, done, total);
    }
    if let Some(total) = total
        && total != done
    {
        return Err(fail(format!("the download stopped at {done} of {total} bytes; try again")));
    }
    out.into_inner().map_err(|e| io(partial)(e.into_error()))?.sync_all().map_err(io(partial))?;
    let actual = hex(&hasher.finalize());
    if actual != remote.md5 {
        return Err(fail(format!(
            "the downloaded file has MD5 {actual}, but the published MD5 is {}: the download was damaged or the \
             file changed upstream; nothing was kept",
            remote.md5
        )));
    }
    Ok(())
}
