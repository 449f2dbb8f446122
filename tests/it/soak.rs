//! The soak script (tests/python/soak.py), a short run of it: 64 writers on
//! the three fronts and 16 readers against one server with small bounds.
//! Every error must be backpressure, memory must stay under the bound, and
//! every acknowledged row must be there. docs/operations.md has the longer run.

#[test]
fn many_writers_and_readers_get_only_backpressure_and_lose_nothing() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/soak.py");
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(crate::support::test_python())
        .arg(script)
        .arg("--binary")
        .arg(crate::support::binary())
        .args(["--seconds", "15", "--writers", "64", "--readers", "16"])
        .arg("--root")
        .arg(dir.path())
        .output()
        .expect("run soak.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("soak passed") && stdout.contains("lost 0"), "{stdout}");
    let summary = stdout.lines().find(|l| l.starts_with("acknowledged ")).unwrap_or_default();
    for front in ["http", "copy", "flight"] {
        assert!(!summary.contains(&format!("{front} 0,")) && !summary.contains(&format!("{front} 0)")), "{summary}");
    }
    assert!(summary.contains("'query ok'"), "readers were answered: {summary}");
}
