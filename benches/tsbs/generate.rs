//! `hourglass-tsbs generate`: TSBS cpu-only line protocol, written in parallel.
//!
//! The hosts are split between threads; each thread formats its hosts' lines for a
//! block of ticks, and the main thread writes the blocks tick by tick, so the file
//! is time-major whatever the number of threads, and the same for a seed.

use crate::model::{time_suffix, Host, DEFAULT_INTERVAL_NS, DEFAULT_START_NS};
use crate::progress::Progress;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;

/// Ticks each thread formats before handing them to the writer.
const TICKS_PER_BLOCK: usize = 30;

#[derive(clap::Args)]
pub(crate) struct GenerateArgs {
    /// Number of hosts (TSBS's --scale).
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// Hours of data, one line per host every 10 s.
    #[arg(long, default_value_t = 1.0)]
    hours: f64,
    /// Seed of every random choice and walk.
    #[arg(long, default_value_t = 123)]
    seed: u64,
    /// First timestamp, in nanoseconds since the epoch (TSBS's default is 2016-01-01T00:00:00Z).
    #[arg(long, default_value_t = DEFAULT_START_NS)]
    start_ns: i64,
    /// Threads formatting lines (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// The line protocol file to write; its manifest goes to `<out>.json`.
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn run(args: &GenerateArgs) -> Result<(), String> {
    if args.hosts == 0 || args.hours <= 0.0 {
        return Err("--hosts and --hours must be more than 0".into());
    }
    let ticks = (args.hours * 3600.0 / (DEFAULT_INTERVAL_NS as f64 / 1e9)).round() as usize;
    let rows = ticks as u64 * args.hosts as u64;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, args.hosts);

    let partial = args.out.with_extension("partial");
    let file = std::fs::File::create(&partial).map_err(crate::io_context(&partial, "cannot create"))?;
    let mut writer = std::io::BufWriter::with_capacity(4 << 20, file);
    let mut progress = Progress::new("generate", "rows", rows);

    let bytes = std::thread::scope(|scope| -> Result<u64, String> {
        let chunk = args.hosts.div_ceil(threads);
        let receivers: Vec<mpsc::Receiver<Vec<Vec<u8>>>> = (0..threads)
            .map(|t| {
                let (sender, receiver) = mpsc::sync_channel(2);
                let (first, last) = (t * chunk, ((t + 1) * chunk).min(args.hosts));
                let (seed, start_ns) = (args.seed, args.start_ns);
                scope.spawn(move || {
                    let mut hosts: Vec<Host> = (first..last).map(|id| Host::new(id, seed)).collect();
                    let line_bytes = 360 * hosts.len();
                    for block_start in (0..ticks).step_by(TICKS_PER_BLOCK) {
                        let block: Vec<Vec<u8>> = (block_start..(block_start + TICKS_PER_BLOCK).min(ticks))
                            .map(|tick| {
                                let time = time_suffix(start_ns + tick as i64 * DEFAULT_INTERVAL_NS);
                                let mut out = Vec::with_capacity(line_bytes);
                                for host in &mut hosts {
                                    host.write_line(&time, &mut out);
                                }
                                out
                            })
                            .collect();
                        if sender.send(block).is_err() {
                            return; // the writer stopped on an error
                        }
                    }
                });
                receiver
            })
            .collect();
        let (mut bytes, mut done) = (0u64, 0u64);
        for block_start in (0..ticks).step_by(TICKS_PER_BLOCK) {
            let blocks: Vec<Vec<Vec<u8>>> = receivers
                .iter()
                .map(|r| r.recv().map_err(|_| "a generator thread stopped".to_string()))
                .collect::<Result<_, _>>()?;
            let block_ticks = (TICKS_PER_BLOCK).min(ticks - block_start);
            for tick in 0..block_ticks {
                for part in &blocks {
                    writer.write_all(&part[tick]).map_err(crate::io_context(&partial, "cannot write"))?;
                    bytes += part[tick].len() as u64;
                }
            }
            done += (block_ticks * args.hosts) as u64;
            progress.update(done);
        }
        Ok(bytes)
    })?;
    writer.flush().map_err(crate::io_context(&partial, "cannot write"))?;
    drop(writer);
    progress.finish(rows);
    std::fs::rename(&partial, &args.out).map_err(crate::io_context(&args.out, "cannot rename to"))?;

    let end_ns = args.start_ns + ticks as i64 * DEFAULT_INTERVAL_NS;
    let manifest = format!(
        "{{\"generator\":\"hourglass-tsbs 1\",\"use_case\":\"devops cpu-only\",\"hosts\":{},\"hours\":{},\
         \"seed\":{},\"start_ns\":{},\"end_ns\":{},\"interval_ns\":{},\"rows\":{},\"bytes\":{}}}\n",
        args.hosts, args.hours, args.seed, args.start_ns, end_ns, DEFAULT_INTERVAL_NS, rows, bytes
    );
    let manifest_path = PathBuf::from(format!("{}.json", args.out.display()));
    std::fs::write(&manifest_path, manifest).map_err(crate::io_context(&manifest_path, "cannot write"))?;
    Ok(())
}
