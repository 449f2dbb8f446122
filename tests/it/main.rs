//! The integration tests: one binary, because each test binary links all of DataFusion.

mod catalog;
mod compaction;
mod config;
mod crash;
mod docs;
mod flight;
mod http_write;
mod line_protocol;
mod postgres;
mod query;
mod s3;
mod sqllogic;
mod support;
