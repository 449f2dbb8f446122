//! The web UI in a real browser: headless Chromium (Debian's chromium and
//! chromedriver, installed by tests/run) driven through Selenium by
//! tests/python/ui_browser.py, against a server on loopback. Screenshots of
//! each page are kept in `$CARGO_TARGET_DIR/ui-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{client, get, post, test_python, Server};

/// 240 rows of `cpu` in database `ui`: hosts a and b, one a minute for two
/// hours from 2024-01-01T00:00:00Z.
fn lines() -> String {
    let base = 1_704_067_200_000_000_000i64;
    let mut out = String::new();
    for minute in 0..120i64 {
        for (host, level) in [("a", 10), ("b", 20)] {
            out.push_str(&format!(
                "cpu,host={host} usage={}.5 {}\n",
                level + minute % 7,
                base + minute * 60_000_000_000
            ));
        }
    }
    out
}

/// Waits until the catalog lists the 240 rows in files: the counts the
/// browser is shown come from the catalog.
async fn persisted(server: &Server, user: Option<(&str, &str)>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut request = client().get(server.url("/api/catalog"));
        if let Some((name, password)) = user {
            request = request.basic_auth(name, Some(password));
        }
        let body = request.send().await.unwrap().text().await.unwrap();
        if body.contains("\"rows\":240") {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the rows never reached the catalog: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn screenshots(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("ui-screenshots").join(name)
}

fn drive(server: &Server, shots: &Path, credentials: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/ui_browser.py");
    let output = Command::new(test_python())
        .arg(script)
        .arg(server.url("/"))
        .arg(shots)
        .args(credentials)
        .output()
        .expect("run the browser script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}\n{}", server.log_text());
    assert!(stdout.contains("ok the zoom rewrote both time bounds"), "{stdout}");
    for page in ["1-tables", "2-grid", "3-chart", "4-zoomed", "5-server"] {
        assert!(shots.join(format!("{page}.png")).exists(), "no screenshot of {page}:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_ui_browses_queries_pages_charts_zooms_and_shows_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, body) = post(&server.url("/write?db=ui"), lines()).await;
    assert_eq!(status, 204, "{body}");
    persisted(&server, None).await;
    let response = client().get(server.url("/ui/app.js")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let policy = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    tokio::task::spawn_blocking(move || drive(&server, &screenshots("open"), &[])).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_ui_asks_for_the_servers_credentials_and_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let users = [("HTTP_BASIC_AUTH_USERNAME", "admin"), ("HTTP_BASIC_AUTH_PASSWORD", "s3cr=t")];
    let server = Server::start_with_env(&dir.path().join("data"), &[], &users);
    let response = client()
        .post(server.url("/write?db=ui"))
        .basic_auth("admin", Some("s3cr=t"))
        .body(lines())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    persisted(&server, Some(("admin", "s3cr=t"))).await;
    // The page itself tells nothing; the data behind it needs the login.
    assert_eq!(get(&server.url("/")).await.0, 200);
    assert_eq!(get(&server.url("/api/catalog")).await.0, 401);
    tokio::task::spawn_blocking(move || drive(&server, &screenshots("login"), &["admin", "s3cr=t"])).await.unwrap();

    let off = Server::start(&dir.path().join("off"), &["--ui", "false"]);
    let (status, body) = get(&off.url("/")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("GIGAPI_UI"), "{body}");
}
