//! `hourglass compact`: the admin call `POST /admin/compact` from the command
//! line. The running server does the work: it owns the catalog, and a second
//! process on its data root would work on a stale copy of it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::config::Settings;

/// What `hourglass compact` takes besides the server's settings.
#[derive(Debug, Clone, Args)]
pub struct CompactArgs {
    /// The server's HTTP API; default http://<--http-host>:<--http-port>
    /// (127.0.0.1 when the server listens on every address).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Only this database.
    #[arg(long, value_name = "NAME")]
    pub db: Option<String>,
    /// Only this table (measurement).
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// Print the server's JSON report instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Deserialize)]
struct Merge {
    database: String,
    table: String,
    partition: String,
    from_level: u8,
    to_level: u8,
    input_files: usize,
    input_bytes: u64,
    output_bytes: u64,
    output_rows: u64,
}

#[derive(Debug, Deserialize)]
struct Promotion {
    database: String,
    table: String,
    file: String,
    from_level: u8,
    to_level: u8,
}

#[derive(Debug, Deserialize)]
struct Move {
    database: String,
    table: String,
    file: String,
    from_layer: String,
    to_layer: String,
    bytes: u64,
}

#[derive(Debug, Deserialize)]
struct Expiry {
    database: String,
    table: String,
    file: String,
    layer: String,
    rows: u64,
}

#[derive(Debug, Deserialize)]
struct Report {
    merges: Vec<Merge>,
    promotions: Vec<Promotion>,
    moves: Vec<Move>,
    expired: Vec<Expiry>,
    files_deleted: u64,
    orphans_deleted: u64,
    files_waiting_for_deletion: usize,
    errors: Vec<String>,
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn summary(report: &Report) -> String {
    let mut out = String::new();
    for m in &report.merges {
        out.push_str(&format!(
            "merged   {}.{} {} level {}->{}: {} files, {} -> {}, {} rows\n",
            m.database,
            m.table,
            m.partition,
            m.from_level,
            m.to_level,
            m.input_files,
            size(m.input_bytes),
            size(m.output_bytes),
            m.output_rows
        ));
    }
    for p in &report.promotions {
        out.push_str(&format!(
            "promoted {}.{} {} level {}->{} (full size, not rewritten)\n",
            p.database, p.table, p.file, p.from_level, p.to_level
        ));
    }
    for m in &report.moves {
        out.push_str(&format!(
            "moved    {}.{} {} {} -> {} ({})\n",
            m.database,
            m.table,
            m.file,
            m.from_layer,
            m.to_layer,
            size(m.bytes)
        ));
    }
    for e in &report.expired {
        out.push_str(&format!("expired  {}.{} {} on {} ({} rows)\n", e.database, e.table, e.file, e.layer, e.rows));
    }
    for e in &report.errors {
        out.push_str(&format!("failed   {e}\n"));
    }
    out.push_str(&format!(
        "{} merges ({} files), {} promotions, {} moves, {} expired, {} replaced files deleted, {} waiting for \
         their grace period, {} orphaned files deleted, {} errors\n",
        report.merges.len(),
        report.merges.iter().map(|m| m.input_files).sum::<usize>(),
        report.promotions.len(),
        report.moves.len(),
        report.expired.len(),
        report.files_deleted,
        report.files_waiting_for_deletion,
        report.orphans_deleted,
        report.errors.len()
    ));
    out
}

async fn call(settings: &Settings, args: &CompactArgs) -> Result<String, String> {
    let host = match settings.http_host.as_str() {
        "0.0.0.0" | "::" | "[::]" | "" => "127.0.0.1".to_owned(),
        host if host.contains(':') && !host.starts_with('[') => format!("[{host}]"),
        host => host.to_owned(),
    };
    let base = args.url.clone().unwrap_or_else(|| format!("http://{host}:{}", settings.http_port));
    let mut url = url::Url::parse(&base).map_err(|e| format!("--url {base}: {e}"))?;
    url.set_path("/admin/compact");
    {
        let mut query = url.query_pairs_mut();
        if let Some(db) = &args.db {
            query.append_pair("db", db);
        }
        if let Some(table) = &args.table {
            query.append_pair("table", table);
        }
    }
    // A big compaction takes a while; the server finishes the run even if we give up.
    let mut client = reqwest::Client::builder();
    if args.url.is_none() {
        // The server is on this machine: no proxy in between.
        client = client.no_proxy();
    }
    let client = client.timeout(Duration::from_secs(24 * 3600)).build().map_err(|e| format!("HTTP client: {e}"))?;
    let mut request = client.post(url.clone());
    if let Some(user) = &settings.http_basic_auth_username {
        request = request.basic_auth(user, settings.http_basic_auth_password.as_ref());
    }
    let response = request.send().await.map_err(|e| format!("cannot reach the server at {base}: {e}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("reading the answer from {base}: {e}"))?;
    if !status.is_success() {
        return Err(format!("the server at {base} answered {status}: {}", body.trim()));
    }
    Ok(body)
}

/// Runs `hourglass compact`: exit 0 when everything the server tried worked,
/// 1 when something failed (it is printed), 2 when the server cannot be asked.
pub(super) fn main(settings: &Settings, args: &CompactArgs) -> ExitCode {
    let runtime = match super::command_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    eprintln!("compacting (the server merges, moves and expires files now)...");
    let body = match runtime.block_on(call(settings, args)) {
        Ok(body) => body,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let report: Report = match serde_json::from_str(&body) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: the server's answer is not a compaction report ({e}): {body}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{body}");
    } else {
        print!("{}", summary(&report));
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
