//! Configuration: the manual in `--help`, precedence of flag over environment over
//! file over default, and one clear line for every bad setting.

use std::process::Output;

use crate::support::{command, free_port};

/// Runs `hourglass`; a process still running after 20 s is killed and fails the test.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command();
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run hourglass");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!("hourglass {args:?} {env:?} kept running:\n{}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// Runs a server start that must fail; returns its one line of stderr.
fn start_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let port = free_port().to_string();
    // Defaults through the environment, so that a case's own variable replaces them.
    let mut all_env = vec![("GIGAPI_ROOT", root.to_str().unwrap()), ("HTTP_HOST", "127.0.0.1"), ("HTTP_PORT", &port)];
    all_env.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
    all_env.extend_from_slice(env);
    let output = run(args, &all_env);
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert_eq!(output.status.code(), Some(2), "{args:?} {env:?} should fail with exit 2: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?} {env:?} must fail with one line, got:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

fn effective(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["config"];
    all.extend_from_slice(args);
    let output = run(&all, env);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn setting<'a>(effective: &'a str, flag: &str) -> &'a str {
    effective
        .lines()
        .find(|l| l.starts_with(&format!("{flag} = ")))
        .unwrap_or_else(|| panic!("{flag} missing from\n{effective}"))
}

#[test]
fn help_is_the_manual() {
    let output = run(&["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for name in [
        "GIGAPI_ROOT",
        "GIGAPI_SAVE_TIMEOUT_S",
        "GIGAPI_MERGE_TIMEOUT_S",
        "GIGAPI_NO_MERGES",
        "GIGAPI_MODE",
        "GIGAPI_METADATA_TYPE",
        "GIGAPI_METADATA_URL",
        "HTTP_PORT",
        "HTTP_HOST",
        "HTTP_BASIC_AUTH_USERNAME",
        "HTTP_BASIC_AUTH_PASSWORD",
        "FLIGHTSQL_PORT",
        "FLIGHTSQL_ENABLE",
        "PG_PORT",
        "PG_ENABLE",
        "LOGLEVEL",
        "GIGAPI_LAYERS_<i>_",
        "HOURGLASS_CONFIG",
        "HOURGLASS_MAX_BODY_BYTES",
        "HOURGLASS_MAX_LINE_BYTES",
        "HOURGLASS_MAX_COLUMNS_PER_TABLE",
        "HOURGLASS_MAX_BUFFER_BYTES",
        "HOURGLASS_FLUSH_BUFFER_BYTES",
        "HOURGLASS_MAX_CONCURRENT_WRITES",
        "HOURGLASS_WAL_SEGMENT_BYTES",
        "HOURGLASS_PERSIST_CONCURRENCY",
        "HOURGLASS_PG_AUTH_METHOD",
        "HOURGLASS_TLS_CERT",
        "HOURGLASS_TLS_KEY",
        "serve",
        "config",
        "[default: 7971]",
        "curl",
    ] {
        assert!(help.contains(name), "--help does not mention {name}:\n{help}");
    }
    for sub in [&["serve", "--help"][..], &["config", "--help"], &["help", "serve"]] {
        assert!(run(sub, &[]).status.success(), "{sub:?}");
    }
    let version = run(&["--version"], &[]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("hourglass "));
}

#[test]
fn flags_beat_environment_beats_file_beats_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hourglass.toml");
    std::fs::write(
        &file,
        "http-port = 9001\npg_port = 6001\nflightsql-port = 8001\n[http]\nhost = \"127.0.0.2\"\n\
         [[layers]]\nname = \"cache\"\ntype = \"fs\"\nurl = \"file:///tmp/cache\"\nttl = \"30m\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = effective(&["--config", file, "--http-port", "9003"], &[("HTTP_PORT", "9002"), ("PG_PORT", "6002")]);
    assert_eq!(setting(&out, "http-port"), "http-port = 9003  # flag --http-port");
    assert_eq!(setting(&out, "pg-port"), "pg-port = 6002  # environment PG_PORT");
    assert_eq!(setting(&out, "flightsql-port"), format!("flightsql-port = 8001  # config file {file}"));
    assert_eq!(setting(&out, "http-host"), format!("http-host = \"127.0.0.2\"  # config file {file}"));
    assert_eq!(setting(&out, "mode"), "mode = \"aio\"  # default");
    assert!(
        out.contains(
            "[[layers]]\nname = \"cache\"\ntype = \"fs\"\nurl = \"file:///tmp/cache\"\nglobal = false\nttl = \"1800s\""
        ),
        "{out}"
    );
    let out = effective(&["--config", file], &[("HOURGLASS_CONFIG", "/nonexistent")]);
    assert_eq!(setting(&out, "http-port"), format!("http-port = 9001  # config file {file}"));
    let out = effective(&[], &[("HOURGLASS_CONFIG", file)]);
    assert_eq!(setting(&out, "http-port"), format!("http-port = 9001  # config file {file}"));
    let out = effective(&["--http-basic-auth-password", "hunter2"], &[]);
    assert!(!out.contains("hunter2"), "secrets are masked:\n{out}");
}

#[test]
fn gigapi_layer_variables_are_read() {
    let env = [
        ("GIGAPI_LAYERS_0_NAME", "cache"),
        ("GIGAPI_LAYERS_0_TYPE", "fs"),
        ("GIGAPI_LAYERS_0_URL", "file:///data"),
        ("GIGAPI_LAYERS_0_TTL", "10m"),
        ("GIGAPI_LAYERS_1_NAME", "s3"),
        ("GIGAPI_LAYERS_1_TYPE", "s3"),
        ("GIGAPI_LAYERS_1_URL", "s3://localhost:9000/bucket/prefix?secure=false&url-style=path"),
        ("GIGAPI_LAYERS_1_AUTH_KEY", "key"),
        ("GIGAPI_LAYERS_1_AUTH_SECRET", "secret"),
        ("GIGAPI_LAYERS_1_TTL", "4w"),
    ];
    let out = effective(&[], &env);
    assert!(
        out.contains("name = \"cache\"\ntype = \"fs\"\nurl = \"file:///data\"\nglobal = false\nttl = \"600s\""),
        "{out}"
    );
    assert!(out.contains("name = \"s3\"\ntype = \"s3\"\nurl = \"s3://localhost:9000/bucket/prefix?secure=false&url-style=path\"\nglobal = true\nttl = \"2419200s\""), "{out}");
    let out = effective(&["--layer", "name=one,type=fs,url=/tmp/one"], &env);
    assert!(
        out.contains("name = \"one\"") && !out.contains("name = \"cache\""),
        "a --layer flag replaces the environment's layers:\n{out}"
    );
}

#[test]
fn every_bad_setting_stops_start_up_with_one_line_naming_it() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&[], &[("HTTP_PORT", "abc")], "HTTP_PORT"),
        (&["--http-port", "99999"], &[], "HTTP_PORT"),
        (&[], &[("GIGAPI_MODE", "banana")], "GIGAPI_MODE"),
        (&[], &[("GIGAPI_SAVE_TIMEOUT_S", "-1")], "GIGAPI_SAVE_TIMEOUT_S"),
        (&[], &[("GIGAPI_MERGE_TIMEOUT_S", "soon")], "GIGAPI_MERGE_TIMEOUT_S"),
        // Finite, but more seconds than a timer holds.
        (&[], &[("HOURGLASS_QUERY_QUEUE_TIMEOUT_S", "1e20")], "HOURGLASS_QUERY_QUEUE_TIMEOUT_S"),
        (&[], &[("GIGAPI_NO_MERGES", "perhaps")], "GIGAPI_NO_MERGES"),
        (&[], &[("FLIGHTSQL_ENABLE", "yes please")], "FLIGHTSQL_ENABLE"),
        (&[], &[("LOGLEVEL", "loud")], "LOGLEVEL"),
        (&[], &[("HOURGLASS_MAX_BODY_BYTES", "lots")], "HOURGLASS_MAX_BODY_BYTES"),
        (&[], &[("HOURGLASS_MAX_BODY_BYTES", "10XB")], "HOURGLASS_MAX_BODY_BYTES"),
        (&[], &[("HOURGLASS_MAX_COLUMNS_PER_TABLE", "0")], "HOURGLASS_MAX_COLUMNS_PER_TABLE"),
        (&[], &[("GIGAPI_METADATA_TYPE", "redis")], "GIGAPI_METADATA_TYPE"),
        (
            &[],
            &[("GIGAPI_LAYERS_0_NAME", "x"), ("GIGAPI_LAYERS_0_TYPE", "ftp"), ("GIGAPI_LAYERS_0_URL", "ftp://x")],
            "GIGAPI_LAYERS",
        ),
        (&[], &[("GIGAPI_LAYERS_0_NAME", "x"), ("GIGAPI_LAYERS_0_TYPE", "fs")], "GIGAPI_LAYERS"),
        (
            &[],
            &[("GIGAPI_LAYERS_0_NAME", "x"), ("GIGAPI_LAYERS_0_URL", "/tmp/x"), ("GIGAPI_LAYERS_0_TTL", "soon")],
            "GIGAPI_LAYERS",
        ),
        (&[], &[("GIGAPI_LAYERS_0_TYPE", "s3"), ("GIGAPI_LAYERS_0_URL", "s3://host/bucket")], "GIGAPI_LAYERS"),
        (&["--layer", "name=a,url=/tmp/a", "--layer", "name=a,url=/tmp/b"], &[], "GIGAPI_LAYERS"),
    ];
    for (args, env, named) in cases {
        let line = start_error(args, env);
        assert!(line.contains(named), "{args:?} {env:?}: {line}");
    }
}

#[test]
fn a_busy_port_or_an_unusable_root_stops_start_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let line = start_error(&["--http-port", &port], &[]);
    assert!(line.contains("HTTP_PORT") && line.contains(&port), "{line}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let root = file.join("data");
    let output = run(
        &["--root", root.to_str().unwrap(), "--http-host", "127.0.0.1", "--http-port", &free_port().to_string()],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("GIGAPI_ROOT") && stderr.contains("a-file"), "{stderr}");
}

#[test]
fn config_file_problems_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("not = [valid", "is not valid TOML"),
        ("no-such-setting = 1", "unknown setting 'no-such-setting'"),
        ("pg-port = \"high\"", "PG_PORT"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let line = start_error(&["--config", file.to_str().unwrap()], &[]);
        assert!(line.contains(expected), "{text}: {line}");
        assert!(line.contains(file.to_str().unwrap()), "{text}: the file is named: {line}");
    }
    let line = start_error(&["--config", "/nonexistent/hourglass.toml"], &[]);
    assert!(line.contains("HOURGLASS_CONFIG") && line.contains("/nonexistent/hourglass.toml"), "{line}");
}
