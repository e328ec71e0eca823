//! A Redis Cluster on loopback: three primaries with one replica each, as
//! real `redis-server --cluster-enabled yes` processes joined by
//! `redis-cli --cluster create`. Tests kill the primary that holds a key
//! ([`RedisCluster::kill_primary_of`]) and wait until its replica took over
//! the slots; the killed node then comes back (from its own `nodes.conf`)
//! as a replica of the new primary, the way a restarted pod would.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::ports::free_port;
use super::redis_server::{info, wait_until, RedisServer};
use crate::Error;

/// How long the cluster may take to form, and a failover to finish.
const SETTLE: Duration = Duration::from_secs(30);
/// What errors of this setup name.
const PROGRAM: &str = "redis cluster";
/// Primaries (each with one replica).
const PRIMARIES: usize = 3;
/// A node missing this long is failed over (the Redis default is 15 s).
const NODE_TIMEOUT_MS: &str = "1000";

/// Six cluster nodes, stopped (and their `nodes.conf` removed) when dropped.
pub struct RedisCluster {
    servers: Vec<RedisServer>,
    /// Each server's cluster bus port, kept for its restart.
    bus_ports: Vec<u16>,
}

impl RedisCluster {
    /// Start the nodes, join them, and wait until every slot is served and
    /// every primary has its replica in sync.
    pub async fn start() -> Result<Self, Error> {
        let (mut servers, mut bus_ports) = (Vec::new(), Vec::new());
        for _ in 0..PRIMARIES * 2 {
            let (port, bus_port) = (free_port()?, free_port()?);
            servers.push(start_node(port, bus_port).await?);
            bus_ports.push(bus_port);
        }
        let addresses: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| cluster_error(format!("running redis-cli --cluster create: {e}")))?;
        if !created.status.success() {
            return Err(cluster_error(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&created.stdout)
            )));
        }
        let cluster = RedisCluster { servers, bus_ports };
        cluster
            .wait_until(
                "every slot is served and every primary has its replica",
                || cluster.healthy(),
            )
            .await?;
        Ok(cluster)
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// `redis://` URLs of the nodes that are primaries right now.
    pub async fn primary_urls(&self) -> Vec<String> {
        let mut primaries = Vec::new();
        for server in &self.servers {
            let role = info(&server.url(), "replication").await;
            if role.is_some_and(|i| i.contains("role:master")) {
                primaries.push(server.url());
            }
        }
        primaries
    }

    /// SIGKILL the primary that holds `key`'s slot, wait until its replica
    /// serves the slot and the cluster is whole again (the killed node back
    /// as a replica). Returns how long the slot had no writable primary.
    pub async fn kill_primary_of(&mut self, key: &str) -> Result<Duration, Error> {
        let old = self
            .owner_of(key)
            .await
            .ok_or_else(|| cluster_error(format!("no primary serves {key:?}")))?;
        let index = self
            .servers
            .iter()
            .position(|s| s.port() == old)
            .ok_or_else(|| cluster_error(format!("port {old} is not in this cluster")))?;
        let started = tokio::time::Instant::now();
        self.servers[index].stop();
        self.wait_until("a replica took over the slot", || async {
            self.owner_of(key).await.is_some_and(|p| p != old)
        })
        .await?;
        let unavailable = started.elapsed();
        self.servers[index] = start_node(old, self.bus_ports[index]).await?;
        self.wait_until("the killed node is back as a replica", || self.healthy())
            .await?;
        Ok(unavailable)
    }

    /// The port of the primary that serves `key`, asked of a live node.
    async fn owner_of(&self, key: &str) -> Option<u16> {
        for server in &self.servers {
            let Ok(client) = redis::Client::open(server.url()) else {
                continue;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                continue;
            };
            let slot: redis::RedisResult<u16> = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut conn)
                .await;
            let nodes: redis::RedisResult<String> = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await;
            if let (Ok(slot), Ok(nodes)) = (slot, nodes) {
                return serving_primary(&nodes, slot);
            }
        }
        None
    }

    /// Every node says `cluster_state:ok` and every primary has a replica
    /// in sync.
    async fn healthy(&self) -> bool {
        let mut primaries = 0;
        for server in &self.servers {
            let url = server.url();
            let Some(state) = info(&url, "cluster").await else {
                return false;
            };
            if !state.contains("cluster_enabled:1") || !cluster_ok(&url).await {
                return false;
            }
            let Some(replication) = info(&url, "replication").await else {
                return false;
            };
            if replication.contains("role:master") {
                if !replication.contains("state=online") {
                    return false;
                }
                primaries += 1;
            }
        }
        primaries == PRIMARIES
    }

    async fn wait_until<F, Fut>(&self, what: &str, check: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        wait_until(PROGRAM, what, SETTLE, check).await
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            server.stop();
            let _ = std::fs::remove_file(std::env::temp_dir().join(nodes_file(server.port())));
        }
    }
}

/// A cluster node on `port` (with its `nodes.conf` from before, if any).
/// The cluster bus port is picked like the client port: Redis's default,
/// the client port + 10000, may be taken or above 65535.
async fn start_node(port: u16, bus_port: u16) -> Result<RedisServer, Error> {
    let nodes = nodes_file(port);
    let bus_port = bus_port.to_string();
    let args = [
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        &bus_port,
        "--cluster-config-file",
        &nodes,
        "--cluster-node-timeout",
        NODE_TIMEOUT_MS,
    ];
    RedisServer::start_on(port, &args).await
}

/// The node's own record of the cluster, in the temp dir (`--dir`).
fn nodes_file(port: u16) -> String {
    format!("wsring-nodes-{port}.conf")
}

/// `CLUSTER INFO` says the cluster serves every slot.
async fn cluster_ok(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    let answer: redis::RedisResult<String> = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut conn)
        .await;
    answer.is_ok_and(|i| i.contains("cluster_state:ok"))
}

/// The port of the live primary that `CLUSTER NODES` says serves `slot`.
fn serving_primary(nodes: &str, slot: u16) -> Option<u16> {
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = fields.get(2)?;
        if !flags.contains("master") || flags.contains("fail") {
            return None;
        }
        let serves = fields.iter().skip(8).any(|range| {
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&slot))
        });
        let port = fields.get(1)?.split('@').next()?.rsplit(':').next()?;
        serves.then(|| port.parse().ok()).flatten()
    })
}

/// What went wrong with the cluster as a whole.
fn cluster_error(reason: String) -> Error {
    Error::Spawn {
        program: PROGRAM.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_primary_is_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master,fail - 0 0 2 connected 5461-10922
c3 127.0.0.1:7004@17004 master - 0 0 7 connected 5461-10922
d4 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383
e5 127.0.0.1:7003@17003 slave a1 0 0 1 connected
";
        assert_eq!(serving_primary(nodes, 0), Some(7000));
        assert_eq!(
            serving_primary(nodes, 5461),
            Some(7004),
            "not the failed one"
        );
        assert_eq!(serving_primary(nodes, 16383), Some(7002));
        assert_eq!(serving_primary("", 1), None);
    }
}
