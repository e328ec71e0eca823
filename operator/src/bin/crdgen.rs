//! `crdgen`: print the `WebSocketCluster` CRD as YAML, or write it to a file.
//!
//! `cargo run -p wsring-operator --bin crdgen > crds/websocketcluster.yaml`
//! (or `crdgen crds/websocketcluster.yaml`). A test fails when the checked-in
//! file is stale.

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let yaml = wsring_operator::crd::crd_yaml()?;
    match std::env::args().nth(1) {
        Some(path) => std::fs::write(&path, yaml).with_context(|| format!("writing {path}"))?,
        None => print!("{yaml}"),
    }
    Ok(())
}
