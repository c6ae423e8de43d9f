//! The `vigil` command: the engine (`run`), the proxy (`proxy`), offline tools (`replay`,
//! `simulate`, `features`, `validate`), and clients of a running engine (`sql`, `backtest`).
#![forbid(unsafe_code)]

mod api;
mod config;
mod dashboard;
mod decisions;
mod demo;
mod features;
mod proxy;
mod proxy_events;
mod remote;
mod replay;
mod run;
mod scale;
mod simulate;
mod telemetry;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use vigil_ingest::formats::FormatName;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Continuous, adaptive zero-trust for API gateways"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine: the configured sources (the embedded default without --config).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also write every event as NDJSON to this file.
        #[arg(long)]
        events_out: Option<PathBuf>,
    },
    /// The whole loop on this machine: the engine, the proxy in front of a built-in upstream,
    /// and simulated users and attackers calling through it; the dashboard at `/`.
    Demo(demo::DemoArgs),
    /// Parse log files (or `-` for stdin) offline and report what was understood.
    Replay(replay::ReplayArgs),
    /// Write labelled synthetic gateway traffic in any supported format.
    Simulate(simulate::SimulateArgs),
    /// Score log files offline and write every feature row (Parquet or NDJSON).
    Features(features::FeaturesArgs),
    /// Run the enforcement proxy alone (the `[proxy]` section of the config).
    Proxy {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file; bad or unknown keys are named by their path.
    Validate { config: PathBuf },
    /// Query a running engine's tables (`events`, `scores`, `decisions`) with SQL.
    Sql(remote::SqlArgs),
    /// Which subjects a rule (an expression, or a rules file) would have hit over the events a
    /// running engine has stored.
    Backtest(remote::BacktestArgs),
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VIGIL_LOG")
        // tract announces its CPU kernels at INFO when the models first load
        .unwrap_or_else(|_| EnvFilter::new("info,tract_linalg=warn,tract_core=warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    match cli.command {
        Command::Run { config, events_out } => {
            let cfg = config::Config::load(config.as_deref())?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(run::run(cfg, events_out))
        }
        Command::Demo(args) => demo::demo(args),
        Command::Replay(args) => replay::replay(args),
        Command::Simulate(args) => simulate::simulate(args),
        Command::Features(args) => features::features(args),
        Command::Proxy { config } => {
            let cfg = config::Config::load(Some(&config))?;
            let proxy = cfg
                .proxy
                .ok_or_else(|| anyhow::anyhow!("{}: no [proxy] section", config.display()))?;
            let kafka = cfg.kafka.as_ref().map(|k| k.settings()).unwrap_or_default();
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(proxy::run_standalone(proxy, &kafka))
        }
        Command::Sql(args) => remote::sql(args),
        Command::Backtest(args) => remote::backtest(args),
        Command::Validate { config } => {
            let cfg = config::Config::load(Some(&config))?;
            println!(
                "{}: valid ({} source{})",
                config.display(),
                cfg.sources.len(),
                if cfg.sources.len() == 1 { "" } else { "s" }
            );
            Ok(())
        }
    }
}

/// `--format` values, parsed by the ingest crate's names.
pub fn parse_format(s: &str) -> Result<FormatName, String> {
    s.parse()
}
