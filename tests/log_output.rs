//! What the data-plane processes write when stderr is a pipe, as under
//! `kubectl logs` or a log collector: plain text without terminal colour codes
//! (found on the real cluster: every router and ws-pod line carried ANSI
//! escapes), or one JSON object per line with `WSRING_LOG_FORMAT=json`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Start `wsring ARGS` on free loopback ports with stderr piped; return its
/// first log line that contains `marker`.
fn first_line_with(args: &[&str], json: bool, marker: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsring"));
    command
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("WSRING_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if json {
        command.env("WSRING_LOG_FORMAT", "json");
    }
    let mut child: Child = command.spawn().expect("wsring starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let wanted = marker.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(&wanted) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    line.unwrap_or_else(|_| panic!("no log line with {marker:?}"))
}

const POD: &[&str] = &[
    "pod",
    "--listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
    "--pod-name",
    "pod-0",
    "--token",
    "t0ken",
];
const ROUTER: &[&str] = &[
    "router",
    "--listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
    "--token",
    "t0ken",
];

#[test]
fn text_logs_to_a_pipe_have_no_colour_codes() {
    for (args, marker) in [(POD, "ws-pod serving"), (ROUTER, "router serving")] {
        let line = first_line_with(args, false, marker);
        assert!(!line.contains('\u{1b}'), "terminal escapes in {line:?}");
        assert!(line.contains(" INFO "), "{line:?}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    for (args, marker) in [(POD, "ws-pod serving"), (ROUTER, "router serving")] {
        let line = first_line_with(args, true, marker);
        let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON object");
        assert_eq!(value["level"], "INFO", "{line}");
    }
}

/// A taken port stops either process at start-up with an error naming the
/// listener and the address, once, in the same words for both.
#[test]
fn a_taken_port_stops_router_and_pod_naming_the_listener() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (process, extra) in [("router", &[][..]), ("pod", &["--pod-name", "pod-0"][..])] {
        let output = Command::new(env!("CARGO_BIN_EXE_wsring"))
            .args([process, "--listen", &addr, "--admin-listen", "127.0.0.1:0"])
            .args(["--token", "t0ken"])
            .args(extra)
            .env_remove("WSRING_LOG_FORMAT")
            .stdin(Stdio::null())
            .output()
            .expect("wsring runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{process} started: {stderr}");
        let wanted = format!("cannot bind the websocket listener on {addr}: ");
        assert_eq!(stderr.matches(&wanted).count(), 1, "{process}: {stderr}");
    }
}

/// Lines of a child's stderr, collected by a thread until the pipe closes.
fn collect_stderr(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// A crashed pod leaves the ring once: one new ring version, one "ring
/// published" line (it was logged twice, and the version bumped twice, when
/// the child watcher and the stop call both reacted to the same crash).
#[tokio::test]
async fn a_crash_publishes_one_ring_and_logs_it_once() {
    use wsring_core::harness::{free_addr, AdminClient};
    let (public, admin, control) = (
        free_addr().unwrap(),
        free_addr().unwrap(),
        free_addr().unwrap(),
    );
    let token = "crash-log-token";
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsring"))
        .args(["dev", "--pods", "3", "--builtin-bus", "--token", token])
        .args([
            "--listen",
            &public.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .args(["--control-listen", &control.to_string()])
        .env("RUST_LOG", "info")
        .env_remove("WSRING_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wsring dev starts");
    let lines = collect_stderr(&mut child);
    let http = AdminClient::new();
    let ring_version = || async {
        let answer = http
            .get(format!("http://{admin}/ring"))
            .bearer(token)
            .send()
            .await
            .ok()?;
        let ring = answer.json_or_text();
        (ring["members"].as_array()?.len() == 3).then(|| ring["version"].as_u64())?
    };
    let mut before = None;
    for _ in 0..200 {
        before = ring_version().await;
        if before.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = before.expect("the ring names 3 pods within 20 s");
    let published = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("ring published"))
            .count()
    };
    let published_before = published(&lines.lock().unwrap());

    let answer = http
        .request(
            http::Method::DELETE,
            format!("http://{control}/pods/pod-1?mode=crash"),
        )
        .bearer(token)
        .send()
        .await
        .expect("control API answers");
    assert_eq!(answer.status(), 200, "{}", answer.text());
    // Long enough for the child watcher to have looked many times.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let after = http
        .get(format!("http://{admin}/ring"))
        .bearer(token)
        .send()
        .await
        .unwrap()
        .json_or_text();
    let _ = child.kill();
    let _ = child.wait();
    let lines = lines.lock().unwrap().clone();
    assert_eq!(
        after["version"].as_u64(),
        Some(before + 1),
        "one new ring version"
    );
    assert_eq!(after["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        published(&lines) - published_before,
        1,
        "one \"ring published\" line for one crash:\n{}",
        lines.join("\n")
    );
}

/// A router and pods whose log reader is gone keep working, and still leave
/// when their launcher dies: a failed log write must not take a task down
/// (it did: the router's shutdown task panicked on the broken stderr and the
/// router outlived its `wsring dev`, deaf even to SIGTERM).
#[test]
fn children_outlive_neither_their_launcher_nor_a_broken_log_pipe() {
    use std::net::TcpStream;
    use std::time::Instant;
    use wsring_core::harness::free_addr;
    let (public, admin, control) = (
        free_addr().unwrap(),
        free_addr().unwrap(),
        free_addr().unwrap(),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsring"))
        .args([
            "dev",
            "--pods",
            "2",
            "--builtin-bus",
            "--token",
            "pipe-token",
        ])
        .args(["--listen", &public.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--control-listen", &control.to_string()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wsring dev starts");
    // Read until the banner, then close the log pipe: the reader is gone.
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let up = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("wsring dev is up"));
    drop(lines);
    assert!(up, "wsring dev came up");
    assert!(TcpStream::connect(public).is_ok(), "the router listens");

    // The launcher dies without a chance to stop its children.
    let _ = child.kill();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(public).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the router still listens 15 s after its launcher died"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
