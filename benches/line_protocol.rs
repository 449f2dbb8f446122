//! The line protocol parser on TSBS `cpu` lines: parse into columnar builders and
//! finish the Arrow batches. Target: at least 1.5 M lines per second per core.
//!
//! Run: `cargo bench --bench line_protocol`.

mod tsbs;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hourglassdb::ingest::line_protocol::{LineProtocolParser, NoSchemas, ParseOptions, Precision};

fn options() -> ParseOptions {
    ParseOptions {
        precision: Precision::Nanosecond,
        default_time_ns: 0,
        max_line_bytes: 1 << 20,
        max_columns_per_table: 1000,
    }
}

fn bench_tsbs_cpu(c: &mut Criterion) {
    // A TSBS load request: 5,000 lines, as tsbs_load sends them (4,000 hosts per tick).
    let body = tsbs::cpu_lines(4000, 2, tsbs::DEFAULT_START_NS, tsbs::DEFAULT_INTERVAL_NS, 42);
    let body: String = body.lines().take(5000).map(|l| format!("{l}\n")).collect();
    let lines = body.lines().count() as u64;
    let bytes = body.len();
    let mut group = c.benchmark_group("line_protocol");
    group.throughput(Throughput::Elements(lines));
    group.bench_function(format!("tsbs_cpu_{lines}_lines_{}_bytes_per_line", bytes as u64 / lines), |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut parser = LineProtocolParser::new(&NoSchemas, options());
                parser.parse(body.as_bytes());
                assert_eq!(parser.accepted_lines() as u64, lines);
                parser.finish().expect("finish")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_tsbs_cpu);
criterion_main!(benches);
