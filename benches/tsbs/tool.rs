//! `hourglass-tsbs`: the fast half of the TSBS benchmark harness. It generates TSBS
//! `devops cpu-only` line protocol files and loads them into any server that takes
//! InfluxDB line protocol over HTTP (HourglassDB, InfluxDB), with concurrent
//! keep-alive workers. `benches/tsbs/run` drives it; see docs/benchmarks.md.
//!
//! It uses only the standard library, flate2 and clap, not the database, so that
//! it builds in seconds and measures the server from outside, as a client would.

#[allow(dead_code)] // shared with the criterion benches, which use other parts
#[path = "mod.rs"]
mod model;

mod generate;
mod http;
mod load;
mod progress;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Generates TSBS devops cpu-only data and loads it over HTTP.
#[derive(Parser)]
#[command(name = "hourglass-tsbs", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes `hosts` × `hours` × 360 lines of TSBS cpu-only line protocol to a file
    /// (time-major: every host at 00:00:00, then every host at 00:00:10, ...) and a
    /// manifest beside it (`<file>.json`). The same seed gives the same file.
    Generate(generate::GenerateArgs),
    /// Sends a line protocol file to an HTTP write endpoint in batches of whole
    /// lines, from concurrent keep-alive connections, and prints a JSON report:
    /// rows acknowledged per second (a 2xx answer), 503/429 retries and errors.
    Load(load::LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(&args),
        Command::Load(args) => load::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hourglass-tsbs: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Where the tool reads or writes: a path and what went wrong there.
fn io_context<'a>(path: &'a std::path::Path, what: &str) -> impl FnOnce(std::io::Error) -> String + 'a {
    let what = what.to_owned();
    move |error| format!("{what} {}: {error}", path.display())
}
