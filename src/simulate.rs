//! `vigil simulate`: labelled synthetic gateway traffic in any supported format — the data of
//! the tests, the benchmarks, the demo and model training.

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use vigil_ingest::simulate::{
    Scenario, SimConfig, SimFormat, Simulation, write_labels, write_logs,
};

#[derive(Args)]
pub struct SimulateArgs {
    /// Log format to write.
    #[arg(long, short, default_value = "nginx", value_parser = parse_sim_format)]
    format: SimFormat,
    /// A TOML file with the simulation's settings (the flags below override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of every random choice (same seed, same bytes).
    #[arg(long)]
    seed: Option<u64>,
    /// Event-time start, seconds since the Unix epoch.
    #[arg(long)]
    start_unix_secs: Option<i64>,
    /// Length of the simulated run in event time.
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Benign interactive users.
    #[arg(long)]
    benign_users: Option<usize>,
    /// Benign server-to-server API clients.
    #[arg(long)]
    benign_api_clients: Option<usize>,
    /// Attackers per scenario.
    #[arg(long)]
    attackers_per_scenario: Option<usize>,
    /// Attackers send this many times faster than their scenario's pace (1 to 10).
    #[arg(long)]
    attack_pace: Option<u32>,
    /// Scenarios to run, comma-separated (default: all): credential_stuffing,
    /// distributed_brute_force, scraping, sensitive_path_scan, session_theft, api_key_abuse,
    /// id_enumeration, data_exfiltration, injection_probing. `none` for benign traffic only.
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// Stop after this many requests.
    #[arg(long)]
    lines: Option<u64>,
    /// Write the log here instead of standard output.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Write the labels (attacking subjects, scenario, start) as NDJSON here.
    #[arg(long)]
    labels_out: Option<PathBuf>,
}

fn parse_sim_format(s: &str) -> Result<SimFormat, String> {
    s.parse()
        .map_err(|e: vigil_ingest::simulate::SimError| e.to_string())
}

pub fn simulate(args: SimulateArgs) -> Result<()> {
    let mut cfg: SimConfig = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let table: toml::Table = text
                .parse()
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                anyhow::anyhow!(
                    "{}: invalid setting at `{}`: {}",
                    p.display(),
                    e.path(),
                    e.inner()
                )
            })?
        }
        None => SimConfig::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = args.$f { cfg.$f = v; } )* };
    }
    set!(
        seed,
        start_unix_secs,
        duration_secs,
        benign_users,
        benign_api_clients,
        attackers_per_scenario,
        attack_pace
    );
    if let Some(list) = &args.scenarios {
        cfg.scenarios = if list.len() == 1 && list[0] == "none" {
            Vec::new()
        } else {
            list.iter()
                .map(|s| s.trim().parse::<Scenario>())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("--scenarios: {e}"))?
        };
    }
    let sim = Simulation::new(cfg)?;
    let lines = match &args.out {
        Some(p) => {
            let f = std::fs::File::create(p)
                .with_context(|| format!("cannot create {}", p.display()))?;
            write_logs(&sim, args.format, args.lines, std::io::BufWriter::new(f))?
        }
        None => write_logs(&sim, args.format, args.lines, std::io::stdout().lock())?,
    };
    if let Some(p) = &args.labels_out {
        let f =
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
        let mut w = std::io::BufWriter::new(f);
        write_labels(&sim, &mut w)?;
        w.flush()?;
    }
    tracing::info!(
        lines,
        format = args.format.as_str(),
        labels = sim.labels().len(),
        "simulated"
    );
    Ok(())
}
