//! `hourglass token create|list|revoke`: API tokens, stored beside the
//! catalog the settings name (`GIGAPI_ROOT` or `GIGAPI_METADATA_URL`), so
//! the server need not run and every process of a cluster sees the change.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::access::Privilege;
use crate::catalog::tokens::{TokenRecord, Tokens};
use crate::config::Settings;

/// What `hourglass token` does.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The change or listing.
    #[command(subcommand)]
    pub action: TokenAction,
}

/// The token subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenAction {
    /// Make a token and print it once; only its hash is stored.
    Create(CreateArgs),
    /// List the tokens: id, database, privilege, created, expires, description.
    List {
        /// Print JSON (one object per token) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a token: within a second every server refuses it for new
    /// requests, logins and FlightSQL sessions; Postgres connections already
    /// open keep their access until they close.
    Revoke {
        /// The token's id, as `list` shows it (the hex after `hgt_`).
        id: String,
    },
}

/// What `hourglass token create` takes.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("privilege").required(true).args(["read", "write", "admin"])))]
pub struct CreateArgs {
    /// The database the token may use; it sees no other.
    #[arg(long, value_name = "NAME")]
    pub database: String,
    /// Queries only: SELECT, SHOW, DESCRIBE, EXPLAIN, metadata.
    #[arg(long)]
    pub read: bool,
    /// Queries and writes: line protocol, INSERT, COPY FROM STDIN, FlightSQL ingest.
    #[arg(long)]
    pub write: bool,
    /// Queries, writes, and CREATE, ALTER and DROP of views and tables.
    #[arg(long)]
    pub admin: bool,
    /// When it stops working: a duration from now (`90d`, `12h`, `30m`,
    /// `45s`) or a time (RFC 3339, `2027-01-01T00:00:00Z`). Never when omitted.
    #[arg(long, value_name = "WHEN", value_parser = parse_expiry)]
    pub expires: Option<i64>,
    /// What it is for, shown by `list`.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
}

/// `--expires` as seconds since the epoch.
fn parse_expiry(value: &str) -> Result<i64, String> {
    let now = chrono::Utc::now().timestamp();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(value) {
        let at = time.timestamp();
        return if at > now { Ok(at) } else { Err(format!("{value} is in the past")) };
    }
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: i64 = number.parse().map_err(|_| {
        format!("'{value}' is neither a duration (90d, 12h, 30m, 45s) nor an RFC 3339 time (2027-01-01T00:00:00Z)")
    })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("'{value}': the unit is one of s, m, h, d, w")),
    };
    match number.checked_mul(seconds).and_then(|s| s.checked_add(now)) {
        Some(at) if number > 0 => Ok(at),
        _ => Err(format!("'{value}' is not a positive duration of a sane length")),
    }
}

fn time_text(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0).map_or_else(|| seconds.to_string(), |t| t.to_rfc3339())
}

fn print_table(tokens: &[TokenRecord]) {
    println!("{:<14} {:<20} {:<9} {:<26} {:<26} DESCRIPTION", "ID", "DATABASE", "PRIVILEGE", "CREATED", "EXPIRES");
    let now = chrono::Utc::now().timestamp();
    for token in tokens {
        let expires = match token.expires {
            Some(at) if at <= now => format!("{} (expired)", time_text(at)),
            Some(at) => time_text(at),
            None => "never".to_owned(),
        };
        println!(
            "{:<14} {:<20} {:<9} {:<26} {:<26} {}",
            token.id,
            token.database,
            token.privilege,
            time_text(token.created),
            expires,
            token.description
        );
    }
}

/// Runs `hourglass token ...`: 0 on success, 1 when the store cannot be
/// reached or changed, 2 for a bad argument.
pub(super) fn main(settings: &Settings, args: &TokenArgs) -> ExitCode {
    let runtime = match super::command_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let log = match crate::server::token_log(settings).await {
            Ok(log) => log,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let tokens = Tokens::new(log);
        match &args.action {
            TokenAction::Create(create) => {
                if let Err(e) =
                    crate::catalog::names::check_name(crate::catalog::names::NameKind::Database, &create.database)
                {
                    eprintln!("error: --database: {e}");
                    return ExitCode::from(2);
                }
                let privilege = if create.admin {
                    Privilege::Admin
                } else if create.write {
                    Privilege::Write
                } else {
                    Privilege::Read
                };
                match tokens.create(&create.database, privilege, create.expires, &create.description).await {
                    Ok(made) => {
                        eprintln!(
                            "token {} may {} database \"{}\"{}; it is shown once, store it now:",
                            made.record.id,
                            privilege,
                            made.record.database,
                            made.record.expires.map_or(String::new(), |at| format!(" until {}", time_text(at)))
                        );
                        println!("{}", made.secret);
                        if settings.http_basic_auth_username.as_deref().is_none_or(str::is_empty) {
                            eprintln!(
                                "warning: no user is configured (HTTP_BASIC_AUTH_USERNAME): a server with these \
                                 settings is open to everyone and asks for no token"
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            TokenAction::List { json } => match tokens.list().await {
                Ok(list) if *json => {
                    for token in &list {
                        let mut shown = serde_json::to_value(token).unwrap_or_default();
                        if let Some(object) = shown.as_object_mut() {
                            object.remove("hash");
                        }
                        println!("{shown}");
                    }
                    ExitCode::SUCCESS
                }
                Ok(list) => {
                    print_table(&list);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            TokenAction::Revoke { id } => match tokens.revoke(id).await {
                Ok(revoked) => {
                    eprintln!("revoked token {} of database \"{}\"", revoked.id, revoked.database);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_expiry;

    #[test]
    fn expiry_takes_durations_and_times_and_refuses_the_past() {
        let now = chrono::Utc::now().timestamp();
        assert!(parse_expiry("90d").is_ok_and(|at| (at - now - 90 * 86_400).abs() <= 2));
        assert!(parse_expiry("2999-01-01T00:00:00Z").is_ok());
        assert!(parse_expiry("2001-01-01T00:00:00Z").is_err());
        assert!(parse_expiry("0d").is_err());
        assert!(parse_expiry("5y").is_err());
        assert!(parse_expiry("soon").is_err());
    }
}
