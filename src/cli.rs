//! The `hourglass` command line: `--help` is the manual.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{flatten_toml, Settings, TomlSettings};

const ABOUT: &str = "HourglassDB: a timeseries database that takes InfluxDB line protocol over HTTP and \
answers SQL over HTTP, Postgres wire and FlightSQL, with data in Parquet files partitioned by date and hour.";

const LONG_ABOUT: &str = "\
HourglassDB: a timeseries database that takes InfluxDB line protocol over HTTP and answers SQL \
over HTTP, Postgres wire and FlightSQL, with data in Parquet files partitioned by date and hour.

With no command, `hourglass` runs the server (`hourglass serve`): data under ./data, the HTTP API \
on port 7971. Write with curl:

    curl -i -XPOST 'http://localhost:7971/write?db=mydb' --data-binary 'weather,location=us temperature=82'

Every setting below can be given as a flag, as the environment variable shown beside it, or in the \
TOML file named by --config (keys are flag names: `http-port = 7971`), in that order of precedence. \
A write is acknowledged (204) only after its write-ahead-log record is on disk; see docs/ in the \
source tree for the HTTP API, the configuration and the architecture.";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "hourglass", version, about = ABOUT, long_about = LONG_ABOUT, max_term_width = 100)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The server's settings.
    #[command(flatten)]
    pub settings: Settings,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
}

/// A command-line problem, already worded for the user.
#[derive(Debug)]
pub enum CliError {
    /// `--help` or `--version`: print and exit 0.
    Display(String),
    /// A bad setting: print the line and exit 2.
    Invalid(String),
}

/// The first line of a clap error, plus the environment variable of the setting.
fn one_line(error: &clap::Error, origin: Option<&str>) -> String {
    let rendered = error.render().to_string();
    let mut line = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("error: invalid arguments").to_owned();
    if let Some(clap::error::ContextValue::String(arg)) = error.get(clap::error::ContextKind::InvalidArg) {
        let flag = arg.split_whitespace().next().unwrap_or_default().trim_start_matches('-');
        let env = Cli::command()
            .get_arguments()
            .find(|a| a.get_long() == Some(flag))
            .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()));
        if let Some(env) = env {
            line.push_str(&format!(" (setting {env})"));
        }
    }
    if let Some(origin) = origin {
        line.push_str(&format!(" (from {origin})"));
    }
    line
}

fn parse_matches(args: &[OsString], origin: Option<&str>) -> Result<clap::ArgMatches, CliError> {
    Cli::command().try_get_matches_from(args).map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            CliError::Display(e.render().to_string())
        }
        _ => CliError::Invalid(one_line(&e, origin)),
    })
}

/// Parses the command line, filling settings that neither a flag nor the
/// environment gave from the `--config` TOML file. Also returns the TOML layers.
pub fn parse(args: Vec<OsString>) -> Result<(Cli, Option<toml::Value>), CliError> {
    let matches = parse_matches(&args, None)?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| CliError::Invalid(one_line(&e, None)))?;
    let Some(path) = cli.settings.config.clone() else {
        return Ok((cli, None));
    };
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::Invalid(format!("error: HOURGLASS_CONFIG (--config) {origin}: {e}")))?;
    let TomlSettings { pairs, layers } =
        flatten_toml(&text).map_err(|e| CliError::Invalid(format!("error: {origin} is not valid TOML: {e}")))?;
    let command = Cli::command();
    let mut extended = args.clone();
    for (key, value) in pairs {
        let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(key.as_str())) else {
            return Err(CliError::Invalid(format!("error: unknown setting '{key}' in {origin}")));
        };
        if key == "config" || key == "layer" {
            return Err(CliError::Invalid(format!("error: '{key}' cannot be set in {origin}")));
        }
        let id = arg.get_id().as_str();
        if matches!(matches.value_source(id), None | Some(ValueSource::DefaultValue)) {
            extended.push(format!("--{key}={value}").into());
        }
    }
    let matches = parse_matches(&extended, Some(&origin))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| CliError::Invalid(one_line(&e, Some(&origin))))?;
    Ok((cli, layers))
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let (cli, toml_layers) = match parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(CliError::Display(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(CliError::Invalid(line)) => {
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::server::serve_main(cli.settings, toml_layers),
    }
}
