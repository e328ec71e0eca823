//! The listener flags shared by the router and ws-pod (feature `listen`):
//! `--listen` (`WSRING_LISTEN`), the WebSocket port, and `--admin-listen`
//! (`WSRING_ADMIN_LISTEN`), the admin API. Declared once, with each
//! process's default ports as a type parameter, and bound once the same way,
//! so both processes accept, refuse and report their listeners alike.
//!
//! Flatten [`ListenArgs`] into a clap parser with `#[command(flatten)]` (as
//! `token_args::TokenArgs` is), then call [`ListenArgs::bind`] at start-up:
//! a port that cannot be bound stops the process with a message naming the
//! listener and the address.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;

use crate::Error;

/// The default listeners of one kind of process: every interface, its ports
/// (the port numbers of `protocol`, checked by this module's tests).
///
/// They are strings, not `SocketAddr`s, because clap keeps a rendered
/// `default_value_t` in a static that every instance of a generic parser
/// shares: the `wsring` binary, which parses both processes' flags, would
/// give ws-pod the router's defaults.
pub trait DefaultPorts: Clone + Debug + PartialEq + Eq + Send + Sync + 'static {
    /// Default `--listen`.
    const LISTEN: &'static str;
    /// Default `--admin-listen`.
    const ADMIN_LISTEN: &'static str;
}

/// The router: its public WebSocket port (the only one behind the Ingress)
/// and its admin port (health, metrics, ring, push API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterPorts;

impl DefaultPorts for RouterPorts {
    const LISTEN: &'static str = "0.0.0.0:8080";
    const ADMIN_LISTEN: &'static str = "0.0.0.0:9090";
}

/// ws-pod: the WebSocket port routers dial and its admin port (health,
/// metrics, connections, push API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodPorts;

impl DefaultPorts for PodPorts {
    const LISTEN: &'static str = "0.0.0.0:8081";
    const ADMIN_LISTEN: &'static str = "0.0.0.0:9091";
}

/// `--listen` and `--admin-listen`, with the defaults of `P`.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct ListenArgs<P: DefaultPorts> {
    /// WebSocket listener: a router's public port, or the port of a pod that
    /// its routers dial.
    #[arg(long, env = "WSRING_LISTEN", default_value = P::LISTEN)]
    pub listen: SocketAddr,

    /// Admin listener: health, metrics and the admin and push APIs.
    #[arg(long, env = "WSRING_ADMIN_LISTEN", default_value = P::ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,

    #[arg(skip)]
    ports: PhantomData<P>,
}

impl<P: DefaultPorts> Default for ListenArgs<P> {
    /// The defaults of the flags: every interface, the ports of `P`.
    fn default() -> Self {
        let parse = |addr: &str| addr.parse().expect("a default listener is an address");
        ListenArgs::new(parse(P::LISTEN), parse(P::ADMIN_LISTEN))
    }
}

impl<P: DefaultPorts> ListenArgs<P> {
    /// The flags `--listen listen --admin-listen admin_listen`.
    pub fn new(listen: SocketAddr, admin_listen: SocketAddr) -> Self {
        ListenArgs {
            listen,
            admin_listen,
            ports: PhantomData,
        }
    }

    /// Both on loopback, on ports the kernel picks (tests and in-process
    /// launchers; the bound addresses say which).
    pub fn loopback() -> Self {
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        ListenArgs::new(any_port, any_port)
    }

    /// Bind both listeners; nothing is accepted yet.
    pub async fn bind(&self) -> Result<Listeners, Error> {
        Ok(Listeners {
            ws: BoundListener::bind("websocket", self.listen).await?,
            admin: BoundListener::bind("admin", self.admin_listen).await?,
        })
    }
}

/// A bound listener and its real address (port 0 resolved).
#[derive(Debug)]
pub struct BoundListener {
    /// The socket, to hand to an accept loop or `axum::serve`.
    pub listener: TcpListener,
    /// The address it is bound to.
    pub addr: SocketAddr,
}

impl BoundListener {
    async fn bind(what: &'static str, addr: SocketAddr) -> Result<Self, Error> {
        let refused = |source: std::io::Error| Error::Bind {
            what,
            addr,
            reason: source.to_string(),
        };
        let listener = TcpListener::bind(addr).await.map_err(refused)?;
        let addr = listener.local_addr().map_err(refused)?;
        Ok(BoundListener { listener, addr })
    }
}

/// The two listeners of a router or ws-pod, bound by [`ListenArgs::bind`].
#[derive(Debug)]
pub struct Listeners {
    /// The WebSocket listener (`--listen`).
    pub ws: BoundListener,
    /// The admin listener (`--admin-listen`).
    pub admin: BoundListener,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::protocol::{POD_ADMIN_PORT, POD_WS_PORT, ROUTER_ADMIN_PORT, ROUTER_WS_PORT};

    #[derive(Parser, Debug)]
    struct RouterCli {
        #[command(flatten)]
        listen: ListenArgs<RouterPorts>,
    }

    #[derive(Parser, Debug)]
    struct PodCli {
        #[command(flatten)]
        listen: ListenArgs<PodPorts>,
    }

    /// Every interface, `port`.
    fn all_interfaces(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
    }

    /// Both parsers in one program, as in the `wsring` binary: each keeps
    /// its own defaults, and they are the ports of `protocol`.
    #[test]
    fn each_process_has_its_own_default_ports() {
        for _ in 0..2 {
            let router = RouterCli::try_parse_from(["router"]).unwrap().listen;
            assert_eq!(router, ListenArgs::default());
            assert_eq!(router.listen, all_interfaces(ROUTER_WS_PORT));
            assert_eq!(router.admin_listen, all_interfaces(ROUTER_ADMIN_PORT));
            let pod = PodCli::try_parse_from(["pod"]).unwrap().listen;
            assert_eq!(pod, ListenArgs::default());
            assert_eq!(pod.listen, all_interfaces(POD_WS_PORT));
            assert_eq!(pod.admin_listen, all_interfaces(POD_ADMIN_PORT));
        }
    }

    #[test]
    fn flags_set_both_listeners_and_a_bad_address_is_refused() {
        let cli = PodCli::try_parse_from([
            "pod",
            "--listen",
            "127.0.0.1:1",
            "--admin-listen",
            "[::1]:2",
        ])
        .unwrap();
        assert_eq!(
            cli.listen,
            ListenArgs::new("127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap())
        );
        let err = PodCli::try_parse_from(["pod", "--listen", "8081"]).unwrap_err();
        assert!(err.to_string().contains("--listen"), "{err}");
    }

    #[tokio::test]
    async fn binding_reports_the_real_ports_and_names_a_taken_one() {
        let listeners = ListenArgs::<PodPorts>::loopback().bind().await.unwrap();
        assert_ne!(listeners.ws.addr.port(), 0);
        assert_ne!(listeners.admin.addr.port(), 0);
        assert_ne!(listeners.ws.addr, listeners.admin.addr);

        let taken = ListenArgs::<PodPorts>::new(listeners.ws.addr, "127.0.0.1:0".parse().unwrap());
        let err = taken.bind().await.unwrap_err();
        assert!(
            matches!(&err, Error::Bind { what: "websocket", addr, .. } if *addr == listeners.ws.addr),
            "{err}"
        );
        assert!(
            err.to_string().contains(&listeners.ws.addr.to_string()),
            "{err}"
        );
    }
}
