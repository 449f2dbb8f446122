//! A real Redis on loopback for the shared-catalog tests: Debian's
//! `redis-server` (tests/setup installs it), on a free port, with its data in
//! a directory of the test and every write fsynced to its append-only file,
//! as docs/scale-out.md asks of a production Redis. Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// A `redis-server` process started by a test.
pub(crate) struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts Redis with its data under `dir`; returns once it answers PING.
    pub(crate) fn start(dir: &Path) -> RedisServer {
        std::fs::create_dir_all(dir).expect("Redis directory");
        let mut redis = RedisServer { child: None, port: free_port(), dir: dir.to_path_buf() };
        redis.launch();
        redis
    }

    fn launch(&mut self) {
        let binary = which_redis_server();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("redis.log")).expect("Redis log");
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--protected-mode", "yes", "--daemonize", "no"])
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server exited ({status}):\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "redis-server did not answer within 20 s:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True once Redis answers PING.
    fn answers(&self) -> bool {
        self.command(&["PING"]).is_some_and(|reply| reply.starts_with("PONG"))
    }

    /// Runs one command with `redis-cli` (installed with redis-server) and
    /// returns its output, a line per value, or None if Redis does not answer.
    pub(crate) fn command(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills Redis (SIGKILL), keeping its data.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again after [`Self::kill`], on the same port and data.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs a killed Redis");
        self.launch();
    }

    /// What Redis logged.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn which_redis_server() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let candidate = Path::new(dir).join("redis-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("redis-server is missing: tests/run installs it (Debian's redis-server, through tests/setup)")
}
