//! What the test files share: scratch folders, running the `wick` binary, and (in [`seeds`] and
//! [`pickle`]) small valid files of every format Wick reads.
#![allow(dead_code)]

pub mod alloc;
pub mod pickle;
pub mod seeds;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh, empty folder for one test, named after the test binary, the test (tests of different
/// modules share a binary and may pick the same `name`) and `name`. It is removed when the value is
/// dropped, unless the test is failing: then it stays, and its path is printed, for inspection.
/// (Before this guard every run left its folders behind: 38 GB in /tmp after one day of runs.)
pub fn scratch(name: &str) -> Scratch {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let binary = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("test").split('-').next().unwrap_or("test");
    let test = std::thread::current().name().unwrap_or("test").replace("::", "-");
    let dir = std::env::temp_dir().join(format!("wick-{binary}-{}-{test}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// A test's scratch folder; see [`scratch`].
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs the `wick` binary built for these tests.
pub fn wick(args: &[&str]) -> Output {
    wick_with_env(args, &[])
}

pub fn wick_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wick")).args(args).envs(env.iter().copied()).output().expect("wick runs")
}

/// `wick args` fails saying `says`; returns its stderr.
pub fn refused(args: &[&str], says: &str) -> String {
    let out = wick(args);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(err.contains(says), "expected `{says}` in: {err}");
    err
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
