//! The integration tests: one binary, because each test binary links all of DataFusion.

mod bad_input;
mod catalog;
mod compaction;
mod config;
mod crash;
mod docs;
mod faults;
mod flight;
mod fuzz;
mod http_write;
mod last_values;
mod line_protocol;
mod mutation;
mod postgres;
mod postgres_wire;
mod query;
mod redis_server;
mod s3;
mod s3_faults;
mod scale_out;
mod soak;
mod sockets;
mod sqllogic;
mod support;
mod tokens;
mod tsbs;
