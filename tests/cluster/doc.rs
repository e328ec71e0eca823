//! A document's shell commands as data: its `sh` blocks, found by the heading
//! they stand under, so the walk-through runs exactly what a reader copies.
//!
//! A block preceded by a line starting `<!-- walkthrough: not run` is not run:
//! an illustration with placeholders (`password='…'`), or a command this
//! machine cannot run, with the reason in the marker. Every other `sh` block
//! must be run by the test, which [`Doc::unrun`] checks at the end.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Start of the marker line before a `sh` block the walk-through does not run.
const NOT_RUN: &str = "<!-- walkthrough: not run";

/// One `sh` block.
#[derive(Clone, Debug)]
pub struct Block {
    /// The `##` or `###` heading it stands under.
    pub heading: String,
    /// Its position among the runnable blocks under that heading.
    pub index: usize,
    /// The script, exactly as written.
    pub script: String,
}

/// The runnable blocks of one Markdown document, or of one `##` section of it.
pub struct Doc {
    /// The document's path, for messages.
    name: String,
    blocks: Vec<Block>,
    taken: Mutex<BTreeSet<(String, usize)>>,
}

impl Doc {
    /// Read the blocks of `text` (the document at `name`): those under the
    /// `## {section}` heading, or all of them when `section` is `None`.
    pub fn parse(name: &str, text: &str, section: Option<&str>) -> Doc {
        let mut blocks = Vec::new();
        let mut in_section = section.is_none();
        let mut heading = String::new();
        let mut previous = "";
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if let Some(h) = line.strip_prefix("## ") {
                heading = h.trim().to_string();
                in_section = section.is_none_or(|s| s == heading);
            } else if let Some(h) = line.strip_prefix("### ") {
                heading = h.trim().to_string();
            }
            if in_section && line.trim() == "```sh" {
                let script: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
                if !previous.trim().starts_with(NOT_RUN) {
                    let index = blocks
                        .iter()
                        .filter(|b: &&Block| b.heading == heading)
                        .count();
                    blocks.push(Block {
                        heading: heading.clone(),
                        index,
                        script: script.join("\n"),
                    });
                }
            }
            previous = line;
        }
        Doc {
            name: name.to_string(),
            blocks,
            taken: Mutex::new(BTreeSet::new()),
        }
    }

    /// Block `index` under the heading that starts with `heading`.
    pub fn block(&self, heading: &str, index: usize) -> Block {
        let block = self
            .blocks
            .iter()
            .find(|b| b.heading.starts_with(heading) && b.index == index)
            .unwrap_or_else(|| panic!("{} has no sh block {index} under \"{heading}…\"", self.name))
            .clone();
        self.taken
            .lock()
            .unwrap()
            .insert((block.heading.clone(), index));
        block
    }

    /// Fails naming every block the test never asked for: each is a command
    /// of the document that CI does not run.
    pub fn assert_all_run(&self) {
        let taken = self.taken.lock().unwrap().clone();
        let unrun: Vec<String> = self
            .blocks
            .iter()
            .filter(|b| !taken.contains(&(b.heading.clone(), b.index)))
            .map(|b| format!("{}: {}", b.heading, b.script))
            .collect();
        assert!(
            unrun.is_empty(),
            "{} blocks the walk-through never ran: {unrun:#?}",
            self.name
        );
    }
}

#[test]
fn blocks_are_found_by_heading_and_the_marker_skips_one() {
    let text = "# x\n## Other\n```sh\nnot this\n```\n## Run on Kubernetes\n### 1. One\n```sh\na \\\n  b\n```\n```\nout\n```\n<!-- walkthrough: not run -->\n```sh\nskipped\n```\n```sh\nc\n```\n<!-- walkthrough: not run: needs a Docker engine -->\n```sh\ndocker build .\n```\n### 2. Two\n```sh\nd\n```\n## After\n```sh\nnot this either\n```\n";
    let section = Doc::parse("README.md", text, Some("Run on Kubernetes"));
    assert_eq!(section.block("1.", 0).script, "a \\\n  b");
    assert_eq!(section.block("1. One", 1).script, "c");
    let unrun = std::panic::catch_unwind(|| section.assert_all_run()).unwrap_err();
    let message = unrun.downcast_ref::<String>().unwrap();
    assert!(message.contains("2. Two: d"), "{message}");
    assert!(
        !message.contains("skipped") && !message.contains("docker"),
        "{message}"
    );
    section.block("2.", 0);
    section.assert_all_run();

    let whole = Doc::parse("doc.md", text, None);
    assert_eq!(whole.block("Other", 0).script, "not this");
    assert_eq!(whole.block("After", 0).script, "not this either");
    assert_eq!(whole.block("2. Two", 0).script, "d");
}
