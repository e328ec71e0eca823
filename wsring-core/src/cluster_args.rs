//! The cluster identity flags shared by the router and ws-pod (feature `cli`):
//! `--cluster` and `--namespace`, the two parts of every Redis channel and
//! history key name. Declared once, so a router and its pods started with the
//! same flags or environment always name the same channels.
//!
//! Flatten [`ClusterArgs`] into a clap parser with `#[command(flatten)]`, as
//! `token_args::TokenArgs` and `redis_args::RedisArgs` are.

use crate::protocol::LOCAL_NAMESPACE;
use crate::Error;

/// Default `--cluster`.
pub const DEFAULT_CLUSTER: &str = "wsring";

/// `--cluster` (`WSRING_CLUSTER`) and `--namespace` (`POD_NAMESPACE`).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct ClusterArgs {
    /// Cluster name, part of the Redis channel names.
    #[arg(long = "cluster", env = "WSRING_CLUSTER", default_value = DEFAULT_CLUSTER)]
    pub name: String,

    /// Kubernetes namespace of the cluster (downward API), part of the Redis
    /// channel names: same-named clusters of two namespaces never share them.
    #[arg(long, env = "POD_NAMESPACE", default_value = LOCAL_NAMESPACE)]
    pub namespace: String,
}

impl Default for ClusterArgs {
    /// The defaults of the flags: what local mode and tests run with.
    fn default() -> Self {
        ClusterArgs {
            name: DEFAULT_CLUSTER.into(),
            namespace: LOCAL_NAMESPACE.into(),
        }
    }
}

impl ClusterArgs {
    /// Refuse an empty name or namespace at start-up: a channel named
    /// `wsring::…` would never match what the other side subscribes to.
    pub fn check(&self) -> Result<(), Error> {
        for (flag, value) in [("--cluster", &self.name), ("--namespace", &self.namespace)] {
            if value.trim().is_empty() {
                return Err(Error::ClusterConfig(format!("{flag} must not be empty")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cluster: ClusterArgs,
    }

    #[test]
    fn defaults_are_the_flags_defaults_and_flags_override_them() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.cluster, ClusterArgs::default());
        let cli = Cli::try_parse_from(["x", "--cluster", "chat", "--namespace", "prod"]).unwrap();
        assert_eq!(cli.cluster.name, "chat");
        assert_eq!(cli.cluster.namespace, "prod");
        assert!(cli.cluster.check().is_ok());
    }

    #[test]
    fn an_empty_name_or_namespace_is_refused_naming_the_flag() {
        for (args, flag) in [
            (["x", "--cluster", ""], "--cluster"),
            (["x", "--namespace", " "], "--namespace"),
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let err = cli.cluster.check().unwrap_err().to_string();
            assert_eq!(err, format!("{flag} must not be empty"));
        }
    }
}
