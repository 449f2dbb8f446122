//! The `hourglass` binary; everything lives in the library.

/// jemalloc keeps fragmentation low across the many threads of the write
/// path; glibc's malloc held about twice the live memory of an ingest in its
/// per-thread arenas (docs/benchmarks.md, "Memory").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A C string pointer that may live in a `static`.
#[cfg(not(target_env = "msvc"))]
#[repr(transparent)]
struct CStrPointer(*const std::ffi::c_char);

// SAFETY: it points at a constant that is never written.
#[cfg(not(target_env = "msvc"))]
unsafe impl Sync for CStrPointer {}

/// jemalloc's options, read once at its start (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them). A background thread gives freed pages
/// back to the system after about a second instead of ten, idle or not, so
/// the resident memory follows what the write path holds.
#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_OPTIONS: CStrPointer =
    CStrPointer(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

fn main() -> std::process::ExitCode {
    hourglassdb::cli::main()
}
