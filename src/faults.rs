//! Fault injection for tests: named points in the I/O paths where a test can
//! make the server fail or stall, to check what a real disk fault would do.
//!
//! Compiled in only with the cargo feature `fault-injection` (which
//! `tests/run` turns on); without it every point is a no-op the compiler
//! removes. The points are armed with the `FAILPOINTS` environment variable of
//! the `fail` crate: `FAILPOINTS='point=actions;...'`, where actions are
//! `[count*]return[(filter)]`, `sleep(ms)`, `off`, chained with `->`; for
//! example `wal-fsync=1*off->return` lets the first WAL fsync through and
//! fails the next. A `return(filter)` fails only where the point's subject (a
//! path) contains `filter`.
//!
//! | point | where | subject |
//! |---|---|---|
//! | `wal-before-fsync` | the WAL thread, after a group is appended, before its fsync (`sleep`) | - |
//! | `wal-fsync` | the WAL's fsync of a group | the segment |
//! | `fs-sync-dir-after-rename` | a crash-safe file write, after the rename, as the directory is fsynced | the file |
//! | `merge-before-commit` | a merge, after its file is written, before the catalog commit (`sleep`) | - |
//! | `redis-commit-reply-lost` | a commit to the Redis catalog that went in: its reply is dropped as a cut connection would | the table |

/// An I/O error to return instead of doing the operation at `point` on
/// `subject`, if a test armed the point.
#[cfg(feature = "fault-injection")]
pub fn injected(point: &str, subject: &str) -> Option<std::io::Error> {
    fail::eval(point, |filter| match filter {
        Some(filter) if !subject.contains(filter.as_str()) => None,
        _ => Some(std::io::Error::other(format!("fault injected at {point} ({subject})"))),
    })
    .flatten()
}

/// An I/O error to return instead of doing the operation at `point` on
/// `subject`: never, without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn injected(_point: &str, _subject: &str) -> Option<std::io::Error> {
    None
}

/// Stalls at `point` if a test armed it with `sleep(ms)` or `pause`. On a
/// runtime worker the stall first hands the worker's other tasks to another
/// thread: a blocked worker would otherwise hold tasks queued behind it (the
/// HTTP request that disarms the point, say).
#[cfg(feature = "fault-injection")]
pub fn stall(point: &str) {
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|runtime| runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_worker {
        tokio::task::block_in_place(|| fail::fail_point!(point));
    } else {
        fail::fail_point!(point);
    }
}

/// Stalls at `point`: never, without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn stall(_point: &str) {}

/// Arms `point` with `actions` (the `FAILPOINTS` syntax) from now on, or
/// disarms it for `off`: how a test arms a point at the moment it needs the
/// fault (`PUT /admin/failpoints/{point}`).
#[cfg(feature = "fault-injection")]
pub fn arm(point: &str, actions: &str) -> Result<(), String> {
    tracing::warn!(point, actions, "fault injection point armed: this server will fail on purpose");
    fail::cfg(point, actions)
}

/// Arms the points named in `FAILPOINTS`, for the life of the process; says
/// so in the log, since a server with armed points is a test server.
#[cfg(feature = "fault-injection")]
pub fn arm_from_environment() {
    if let Ok(points) = std::env::var("FAILPOINTS") {
        tracing::warn!(%points, "fault injection is armed (FAILPOINTS): this server will fail on purpose");
        std::mem::forget(fail::FailScenario::setup());
    }
}

/// Arms nothing: fault injection is not compiled in.
#[cfg(not(feature = "fault-injection"))]
pub fn arm_from_environment() {}
