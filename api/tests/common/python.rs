//! A Python with the packages a test compares against (pytrec_eval, schemathesis), installed
//! from PyPI into a virtual environment under `target/` on first use, so that `cargo test`
//! works on a fresh machine. `BARISTA_PYTHON` names another interpreter to use as it is.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The interpreter of the tests' virtual environment, with `packages` (pip requirement
/// strings) installed; panics with what to do when that cannot be done.
pub fn python(packages: &[&str]) -> PathBuf {
    if let Some(python) = std::env::var_os("BARISTA_PYTHON") {
        return PathBuf::from(python);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let venv = target.join("test-python");
    std::fs::create_dir_all(&target).unwrap();
    // One installer at a time (test binaries run in parallel).
    let lock = std::fs::File::create(target.join("test-python.lock")).unwrap();
    lock.lock().unwrap();
    let python = venv.join("bin/python");
    if !python.exists() {
        let status = Command::new("python3").args(["-m", "venv", venv.to_str().unwrap()]).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "could not create a Python virtual environment in {} (python3 -m venv): install Python 3 with venv, or \
             set BARISTA_PYTHON to an interpreter that has {packages:?}",
            venv.display()
        );
    }
    let marker = venv.join(format!("installed-{}", packages.join("+").replace(['/', '=', '<', '>'], "_")));
    if !marker.exists() {
        let output = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(packages)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pip could not install {packages:?} into {}: {}\nset BARISTA_PYTHON to an interpreter that has them",
            venv.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(&marker, "").unwrap();
    }
    python
}
