//! The Python package as a user installs it: `pip install ./python` (maturin builds the pyo3
//! extension in release) into the tests' virtual environment, then its pytest suite against the
//! real model, real index folders, this build's `barista` binary and a real server on loopback,
//! with the real LangChain, LlamaIndex, Ray (a local multi-process cluster) and numpy from PyPI.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn the_python_package_installs_and_its_tests_pass() {
    let python = common::python::python(&[
        "pytest==9.2.0",
        "numpy==2.4.6",
        "langchain-core==1.8.3",
        "llama-index-core==0.14.25",
        "ray[data,serve]==2.60.0",
    ]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| root.join("target"));
    // The extension's own build folder beside the workspace's, kept between runs.
    let install = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--force-reinstall", "--no-deps"])
        .arg(root.join("python"))
        .env("CARGO_TARGET_DIR", target.join("python"))
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "pip install ./python failed:\n{}\n{}",
        String::from_utf8_lossy(&install.stdout),
        String::from_utf8_lossy(&install.stderr)
    );
    let output = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("python/tests"))
        .env("BARISTA_BIN", env!("CARGO_BIN_EXE_barista"))
        .env("BARISTA_OFFLINE", "1")
        // Not python/: there the source folder `barista/` (without the built extension) would
        // shadow the installed package.
        .current_dir(root.join("python/tests"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the Python tests failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(" passed"), "{stdout}");
    assert!(!stdout.contains("skipped"), "no Python test may be skipped:\n{stdout}");
}
