//! HourglassDB: a timeseries database that speaks InfluxDB line protocol over
//! HTTP, the Postgres wire protocol and Arrow FlightSQL, and keeps its data as
//! Parquet files partitioned by date and hour.
//!
//! Modules, top to bottom (a module only uses the ones below it):
//! - [`server`]: the front doors (HTTP, Postgres, FlightSQL); protocol code only.
//! - [`ingest`]: parse, WAL, write buffer, persister.
//! - [`query`]: the DataFusion engine, its tables and functions.
//! - [`compactor`]: level merges, layer moves, retention, orphan removal
//!   (its merges read through a trait the server backs with the engine).
//! - [`last_values`]: the last row of every series, kept by the write path
//!   for the queries that need no more.
//! - [`catalog`]: schemas, the files of each hour partition, and tokens.
//! - [`access`]: what a client may do (everything, or one database at one privilege).
//! - [`storage`]: layers, Parquet, row order, crash-safe files.

pub mod access;
pub mod catalog;
pub mod cli;
pub mod compactor;
pub mod config;
pub mod errors;
pub mod faults;
pub mod fuzzing;
pub mod ingest;
pub mod last_values;
pub mod metrics;
pub mod query;
pub mod server;
pub mod storage;
#[cfg(test)]
mod testing;
