//! S3 that answers badly rather than not at all: a proxy between the server
//! and SeaweedFS delays answers, answers 503 SlowDown, or cuts an upload or a
//! download in the middle, the faults a real S3 and the network to it give.
//! Writes are acknowledged from the WAL throughout, queries that cannot read
//! their files answer "retry later", uploads are retried, and when S3 answers
//! well again every acknowledged row is stored exactly once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{client, listed_files, post, query_results, wait_for, JsonBody, SeaweedFs, Server};

/// What the proxy does to the requests it is given from now on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Forwards every request and its answer as they are.
    None,
    /// Holds every answer back this long before forwarding it.
    Slow(Duration),
    /// Answers every request 503 SlowDown, as S3 does when throttling, without forwarding it.
    Unavailable,
    /// Forwards half of the body of the next this many uploads of a Parquet
    /// file (PUT or POST with a body), then closes both connections.
    CutUploads(u32),
    /// Forwards the next this many GETs of a Parquet file, then closes both
    /// connections after half of the first piece of the answer.
    CutDownloads(u32),
}

/// What the proxy has seen and done, for the test to check that a fault was met.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Every request, whatever was done with it.
    requests: u64,
    /// Requests answered 503 without being forwarded.
    answered_503: u64,
    /// Uploads of Parquet files cut off halfway.
    uploads_cut: u64,
    /// Answers to GETs of Parquet files cut off halfway.
    downloads_cut: u64,
}

/// The proxy's state, shared by the test and every connection.
struct Shared {
    fault: Fault,
    counts: Counts,
}

/// A proxy on a free loopback port in front of an S3 server, one request per
/// connection (it asks the server to close after each answer), so that each
/// request meets the fault set when it arrived.
struct FaultyS3 {
    port: u16,
    shared: Arc<Mutex<Shared>>,
    accept: tokio::task::JoinHandle<()>,
}

/// What to do with one request, decided when its head has arrived.
enum Plan {
    Forward { delay: Option<Duration>, cut_upload: bool, cut_download: bool },
    Answer503,
}

impl FaultyS3 {
    async fn start(upstream: SocketAddr) -> FaultyS3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the S3 proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let shared = Arc::new(Mutex::new(Shared { fault: Fault::None, counts: Counts::default() }));
        let accept = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                loop {
                    // A failed accept (a connection reset before it was taken) ends no more than it.
                    let Ok((client, _)) = listener.accept().await else { continue };
                    let shared = Arc::clone(&shared);
                    // A connection the fault cut ends with an error: that is the point.
                    tokio::spawn(async move { drop(serve(client, upstream, shared).await) });
                }
            }
        });
        FaultyS3 { port, shared, accept }
    }

    /// Sets what happens to requests from now on.
    fn set(&self, fault: Fault) {
        self.shared.lock().unwrap().fault = fault;
    }

    /// What the proxy has seen and done so far.
    fn counts(&self) -> Counts {
        self.shared.lock().unwrap().counts
    }
}

impl Drop for FaultyS3 {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Decides what to do with a request for `path` whose method is `method`
/// and which has a body or not, and counts it. Only transfers of Parquet
/// files are cut: listings and the like go through.
fn plan(shared: &Mutex<Shared>, method: &str, path: &str, has_body: bool) -> Plan {
    let parquet = path.split('?').next().is_some_and(|p| p.ends_with(".parquet"));
    let mut shared = shared.lock().unwrap();
    shared.counts.requests += 1;
    let forward = Plan::Forward { delay: None, cut_upload: false, cut_download: false };
    match shared.fault {
        Fault::None => forward,
        Fault::Slow(delay) => Plan::Forward { delay: Some(delay), cut_upload: false, cut_download: false },
        Fault::Unavailable => {
            shared.counts.answered_503 += 1;
            Plan::Answer503
        }
        Fault::CutUploads(left) if left > 0 && parquet && has_body && matches!(method, "PUT" | "POST") => {
            shared.fault = if left == 1 { Fault::None } else { Fault::CutUploads(left - 1) };
            shared.counts.uploads_cut += 1;
            Plan::Forward { delay: None, cut_upload: true, cut_download: false }
        }
        Fault::CutDownloads(left) if left > 0 && parquet && method == "GET" => {
            shared.fault = if left == 1 { Fault::None } else { Fault::CutDownloads(left - 1) };
            shared.counts.downloads_cut += 1;
            Plan::Forward { delay: None, cut_upload: false, cut_download: true }
        }
        Fault::CutUploads(_) | Fault::CutDownloads(_) => forward,
    }
}

/// Serves one request of `client`: reads its head, then answers or forwards it as planned.
async fn serve(mut client: TcpStream, upstream: SocketAddr, shared: Arc<Mutex<Shared>>) -> std::io::Result<()> {
    let (head, early_body) = read_head(&mut client).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut request_line = text.split(' ');
    let (method, path) = (request_line.next().unwrap_or_default(), request_line.next().unwrap_or_default());
    let content_length = header(&text, "content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    match plan(&shared, method, path, content_length > 0) {
        Plan::Answer503 => {
            // The body is read first, so the client sees the answer and not a reset.
            let mut rest = vec![0; content_length.saturating_sub(early_body.len())];
            client.read_exact(&mut rest).await?;
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                <Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            let answer = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(answer.as_bytes()).await
        }
        Plan::Forward { delay, cut_upload, cut_download } => {
            let mut server = TcpStream::connect(upstream).await?;
            server.write_all(&close_after_answer(&text)).await?;
            if cut_upload {
                let half = content_length / 2;
                let mut body = early_body;
                while body.len() < half {
                    let mut piece = [0; 8192];
                    let n = client.read(&mut piece).await?;
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&piece[..n]);
                }
                server.write_all(&body[..half.min(body.len())]).await?;
                return Ok(());
            }
            server.write_all(&early_body).await?;
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            // The rest of the body goes up while the answer comes down; the
            // exchange ends when the server closes, as it was asked to.
            let upload = tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let outcome = if cut_download {
                let mut piece = vec![0; 65536];
                let n = server_read.read(&mut piece).await?;
                client_write.write_all(&piece[..n / 2]).await
            } else {
                tokio::io::copy(&mut server_read, &mut client_write).await.map(drop)
            };
            upload.abort();
            outcome
        }
    }
}

/// Reads up to the blank line that ends a request's head; returns the head and
/// whatever of the body came with it.
async fn read_head(client: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buffer = Vec::new();
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = buffer.split_off(end + 4);
            return Ok((buffer, body));
        }
        if buffer.len() > 64 * 1024 {
            return Err(std::io::Error::other("a request head over 64 KiB"));
        }
        let mut piece = [0; 4096];
        let n = client.read(&mut piece).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&piece[..n]);
    }
}

/// The value of header `name` in a request head, if it has one.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The request head with `Connection: close`, so the server ends the
/// connection after its answer. The signature does not cover this header.
fn close_after_answer(head: &str) -> Vec<u8> {
    let mut lines: Vec<&str> =
        head.trim_end().split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
}

/// `(status, Retry-After present, body)` of `sql` over the HTTP query API.
async fn http_query(server: &Server, sql: &str) -> (u16, bool, String) {
    let response = client().post(server.url("/query?db=d")).json_body(&json!({ "query": sql })).send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    (status, retry_after, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_answering_503_slowly_or_cutting_transfers_short_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let seaweed = SeaweedFs::start(&dir.path().join("seaweedfs"));
    let proxy = FaultyS3::start(SocketAddr::from(([127, 0, 0, 1], seaweed.s3_port()))).await;
    let root = dir.path().join("data");
    let pg = crate::support::free_port();
    let layer = seaweed.layer_flag_at(proxy.port, "s3", "faulty");
    // No merges: the cut uploads and downloads are the persister's and the queries'.
    let server = Server::start(
        &root,
        &["--layer", &layer, "--save-timeout-s", "1", "--merge-timeout-s", "3600", "--pg-port", &pg.to_string()],
    );
    let stored = || listed_files(&root, "d", "cpu").iter().map(|f| f.row_count).sum::<u64>();
    let write = |batch: usize| {
        let url = server.url("/write?db=d&precision=s");
        let body =
            (0..100).map(|i| format!("cpu,k=b{batch}r{i} v={i} {}\n", 1_700_000_000 + batch)).collect::<String>();
        async move {
            let (status, text) = post(&url, body).await;
            assert_eq!(status, 204, "batch {batch}: {text}");
        }
    };
    write(0).await;
    assert!(wait_for(Duration::from_secs(30), || stored() == 100), "the first batch is stored");

    // 503 to everything: acknowledged from the WAL, and queries say retry later.
    proxy.set(Fault::Unavailable);
    write(1).await;
    write(2).await;
    let (status, retry_after, body) = http_query(&server, "SELECT count(*) AS n FROM cpu").await;
    assert_eq!((status, retry_after), (503, true), "{body}");
    let pg_client = crate::postgres::connect(pg, "d", "u", "").await.expect("connect over Postgres");
    let error = pg_client.simple_query("SELECT count(*) FROM cpu").await.unwrap_err();
    let code = error.code().map(|c| c.code().to_owned()).unwrap_or_default();
    assert_eq!(code, "58030", "{error:?}");
    assert!(
        wait_for(Duration::from_secs(30), || server.log_text().contains("could not persist a partition")),
        "a persist met the 503s:\n{}",
        server.log_text()
    );
    assert!(proxy.counts().answered_503 > 0);

    // Slow answers: everything works, later.
    proxy.set(Fault::Slow(Duration::from_millis(300)));
    assert!(wait_for(Duration::from_secs(60), || stored() == 300), "stored {} of 300 with slow answers", stored());
    assert_eq!(query_results(&server, "SELECT count(*) AS n FROM cpu").await, [json!({"n": 300})]);

    // Two uploads cut off halfway: the upload is tried again and stored once.
    proxy.set(Fault::CutUploads(2));
    write(3).await;
    assert!(wait_for(Duration::from_secs(60), || stored() == 400), "stored {} of 400", stored());
    assert_eq!(proxy.counts().uploads_cut, 2, "{:?}", proxy.counts());

    // Answers cut off halfway: a query either reads again and is right, or says retry later.
    proxy.set(Fault::CutDownloads(3));
    for _ in 0..30 {
        if proxy.counts().downloads_cut == 3 {
            break;
        }
        let (status, retry_after, body) = http_query(&server, "SELECT count(*) AS n, sum(v) AS s FROM cpu").await;
        match status {
            200 => assert!(body.contains(r#""n":400"#), "{body}"),
            503 => assert!(retry_after, "{body}"),
            _ => panic!("a cut download answered {status}: {body}"),
        }
    }
    assert_eq!(proxy.counts().downloads_cut, 3, "queries read from S3: {:?}", proxy.counts());

    proxy.set(Fault::None);
    write(4).await;
    assert!(wait_for(Duration::from_secs(60), || stored() == 500), "stored {} of 500", stored());
    let rows = query_results(&server, "SELECT count(*) AS n, count(DISTINCT k) AS keys FROM cpu").await;
    assert_eq!(rows, [json!({"n": 500, "keys": 500})]);
    let keys = seaweed.keys("faulty").await;
    for file in listed_files(&root, "d", "cpu") {
        assert!(keys.contains(&format!("faulty/d/cpu/{}", file.path)), "{} is in the bucket: {keys:?}", file.path);
    }
}
