//! What README.md and docs/interfaces.md promise about the binaries, checked
//! against the binaries themselves, the way the metrics tables are checked
//! against the registries:
//! - the flag tables against the router's and ws-pod's clap definitions (what
//!   `--help` prints): every flag documented, every documented flag real, env
//!   vars and defaults equal;
//! - `--help` speaks of behaviour and docs, never of source modules;
//! - both close-code tables list exactly the codes of `wsring_core::protocol`;
//! - the ring document example is what `GET /ring` serialises;
//! - the `docker build` commands, which CI cannot run (no Docker engine),
//!   name the real Dockerfiles and tag the chart's images.

use std::collections::{BTreeMap, BTreeSet};

use clap::{Args, Command};

const INTERFACES: &str = include_str!("../docs/interfaces.md");
const README: &str = include_str!("../README.md");
const PACKAGING: &str = include_str!("../docs/packaging.md");

/// One documented flag: its env var and default, as the table cells read.
#[derive(Debug)]
struct DocumentedFlag {
    env: String,
    default: String,
}

/// One real flag, from the clap definition.
#[derive(Debug)]
struct RealFlag {
    env: Option<String>,
    default: Option<String>,
}

/// The cells of every row of the first table after `heading` in `text`
/// (header and separator rows included), split on ` | ` so that escaped
/// pipes (`\|`) inside a cell stay in it.
fn table_rows<'a>(text: &'a str, heading: &str) -> Vec<Vec<&'a str>> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    text[start..]
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .map(|line| line.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect()
}

/// The `| flag | env | default | meaning |` table under `heading`, by long
/// flag name. A row may name two flags (`--token` / `--token-file`) with two
/// env vars in the same order.
fn documented(heading: &str) -> BTreeMap<String, DocumentedFlag> {
    let mut flags = BTreeMap::new();
    for cells in table_rows(INTERFACES, heading) {
        if cells.len() < 3 || !cells[0].starts_with('`') {
            continue; // header and separator rows
        }
        let names = backticked(cells[0]);
        let envs = backticked(cells[1]);
        for (i, name) in names.iter().enumerate() {
            let name = name.trim_start_matches("--").to_string();
            flags.insert(
                name,
                DocumentedFlag {
                    env: envs.get(i).cloned().unwrap_or_default(),
                    default: cells[2].to_string(),
                },
            );
        }
    }
    assert!(!flags.is_empty(), "no flag rows under {heading:?}");
    flags
}

/// The `code spans` of a table cell, in order.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The flags of a clap `Args` struct, by long name (help and version left out).
fn real<A: Args>() -> BTreeMap<String, RealFlag> {
    let command = A::augment_args(Command::new("flags"));
    command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?.to_string();
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            let defaults = arg.get_default_values();
            let default = (!defaults.is_empty()).then(|| {
                defaults
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            });
            Some((long, RealFlag { env, default }))
        })
        .collect()
}

/// Every disagreement between the table and the flags, one line each.
fn disagreements(
    documented: &BTreeMap<String, DocumentedFlag>,
    real: &BTreeMap<String, RealFlag>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, flag) in real {
        let Some(doc) = documented.get(name) else {
            problems.push(format!("--{name} is a flag but not in the table"));
            continue;
        };
        if let Some(env) = &flag.env {
            if &doc.env != env {
                problems.push(format!(
                    "--{name}: env is {env}, the table says {:?}",
                    doc.env
                ));
            }
        }
        if let Some(default) = &flag.default {
            // The cell may explain more ("`0` (operator: `5000`)"); its first
            // code span is the default itself.
            let shown = backticked(&doc.default).into_iter().next();
            if shown.as_deref() != Some(default.as_str()) {
                problems.push(format!(
                    "--{name}: default is {default:?}, the table says {:?}",
                    doc.default
                ));
            }
        }
    }
    for name in documented.keys() {
        if !real.contains_key(name) {
            problems.push(format!("the table documents --{name}, which is not a flag"));
        }
    }
    problems
}

#[test]
fn router_flag_table_matches_the_router_flags() {
    let problems = disagreements(
        &documented("## Router flags"),
        &real::<wsring_router::Config>(),
    );
    assert!(
        problems.is_empty(),
        "docs/interfaces.md, Router flags:\n{}",
        problems.join("\n")
    );
}

#[test]
fn ws_pod_flag_table_matches_the_ws_pod_flags() {
    let problems = disagreements(&documented("## ws-pod flags"), &real::<ws_pod::Config>());
    assert!(
        problems.is_empty(),
        "docs/interfaces.md, ws-pod flags:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_drift_in_both_directions() {
    let mut documented = documented("## ws-pod flags");
    let real = real::<ws_pod::Config>();
    documented.remove("listen");
    documented.insert(
        "no-such-flag".into(),
        DocumentedFlag {
            env: "WSRING_NO_SUCH_FLAG".into(),
            default: "`1`".into(),
        },
    );
    if let Some(doc) = documented.get_mut("max-message-bytes") {
        doc.default = "`1`".into();
    }
    let problems = disagreements(&documented, &real);
    assert!(
        problems
            .iter()
            .any(|p| p == "--listen is a flag but not in the table"),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("documents --no-such-flag")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("--max-message-bytes: default")),
        "{problems:?}"
    );
}

/// The `--help` text of a clap `Args` struct.
fn help<A: Args>(name: &'static str) -> String {
    A::augment_args(Command::new(name))
        .render_long_help()
        .to_string()
}

/// Source modules (file and directory names under `src/`) of a crate.
fn modules(crate_dir: &str) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(crate_dir)
        .join("src");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .map(|name| name.trim_end_matches(".rs").to_string())
        .filter(|name| !["lib", "main", "bin"].contains(&name.as_str()))
        .collect()
}

#[test]
fn help_texts_name_no_source_modules() {
    for (binary, text, crate_dir) in [
        (
            "wsring-router",
            help::<wsring_router::Config>("wsring-router"),
            "router",
        ),
        ("ws-pod", help::<ws_pod::Config>("ws-pod"), "ws-pod"),
    ] {
        let named: Vec<String> = modules(crate_dir)
            .into_iter()
            .filter(|module| {
                text.contains(&format!("`{module}`")) || text.contains(&format!("`{module}::"))
            })
            .collect();
        assert!(
            named.is_empty(),
            "{binary} --help names source modules {named:?}:\n{text}"
        );
    }
}

/// The numeric codes in the first column of the first table after `heading`.
fn close_codes(text: &str, heading: &str) -> BTreeSet<u16> {
    table_rows(text, heading)
        .iter()
        .filter_map(|cells| {
            let digits: String = cells[0]
                .trim_start_matches("**")
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn close_code_tables_list_exactly_the_protocol_codes() {
    use wsring_core::protocol::*;
    let protocol: BTreeSet<u16> = [
        CLOSE_RING_MOVED,
        CLOSE_GOING_AWAY,
        CLOSE_PROTOCOL_ERROR,
        CLOSE_INVALID_PAYLOAD,
        CLOSE_POLICY_VIOLATION,
        CLOSE_TOO_BIG,
        CLOSE_INTERNAL_ERROR,
        CLOSE_TRY_AGAIN_LATER,
    ]
    .into();
    assert_eq!(
        close_codes(INTERFACES, "## Close codes"),
        protocol,
        "docs/interfaces.md"
    );
    assert_eq!(
        close_codes(README, "## What a client sees"),
        protocol,
        "README.md"
    );
}

#[test]
fn ring_document_example_is_what_the_router_serialises() {
    let section = &INTERFACES[INTERFACES
        .find("## Ring document")
        .expect("docs/interfaces.md has a Ring document section")..];
    let start = section.find("```json\n").expect("a json example") + "```json\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let documented: serde_json::Value = serde_json::from_str(example).unwrap();
    let spec: wsring_core::RingSpec = serde_json::from_value(documented.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&spec).unwrap(),
        documented,
        "the example must read exactly as GET /ring answers it"
    );
}

/// The fenced blocks of `text` that run `docker build`.
fn docker_build_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("```") && line.len() > 3 {
            let block: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            let block = block.join("\n");
            if block.contains("docker build") {
                blocks.push(block);
            }
        }
    }
    blocks
}

/// The `docker build` commands of README.md and docs/packaging.md cannot run
/// in CI (no Docker engine), so each block is run by bash with `docker`
/// recording its arguments: every build names a Dockerfile that exists, the
/// repository root as context, `VERSION` = the chart's appVersion, and
/// together they tag exactly the three images the chart pulls by default.
#[test]
fn docker_build_lines_name_real_dockerfiles_and_the_charts_images() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let chart = std::fs::read_to_string(repo.join("charts/wsring/Chart.yaml")).unwrap();
    let app_version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .expect("Chart.yaml has an appVersion")
        .trim()
        .trim_matches('"')
        .to_string();
    let values = std::fs::read_to_string(repo.join("charts/wsring/values.yaml")).unwrap();
    let chart_images: BTreeSet<String> = values
        .lines()
        .filter_map(|l| l.trim().strip_prefix("repository: ghcr.io/"))
        .map(|r| format!("ghcr.io/{r}:{app_version}"))
        .collect();
    assert_eq!(chart_images.len(), 3, "{chart_images:?}");

    for (doc, text) in [("README.md", README), ("docs/packaging.md", PACKAGING)] {
        let blocks = docker_build_blocks(text);
        assert_eq!(blocks.len(), 1, "{doc}: one docker build block");
        let script = format!(
            "set -euo pipefail\ndocker() {{ printf '%s\\n' \"$*\"; }}\n{}",
            blocks[0]
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(repo)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{doc}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut tagged = BTreeSet::new();
        for call in String::from_utf8(out.stdout).unwrap().lines() {
            let words: Vec<&str> = call.split_whitespace().collect();
            let after = |flag: &str| {
                let at = words.iter().position(|w| *w == flag);
                at.and_then(|i| words.get(i + 1)).copied()
            };
            assert_eq!(words.first(), Some(&"build"), "{doc}: {call}");
            assert_eq!(
                words.last(),
                Some(&"."),
                "{doc}: context is the repository root: {call}"
            );
            let dockerfile = after("-f").unwrap_or_else(|| panic!("{doc}: no -f: {call}"));
            assert!(repo.join(dockerfile).is_file(), "{doc}: no {dockerfile}");
            assert_eq!(
                after("--build-arg"),
                Some(format!("VERSION={app_version}").as_str()),
                "{doc}: {call}"
            );
            let tag = after("-t").unwrap_or_else(|| panic!("{doc}: no -t: {call}"));
            let stem = dockerfile
                .trim_start_matches("docker/")
                .trim_end_matches(".Dockerfile");
            let name = tag.rsplit('/').next().unwrap().split(':').next().unwrap();
            assert!(name.ends_with(stem), "{doc}: {dockerfile} builds {tag}");
            tagged.insert(tag.to_string());
        }
        assert_eq!(tagged, chart_images, "{doc}");
    }
}
