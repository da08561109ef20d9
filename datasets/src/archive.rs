//! Unpacking downloaded archives (zip, tar.gz, gz) into a folder, refusing entries that would
//! land outside it.

use crate::{Error, Result};
use std::path::{Component, Path, PathBuf};

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), error: source }
}

fn damaged(path: &Path, message: String) -> Error {
    Error::Io { path: path.to_path_buf(), error: std::io::Error::new(std::io::ErrorKind::InvalidData, message) }
}

/// `name` as a relative path below the target folder, or `None` when it would escape it
/// (absolute, `..`, or a Windows prefix).
fn contained(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in name.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Writes one archive entry named `name` (a file, or a folder when `is_dir`) below `into`,
/// refusing names that would leave it.
fn extract_entry(
    archive: &Path,
    into: &Path,
    name: &Path,
    is_dir: bool,
    content: &mut dyn std::io::Read,
) -> Result<()> {
    let Some(relative) = contained(name) else {
        return Err(damaged(archive, format!("entry {name:?} would be written outside the target folder")));
    };
    let target = into.join(relative);
    if is_dir {
        return std::fs::create_dir_all(&target).map_err(io(&target));
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut out = std::fs::File::create(&target).map_err(io(&target))?;
    std::io::copy(content, &mut out).map_err(|e| damaged(archive, format!("entry {name:?}: {e}")))?;
    Ok(())
}

/// Extracts every file of the zip archive `archive` into `into`.
pub(crate) fn unzip(archive: &Path, into: &Path) -> Result<()> {
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| damaged(archive, format!("not a readable zip archive: {e}")))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| damaged(archive, format!("entry {i}: {e}")))?;
        let name =
            entry.name().map_err(|e| damaged(archive, format!("entry {i} has an unreadable name: {e}")))?.into_owned();
        let is_dir = entry.is_dir();
        extract_entry(archive, into, Path::new(&name), is_dir, &mut entry)?;
    }
    Ok(())
}

/// Extracts every regular file of the gzip-compressed tar archive `archive` into `into`.
pub(crate) fn untar_gz(archive: &Path, into: &Path) -> Result<()> {
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let entries = tar.entries().map_err(|e| damaged(archive, format!("not a readable tar.gz archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(archive, format!("not a readable tar.gz archive: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name =
            entry.path().map_err(|e| damaged(archive, format!("an entry has an unreadable name: {e}")))?.into_owned();
        extract_entry(archive, into, &name, false, &mut entry)?;
    }
    Ok(())
}

/// Decompresses the gzip file `archive` into the file `into`.
pub(crate) fn gunzip(archive: &Path, into: &Path) -> Result<()> {
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let mut reader = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let mut out = std::fs::File::create(into).map_err(io(into))?;
    std::io::copy(&mut reader, &mut out).map_err(|e| damaged(archive, format!("not a readable gzip file: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_the_folder_are_refused() {
        assert_eq!(contained(Path::new("scifact/qrels/test.tsv")), Some(PathBuf::from("scifact/qrels/test.tsv")));
        assert_eq!(contained(Path::new("./a")), Some(PathBuf::from("a")));
        assert_eq!(contained(Path::new("../evil")), None);
        assert_eq!(contained(Path::new("a/../../evil")), None);
        assert_eq!(contained(Path::new("/etc/passwd")), None);
        assert_eq!(contained(Path::new("")), None);
    }

    #[test]
    fn a_zip_with_an_escaping_entry_writes_nothing_outside() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("evil.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("ok.txt", options).unwrap();
        zip.write_all(b"fine").unwrap();
        zip.start_file("../escaped.txt", options).unwrap();
        zip.write_all(b"bad").unwrap();
        zip.finish().unwrap();
        let into = dir.path().join("out");
        let err = unzip(&archive, &into).unwrap_err().to_string();
        assert!(err.contains("outside the target folder"), "{err}");
        assert!(!dir.path().join("escaped.txt").exists());
    }

    #[test]
    fn tar_gz_and_gz_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        {
            let gz =
                flate2::write::GzEncoder::new(std::fs::File::create(&archive).unwrap(), flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            let mut header = tar::Header::new_gnu();
            header.set_size(5);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, "collection.tsv", &b"1\tx\n\n"[..]).unwrap();
            tar.into_inner().unwrap().finish().unwrap();
        }
        let into = dir.path().join("out");
        untar_gz(&archive, &into).unwrap();
        assert_eq!(std::fs::read(into.join("collection.tsv")).unwrap(), b"1\tx\n\n");
        let err = untar_gz(&into.join("collection.tsv"), &dir.path().join("x")).unwrap_err().to_string();
        assert!(err.contains("tar.gz"), "{err}");
        let err = gunzip(&into.join("collection.tsv"), &dir.path().join("y")).unwrap_err().to_string();
        assert!(err.contains("gzip"), "{err}");
    }
}
