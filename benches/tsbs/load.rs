//! `hourglass-tsbs load`: a line protocol file sent to an HTTP write endpoint by
//! concurrent keep-alive workers, the way `tsbs_load_influx` does.
//!
//! The bodies are prepared before the clock starts: the file is cut into batches
//! of whole lines and, with `--gzip`, every batch is compressed. Plain bodies of a
//! file larger than `--max-memory-bytes` are read from the file (the page cache,
//! warmed by the cutting pass) by each worker as it sends them.

use crate::http::{Connection, Endpoint};
use crate::progress::{human, Progress};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub(crate) struct LoadArgs {
    /// The write endpoint, for example http://127.0.0.1:7971/write?db=benchmark
    /// (HourglassDB, InfluxDB 1.x) or http://127.0.0.1:7971/api/v3/write_lp?db=benchmark.
    #[arg(long)]
    url: String,
    /// The line protocol file (from `hourglass-tsbs generate`).
    #[arg(long)]
    file: PathBuf,
    /// Concurrent connections, each sending one batch at a time.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Send every body gzipped (Content-Encoding: gzip), compressed before the clock starts.
    #[arg(long)]
    gzip: bool,
    /// Extra request header, `Name: value` (for example an Authorization header); repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Plain files up to this size are read into memory before the clock starts.
    #[arg(long, default_value_t = 4 << 30)]
    max_memory_bytes: u64,
}

/// A batch: where its lines are in the file and how many there are.
struct Batch {
    offset: u64,
    len: usize,
    lines: u64,
}

/// What the workers count while they send.
#[derive(Default)]
struct Counters {
    next: AtomicUsize,
    rows_acknowledged: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    abort: AtomicBool,
    workers_done: AtomicUsize,
}

impl Counters {
    fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(message);
        }
    }
}

/// The bodies, ready to send.
enum Bodies {
    /// The whole file, or every batch gzipped.
    InMemory(Vec<Vec<u8>>),
    /// Read from the file as they are sent.
    FromFile(std::fs::File),
}

pub(crate) fn run(args: &LoadArgs) -> Result<(), String> {
    let endpoint = Endpoint::parse(&args.url)?;
    if args.workers == 0 || args.batch == 0 {
        return Err("--workers and --batch must be more than 0".into());
    }
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| format!("--header {h:?} is not `Name: value`"))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let preparing = Instant::now();
    let (batches, whole) = cut(&args.file, args.batch, args.max_memory_bytes)?;
    let rows: u64 = batches.iter().map(|b| b.lines).sum();
    let file_bytes: u64 = batches.iter().map(|b| b.len as u64).sum();
    let bodies = match (args.gzip, whole) {
        (true, Some(whole)) => {
            Bodies::InMemory(compress(&batches, |b| Ok(whole[b.offset as usize..][..b.len].to_vec()))?)
        }
        (true, None) => {
            let file = std::fs::File::open(&args.file).map_err(crate::io_context(&args.file, "cannot open"))?;
            Bodies::InMemory(compress(&batches, |b| read_batch(&file, b))?)
        }
        (false, Some(whole)) => Bodies::InMemory(vec![whole]),
        (false, None) => {
            Bodies::FromFile(std::fs::File::open(&args.file).map_err(crate::io_context(&args.file, "cannot open"))?)
        }
    };
    let body_bytes: u64 = match (&bodies, args.gzip) {
        (Bodies::InMemory(gz), true) => gz.iter().map(|b| b.len() as u64).sum(),
        _ => file_bytes,
    };
    let prepare_seconds = preparing.elapsed().as_secs_f64();

    let counters = Counters::default();
    let mut progress = Progress::new("load", "rows", rows);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.workers {
            scope.spawn(|| {
                worker(&endpoint, &headers, &batches, &bodies, args.gzip, &counters);
                counters.workers_done.fetch_add(1, Ordering::Relaxed);
            });
        }
        while counters.workers_done.load(Ordering::Relaxed) < args.workers {
            progress.update(counters.rows_acknowledged.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let acknowledged = counters.rows_acknowledged.load(Ordering::Relaxed);
    progress.finish(acknowledged);
    let errors = counters.errors.load(Ordering::Relaxed);
    let first_error = counters.first_error.lock().ok().and_then(|e| e.clone());
    let report = serde_json::json!({
        "url": args.url,
        "file": args.file,
        "workers": args.workers,
        "batch": args.batch,
        "gzip": args.gzip,
        "rows": rows,
        "rows_acknowledged": acknowledged,
        "requests": counters.requests.load(Ordering::Relaxed),
        "seconds": seconds,
        "rows_per_s": acknowledged as f64 / seconds,
        "line_protocol_bytes": file_bytes,
        "body_bytes": body_bytes,
        "retries": counters.retries.load(Ordering::Relaxed),
        "errors": errors,
        "first_error": first_error,
        "prepare_seconds": prepare_seconds,
    });
    println!("{report}");
    eprintln!(
        "load: {} of {} rows acknowledged in {seconds:.1} s, {} rows/s; {} retries, {errors} errors",
        human(acknowledged as f64),
        human(rows as f64),
        human(acknowledged as f64 / seconds),
        counters.retries.load(Ordering::Relaxed),
    );
    if errors > 0 || acknowledged != rows {
        return Err(format!(
            "{} rows were not acknowledged; first error: {}",
            rows - acknowledged,
            first_error.as_deref().unwrap_or("none")
        ));
    }
    Ok(())
}

/// Cuts the file into batches of `batch` lines; returns its bytes too when it fits
/// in `max_memory`. A last line without a newline is a batch's end all the same.
fn cut(path: &std::path::Path, batch: usize, max_memory: u64) -> Result<(Vec<Batch>, Option<Vec<u8>>), String> {
    let mut file = std::fs::File::open(path).map_err(crate::io_context(path, "cannot open"))?;
    let size = file.metadata().map_err(crate::io_context(path, "cannot read"))?.len();
    let keep = size <= max_memory;
    let mut whole = if keep { Vec::with_capacity(size as usize) } else { Vec::new() };
    let mut batches = Vec::new();
    let mut progress = Progress::new("prepare", "bytes", size);
    let mut buffer = vec![0u8; 8 << 20];
    let (mut offset, mut batch_start, mut lines) = (0u64, 0u64, 0usize);
    let mut last_byte = None;
    loop {
        let n = file.read(&mut buffer).map_err(crate::io_context(path, "cannot read"))?;
        if n == 0 {
            break;
        }
        let chunk = &buffer[..n];
        last_byte = chunk.last().copied();
        if keep {
            whole.extend_from_slice(chunk);
        }
        for newline in memchr::memchr_iter(b'\n', chunk) {
            lines += 1;
            if lines == batch {
                let end = offset + newline as u64 + 1;
                batches.push(Batch { offset: batch_start, len: (end - batch_start) as usize, lines: lines as u64 });
                batch_start = end;
                lines = 0;
            }
        }
        offset += n as u64;
        progress.update(offset);
    }
    if offset > batch_start {
        let unterminated = u64::from(last_byte != Some(b'\n'));
        batches.push(Batch {
            offset: batch_start,
            len: (offset - batch_start) as usize,
            lines: lines as u64 + unterminated,
        });
    }
    progress.finish(offset);
    Ok((batches, keep.then_some(whole)))
}

fn read_batch(file: &std::fs::File, batch: &Batch) -> Result<Vec<u8>, String> {
    let mut body = vec![0; batch.len];
    file.read_exact_at(&mut body, batch.offset).map_err(|e| format!("cannot read the file: {e}"))?;
    Ok(body)
}

/// Gzips every batch, on every CPU.
fn compress(
    batches: &[Batch],
    read: impl Fn(&Batch) -> Result<Vec<u8>, String> + Sync,
) -> Result<Vec<Vec<u8>>, String> {
    use std::io::Write;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let total: u64 = batches.iter().map(|b| b.len as u64).sum();
    let mut progress = Progress::new("gzip", "bytes", total);
    let results: Vec<Mutex<Option<Vec<u8>>>> = batches.iter().map(|_| Mutex::new(None)).collect();
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(i) else { return };
                let compressed = read(batch).and_then(|body| {
                    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    encoder.write_all(&body).and_then(|()| encoder.finish()).map_err(|e| format!("gzip: {e}"))
                });
                match compressed {
                    Ok(body) => {
                        if let Ok(mut slot) = results[i].lock() {
                            *slot = Some(body);
                        }
                        done.fetch_add(batch.len as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
        while next.load(Ordering::Relaxed) < batches.len() + threads {
            progress.update(done.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
            if failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                break;
            }
        }
    });
    if let Some(error) = failure.into_inner().ok().flatten() {
        return Err(error);
    }
    progress.finish(total);
    results
        .into_iter()
        .map(|slot| slot.into_inner().ok().flatten().ok_or_else(|| "a batch was not compressed".to_string()))
        .collect()
}

/// Sends batches until none is left: a 2xx acknowledges the batch's rows; 503 and
/// 429 are retried after a growing pause; any other answer is an error and the
/// batch is not sent again.
fn worker(
    endpoint: &Endpoint,
    headers: &[(String, String)],
    batches: &[Batch],
    bodies: &Bodies,
    gzip: bool,
    counters: &Counters,
) {
    let mut connection = Connection::new(endpoint.clone(), headers);
    let mut buffer = Vec::new();
    let mut broken_connections = 0;
    loop {
        let i = counters.next.fetch_add(1, Ordering::Relaxed);
        let Some(batch) = batches.get(i) else { return };
        if counters.abort.load(Ordering::Relaxed) {
            return;
        }
        let body: &[u8] = match bodies {
            Bodies::InMemory(all) if gzip => &all[i],
            Bodies::InMemory(all) => &all[0][batch.offset as usize..][..batch.len],
            Bodies::FromFile(file) => {
                buffer.resize(batch.len, 0);
                if let Err(e) = file.read_exact_at(&mut buffer, batch.offset) {
                    counters.error(format!("cannot read the file: {e}"));
                    counters.abort.store(true, Ordering::Relaxed);
                    return;
                }
                &buffer
            }
        };
        let mut pause = Duration::from_millis(10);
        loop {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            match connection.post(body, gzip) {
                Ok(response) if (200..300).contains(&response.status) => {
                    counters.rows_acknowledged.fetch_add(batch.lines, Ordering::Relaxed);
                    broken_connections = 0;
                    break;
                }
                Ok(response) if response.status == 503 || response.status == 429 => {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    let asked = Duration::from_secs(response.retry_after_s.unwrap_or(1));
                    std::thread::sleep(pause.min(asked));
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Ok(response) => {
                    let text = String::from_utf8_lossy(&response.body);
                    counters.error(format!("HTTP {}: {}", response.status, text.chars().take(500).collect::<String>()));
                    break;
                }
                Err(e) => {
                    broken_connections += 1;
                    if broken_connections > 5 {
                        counters.error(format!("the connection to {} failed: {e}", endpoint.address));
                        counters.abort.store(true, Ordering::Relaxed);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
