//! The README's Kubernetes walk-through as data: its `sh` blocks, found by the
//! heading they stand under, so the test runs exactly what a reader copies.
//!
//! A block preceded by the line `<!-- walkthrough: not run -->` is an
//! illustration with placeholders (`password='…'`) and is skipped; every other
//! `sh` block of the section must be run by the test, which
//! [`Readme::unrun`] checks at the end.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Marker line before a `sh` block the walk-through does not run.
const NOT_RUN: &str = "<!-- walkthrough: not run -->";

/// One `sh` block.
#[derive(Clone, Debug)]
pub struct Block {
    /// The `###` heading it stands under.
    pub heading: String,
    /// Its position among the runnable blocks under that heading.
    pub index: usize,
    /// The script, exactly as written.
    pub script: String,
}

/// The runnable blocks of README.md's "## Run on Kubernetes" section.
pub struct Readme {
    blocks: Vec<Block>,
    taken: Mutex<BTreeSet<(String, usize)>>,
}

impl Readme {
    /// Read the section from `text` (the README).
    pub fn parse(text: &str) -> Readme {
        let mut blocks = Vec::new();
        let mut in_section = false;
        let mut heading = String::new();
        let mut previous = "";
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if let Some(h) = line.strip_prefix("## ") {
                in_section = h.trim() == "Run on Kubernetes";
                continue;
            }
            if !in_section {
                previous = line;
                continue;
            }
            if let Some(h) = line.strip_prefix("### ") {
                heading = h.trim().to_string();
            }
            if line.trim() == "```sh" {
                let script: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
                if previous.trim() != NOT_RUN {
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
        Readme {
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
            .unwrap_or_else(|| panic!("README has no sh block {index} under \"### {heading}…\""))
            .clone();
        self.taken
            .lock()
            .unwrap()
            .insert((block.heading.clone(), index));
        block
    }

    /// Blocks the test never asked for: each is a README command CI does not run.
    pub fn unrun(&self) -> Vec<Block> {
        let taken = self.taken.lock().unwrap();
        self.blocks
            .iter()
            .filter(|b| !taken.contains(&(b.heading.clone(), b.index)))
            .cloned()
            .collect()
    }
}

#[test]
fn blocks_are_found_by_heading_and_the_marker_skips_one() {
    let text = "# x\n## Other\n```sh\nnot this\n```\n## Run on Kubernetes\n### 1. One\n```sh\na \\\n  b\n```\n```\nout\n```\n<!-- walkthrough: not run -->\n```sh\nskipped\n```\n```sh\nc\n```\n### 2. Two\n```sh\nd\n```\n## After\n```sh\nnot this either\n```\n";
    let readme = Readme::parse(text);
    assert_eq!(readme.block("1.", 0).script, "a \\\n  b");
    assert_eq!(readme.block("1. One", 1).script, "c");
    let unrun: Vec<_> = readme.unrun().into_iter().map(|b| b.script).collect();
    assert_eq!(unrun, ["d"]);
}
