//! Build script: records the git commit the binary was built from, for
//! `keygate --version` (an operator reporting a bug, or checking which build
//! a package holds, needs more than the crate version).
//!
//! The commit is `git rev-parse --short=12 HEAD` when this source tree is
//! its own git work tree; otherwise (a tarball, a vendored copy inside some
//! other repository) the `KEYGATE_COMMIT` environment variable, and failing
//! that `unknown`, so a build never fails for want of git. It reaches the
//! crate as the compile-time variable `KEYGATE_BUILD_COMMIT`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KEYGATE_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = git_commit(&manifest_dir)
        .or_else(|| {
            std::env::var("KEYGATE_COMMIT")
                .ok()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KEYGATE_BUILD_COMMIT={commit}");
}

/// The short commit of `dir`'s work tree, if `dir` is the top of one; also
/// asks cargo to rebuild when HEAD moves (a commit, a checkout).
fn git_commit(dir: &Path) -> Option<String> {
    let toplevel = git(dir, &["rev-parse", "--show-toplevel"])?;
    // Only our own repository's commit: a copy of this tree vendored into
    // another repository must not claim that repository's commit.
    if std::fs::canonicalize(&toplevel).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    // HEAD itself, the branch it points to, and packed refs (a worktree's
    // HEAD lives in its own git dir, branches in the common one). Only
    // paths that exist: cargo reruns every time for a missing one.
    let git_dir = absolute(dir, &git(dir, &["rev-parse", "--git-dir"])?);
    let common_dir = absolute(dir, &git(dir, &["rev-parse", "--git-common-dir"])?);
    let mut watched = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common_dir.join(branch));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    git(dir, &["rev-parse", "--short=12", "HEAD"])
}

fn absolute(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// One git command's trimmed stdout, or `None` if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
