//! Bad input on every front: random mutations of a corpus of valid requests
//! (tests/corpus/) sent to a running server, as a fuzzer would send them.
//! Each must succeed or get a client error (HTTP 4xx, a SQLSTATE outside
//! classes XX and 58, a gRPC code other than INTERNAL and UNKNOWN), never a
//! server error or a dropped connection, and the server must go on serving.
//!
//! `HOURGLASS_BAD_INPUT_ROUNDS` sets the mutations per target (default 150);
//! docs/operations.md records a longer run.

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{Any, CommandPreparedStatementQuery, ProstMessageExt};
use arrow_flight::Ticket;
use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use prost::Message;
use tonic::transport::Endpoint;
use tonic::Code;

use crate::mutation::{corpus, Mutator};
use crate::postgres::{connect, server_with_rows};
use crate::support::{client, free_port};

fn rounds() -> usize {
    std::env::var("HOURGLASS_BAD_INPUT_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(150)
}

/// A SQLSTATE a client can act on: not a server fault (XX) nor an I/O error (58).
fn client_sqlstate(error: &tokio_postgres::Error, input: &[u8]) {
    let Some(db) = error.as_db_error() else {
        panic!(
            "the connection failed rather than answer an error: {error:?}; input {:?}",
            String::from_utf8_lossy(input)
        )
    };
    let code = db.code().code();
    assert!(!code.starts_with("XX") && !code.starts_with("58"), "{code} {}: input {:?}", db.message(), input);
}

#[tokio::test(flavor = "multi_thread")]
async fn mutated_requests_on_every_front_get_client_errors_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let flight_port = free_port();
    let (server, pg_port) =
        server_with_rows(&dir.path().join("data"), &["--flightsql-port", &flight_port.to_string()], &[]).await;
    let mut mutator = Mutator(0x2545_F491_4F6C_DD1D);

    // COPY FROM STDIN in its three formats, on one connection that must survive every load.
    let pg = connect(pg_port, "d", "anyone", "").await.unwrap();
    let formats = [
        ("copy_text", "COPY cpu (host, usage, n, time) FROM STDIN", &b"\t\n\\N.-:eZT0123456789\r\x00\xff"[..]),
        (
            "copy_csv",
            "COPY cpu (host, usage, n, time) FROM STDIN WITH (FORMAT csv, HEADER true)",
            &b",\"\n\r.-:eZT0123456789 \x00\xff"[..],
        ),
        (
            "copy_binary",
            "COPY cpu (host, usage, n, time) FROM STDIN WITH (FORMAT binary)",
            &b"\x00\x01\x08\xff\x7f\x80"[..],
        ),
    ];
    for (name, statement, alphabet) in formats {
        for (path, seed) in corpus(name) {
            let sink = pg.copy_in::<_, Bytes>(statement).await.expect("COPY starts");
            futures::pin_mut!(sink);
            sink.send(Bytes::from(seed.clone())).await.expect("the seed is sent");
            let loaded = sink.finish().await.unwrap_or_else(|e| panic!("{}: the seed loads: {e:?}", path.display()));
            assert!(loaded > 0, "{}", path.display());
            for _ in 0..rounds() {
                let input = mutator.mutate(&seed, alphabet);
                let sink = pg.copy_in::<_, Bytes>(statement).await.expect("COPY starts");
                futures::pin_mut!(sink);
                let outcome = match sink.send(Bytes::from(input.clone())).await {
                    Ok(()) => sink.finish().await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(error) = outcome {
                    client_sqlstate(&error, &input);
                }
            }
        }
    }
    let rows: i64 = pg.query_one("SELECT count(*) FROM cpu", &[]).await.expect("the connection goes on").get(0);
    assert!(rows >= 3);

    // The HTTP query body, on both query endpoints.
    let http = client();
    for (_, seed) in corpus("query_body") {
        for round in 0..rounds() {
            let input = mutator.mutate(&seed, b"{}[]\":,\\ $'0123456789eE.-ntf");
            let path = if round % 2 == 0 { "/query?db=d" } else { "/api/v3/query_sql?db=d" };
            let response = http
                .post(server.url(path))
                .header("Content-Type", "application/json")
                .body(input.clone())
                .send()
                .await
                .expect("the server answers");
            let status = response.status().as_u16();
            assert!(status < 500, "{path} {status}: input {:?}", String::from_utf8_lossy(&input));
        }
    }

    // FlightSQL tickets: InfluxDB 3's JSON tickets, a real FlightSQL ticket and a
    // prepared statement's handle, mutated.
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{flight_port}")).unwrap().connect().await.unwrap();
    let mut flight = FlightSqlServiceClient::new(channel.clone());
    flight.set_header("database", "d");
    let info = flight.execute("SELECT host, usage FROM cpu".into(), None).await.expect("a query");
    let statement_ticket = info.endpoint[0].ticket.clone().expect("a ticket").ticket.to_vec();
    let handle = prepared_handle(&mut flight).await;
    let handle_ticket = CommandPreparedStatementQuery { prepared_statement_handle: handle }.as_any().encode_to_vec();
    let mut seeds: Vec<Vec<u8>> = corpus("flight_ticket").into_iter().map(|(_, seed)| seed).collect();
    seeds.push(statement_ticket);
    seeds.push(handle_ticket);
    for seed in &seeds {
        for _ in 0..rounds() {
            let input = mutator.mutate(seed, b"{}\":,$0123456789\x00\x01\x08\x12\x1a\x22\xff");
            let answer = flight.do_get(Ticket::new(input.clone())).await;
            let outcome = match answer {
                Ok(stream) => stream.try_collect::<Vec<_>>().await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(error) = outcome {
                let code = crate::flight::code(&error);
                assert!(
                    !matches!(code, Code::Internal | Code::Unknown | Code::Unavailable),
                    "{code:?} {error}: input {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }

    // Still serving, on every front.
    let health = http.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let fresh = connect(pg_port, "d", "anyone", "").await.expect("a new connection");
    assert!(fresh.query_one("SELECT count(*) FROM cpu", &[]).await.is_ok());
    assert!(flight.execute("SELECT 1".into(), None).await.is_ok());
    let log = server.log_text();
    assert!(!log.contains("panicked"), "no handler panicked:\n{log}");
}

/// The handle of a statement prepared through the raw action, as a client
/// keeps it between calls.
async fn prepared_handle(flight: &mut FlightSqlServiceClient<tonic::transport::Channel>) -> Bytes {
    use arrow_flight::sql::{ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult};
    let request = ActionCreatePreparedStatementRequest {
        query: "SELECT host FROM cpu WHERE usage > 1".into(),
        transaction_id: None,
    };
    let action = arrow_flight::Action::new("CreatePreparedStatement", request.as_any().encode_to_vec());
    let mut results = flight.do_action(action).await.expect("CreatePreparedStatement");
    let first = results.try_next().await.expect("a result").expect("one result");
    let any = Any::decode(first.body).expect("an Any");
    let result: ActionCreatePreparedStatementResult = any.unpack().expect("unpack").expect("the result");
    result.prepared_statement_handle
}

/// A FlightSQL bulk ingest whose Arrow IPC is damaged: bytes of its
/// record-batch message mutated, in plain and zstd-compressed encodings, and
/// a compressed buffer claiming 2^59 bytes. arrow's decoding panics on some
/// of these and would allocate the claimed length; each must be refused
/// with a client error, and the server must go on serving.
#[tokio::test(flavor = "multi_thread")]
async fn damaged_arrow_ipc_in_a_bulk_ingest_is_refused_and_the_server_goes_on() {
    use arrow::array::{Float64Array, StringArray, TimestampNanosecondArray};
    use arrow::ipc::writer::IpcWriteOptions;
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use arrow_flight::flight_service_client::FlightServiceClient;
    use arrow_flight::{FlightData, FlightDescriptor};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let flight_port = free_port();
    let server =
        crate::support::Server::start(&dir.path().join("data"), &["--flightsql-port", &flight_port.to_string()]);
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{flight_port}")).unwrap().connect().await.unwrap();
    let rows = 200;
    let batch = arrow::array::RecordBatch::try_from_iter([
        (
            "time",
            Arc::new(TimestampNanosecondArray::from(
                (0..rows).map(|i| 1_700_000_000_000_000_000 + i).collect::<Vec<_>>(),
            )) as arrow::array::ArrayRef,
        ),
        ("host", Arc::new(StringArray::from((0..rows).map(|i| format!("h{}", i % 3)).collect::<Vec<_>>())) as _),
        ("usage", Arc::new(Float64Array::from((0..rows).map(|i| i as f64).collect::<Vec<_>>())) as _),
    ])
    .unwrap();
    let command = crate::flight::ingest_command(
        "ipc",
        arrow_flight::sql::TableNotExistOption::Create,
        arrow_flight::sql::TableExistsOption::Append,
    );
    let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let mut encodings = Vec::new();
    for compression in [None, Some(arrow::ipc::CompressionType::ZSTD)] {
        let options = IpcWriteOptions::default().try_with_compression(compression).unwrap();
        let messages: Vec<FlightData> = FlightDataEncoderBuilder::new()
            .with_options(options)
            .with_flight_descriptor(Some(descriptor.clone()))
            .build(futures::stream::iter([Ok(batch.clone())]))
            .try_collect()
            .await
            .unwrap();
        encodings.push(messages);
    }
    let put = |messages: Vec<FlightData>| {
        let mut client = FlightServiceClient::new(channel.clone());
        async move {
            let mut request = tonic::Request::new(futures::stream::iter(messages));
            request.metadata_mut().insert("database", "d".parse().unwrap());
            match client.do_put(request).await {
                Ok(answer) => answer.into_inner().try_collect::<Vec<_>>().await.map(|_| ()),
                Err(status) => Err(status),
            }
        }
    };
    // The encodings as they are: both ingest.
    for messages in &encodings {
        put(messages.clone()).await.expect("an undamaged ingest is written");
    }
    let mut mutator = Mutator(0x1D0C_AFE5_0000_1234);
    let mut refused = 0;
    for round in 0..rounds() * 4 {
        let mut messages = encodings[round % 2].clone();
        // The last message is the record batch; its body or its header.
        let last = messages.last_mut().expect("a batch message");
        if round % 3 == 0 {
            last.data_header = mutator.mutate(&last.data_header, b"\x00\x01\x08\xff\x7f\x80").into();
        } else {
            last.data_body = mutator.mutate(&last.data_body, b"\x00\x01\x08\xff\x7f\x80\xfe").into();
        }
        if let Err(status) = put(messages).await {
            if status.code() == Code::Unknown && status.message().contains("transport error") {
                // The server answered before the client had sent its whole
                // stream, and the client saw the reset before the status:
                // acceptable if the server is still there.
                let health = client().get(server.url("/health")).send().await;
                let health = health
                    .unwrap_or_else(|e| panic!("round {round}: the server is gone ({e}):\n{}", server.log_text()));
                assert_eq!(health.status().as_u16(), 200, "round {round}: {}", server.log_text());
                refused += 1;
                continue;
            }
            assert!(
                !matches!(status.code(), Code::Internal | Code::Unknown | Code::Unavailable),
                "round {round}: {:?} {}\n{}",
                status.code(),
                status.message(),
                server.log_text()
            );
            refused += 1;
        }
    }
    // A compressed buffer whose length prefix claims 2^59 bytes.
    let mut messages = encodings[1].clone();
    let last = messages.last_mut().expect("a batch message");
    let mut body = last.data_body.to_vec();
    let at = body.windows(8).position(|w| w == (rows * 8).to_le_bytes()).expect("the times' buffer length");
    body[at..at + 8].copy_from_slice(&(1i64 << 59).to_le_bytes());
    last.data_body = body.into();
    let status = put(messages).await.expect_err("a claim of 2^59 bytes is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(refused > 10, "only {refused} damaged ingests were refused");

    // Still serving.
    let mut flight = FlightSqlServiceClient::new(channel.clone());
    flight.set_header("database", "d");
    assert!(flight.execute("SELECT count(*) FROM ipc".into(), None).await.is_ok());
    let health = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
