//! Durability: the real binary is killed with SIGKILL in the middle of a stream
//! of writes, restarted, and every acknowledged row must be there exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{client, table_rows, Server};

const WRITERS: usize = 4;
const ROUNDS: usize = 8;
const ROWS_PER_ROUND: usize = 7_000;
const LINES_PER_REQUEST: usize = 250;
/// 2023-11-14T22:13:20Z in milliseconds.
const START_MS: i64 = 1_700_000_000_000;
/// Ten seconds between a writer's lines: a request spans most of an hour, so a
/// snapshot holds many hour partitions and a kill can land between their commits.
const STEP_MS: i64 = 10_000;

/// Streams writes until the server stops answering; records what was acknowledged.
async fn writer(
    url: String,
    id: usize,
    next: Arc<AtomicUsize>,
    acked: Arc<Mutex<BTreeSet<(usize, i64)>>>,
    stop: Arc<AtomicBool>,
) {
    let http = client();
    while !stop.load(Ordering::Relaxed) {
        let first = next.fetch_add(LINES_PER_REQUEST, Ordering::Relaxed);
        let keys: Vec<i64> = (first..first + LINES_PER_REQUEST).map(|n| START_MS + n as i64 * STEP_MS).collect();
        let body: String =
            keys.iter().map(|ms| format!("crash,writer=w{id} v={ms}i,f=1.5 {ms}\n")).collect::<Vec<_>>().concat();
        match http.post(&url).body(body).send().await {
            Ok(response) if response.status().as_u16() == 204 => {
                acked.lock().unwrap().extend(keys.iter().map(|&ms| (id, ms)));
            }
            Ok(response) if response.status().as_u16() == 503 => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_row_survives_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    // Persist often, so kills land before, during and after persistence.
    let mut server = Server::start(&root, &["--save-timeout-s", "0.05"]);
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let counters: Vec<Arc<AtomicUsize>> = (0..WRITERS).map(|_| Arc::new(AtomicUsize::new(0))).collect();

    for round in 1..=ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let url = server.url("/write?db=crashdb&precision=ms");
        let tasks: Vec<_> = (0..WRITERS)
            .map(|id| {
                tokio::spawn(writer(url.clone(), id, Arc::clone(&counters[id]), Arc::clone(&acked), Arc::clone(&stop)))
            })
            .collect();
        let target = round * ROWS_PER_ROUND;
        let reached = tokio::time::timeout(Duration::from_secs(60), async {
            while acked.lock().unwrap().len() < target {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(reached.is_ok(), "writers stalled at {} rows:\n{}", acked.lock().unwrap().len(), server.log_text());
        // Right after a batch of 204s, with other requests in flight.
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        server.restart();
    }
    let status = server.terminate();
    assert!(status.success(), "exit {status}:\n{}", server.log_text());

    let acked = acked.lock().unwrap().clone();
    let mut stored: BTreeMap<(usize, i64), usize> = BTreeMap::new();
    for row in table_rows(&root, "crashdb", "crash") {
        let writer: usize = row["writer"].trim_start_matches('w').parse().unwrap();
        let ms: i64 = row["v"].parse().unwrap();
        assert_eq!(row["f"], "1.5");
        *stored.entry((writer, ms)).or_default() += 1;
    }
    let missing: Vec<_> = acked.iter().filter(|k| !stored.contains_key(k)).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged rows lost, e.g. {missing:?}",
        acked.iter().filter(|k| !stored.contains_key(k)).count()
    );
    let duplicated: Vec<_> = stored.iter().filter(|(_, &n)| n > 1).take(10).collect();
    assert!(duplicated.is_empty(), "rows stored more than once: {duplicated:?}");
    assert!(acked.len() >= ROUNDS * ROWS_PER_ROUND, "the test acknowledged {} rows", acked.len());
    let log = server.log_text();
    assert!(log.contains("rows_replayed="), "restarts replayed the WAL:\n{log}");
    for line in log.lines().filter(|l| l.contains("WAL replayed") || l.contains("torn")) {
        eprintln!("{line}");
    }
    eprintln!("acknowledged {} rows, stored {}", acked.len(), stored.len());
}

fn wal_segments(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segments: Vec<_> = std::fs::read_dir(root.join("_wal")).unwrap().flatten().map(|e| e.path()).collect();
    segments.sort();
    segments
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_record_at_the_end_of_the_wal_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600"]);
    for i in 0..5 {
        let (status, _) =
            crate::support::post(&server.url("/write?db=d&precision=s"), format!("m v={i} {}", 1_700_000_000 + i))
                .await;
        assert_eq!(status, 204);
    }
    server.kill9();
    // A power cut in the middle of the last record: drop its last bytes.
    let segment = wal_segments(&root).pop().unwrap();
    let length = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(length - 7).unwrap();
    server.restart();
    assert!(server.terminate().success());
    let values: Vec<String> = table_rows(&root, "d", "m").iter().map(|r| r["v"].clone()).collect();
    assert_eq!(values, ["0.0", "1.0", "2.0", "3.0"]);
    assert!(server.log_text().contains("cutting off a torn tail"), "{}", server.log_text());
    let saved: Vec<_> = std::fs::read_dir(root.join("_wal"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
        .collect();
    assert_eq!(saved.len(), 1, "the cut bytes are kept beside the segment");
    assert!(saved[0].metadata().unwrap().len() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_record_followed_by_good_ones_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600"]);
    for i in 0..3 {
        let body = format!("m v={i} {}", 1_700_000_000 + i);
        assert_eq!(crate::support::post(&server.url("/write?db=d&precision=s"), body).await.0, 204);
    }
    server.kill9();
    // Flip a byte of the first record's payload in the last (and only)
    // segment: past the segment header (8 bytes) and the record header (24).
    let segment = wal_segments(&root).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[8 + 24 + 4] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();

    let output = crate::support::command()
        .args(["--root", root.to_str().unwrap(), "--http-host", "127.0.0.1"])
        .args(["--http-port", &crate::support::free_port().to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("checksum mismatch, and a valid record follows"), "{stderr}");
    // Each write was acknowledged, so fsynced, before the next went in.
    assert!(stderr.contains("were durable when it was written"), "{stderr}");
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "the segment is left as it was");
}

#[tokio::test(flavor = "multi_thread")]
async fn corruption_inside_the_wal_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    // Tiny segments: every write closes its segment.
    let mut server = Server::start(&root, &["--save-timeout-s", "3600", "--wal-segment-bytes", "16"]);
    assert_eq!(crate::support::post(&server.url("/write?db=d"), "m v=1 1").await.0, 204);
    assert_eq!(crate::support::post(&server.url("/write?db=d"), "m v=2 2").await.0, 204);
    server.kill9();
    let segments = wal_segments(&root);
    // Two full segments; the empty next one may or may not exist yet when the
    // process dies (the WAL opens it after acknowledging).
    assert!(segments.len() >= 2, "two full segments: {segments:?}");
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segments[0], bytes).unwrap();

    let output = crate::support::command()
        .args(["--root", root.to_str().unwrap(), "--http-host", "127.0.0.1"])
        .args(["--http-port", &crate::support::free_port().to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let segment_name = segments[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(stderr.contains(&segment_name) && stderr.contains("is corrupt"), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
}

/// The `kill -9` cycles script (tests/python/crash_cycles.py), a few cycles
/// of it: writers on all three fronts at once (HTTP line protocol, Postgres
/// COPY, FlightSQL ingest), SIGKILL at random moments while the server
/// persists and merges, a restart, and every acknowledged key compared with
/// what is there, and after the last cycle every key in the listed Parquet
/// files counted (no row twice). docs/operations.md has longer runs.
#[test]
fn kill_9_cycles_with_writers_on_every_front_lose_and_duplicate_nothing() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/crash_cycles.py");
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(crate::support::test_python())
        .arg(script)
        .arg("--binary")
        .arg(crate::support::binary())
        .args(["--cycles", "3", "--seed", "17", "--max-life-s", "2"])
        .arg("--root")
        .arg(dir.path())
        .output()
        .expect("run crash_cycles.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let cycles: Vec<&str> = stdout.lines().filter(|l| l.starts_with("cycle ")).collect();
    assert_eq!(cycles.len(), 3, "{stdout}");
    // Every front had rows acknowledged, so the count covers all three.
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.contains("lost 0, duplicated 0"), "{stdout}");
    for front in ["http", "copy", "flight"] {
        let acknowledged = cycles[2]
            .split(&format!("{front} "))
            .nth(1)
            .map(|rest| rest.chars().take_while(|c| c.is_ascii_digit() || *c == ',').filter(char::is_ascii_digit))
            .and_then(|digits| digits.collect::<String>().parse::<u64>().ok());
        assert!(acknowledged.is_some_and(|n| n > 0), "no {front} rows were acknowledged:\n{stdout}");
    }
}
