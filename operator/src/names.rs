//! Names and ports the operator puts into every pod, which an app template must
//! therefore leave alone.
//!
//! Spec validation ([`crate::crd`]) refuses a template that uses one of them,
//! and the resource builders ([`crate::resources`]) create the objects that
//! carry them. Both sides read them here, and this module imports nothing from
//! the crate, so neither side has to import the other.

use wsring_core::protocol::{POD_ADMIN_PORT, POD_WS_PORT};

/// Name of the ws-pod sidecar container, so app containers may not use it.
pub const SIDECAR_NAME: &str = "ws-pod";

/// Name of the volume holding the Redis CA certificate, so app volumes may not
/// use it.
pub const REDIS_CA_VOLUME: &str = "wsring-redis-ca";

/// Ports the ws-pod sidecar listens on in every pod, so no app container may
/// use them.
pub const RESERVED_POD_PORTS: [u16; 2] = [POD_WS_PORT, POD_ADMIN_PORT];

/// Whether `port` (a Kubernetes container port) is one of the
/// [`RESERVED_POD_PORTS`].
pub fn is_reserved_pod_port(port: i32) -> bool {
    RESERVED_POD_PORTS
        .iter()
        .any(|&reserved| i32::from(reserved) == port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_ports_are_reserved_and_nothing_else() {
        assert!(is_reserved_pod_port(8081));
        assert!(is_reserved_pod_port(9091));
        assert!(!is_reserved_pod_port(8080));
        assert!(!is_reserved_pod_port(-8081));
    }
}
