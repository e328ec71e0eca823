//! What `wsring dev` prints once it is up: the ready line on stdout (for
//! scripts and tests) and, on stderr, where everything is, with commands that
//! work as printed: the connect hint follows the router's key source, the
//! admin calls carry the token.

use std::net::SocketAddr;

use clap::Parser;
use wsring_router::KeySource;

/// The router flags `wsring dev` passes through (`--router-arg=…`), read the
/// way the router reads them, so the hint matches what the router expects.
#[derive(Parser)]
struct RouterFlags {
    #[command(flatten)]
    config: wsring_router::Config,
}

/// Where a client puts its key, from the router arguments; the router's
/// defaults (`?key=`) when they do not parse (the router then refuses them
/// itself, with its own message).
pub fn key_placement(router_args: &[String]) -> (KeySource, String) {
    let argv = std::iter::once("wsring-router".to_string()).chain(router_args.iter().cloned());
    match RouterFlags::try_parse_from(argv) {
        Ok(flags) => (flags.config.key_source, flags.config.key_name),
        Err(_) => (KeySource::Query, "key".to_string()),
    }
}

/// A websocat command that connects as `key` through the router at `listen`.
pub fn connect_hint(listen: SocketAddr, source: KeySource, name: &str, key: &str) -> String {
    match source {
        KeySource::Query => format!("websocat 'ws://{listen}/?{name}={key}'"),
        KeySource::Header => format!("websocat -H '{name}: {key}' 'ws://{listen}/'"),
        KeySource::Cookie => format!("websocat -H 'cookie: {name}={key}' 'ws://{listen}/'"),
        KeySource::Path if name.is_empty() => format!("websocat 'ws://{listen}/{key}'"),
        KeySource::Path => format!("websocat 'ws://{listen}/{name}/{key}'"),
    }
}

/// The admin addresses and token the banner names (the public one is in the
/// connect hint).
pub struct Endpoints<'a> {
    /// Router admin listener.
    pub admin: SocketAddr,
    /// Launcher control API.
    pub control: SocketAddr,
    /// Bearer token of the admin and control APIs.
    pub token: &'a str,
}

/// The stderr banner: how many pods, which bus, and one working command per
/// thing a newcomer wants to do next.
pub fn banner(pods: usize, bus: &str, connect: &str, at: &Endpoints<'_>) -> String {
    let Endpoints {
        admin,
        control,
        token,
    } = at;
    format!(
        "\nwsring dev is up: {pods} pods, bus: {bus}\n\
         \x20 connect:   {connect}\n\
         \x20 ring:      curl -H 'authorization: Bearer {token}' http://{admin}/ring\n\
         \x20 dashboard: http://{admin}/#token={token}\n\
         \x20 add pod:   curl -X POST -H 'authorization: Bearer {token}' http://{control}/pods\n\
         \x20 stop pod:  curl -X DELETE -H 'authorization: Bearer {token}' 'http://{control}/pods/pod-0?mode=graceful|crash'\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_hint_follows_the_router_key_source() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let cases = [
            (args(&[]), "websocat 'ws://127.0.0.1:8080/?key=alice'"),
            (
                args(&["--key-name=user"]),
                "websocat 'ws://127.0.0.1:8080/?user=alice'",
            ),
            (
                args(&["--key-source=header", "--key-name=x-user-id"]),
                "websocat -H 'x-user-id: alice' 'ws://127.0.0.1:8080/'",
            ),
            (
                args(&["--key-source", "cookie", "--key-name", "sid"]),
                "websocat -H 'cookie: sid=alice' 'ws://127.0.0.1:8080/'",
            ),
            (
                args(&["--key-source=path", "--key-name=rooms"]),
                "websocat 'ws://127.0.0.1:8080/rooms/alice'",
            ),
            (
                args(&["--key-source=path", "--key-name="]),
                "websocat 'ws://127.0.0.1:8080/alice'",
            ),
        ];
        for (router_args, want) in cases {
            let (source, name) = key_placement(&router_args);
            assert_eq!(
                connect_hint(listen, source, &name, "alice"),
                want,
                "{router_args:?}"
            );
        }
    }

    #[test]
    fn unparsable_router_args_fall_back_to_the_default_placement() {
        let (source, name) = key_placement(&args(&["--key-source=telepathy"]));
        assert_eq!((source, name.as_str()), (KeySource::Query, "key"));
    }

    #[test]
    fn the_banner_names_every_endpoint_with_the_token() {
        let at = Endpoints {
            admin: "127.0.0.1:9090".parse().unwrap(),
            control: "127.0.0.1:9100".parse().unwrap(),
            token: "t0k",
        };
        let text = banner(
            3,
            "in-process",
            "websocat 'ws://127.0.0.1:8080/?key=alice'",
            &at,
        );
        assert!(text.contains("wsring dev is up: 3 pods, bus: in-process"));
        assert!(text.contains("curl -H 'authorization: Bearer t0k' http://127.0.0.1:9090/ring"));
        assert!(text.contains("http://127.0.0.1:9090/#token=t0k"));
        assert!(text.contains("http://127.0.0.1:9100/pods/pod-0?mode=graceful|crash"));
    }
}
