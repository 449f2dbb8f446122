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
    let text = tsbs::cpu_lines(scale, ticks, 1_451_606_400_000_000_000, 10_000_000_000, 7);
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
    let mut server = Command::new(env!("CARGO_BIN_EXE_hourglass"))
        .args(["--root", root.to_str().unwrap_or("data"), "--http-host", "127.0.0.1"])
        .args(["--http-port", &port.to_string(), "--pg-enable", "false", "--flightsql-enable", "false"])
        .env("LOGLEVEL", "warn")
        .stdout(Stdio::null())
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
        let started = Instant::now();
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let (client, bodies, next, url) = (client.clone(), Arc::clone(&bodies), Arc::clone(&next), url.clone());
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
                                503 => tokio::time::sleep(Duration::from_millis(10)).await,
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
            "ingest_load: {} rows, {workers} workers, batch {batch}, gzip {gzip}: {:.2} s, {:.0} rows/s acknowledged, {:.1} MB/s of line protocol",
            lines.len(),
            elapsed,
            n / elapsed,
            bytes as f64 / 1e6 / elapsed
        );
        let metrics = client.get(format!("http://127.0.0.1:{port}/metrics")).send().await.expect("metrics").text().await.expect("text");
        for line in metrics.lines().filter(|l| l.starts_with("hourglass_wal_fsyncs_total") || l.starts_with("hourglass_persisted")) {
            println!("  {line}");
        }
    });
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let _ = server.wait();
}
