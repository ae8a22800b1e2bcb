//! `keygate generate DIR` (hidden): the man pages and shell completions,
//! written from the same clap definition that parses the command line, so
//! they cannot describe options the binary does not have.
//!
//! Packaging runs it on the freshly built binary (ripgrep's
//! `rg --generate` does the same) rather than a build script generating
//! them: the definition lives in the library, which a build script cannot
//! use. `config/debian/build-deb` runs it before `cargo deb` packs the
//! files; they are not kept in the repository, where they could go stale.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

/// `keygate generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write into (created if missing): `man/` gets one page
    /// per command (`keygate.1`, `keygate-keys-create.1`, ...), and
    /// `completions/` gets `keygate.bash`, `_keygate` (zsh) and
    /// `keygate.fish`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes every file, or says on stderr which one failed.
pub fn run(args: &GenerateArgs) -> ExitCode {
    match generate(&args.dir) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("keygate: generate: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the man pages and completions under `dir`; returns the files.
pub fn generate(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let context = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    let man = dir.join("man");
    std::fs::create_dir_all(&man).map_err(context(&man))?;
    clap_mangen::generate_to(Cli::command(), &man).map_err(context(&man))?;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions).map_err(context(&completions))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "keygate", &completions)
            .map_err(context(&completions))?;
    }
    let mut written = Vec::new();
    for folder in [&man, &completions] {
        for entry in std::fs::read_dir(folder).map_err(context(folder))? {
            written.push(entry.map_err(context(folder))?.path());
        }
    }
    written.sort();
    Ok(written)
}
