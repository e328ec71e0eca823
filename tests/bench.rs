//! `wsring bench push` runs end to end (real router, pods and redis-server),
//! its report is complete, and every accepted push reached its client; bad
//! options are refused with the option named. The figures themselves are the
//! benchmark's to print, never asserted here.

mod support;

use support::wsring_command;

#[tokio::test]
async fn bench_push_reports_both_modes_and_every_push_arrives() {
    let output = wsring_command("bench")
        .args([
            "push",
            "--keys",
            "5",
            "--duration-secs",
            "1",
            "--concurrency",
            "2",
        ])
        .args(["--history-size", "10", "--skip-nginx", "--json"])
        .output()
        .await
        .expect("wsring bench push runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "history off and on: {report}");
    assert_eq!(rows[0]["history"], "off");
    assert_eq!(rows[1]["history"], "on (size 10)");
    for row in rows {
        let accepted = row["accepted"].as_u64().unwrap();
        assert!(accepted > 0, "{row}");
        assert_eq!(row["refused"], 0, "{row}");
        assert_eq!(
            row["received"].as_u64(),
            Some(accepted),
            "every push once: {row}"
        );
    }
    assert!(rows[0]["redis_bytes_per_1000"].is_null());
    assert!(rows[1]["redis_bytes_per_1000"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn bench_push_refuses_bad_options() {
    for (flag, value) in [
        ("--keys", "0"),
        ("--concurrency", "0"),
        ("--history-size", "0"),
    ] {
        let stderr = support::refused_stderr("bench", &["push", flag, value, "--skip-nginx"]).await;
        assert!(stderr.contains(flag), "{flag}: {stderr}");
    }
}
