//! S3 layers against a real S3 server: SeaweedFS on loopback, requests signed and
//! checked (see `SeaweedFs` in support.rs; tests/run installs weed).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    block_on_thread, client, json_of, listed_files, post, query_results, wait_for, JsonBody, SeaweedFs, Server,
};

#[tokio::test(flavor = "multi_thread")]
async fn rows_written_to_an_s3_layer_are_stored_there_and_queried_back() {
    let dir = tempfile::tempdir().unwrap();
    let seaweed = SeaweedFs::start(&dir.path().join("seaweedfs"));
    // The server signs with the identity's keys; anything else is refused.
    let wrong = seaweed.builder().with_secret_access_key("not-the-secret").build().unwrap();
    let refused = block_on_thread(|| async move { object_store::ObjectStore::list_with_delimiter(&wrong, None).await });
    assert!(refused.is_err(), "a wrong secret is refused: {refused:?}");

    let root = dir.path().join("data");
    let layer = seaweed.layer_flag("s3", "hg/prefix");
    let mut server = Server::start(&root, &["--layer", &layer, "--save-timeout-s", "1"]);
    let body = "cpu,host=a usage=1.5 1700000000\ncpu,host=b usage=2.5,cores=4i 1700000001\n";
    assert_eq!(post(&server.url("/write?db=d&precision=s"), body).await, (204, String::new()));

    // Persisted within the save timeout: the catalog, on local disk, lists the file...
    assert!(
        wait_for(Duration::from_secs(30), || !listed_files(&root, "d", "cpu").is_empty()),
        "no file persisted:\n{}",
        server.log_text()
    );
    let files = listed_files(&root, "d", "cpu");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].row_count, 2);
    assert!(files[0].path.starts_with("date=2023-11-14/hour=22/") && files[0].path.ends_with(".parquet"), "{files:?}");
    // ...and the Parquet file is in the bucket under the layer's prefix, not on disk.
    assert_eq!(seaweed.keys("hg/prefix").await, [format!("hg/prefix/d/cpu/{}", files[0].path)]);
    assert!(!root.join("d").join("cpu").join(&files[0].path).exists());

    // After a restart the write buffer is empty: the rows come from S3.
    assert!(server.terminate().success());
    server.restart();
    let response = client()
        .post(server.url("/query?db=d"))
        .header("Content-Type", "application/json")
        .body(json!({"query": "SELECT host, usage, cores, time FROM cpu ORDER BY host"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let rows: Vec<Value> = answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|r| json!([r["host"], r["usage"], r["cores"]]))
        .collect();
    assert_eq!(rows, [json!(["a", 1.5, null]), json!(["b", 2.5, 4])], "{answer}");
    assert_eq!(seaweed.keys("hg/prefix").await.len(), 1, "the restart wrote no other file");
}

/// `(layer, path)` of every file the catalog lists for a table.
fn catalog_layers(root: &std::path::Path, database: &str, table: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let table_dir = root.join(database).join(table);
    for date in std::fs::read_dir(&table_dir).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
        for hour in std::fs::read_dir(date.path()).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(hour.path().join("metadata.json")) else { continue };
            let partition: Value = serde_json::from_str(&text).expect("metadata.json");
            for file in partition["files"].as_array().into_iter().flatten() {
                found.push((file["layer"].as_str().unwrap().to_owned(), file["path"].as_str().unwrap().to_owned()));
            }
        }
    }
    found.sort();
    found
}

async fn count(server: &Server, sql: &str) -> u64 {
    let rows = query_results(server, sql).await;
    rows.first().and_then(|r| r["n"].as_u64()).unwrap_or_else(|| panic!("{sql}: {rows:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_moves_from_disk_to_s3_when_its_ttl_passes_and_retention_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let seaweed = SeaweedFs::start(&dir.path().join("seaweedfs"));
    let root = dir.path().join("data");
    let local = format!("name=local,type=fs,url=file://{},ttl=2s", root.display());
    let remote = format!("{},ttl=8s", seaweed.layer_flag("s3", "cold"));
    let args = [
        "--layer",
        &local,
        "--layer",
        &remote,
        "--save-timeout-s",
        "0.3",
        "--merge-timeout-s",
        "0.5",
        "--file-grace-s",
        "1",
        "--query-timeout-s",
        "1",
    ];
    let server = Server::start(&root, &args);
    let body = "cpu,host=a usage=1.5 1700000000\ncpu,host=b usage=2.5 1700000001\n";
    assert_eq!(post(&server.url("/write?db=d&precision=s"), body).await, (204, String::new()));
    assert!(wait_for(Duration::from_secs(20), || !catalog_layers(&root, "d", "cpu").is_empty()));
    let (layer, path) = catalog_layers(&root, "d", "cpu").remove(0);
    assert_eq!(layer, "local");
    let local_file = root.join("d").join("cpu").join(&path);
    assert!(local_file.exists());

    // Two seconds on disk, then the background compactor moves it to S3.
    assert!(
        wait_for(Duration::from_secs(20), || catalog_layers(&root, "d", "cpu") == [("s3".to_owned(), path.clone())]),
        "not moved: {:?}\n{}",
        catalog_layers(&root, "d", "cpu"),
        server.log_text()
    );
    assert_eq!(seaweed.keys("cold").await, [format!("cold/d/cpu/{path}")]);
    assert_eq!(count(&server, "SELECT count(*) AS n FROM cpu").await, 2, "still queryable, now from S3");
    assert_eq!(count(&server, "SELECT count(*) AS n FROM cpu WHERE host = 'b' AND usage = 2.5").await, 1);
    // The copy on disk goes once the grace period is over.
    assert!(wait_for(Duration::from_secs(10), || !local_file.exists()), "the disk copy stayed");

    // Eight seconds on S3, the last layer: retention deletes it.
    assert!(
        wait_for(Duration::from_secs(30), || catalog_layers(&root, "d", "cpu").is_empty()),
        "not expired: {:?}\n{}",
        catalog_layers(&root, "d", "cpu"),
        server.log_text()
    );
    assert_eq!(count(&server, "SELECT count(*) AS n FROM cpu").await, 0, "expired rows are gone from queries");
    let mut gone = false;
    for _ in 0..100 {
        if seaweed.keys("cold").await.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the object stayed on S3: {:?}", seaweed.keys("cold").await);
    let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hourglass_layer_moves_total 1\n"), "{metrics}");
    assert!(metrics.contains("hourglass_files_expired_total 1\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_on_s3_merge_on_s3() {
    let dir = tempfile::tempdir().unwrap();
    let seaweed = SeaweedFs::start(&dir.path().join("seaweedfs"));
    let root = dir.path().join("data");
    let layer = seaweed.layer_flag("s3", "hot");
    let args =
        ["--layer", &layer, "--save-timeout-s", "0.3", "--no-merges", "--file-grace-s", "1", "--query-timeout-s", "1"];
    let server = Server::start(&root, &args);
    for round in 0..3 {
        let body = format!("cpu,host=a usage={round} 1700000000\ncpu,host=h{round} usage={round} 1700000001\n");
        assert_eq!(post(&server.url("/write?db=d&precision=s"), body).await, (204, String::new()));
        let want = round + 1;
        assert!(wait_for(Duration::from_secs(20), || catalog_layers(&root, "d", "cpu").len() == want));
    }
    assert_eq!(seaweed.keys("hot").await.len(), 3);
    let before = count(&server, "SELECT count(*) AS n FROM cpu").await;
    assert_eq!(before, 4, "host a's point once, three other series");

    let response = client().post(server.url("/admin/compact")).send().await;
    let text = match response {
        Ok(response) => response.text().await.unwrap(),
        Err(e) => panic!("{e}\n{}", server.log_text()),
    };
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["merges"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(report["merges"][0]["layer"], "s3");
    assert_eq!(report["merges"][0]["input_files"], 3);
    assert_eq!(report["merges"][0]["output_rows"], 4);
    let listed = catalog_layers(&root, "d", "cpu");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, "s3");
    assert_eq!(count(&server, "SELECT count(*) AS n FROM cpu").await, 4);
    assert_eq!(count(&server, "SELECT count(*) AS n FROM cpu WHERE host = 'a' AND usage = 2").await, 1);

    // After the grace period the inputs leave the bucket.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, text) = post(&server.url("/admin/compact"), "").await;
    assert_eq!(status, 200, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["files_deleted"], 3, "{report}");
    assert_eq!(seaweed.keys("hot").await, [format!("hot/d/cpu/{}", listed[0].1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_makes_the_server_unready_and_queries_answer_retry_later_on_every_front() {
    let dir = tempfile::tempdir().unwrap();
    let mut seaweed = SeaweedFs::start(&dir.path().join("seaweedfs"));
    let root = dir.path().join("data");
    let (pg, flight) = (crate::support::free_port(), crate::support::free_port());
    let layer = seaweed.layer_flag("s3", "outage");
    let server = Server::start(
        &root,
        &[
            "--layer",
            &layer,
            "--save-timeout-s",
            "1",
            "--pg-port",
            &pg.to_string(),
            "--flightsql-port",
            &flight.to_string(),
        ],
    );
    let body = "cpu,host=a usage=1.5 1700000000\ncpu,host=b usage=2.5 1700000001\n";
    assert_eq!(post(&server.url("/write?db=d&precision=s"), body).await.0, 204);
    assert!(wait_for(Duration::from_secs(30), || !listed_files(&root, "d", "cpu").is_empty()));
    // The rows are in the bucket only once the buffer has let them go.
    assert!(wait_for(Duration::from_secs(30), || {
        block_on_thread(|| async {
            let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
            metrics.lines().any(|l| l == "hourglass_buffered_bytes 0")
        })
    }));
    let ready = || async { client().get(server.url("/ready")).send().await.unwrap() };
    assert_eq!(ready().await.status().as_u16(), 200);

    seaweed.stop();
    let response = ready().await;
    assert_eq!(response.status().as_u16(), 503);
    let reason: Value = json_of(response).await;
    assert!(reason["checks"][0]["message"].as_str().is_some_and(|m| m.contains("'s3'")), "{reason}");
    let health = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200, "an outage of S3 is not the process's death");

    // A query that needs the files: "retry later" on every front, not the query's fault.
    let sql = "SELECT count(*) AS n FROM cpu";
    let response = client().post(server.url("/query?db=d")).json_body(&json!({ "query": sql })).send().await.unwrap();
    let (status, retry_after) = (response.status().as_u16(), response.headers().contains_key("retry-after"));
    assert_eq!(status, 503, "{}", response.text().await.unwrap_or_default());
    assert!(retry_after);
    let pg_client = crate::postgres::connect(pg, "d", "u", "").await.expect("connect over Postgres");
    let error = pg_client.simple_query(sql).await.unwrap_err();
    let code = error.code().map(|c| c.code().to_owned()).unwrap_or_default();
    assert!(code.starts_with("58"), "SQLSTATE {code}: {error:?}");
    let mut flight_client = arrow_flight::sql::client::FlightSqlServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{flight}")).unwrap().connect().await.unwrap(),
    );
    flight_client.set_header("database", "d");
    let outcome = async {
        let info = flight_client.execute(sql.to_owned(), None).await?;
        let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
        futures::TryStreamExt::try_collect::<Vec<_>>(flight_client.do_get(ticket).await?).await
    };
    let error = outcome.await.unwrap_err();
    assert_eq!(crate::flight::code(&error), tonic::Code::Unavailable, "{error}");

    seaweed.restart();
    assert!(
        wait_for(Duration::from_secs(60), || block_on_thread(|| async {
            client().get(server.url("/ready")).send().await.unwrap().status().as_u16() == 200
        })),
        "ready again once S3 answers"
    );
    assert_eq!(count(&server, sql).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_during_an_s3_outage_are_acknowledged_from_the_wal_and_stored_once_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut seaweed = SeaweedFs::start(&dir.path().join("seaweedfs"));
    let root = dir.path().join("data");
    let layer = seaweed.layer_flag("s3", "outage");
    let mut server = Server::start(&root, &["--layer", &layer, "--save-timeout-s", "1"]);
    assert_eq!(post(&server.url("/write?db=d&precision=s"), "cpu,k=first v=0 1700000000").await.0, 204);
    assert!(wait_for(Duration::from_secs(30), || !listed_files(&root, "d", "cpu").is_empty()));

    seaweed.stop();
    // Acknowledged from the WAL while the layer is down; the persists fail and are tried again.
    let batch =
        |b: usize| (0..100).map(|i| format!("cpu,k=b{b}r{i} v={i} {}\n", 1_700_000_000 + b)).collect::<String>();
    for b in 0..3 {
        let (status, text) = post(&server.url("/write?db=d&precision=s"), batch(b)).await;
        assert_eq!(status, 204, "{text}");
    }
    assert!(
        wait_for(Duration::from_secs(30), || server.log_text().matches("could not persist a partition").count() >= 2),
        "the persist is tried again while S3 is down:\n{}",
        server.log_text()
    );
    // A kill in the outage: the rows are in the WAL only, and replayed.
    server.kill9();
    server.restart();
    for b in 3..5 {
        let (status, text) = post(&server.url("/write?db=d&precision=s"), batch(b)).await;
        assert_eq!(status, 204, "{text}");
    }

    seaweed.restart();
    let stored = || listed_files(&root, "d", "cpu").iter().map(|f| f.row_count).sum::<u64>();
    assert!(
        wait_for(Duration::from_secs(60), || stored() == 501),
        "every acknowledged row is stored once S3 is back: {} of 501\n{}",
        stored(),
        server.log_text()
    );
    let rows = query_results(&server, "SELECT count(*) AS n, count(DISTINCT k) AS keys FROM cpu").await;
    assert_eq!(rows, [json!({"n": 501, "keys": 501})]);
    let files = listed_files(&root, "d", "cpu");
    let keys = seaweed.keys("outage").await;
    for file in &files {
        assert!(keys.contains(&format!("outage/d/cpu/{}", file.path)), "{} is in the bucket: {keys:?}", file.path);
    }
}
