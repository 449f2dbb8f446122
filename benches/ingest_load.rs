//! End-to-end write throughput: the real server, loaded over HTTP with TSBS `cpu`
//! batches from the same machine, every write acknowledged durably (fsynced WAL).
//!
//! Run: `cargo bench --profile quick-release --bench ingest_load`
//! Environment: LOAD_ROWS (default 2,000,000), LOAD_WORKERS (2), LOAD_BATCH (5000),
//! LOAD_SCALE (4000 hosts), LOAD_GZIP (0), LOAD_ROOT (a temporary directory).

mod tsbs;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(17971)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env_or("LOAD_ROWS", 2_000_000);
    let workers = env_or("LOAD_WORKERS", 2);
    let batch = env_or("LOAD_BATCH", 5000);
    let scale = env_or("LOAD_SCALE", 4000);
    let gzip = env_or("LOAD_GZIP", 0) == 1;

    let generated = Instant::now();
    let ticks = rows.div_ceil(scale);
    let text = tsbs::cpu_lines(scale, ticks, tsbs::DEFAULT_START_NS, tsbs::DEFAULT_INTERVAL_NS, 7);
    let lines: Vec<&str> = text.lines().take(rows).collect();
    let bodies: Vec<Vec<u8>> = lines
        .chunks(batch)
        .map(|chunk| {
            let mut body = chunk.join("\n").into_bytes();
            body.push(b'\n');
            if gzip {
                use std::io::Write;
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(&body).expect("gzip");
                body = encoder.finish().expect("gzip");
            }
            body
        })
        .collect();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    eprintln!(
        "generated {} rows in {} requests ({:.0} MB) in {:.1} s",
        lines.len(),
        bodies.len(),
        bytes as f64 / 1e6,
        generated.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::env::var("LOAD_ROOT").map(std::path::PathBuf::from).unwrap_or_else(|_| dir.path().join("data"));
    let port = free_port();
    let server = Command::new(env!("CARGO_BIN_EXE_hourglass"))
        .args(["--root", root.to_str().unwrap_or("data"), "--http-host", "127.0.0.1"])
        .args(["--http-port", &port.to_string(), "--pg-enable", "false", "--flightsql-enable", "false"])
        .env("LOGLEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hourglass");
    let url = format!("http://127.0.0.1:{port}/write?db=benchmark");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().expect("rt");
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let health = format!("http://127.0.0.1:{port}/health");
        while client.get(&health).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let bodies = Arc::new(bodies);
        let next = Arc::new(AtomicUsize::new(0));
        let retries = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let (client, bodies, next, url) = (client.clone(), Arc::clone(&bodies), Arc::clone(&next), url.clone());
                let retries = Arc::clone(&retries);
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else { return };
                        loop {
                            let mut request = client.post(&url).body(body.clone());
                            if gzip {
                                request = request.header("Content-Encoding", "gzip");
                            }
                            let status = request.send().await.expect("request").status().as_u16();
                            match status {
                                204 => break,
                                503 => {
                                    retries.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(10)).await
                                }
                                other => panic!("write answered {other}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("worker");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let n = lines.len() as f64;
        println!(
            "ingest_load: {} rows, {workers} workers, batch {batch}, gzip {gzip}: {:.2} s, {:.0} rows/s acknowledged, \
             {:.1} MB/s of line protocol, {} retries after 503",
            lines.len(),
            elapsed,
            n / elapsed,
            bytes as f64 / 1e6 / elapsed,
            retries.load(Ordering::Relaxed)
        );
        let metrics = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        for line in metrics.lines().filter(|l| {
            l.starts_with("hourglass_wal_fsyncs_total")
                || l.starts_with("hourglass_persisted_rows")
                || l.starts_with("hourglass_buffered_bytes ")
        }) {
            println!("  at the end of the load: {line}");
        }
    });
    // SIGTERM persists what is still buffered; time it.
    let stopping = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let output = server.wait_with_output().expect("server exit");
    println!("  shutdown (persisting the rest) took {:.2} s, exit {}", stopping.elapsed().as_secs_f64(), output.status);
    for line in String::from_utf8_lossy(&output.stderr).lines().filter(|l| l.contains("ERROR")) {
        println!("  server: {line}");
    }
    let (files, stored) = catalog_rows(&root.join("benchmark").join("cpu"));
    println!("  the catalog lists {files} files holding {stored} rows");
    assert_eq!(stored, lines.len() as u64, "every acknowledged row is in the files after shutdown");
}

/// Files and rows the catalog lists for a table (the sum of its metadata.json files).
fn catalog_rows(table: &std::path::Path) -> (u64, u64) {
    let (mut files, mut rows) = (0, 0);
    for date in std::fs::read_dir(table).into_iter().flatten().flatten() {
        for hour in std::fs::read_dir(date.path()).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(hour.path().join("metadata.json")) else { continue };
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            rows += json["row_count"].as_u64().unwrap_or(0);
            files += json["files"].as_array().map_or(0, |f| f.len() as u64);
        }
    }
    (files, rows)
}
