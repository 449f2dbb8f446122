//! A progress bar on stderr for generation and loading: redrawn in place on a
//! terminal, a plain line every few seconds in a log.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress of a count toward a total, with its rate and the time left.
pub(crate) struct Progress {
    label: String,
    unit: &'static str,
    total: u64,
    started: Instant,
    last_drawn: Option<Instant>,
    terminal: bool,
}

impl Progress {
    pub(crate) fn new(label: &str, unit: &'static str, total: u64) -> Progress {
        Progress {
            label: label.to_owned(),
            unit,
            total,
            started: Instant::now(),
            last_drawn: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Shows `done` of the total, at most ten times a second on a terminal and
    /// every five seconds in a log.
    pub(crate) fn update(&mut self, done: u64) {
        let every = if self.terminal { Duration::from_millis(100) } else { Duration::from_secs(5) };
        if self.last_drawn.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.last_drawn = Some(Instant::now());
        self.draw(done, false);
    }

    /// The last drawing, with the whole time taken.
    pub(crate) fn finish(&mut self, done: u64) {
        self.draw(done, true);
    }

    fn draw(&self, done: u64, last: bool) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let fraction = if self.total == 0 { 1.0 } else { (done as f64 / self.total as f64).min(1.0) };
        let rate = if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 };
        let width = 30;
        let filled = (fraction * width as f64) as usize;
        let bar: String = "#".repeat(filled) + &" ".repeat(width - filled);
        let tail = if last {
            format!("in {elapsed:.1} s")
        } else if rate > 0.0 {
            format!("{:.0} s left", (self.total.saturating_sub(done)) as f64 / rate)
        } else {
            String::new()
        };
        let line = format!(
            "{} [{bar}] {:>3.0}% {}/{} {} {}/s {tail}",
            self.label,
            fraction * 100.0,
            human(done as f64),
            human(self.total as f64),
            self.unit,
            human(rate),
        );
        let mut stderr = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(stderr, "\r{line}\x1b[K{}", if last { "\n" } else { "" })
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
    }
}

/// 1234567 as "1.23 M".
pub(crate) fn human(value: f64) -> String {
    if value >= 1e9 {
        format!("{:.2} G", value / 1e9)
    } else if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}
