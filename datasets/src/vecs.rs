//! The `.fvecs` / `.ivecs` formats of the ANN benchmarks (SIFT, GIST): each vector is a
//! little-endian `i32` dimension followed by that many `f32` (or `i32`) values.

use crate::{Error, Result};
use std::path::Path;

/// Vectors read from a `.fvecs` or `.ivecs` file: `count × dim` values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Vectors<T> {
    /// Values per vector.
    pub dim: usize,
    /// All values.
    pub data: Vec<T>,
}

impl<T> Vectors<T> {
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Vector `i`.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

fn read_vecs<T>(path: &Path, decode: fn([u8; 4]) -> T) -> Result<Vectors<T>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), error: source })?;
    let malformed = |line: usize, message: String| Error::Malformed { path: path.to_path_buf(), line, message };
    let mut data = Vec::new();
    let mut dim = None;
    let mut pos = 0;
    let mut index = 0;
    while pos < bytes.len() {
        let Some(head) = bytes.get(pos..pos + 4) else {
            return Err(malformed(index + 1, "the file ends inside a vector's dimension".into()));
        };
        let d = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if d <= 0 || dim.is_some_and(|dim| dim != d as usize) {
            return Err(malformed(
                index + 1,
                format!("vector {index} has dimension {d}, expected {}", dim.unwrap_or(0)),
            ));
        }
        dim = Some(d as usize);
        let end = pos + 4 + 4 * d as usize;
        let Some(body) = bytes.get(pos + 4..end) else {
            return Err(malformed(index + 1, format!("vector {index} is cut short")));
        };
        data.extend(body.chunks_exact(4).map(|c| decode([c[0], c[1], c[2], c[3]])));
        pos = end;
        index += 1;
    }
    Ok(Vectors { dim: dim.unwrap_or(0), data })
}

/// Reads an `.fvecs` file ("line" in errors = vector number, 1-based).
pub fn read_fvecs(path: &Path) -> Result<Vectors<f32>> {
    read_vecs(path, f32::from_le_bytes)
}

/// Reads an `.ivecs` file ("line" in errors = vector number, 1-based).
pub fn read_ivecs(path: &Path) -> Result<Vectors<i32>> {
    read_vecs(path, i32::from_le_bytes)
}

fn write_vecs<T: Copy>(path: &Path, vectors: &Vectors<T>, encode: fn(T) -> [u8; 4]) -> Result<()> {
    let dim = i32::try_from(vectors.dim).map_err(|_| Error::Malformed {
        path: path.to_path_buf(),
        line: 0,
        message: format!("dimension {} does not fit the format", vectors.dim),
    })?;
    let mut bytes = Vec::with_capacity(vectors.len() * (4 + 4 * vectors.dim));
    for i in 0..vectors.len() {
        bytes.extend_from_slice(&dim.to_le_bytes());
        for &v in vectors.row(i) {
            bytes.extend_from_slice(&encode(v));
        }
    }
    std::fs::write(path, bytes).map_err(|source| Error::Io { path: path.to_path_buf(), error: source })
}

/// Writes an `.fvecs` file.
pub fn write_fvecs(path: &Path, vectors: &Vectors<f32>) -> Result<()> {
    write_vecs(path, vectors, f32::to_le_bytes)
}

/// Writes an `.ivecs` file.
pub fn write_ivecs(path: &Path, vectors: &Vectors<i32>) -> Result<()> {
    write_vecs(path, vectors, i32::to_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.fvecs");
        let mut bytes = Vec::new();
        for v in [[1.0f32, 2.0], [3.0, 4.0]] {
            bytes.extend_from_slice(&2i32.to_le_bytes());
            for x in v {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let v = read_fvecs(&path).unwrap();
        assert_eq!((v.dim, v.len(), v.row(1)), (2, 2, &[3.0, 4.0][..]));
        let copy = dir.path().join("y.fvecs");
        write_fvecs(&copy, &v).unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), bytes);
        let ids = Vectors { dim: 3, data: vec![1, 2, 3, -4, 5, 6] };
        write_ivecs(&dir.path().join("z.ivecs"), &ids).unwrap();
        assert_eq!(read_ivecs(&dir.path().join("z.ivecs")).unwrap(), ids);
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        assert!(read_fvecs(&path).unwrap_err().to_string().contains("x.fvecs:2"));
    }
}
