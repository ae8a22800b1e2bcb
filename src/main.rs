//! The `keygate` binary: parses arguments and wires the library together.
//! All behaviour lives in the library (`keygate::app`, `keygate::cli`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use keygate::access_log::AccessLog;
use keygate::app::App;
use keygate::cli::{Cli, Command};
use keygate::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("keygate: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve => runtime.block_on(serve(&cli.global)),
        command => runtime.block_on(keygate::cli::run(&cli.global, command)),
    }
}

async fn serve(global: &keygate::cli::Global) -> ExitCode {
    init_tracing();
    let config = match Config::load(global.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("keygate: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (log, _log_guard) = if config.proxy.access_log {
        AccessLog::stdout()
    } else {
        AccessLog::disabled()
    };
    // Before anything is announced: a signal from here on drains.
    let shutdown = keygate::shutdown::signal();
    let app = match App::bind(config.clone(), log).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("keygate: {error}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        proxy = %app.proxy_addr(),
        admin = %app.admin_addr(),
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
