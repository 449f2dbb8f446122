//! InfluxDB 3's own query call, which its clients (influxdb3-python, the Go
//! and Java clients) send instead of FlightSQL: a plain Flight DoGet whose
//! ticket is `{"database": ..., "sql_query": ..., "query_type": "sql",
//! "params": {...}}`.

use std::collections::HashMap;

use arrow_flight::Ticket;
use datafusion::common::ScalarValue;
use serde::Deserialize;
use tonic::{Request, Response, Status};

use super::statements::{call_of, result_stream, DoGetStream, SqlService};
use super::status::query_status;
use crate::query::params;

/// The body of InfluxDB 3's JSON ticket.
#[derive(Debug, Deserialize)]
struct InfluxTicket {
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    namespace_name: Option<String>,
    sql_query: String,
    #[serde(default)]
    query_type: Option<String>,
    #[serde(default)]
    params: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What an InfluxDB 3 JSON ticket asks for, checked.
#[derive(Debug)]
pub(crate) struct TicketQuery {
    /// The database the ticket names, if it names one.
    pub(crate) database: Option<String>,
    /// The SQL.
    pub(crate) sql: String,
    /// The named parameters, as values.
    pub(crate) params: HashMap<String, ScalarValue>,
}

impl TicketQuery {
    /// Reads a ticket's bytes: JSON of SQL (not InfluxQL), with names of one
    /// database that agree with each other, and parameters of JSON scalars.
    pub(crate) fn decode(bytes: &[u8]) -> Result<TicketQuery, Status> {
        let ticket: InfluxTicket = serde_json::from_slice(bytes).map_err(|e| {
            Status::invalid_argument(format!(
                "the ticket is not a FlightSQL command nor InfluxDB 3's JSON ticket \
                 {{\"database\": ..., \"sql_query\": ..., \"query_type\": \"sql\"}}: {e}"
            ))
        })?;
        match ticket.query_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("sql") => {}
            Some("influxql") => {
                return Err(Status::unimplemented(
                    "InfluxQL is not supported: send SQL (\"query_type\": \"sql\"); SELECT, WHERE time >= now() - \
                     interval '1 hour', GROUP BY and date_bin cover what InfluxQL queries do",
                ))
            }
            Some(other) => {
                return Err(Status::invalid_argument(format!("unknown query_type '{other}': use \"sql\"")));
            }
        }
        // The ticket's own names must agree with each other (and, in the
        // call, with the header's).
        let named = super::DatabaseChoice::new()
            .named("the ticket's database", ticket.database.as_deref())
            .named("the ticket's bucket", ticket.bucket.as_deref())
            .named("the ticket's namespace_name", ticket.namespace_name.as_deref());
        let database = if named.is_named() {
            Some(named.only().map_err(|e| Status::invalid_argument(e.to_string()))?)
        } else {
            None
        };
        let params = ticket
            .params
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| params::json_value(&name, value).map(|v| (name, v)))
            .collect::<Result<_, _>>()
            .map_err(query_status)?;
        Ok(TicketQuery { database, sql: ticket.sql_query, params })
    }
}

impl SqlService {
    /// Runs a JSON ticket's SQL and streams its result.
    pub(crate) async fn influx_ticket(&self, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let call = call_of(&request)?;
        let ticket = TicketQuery::decode(&request.get_ref().ticket)?;
        let database = call.database("ticket", ticket.database.as_deref())?;
        let plan = self.engine.plan(&database, &ticket.sql, &call.access).await.map_err(query_status)?;
        let plan = if ticket.params.is_empty() {
            plan
        } else {
            params::bind_named(plan, ticket.params).map_err(query_status)?
        };
        let output = self.engine.execute(&database, plan).await.map_err(query_status)?;
        // No FlightInfo names this ticket, so no client can cancel it; closing
        // the stream stops the query.
        Ok(Response::new(result_stream(output)))
    }
}
