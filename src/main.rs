//! The `keygate` binary: parses arguments and wires the library together.
//! All behaviour lives in the library (`keygate::app`, `keygate::cli`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use keygate::access_log::AccessLog;
use keygate::app::App;
use keygate::cli::{Cli, Command, Global};
use keygate::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => serve(&cli.global),
        Command::Check => keygate::cli::check::run(&cli.global),
        Command::Generate(args) => keygate::cli::generate::run(&args),
        command => match runtime() {
            Ok(runtime) => runtime.block_on(keygate::cli::run(&cli.global, command)),
            Err(code) => code,
        },
    }
}

/// A current-thread runtime: the CLI needs no more, and `serve` runs proxy
/// worker 0 on it and starts the other workers' runtimes itself
/// (`keygate::worker` says why they are not one multi-thread runtime).
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().build().map_err(|error| {
        eprintln!("keygate: cannot start the async runtime: {error}");
        ExitCode::FAILURE
    })
}

fn serve(global: &Global) -> ExitCode {
    init_tracing();
    let config = match Config::load(global.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("keygate: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime() {
        Ok(runtime) => runtime.block_on(run(config)),
        Err(code) => code,
    }
}

async fn run(config: Config) -> ExitCode {
    // Before anything is announced: a signal from here on is handled.
    let shutdown = keygate::shutdown::signal();
    let (log, _log_guard) = if config.proxy.access_log {
        AccessLog::stdout()
    } else {
        AccessLog::disabled()
    };
    let app = match App::bind(config.clone(), log).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("keygate: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(source) = &config.source {
        match app.reloader(source.clone()).on_sighup() {
            Ok(reloads) => {
                tokio::spawn(reloads);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reload needs a restart")
            }
        }
    }
    tracing::info!(
        proxy = %app.proxy_addr(),
        admin = %app.admin_addr(),
        tls = config.tls.is_some(),
        upstream = %config.proxy.upstream,
        store = %config.store_path.display(),
        keys = app.keyring().snapshot().key_count(),
        "keygate serving"
    );
    app.run(shutdown).await;
    tracing::info!("keygate stopped");
    ExitCode::SUCCESS
}

/// Diagnostics go to stderr (stdout is the access log); `RUST_LOG` filters.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
