//! The `hourglass` command line: `--help` is the manual.

mod compact;
mod token;

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

    curl -i -XPOST 'localhost:7971/write?db=mydb' --data-binary 'weather,city=Paris temp=12.5'

Every setting below can be given as a flag, as the environment variable shown beside it, or in the \
TOML file named by --config (keys are flag names: `http-port = 7971`), in that order of precedence. \
A write is acknowledged (204) only after its write-ahead-log record is on disk. SIGINT or SIGTERM \
stops the server after writing buffered rows to Parquet.

Exit codes: 0 after a clean shutdown, 2 when a setting is unusable (one line on stderr names it), \
1 when the server fails while running. The docs/ directory of the source tree describes the HTTP \
API, every setting and the architecture.";

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
    /// Print the effective settings as TOML, each with where it came from
    /// (flag, environment variable, config file or default), and exit.
    Config,
    /// Ask the running server to compact now: every merge level, layer moves,
    /// retention, and deletion of replaced files whose grace period is over.
    /// Prints what was merged, moved and expired; exits 1 if any of it failed.
    /// The server is reached at --url, else at --http-host (127.0.0.1 for 0.0.0.0) on --http-port, with
    /// the HTTP_BASIC_AUTH_* credentials when they are set.
    Compact(compact::CompactArgs),
    /// Make, list and revoke API tokens. A token may use one database, to
    /// read (--read), to read and write (--write), or also to create and drop
    /// views and tables (--admin); clients present it wherever a password
    /// goes: `Authorization: Token|Bearer <token>`, InfluxDB v1's `p=`, the
    /// Postgres password (with any user name but the configured one), the
    /// FlightSQL bearer or handshake. Tokens are kept beside the catalog this
    /// command's settings name (GIGAPI_ROOT, or GIGAPI_METADATA_URL with
    /// GIGAPI_METADATA_TYPE=redis); the server need not be stopped, and
    /// sees a change within a second. Tokens are asked for only when a user is
    /// configured (HTTP_BASIC_AUTH_USERNAME), who keeps every right.
    Token(token::TokenArgs),
}

/// The single-threaded runtime a command that talks to a server or a store
/// runs on; a failure to make one is printed and exits 1.
fn command_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingSource {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env(String),
    /// The `--config` file.
    File(String),
    /// The built-in default.
    Default,
}

/// The parsed command line, with where each setting came from.
#[derive(Debug)]
pub struct Parsed {
    /// The command line.
    pub cli: Cli,
    /// `[[layers]]` from the config file.
    pub toml_layers: Option<toml::Value>,
    /// Each setting (by flag name) with its raw value and source; unset ones are absent.
    pub sources: Vec<(String, String, SettingSource)>,
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

fn sources(matches: &clap::ArgMatches, from_file: &[String], file: &str) -> Vec<(String, String, SettingSource)> {
    let matches = match matches.subcommand() {
        Some((_, sub)) => sub,
        None => matches,
    };
    Cli::command()
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?.to_owned();
            let id = arg.get_id().as_str();
            let raw: Vec<String> = matches.get_raw(id)?.map(|v| v.to_string_lossy().into_owned()).collect();
            let source = match matches.value_source(id)? {
                ValueSource::CommandLine if from_file.contains(&long) => SettingSource::File(file.to_owned()),
                ValueSource::CommandLine => SettingSource::Flag,
                ValueSource::EnvVariable => {
                    SettingSource::Env(arg.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default())
                }
                _ => SettingSource::Default,
            };
            Some((long, raw.join(","), source))
        })
        .collect()
}

/// Parses the command line, filling settings that neither a flag nor the
/// environment gave from the `--config` TOML file.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, CliError> {
    let matches = parse_matches(&args, None)?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| CliError::Invalid(one_line(&e, None)))?;
    let Some(path) = cli.settings.config.clone() else {
        let sources = sources(&matches, &[], "");
        return Ok(Parsed { cli, toml_layers: None, sources });
    };
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::Invalid(format!("error: HOURGLASS_CONFIG (--config) {origin}: {e}")))?;
    let TomlSettings { pairs, layers } =
        flatten_toml(&text).map_err(|e| CliError::Invalid(format!("error: {origin} is not valid TOML: {e}")))?;
    let command = Cli::command();
    let mut extended = args.clone();
    let mut from_file = Vec::new();
    for (key, value) in pairs {
        let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(key.as_str())) else {
            return Err(CliError::Invalid(format!("error: unknown setting '{key}' in {origin}")));
        };
        if key == "config" || key == "layer" {
            return Err(CliError::Invalid(format!("error: '{key}' cannot be set in {origin}")));
        }
        let id = arg.get_id().as_str();
        let given = match matches.subcommand() {
            Some((_, sub)) => sub.value_source(id),
            None => matches.value_source(id),
        };
        if matches!(given, None | Some(ValueSource::DefaultValue)) {
            extended.push(format!("--{key}={value}").into());
            from_file.push(key);
        }
    }
    let matches = parse_matches(&extended, Some(&origin))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| CliError::Invalid(one_line(&e, Some(&origin))))?;
    let sources = sources(&matches, &from_file, &origin);
    Ok(Parsed { cli, toml_layers: layers, sources })
}

fn toml_value(text: &str) -> String {
    let bare = text == "true" || text == "false" || (!text.is_empty() && text.parse::<f64>().is_ok());
    if bare {
        text.to_owned()
    } else {
        toml::Value::String(text.to_owned()).to_string()
    }
}

/// The effective settings as TOML, one per line with its source as a comment.
pub fn render_settings(parsed: &Parsed) -> String {
    let mut out = String::from("# HourglassDB effective settings; each comment says where the value came from.\n");
    let secret = |flag: &str| flag.contains("password") || flag.contains("secret");
    for (flag, value, source) in &parsed.sources {
        if flag == "layer" || flag == "config" {
            continue;
        }
        let value = if secret(flag) { "********".to_owned() } else { value.clone() };
        let origin = match source {
            SettingSource::Flag => format!("flag --{flag}"),
            SettingSource::Env(name) => format!("environment {name}"),
            SettingSource::File(file) => format!("config file {file}"),
            SettingSource::Default => "default".to_owned(),
        };
        out.push_str(&format!("{flag} = {}  # {origin}\n", toml_value(&value)));
    }
    let env = |name: &str| std::env::var(name).ok();
    match crate::config::resolve_layers(&parsed.cli.settings, &env, parsed.toml_layers.as_ref()) {
        Ok(layers) => {
            for layer in layers {
                out.push_str("\n[[layers]]\n");
                out.push_str(&format!("name = {}\n", toml_value(&layer.name)));
                let kind = match layer.layer_type {
                    crate::storage::LayerType::Fs => "fs",
                    crate::storage::LayerType::S3 => "s3",
                };
                out.push_str(&format!(
                    "type = \"{kind}\"\nurl = {}\nglobal = {}\n",
                    toml_value(&layer.url),
                    layer.global
                ));
                let ttl = layer.ttl.map_or("0".to_owned(), |t| format!("{}s", t.as_secs_f64()));
                out.push_str(&format!("ttl = \"{ttl}\"\n"));
            }
        }
        Err(e) => out.push_str(&format!("# layers: {e}\n")),
    }
    out
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let parsed = match parse(std::env::args_os().collect()) {
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
    match parsed.cli.command.clone().unwrap_or(Command::Serve) {
        Command::Serve => crate::server::serve_main(parsed.cli.settings, parsed.toml_layers),
        Command::Config => {
            print!("{}", render_settings(&parsed));
            ExitCode::SUCCESS
        }
        Command::Compact(args) => compact::main(&parsed.cli.settings, &args),
        Command::Token(args) => token::main(&parsed.cli.settings, &args),
    }
}
