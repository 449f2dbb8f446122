//! TSBS `devops cpu-only` data, generated in process: the data model of
//! `pkg/data/usecases/devops` (10 tags, 10 integer fields as a clamped random walk,
//! time-major order), with our own RNG. Statistically the same as TSBS output,
//! not byte-identical.

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
const FIELDS: &[&str] = &[
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

/// xorshift64*; deterministic for a seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
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

/// Generates `ticks` × `scale` lines starting at `start_ns`, `interval_ns` apart.
pub(crate) fn cpu_lines(scale: usize, ticks: usize, start_ns: i64, interval_ns: i64, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut tags = Vec::with_capacity(scale);
    let mut state = Vec::with_capacity(scale);
    for host in 0..scale {
        state.push((0..FIELDS.len()).map(|_| rng.unit() * 100.0).collect::<Vec<f64>>());
        let (region, datacenters) = REGIONS[rng.below(REGIONS.len())];
        let datacenter = datacenters[rng.below(datacenters.len())];
        tags.push(format!(
            "cpu,hostname=host_{host},region={region},datacenter={datacenter},rack={},os={},arch={},team={},service={},service_version={},service_environment={}",
            rng.below(100),
            OS[rng.below(OS.len())],
            ARCH[rng.below(ARCH.len())],
            TEAM[rng.below(TEAM.len())],
            rng.below(20),
            rng.below(2),
            ENVIRONMENT[rng.below(ENVIRONMENT.len())],
        ));
    }
    let mut out = String::with_capacity(scale * ticks * 360);
    for tick in 0..ticks {
        let time = start_ns + tick as i64 * interval_ns;
        for host in 0..scale {
            out.push_str(&tags[host]);
            for (i, field) in FIELDS.iter().enumerate() {
                let value = &mut state[host][i];
                *value = (*value + rng.normal()).clamp(0.0, 100.0);
                out.push(if i == 0 { ' ' } else { ',' });
                out.push_str(field);
                out.push('=');
                out.push_str(&(*value as i64).to_string());
                out.push('i');
            }
            out.push(' ');
            out.push_str(&time.to_string());
            out.push('\n');
        }
    }
    out
}
