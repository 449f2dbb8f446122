//! TSBS `devops cpu-only` data: the data model of TSBS's
//! `pkg/data/usecases/devops` (one `cpu` row per host per tick; 10 tags fixed per
//! host; 10 integer fields, each a random walk of N(0, 1) steps clamped to
//! [0, 100] and truncated; time-major order), with our own RNG. Statistically the
//! same as TSBS's output, not byte-identical (that would need a port of Go's
//! `math/rand`).
//!
//! Each host has its own RNG, seeded from the run's seed and the host's number, so
//! a file is the same whichever way the hosts are split between threads.
//!
//! Shared by the criterion benches (`mod tsbs;`) and the `hourglass-tsbs` tool.

/// Regions and their datacenters, as TSBS lists them.
const REGIONS: &[(&str, &[&str])] = &[
    ("us-east-1", &["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"]),
    ("us-west-1", &["us-west-1a", "us-west-1b"]),
    ("us-west-2", &["us-west-2a", "us-west-2b", "us-west-2c"]),
    ("eu-west-1", &["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
    ("eu-central-1", &["eu-central-1a", "eu-central-1b"]),
    ("ap-southeast-1", &["ap-southeast-1a", "ap-southeast-1b"]),
    ("ap-southeast-2", &["ap-southeast-2a", "ap-southeast-2b"]),
    ("ap-northeast-1", &["ap-northeast-1a", "ap-northeast-1c"]),
    ("sa-east-1", &["sa-east-1a", "sa-east-1b", "sa-east-1c"]),
];
const OS: &[&str] = &["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCH: &[&str] = &["x64", "x86"];
const TEAM: &[&str] = &["SF", "NYC", "LON", "CHI"];
const ENVIRONMENT: &[&str] = &["production", "staging", "test"];
/// The ten fields, in the order TSBS writes them.
pub(crate) const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

/// TSBS's default start, 2016-01-01T00:00:00Z, in nanoseconds.
pub(crate) const DEFAULT_START_NS: i64 = 1_451_606_400_000_000_000;
/// TSBS's default log interval, 10 s.
pub(crate) const DEFAULT_INTERVAL_NS: i64 = 10_000_000_000;

/// xorshift64*; deterministic for a seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that neighbouring seeds (host numbers) start far apart.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)).max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal sample (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// One simulated host: its line prefix (measurement and tags) and the state of its
/// ten random walks.
pub(crate) struct Host {
    prefix: Vec<u8>,
    state: [f64; 10],
    rng: Rng,
}

impl Host {
    /// Host number `id` of a run with `seed`.
    pub(crate) fn new(id: usize, seed: u64) -> Host {
        let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(id as u64));
        let mut state = [0.0; 10];
        for value in &mut state {
            *value = rng.unit() * 100.0;
        }
        let (region, datacenters) = REGIONS[rng.below(REGIONS.len())];
        let datacenter = datacenters[rng.below(datacenters.len())];
        let prefix = format!(
            "cpu,hostname=host_{id},region={region},datacenter={datacenter},rack={},os={},arch={},team={},service={},service_version={},service_environment={} ",
            rng.below(100),
            OS[rng.below(OS.len())],
            ARCH[rng.below(ARCH.len())],
            TEAM[rng.below(TEAM.len())],
            rng.below(20),
            rng.below(2),
            ENVIRONMENT[rng.below(ENVIRONMENT.len())],
        );
        Host { prefix: prefix.into_bytes(), state, rng }
    }

    /// Steps the walks one tick and appends the host's line for `time` (the
    /// timestamp already formatted, with its leading space and trailing newline).
    pub(crate) fn write_line(&mut self, time: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        for (i, field) in FIELDS.iter().enumerate() {
            let value = &mut self.state[i];
            *value = (*value + self.rng.normal()).clamp(0.0, 100.0);
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(field.as_bytes());
            out.push(b'=');
            push_small_int(*value as u32, out);
            out.push(b'i');
        }
        out.extend_from_slice(time);
    }
}

/// Appends 0..=100 without going through `fmt`.
fn push_small_int(value: u32, out: &mut Vec<u8>) {
    if value >= 100 {
        out.extend_from_slice(b"100");
    } else if value >= 10 {
        out.extend_from_slice(&[b'0' + (value / 10) as u8, b'0' + (value % 10) as u8]);
    } else {
        out.push(b'0' + value as u8);
    }
}

/// ` <time>\n` for a tick.
pub(crate) fn time_suffix(time_ns: i64) -> Vec<u8> {
    format!(" {time_ns}\n").into_bytes()
}

/// Generates `ticks` × `scale` lines starting at `start_ns`, `interval_ns` apart.
pub(crate) fn cpu_lines(scale: usize, ticks: usize, start_ns: i64, interval_ns: i64, seed: u64) -> String {
    let mut hosts: Vec<Host> = (0..scale).map(|id| Host::new(id, seed)).collect();
    let mut out = Vec::with_capacity(scale * ticks * 360);
    for tick in 0..ticks {
        let time = time_suffix(start_ns + tick as i64 * interval_ns);
        for host in &mut hosts {
            host.write_line(&time, &mut out);
        }
    }
    String::from_utf8(out).expect("the generator writes ASCII")
}
