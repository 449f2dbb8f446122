//! The deployment pieces (compose files, Dockerfile, Grafana provisioning
//! and dashboard) without a container engine, which the machines that test
//! this project do not have: tests/python/deploy_check.py parses them,
//! starts the server as compose starts it, writes the TSBS generator's rows
//! and runs every dashboard query as its Grafana data source sends it.

use std::path::Path;
use std::process::Command;

use crate::support::test_python;

#[test]
fn the_compose_files_and_the_grafana_dashboard_work_with_the_server_they_describe() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/deploy_check.py");
    let output = Command::new(test_python())
        .arg(script)
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg(env!("CARGO_BIN_EXE_hourglass"))
        .arg(env!("CARGO_BIN_EXE_hourglass-tsbs"))
        .output()
        .expect("run the deployment check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let panels = stdout.lines().filter(|l| l.starts_with("ok panel") && l.ends_with("answers")).count();
    assert_eq!(panels, 4, "every panel of the dashboard ran:\n{stdout}");
}
