//! Redis authentication and TLS end to end: real `wsring router` and
//! `wsring pod` processes, a real `redis-server` with `--requirepass` (and a
//! TLS-only port signed by a throwaway CA), a real WebSocket client.
//!
//! The last test starts the processes with exactly the environment the
//! operator puts into the router Deployment and the pod StatefulSet, so the
//! operator ↔ binary contract (variable names, list syntax, the CA mount) is
//! checked against the real binaries, not against a copy of the names.
//!
//! The proof that a reset travelled router → Redis → pod is the client seeing
//! close code 4001, which only the pod sends: the router's own fallback close
//! (a plain TCP close) is pushed out to ten minutes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use wsring::process::{Logs, Role, ServerLaunch, ServerProcess};
use wsring_core::harness::{free_addr, free_port, AdminClient, RedisServer};
use wsring_core::protocol::CLOSE_RING_MOVED;

const TOKEN: &str = "sec-token";
const PASSWORD: &str = "redis-s3cret";
const CLUSTER: &str = "sec";
/// Upper bound for anything to come up; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(30);

/// How the processes reach Redis.
struct Redis {
    url: String,
    ca_file: Option<PathBuf>,
}

/// A `wsring router` / `wsring pod` child on free ports, stopped when dropped.
type Proc = ServerProcess;

/// Start `wsring ROLE` on free loopback ports with the test cluster and
/// token, the test's `RUST_LOG` (default `warn`) and `env` on top.
fn wsring(role: Role, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let log_level = std::env::var("RUST_LOG").unwrap_or("warn".into());
    let env = [("RUST_LOG", log_level.as_str())]
        .iter()
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ServerProcess::spawn(ServerLaunch {
        exe: env!("CARGO_BIN_EXE_wsring").into(),
        role,
        name: role.subcommand().into(),
        listen: free_addr().unwrap(),
        admin: free_addr().unwrap(),
        cluster: CLUSTER.into(),
        token: TOKEN.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env,
        logs: Logs::Inherit,
    })
    .expect("spawn wsring")
}

/// A pod that takes the password from `WSRING_REDIS_PASSWORD` and the CA from
/// `WSRING_REDIS_CA_FILE` (the URL has neither).
fn pod(redis: &Redis) -> Proc {
    let mut env = vec![("WSRING_REDIS_PASSWORD", PASSWORD)];
    let ca = redis.ca_file.as_ref().map(|p| p.display().to_string());
    if let Some(ca) = &ca {
        env.push(("WSRING_REDIS_CA_FILE", ca));
    }
    wsring(
        Role::Pod,
        &["--pod-name", "pod-0", "--redis-url", &redis.url],
        &env,
    )
}

/// A router that takes the password and CA from flags; `trust_ca: false` leaves the CA out.
fn router(redis: &Redis, id: &str, trust_ca: bool) -> Proc {
    let ca = redis.ca_file.as_ref().map(|p| p.display().to_string());
    let mut args = vec![
        "--router-id",
        id,
        "--redis-url",
        &redis.url,
        "--redis-password",
        PASSWORD,
        "--reset-timeout-ms",
        "600000",
    ];
    if let (Some(ca), true) = (&ca, trust_ca) {
        args.extend(["--redis-ca-file", ca]);
    }
    wsring(Role::Router, &args, &[])
}

async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let res = AdminClient::new()
        .get(format!("http://{addr}{path}"))
        .bearer(TOKEN)
        .send()
        .await
        .ok()?;
    Some((res.status().as_u16(), res.text()))
}

/// Poll `check` until it yields a value; panics with `what` after [`WAIT`].
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until the pod reports a live subscription on its reset channel.
async fn wait_subscribed(pod: &Proc) {
    wait_for("pod subscribed to its Redis channel", || async {
        let (_, text) = get(pod.admin, "/metrics").await?;
        text.lines()
            .any(|l| l.starts_with("wsring_pod_redis_connected") && l.ends_with(" 1"))
            .then_some(())
    })
    .await;
}

async fn put_ring(router: &Proc, version: u64, members: Value) -> Value {
    let res = AdminClient::new()
        .put(format!("http://{}/ring", router.admin))
        .bearer(TOKEN)
        .body(json!({"version": version, "vnodes": 16, "members": members}).to_string())
        .send()
        .await
        .expect("PUT /ring");
    assert_eq!(res.status(), 200);
    res.json().unwrap()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Route `pod` into `router`'s ring and open an echoing connection through it.
async fn connect_through(router: &Proc, pod: &Proc) -> Ws {
    let member =
        json!([{"name": "pod-0", "addr": pod.listen.to_string(), "admin": pod.admin.to_string()}]);
    put_ring(router, 1, member).await;
    let url = format!("ws://{}/?key=alice", router.listen);
    let (mut ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    assert_eq!(response.headers()["x-wsring-pod"], "pod-0");
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    ws
}

/// Move every key away from pod-0 (to a member nobody listens on).
async fn move_keys(router: &Proc) {
    let ghost = json!([{"name": "ghost-0", "addr": "127.0.0.1:1", "admin": "127.0.0.1:1"}]);
    let answer = put_ring(router, 2, ghost).await;
    assert_eq!(answer["moved"], 1, "{answer}");
    assert_eq!(answer["resetBatches"], 1, "{answer}");
}

/// The close code the client receives.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    while let Some(frame) = ws.next().await {
        match frame {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Outcome of the router's first recorded reset (dashboard state, no token needed).
async fn reset_outcome(router: &Proc) -> String {
    wait_for("the router recorded the reset", || async {
        let (_, body) = get(router.admin, "/dashboard/state").await?;
        let state: Value = serde_json::from_str(&body).ok()?;
        state["resets"][0]["outcome"].as_str().map(str::to_string)
    })
    .await
}

/// Once `router`'s admin API is up, connect a client through it to `pod` and
/// move the client's key away, so that the router resets the connection.
/// Returns the client.
async fn connect_and_move_key(router: &Proc, pod: &Proc) -> Ws {
    wait_for("router admin up", || get(router.admin, "/healthz")).await;
    let ws = connect_through(router, pod).await;
    move_keys(router).await;
    ws
}

/// The reset of `ws` went router → Redis → pod: the client sees close 4001,
/// which only the pod sends, and the router recorded it as `published`.
async fn assert_reset_published(router: &Proc, ws: &mut Ws) {
    assert_eq!(close_code(ws).await, Some(CLOSE_RING_MOVED));
    assert_eq!(reset_outcome(router).await, "published");
}

/// Start a pod and a router (id `router_id`) on `redis`, connect a client
/// through them, move its key, and check that the reset went router → Redis
/// → pod (close 4001, outcome `published`). Returns the pod for more checks.
async fn reset_is_published(redis: &Redis, router_id: &str) -> Proc {
    let pod = pod(redis);
    wait_subscribed(&pod).await;
    let router = router(redis, router_id, true);
    let mut ws = connect_and_move_key(&router, &pod).await;
    assert_reset_published(&router, &mut ws).await;
    pod
}

/// A plain (no TLS) redis-server on a free port that requires [`PASSWORD`],
/// and how the processes reach it (the URL carries no password).
async fn password_redis() -> (RedisServer, Redis) {
    let port = free_port().unwrap();
    let server = RedisServer::start_on(port, &["--requirepass", PASSWORD])
        .await
        .expect("redis-server");
    let redis = Redis {
        url: format!("redis://127.0.0.1:{port}"),
        ca_file: None,
    };
    (server, redis)
}

#[tokio::test]
async fn resets_reach_the_pod_through_a_password_protected_redis() {
    let (_server, redis) = password_redis().await;
    reset_is_published(&redis, "r-pw").await;
}

/// A reset for a pod that does not listen (crashed, or gone from Redis) is
/// recorded as `no subscriber`, not `published`: nobody received it, and the
/// router's own close at the reset timeout is what ends those connections.
#[tokio::test]
async fn a_reset_nobody_receives_is_not_reported_as_published() {
    let (_server, redis) = password_redis().await;
    // The pod has no Redis at all, so nothing subscribes to its channel.
    let deaf_pod = wsring(Role::Pod, &["--pod-name", "pod-0"], &[]);
    let router = router(&redis, "r-deaf", true);
    let _ws = connect_and_move_key(&router, &deaf_pod).await;
    assert_eq!(reset_outcome(&router).await, "no subscriber");
}

/// Least privilege with Redis ACLs (docs/interfaces.md, "Redis"): the router's
/// user may only publish, on its cluster's channels; the pod's user may only
/// subscribe, to its own channel. Resets still go router → Redis → pod, and
/// each user is refused the other's command.
#[tokio::test]
async fn resets_work_with_least_privilege_redis_acls() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("users.acl");
    std::fs::write(
        &acl,
        format!(
            "user default off\n\
             user router on >router-pw resetchannels &wsring:local:{CLUSTER}:pod:* -@all +publish +ping +hello +auth +client\n\
             user pod-0 on >pod-pw resetchannels &wsring:local:{CLUSTER}:pod:pod-0 -@all +subscribe +unsubscribe +ping +hello +auth +client\n"
        ),
    )
    .unwrap();
    let port = free_port().unwrap();
    let _server = RedisServer::start_on(port, &["--aclfile", &acl.display().to_string()])
        .await
        .expect("redis-server");
    let url = |user: &str, pw: &str| format!("redis://{user}:{pw}@127.0.0.1:{port}");

    let (pod_url, router_url) = (url("pod-0", "pod-pw"), url("router", "router-pw"));

    let pod = wsring(
        Role::Pod,
        &["--pod-name", "pod-0", "--redis-url", &pod_url],
        &[],
    );
    wait_subscribed(&pod).await;
    let router = wsring(
        Role::Router,
        &[
            "--router-id",
            "r-acl",
            "--redis-url",
            &router_url,
            "--reset-timeout-ms",
            "600000",
        ],
        &[],
    );
    let mut ws = connect_and_move_key(&router, &pod).await;
    assert_reset_published(&router, &mut ws).await;

    let channel = format!("wsring:local:{CLUSTER}:pod:pod-0");
    let refused = |result: redis::RedisResult<redis::Value>| {
        let err = result.expect_err("refused by the ACL");
        assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");
    };
    let mut as_pod = connect_as(&pod_url).await;
    refused(publish_empty(&mut as_pod, &channel).await);
    let mut as_router = connect_as(&router_url).await;
    refused(publish_empty(&mut as_router, "wsring:local:other-cluster:pod:pod-0").await);
    refused(redis::cmd("GET").arg("k").query_async(&mut as_router).await);
    let mut other_channel = redis::Client::open(pod_url)
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    let err = other_channel
        .subscribe(format!("wsring:local:{CLUSTER}:pod:pod-1"))
        .await
        .expect_err("another pod's channel is refused");
    assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");
}

/// A Redis connection as the user (and password) in `url`.
async fn connect_as(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `PUBLISH channel {}` on `conn`, for what its user may publish.
async fn publish_empty(
    conn: &mut redis::aio::MultiplexedConnection,
    channel: &str,
) -> redis::RedisResult<redis::Value> {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg("{}")
        .query_async(conn)
        .await
}

/// Start a TLS-only, password-protected redis-server with certificates from
/// [`make_certs`] in `dir`; its URL names `localhost`, as the certificate does.
async fn tls_redis(dir: &Path) -> (RedisServer, String) {
    make_certs(dir);
    let file = |name: &str| dir.join(name).display().to_string();
    let port = free_port().unwrap();
    // TLS only: `--port 0` turns the plain port off; clients need no certificate.
    let server = RedisServer::start_on(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            PASSWORD,
        ],
    )
    .await
    .expect("redis-server with TLS");
    (server, format!("rediss://localhost:{port}"))
}

/// Throwaway CA and a server certificate for `localhost` / `127.0.0.1`, with the `openssl` CLI.
fn make_certs(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI is needed for the TLS test");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=wsring test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test]
async fn resets_reach_the_pod_over_rediss_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = tls_redis(dir.path()).await;
    let redis = Redis {
        url,
        ca_file: Some(dir.path().join("ca.pem")),
    };
    let pod = reset_is_published(&redis, "r-tls").await;

    // Without --redis-ca-file the private CA is not trusted: the publish fails
    // (and the connection would be left to the router's own close).
    let untrusting = router(&redis, "r-no-ca", false);
    let _ws = connect_and_move_key(&untrusting, &pod).await;
    assert_eq!(reset_outcome(&untrusting).await, "publish failed");
}

/// Secret values by (Secret name, key), as the test "cluster" holds them.
type Secrets = std::collections::BTreeMap<(&'static str, &'static str), String>;

/// What the kubelet makes of `container` in `pod`: the files of its Secret
/// volume mounts written under `root` (each mount path re-rooted there), and
/// its environment with Secrets, the downward API and mount paths resolved.
/// `WSRING_RING_CONFIGMAP` is dropped (no API server here: the test sends the
/// ring with `PUT /ring`, as the operator does) and so are the listen
/// addresses (the test binds free ports with flags).
fn kubelet_env(
    pod: &k8s_openapi::api::core::v1::PodSpec,
    container: &str,
    pod_name: &str,
    secrets: &Secrets,
    root: &Path,
) -> Vec<(String, String)> {
    let secret = |name: &str, key: &str| {
        secrets
            .iter()
            .find(|((n, k), _)| *n == name && *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("the operator refers to an unknown Secret {name}/{key}"))
    };
    let c = pod
        .containers
        .iter()
        .find(|c| c.name == container)
        .unwrap_or_else(|| panic!("no container {container}"));
    let mut mounts = Vec::new();
    for mount in c.volume_mounts.iter().flatten() {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap_or_else(|| panic!("mount of an undeclared volume {}", mount.name));
        let source = volume.secret.as_ref().expect("only Secret volumes here");
        let secret_name = source.secret_name.as_deref().unwrap();
        let dir = root.join(mount.mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        for item in source.items.iter().flatten() {
            std::fs::write(dir.join(&item.path), secret(secret_name, &item.key)).unwrap();
        }
        mounts.push((mount.mount_path.clone(), dir));
    }
    let skipped = [
        "WSRING_RING_CONFIGMAP",
        "WSRING_LISTEN",
        "WSRING_ADMIN_LISTEN",
    ];
    c.env
        .iter()
        .flatten()
        .filter(|e| !skipped.contains(&e.name.as_str()))
        .map(|e| {
            let value = if let Some(value) = &e.value {
                match mounts
                    .iter()
                    .find(|(path, _)| value.starts_with(path.as_str()))
                {
                    Some((path, dir)) => format!("{}{}", dir.display(), &value[path.len()..]),
                    None => value.clone(),
                }
            } else {
                let from = e.value_from.as_ref().unwrap();
                if let Some(r) = &from.secret_key_ref {
                    secret(&r.name, &r.key)
                } else {
                    match from.field_ref.as_ref().unwrap().field_path.as_str() {
                        "metadata.name" => pod_name.to_string(),
                        "metadata.namespace" => "testns".to_string(),
                        other => panic!("unexpected downward API field {other}"),
                    }
                }
            };
            (e.name.clone(), value)
        })
        .collect()
}

/// Start a `wsring` child with a resolved environment (flags only for ports).
fn wsring_with_env(role: Role, args: &[&str], env: &[(String, String)]) -> Proc {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    wsring(role, args, &env)
}

/// Open a WebSocket through `router` with an optional `Origin`; the HTTP
/// status when the upgrade is refused.
async fn upgrade(router: &Proc, origin: Option<&str>) -> Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/?key=alice", router.listen)
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, response)) => {
            assert_eq!(response.headers()["x-wsring-pod"], "pod-0");
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("upgrade failed without an HTTP answer: {e}"),
    }
}

#[tokio::test]
async fn the_environment_the_operator_builds_is_what_the_binaries_read() {
    use wsring_operator::crd::{
        PodTransport, RedisSpec, SecretKeyRef, WebSocketCluster, WebSocketClusterSpec,
    };
    use wsring_operator::resources::{router, statefulset};

    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = tls_redis(dir.path()).await;
    let secret_ref = |name: &str, key: &str| {
        Some(SecretKeyRef {
            name: name.into(),
            key: key.into(),
        })
    };
    let mut spec = WebSocketClusterSpec {
        redis: Some(RedisSpec {
            url: Some(url),
            url_secret_ref: None,
            password_secret_ref: secret_ref("redis-auth", "password"),
            ca_secret_ref: secret_ref("redis-ca", "ca.crt"),
        }),
        ..WebSocketClusterSpec::default()
    };
    spec.router.allowed_origins = vec![
        "https://chat.example.com".into(),
        "https://*.chat.example.com".into(),
    ];
    spec.router.require_origin = true;
    spec.router.pod_transport = PodTransport::H2;
    spec.delivery = Some(wsring_operator::crd::DeliverySpec {
        history: Some(wsring_operator::crd::HistorySpec {
            size: 10,
            ttl: "1m".into(),
            replicas: 0,
        }),
    });
    spec.validate().expect("a valid spec");
    let mut wsc = WebSocketCluster::new(CLUSTER, spec);
    wsc.metadata.namespace = Some("testns".into());

    let secrets: Secrets = [
        (("sec-token", "token"), TOKEN.to_string()),
        (("redis-auth", "password"), PASSWORD.to_string()),
        (
            ("redis-ca", "ca.crt"),
            std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
        ),
    ]
    .into();
    let kubelet = |pod: &k8s_openapi::api::core::v1::PodSpec, container, name, root| {
        kubelet_env(pod, container, name, &secrets, &dir.path().join(root))
    };
    let sts = statefulset::statefulset(&wsc);
    let pod_spec = sts.spec.template.spec.as_ref().unwrap();
    let pod_env = kubelet(pod_spec, statefulset::SIDECAR_NAME, "pod-0", "pod-0");
    let deployment = router::deployment(&wsc);
    let router_spec = deployment.spec.template.spec.as_ref().unwrap();
    let router_env = kubelet(
        router_spec,
        router::CONTAINER_NAME,
        "sec-router-1",
        "router",
    );
    let ca_file = |env: &[(String, String)]| {
        env.iter()
            .find(|(k, _)| k == "WSRING_REDIS_CA_FILE")
            .map(|(_, v)| std::fs::read_to_string(v).expect("the CA file is mounted"))
    };
    assert!(ca_file(&pod_env).is_some_and(|pem| pem.contains("BEGIN CERTIFICATE")));
    assert!(ca_file(&router_env).is_some_and(|pem| pem.contains("BEGIN CERTIFICATE")));

    // The pod reaches the TLS Redis with the password Secret and the mounted CA.
    let pod = wsring_with_env(Role::Pod, &[], &pod_env);
    wait_subscribed(&pod).await;
    let router = wsring_with_env(Role::Router, &["--reset-timeout-ms", "600000"], &router_env);
    wait_for("router admin up", || get(router.admin, "/healthz")).await;
    let member =
        json!([{"name": "pod-0", "addr": pod.listen.to_string(), "admin": pod.admin.to_string()}]);
    put_ring(&router, 1, member).await;

    // allowedOrigins and requireOrigin reached the router (which tunnels
    // over HTTP/2, podTransport: h2).
    assert_eq!(
        upgrade(&router, Some("https://evil.example")).await.err(),
        Some(403)
    );
    assert_eq!(
        upgrade(&router, None).await.err(),
        Some(403),
        "requireOrigin"
    );
    let mut ws = upgrade(&router, Some("https://eu.chat.example.com"))
        .await
        .expect("an allowed origin is tunnelled");
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    let (_, metrics) = get(router.admin, "/metrics").await.unwrap();
    assert!(
        metrics.contains("wsring_router_pod_connections 1"),
        "podTransport h2 reached the router: {metrics}"
    );

    // delivery.history reached the pod: a push is stored in the TLS Redis
    // (password and CA from the Secrets) and answered with its position.
    let pushed = AdminClient::new()
        .post(format!("http://{}/v1/keys/k/messages", router.admin))
        .bearer(TOKEN)
        .body(b"stored".to_vec())
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status(), 200, "{}", pushed.text());
    let answer: Value = pushed.json().unwrap();
    assert_eq!(answer["offset"], 1, "{answer}");

    // A reset travels router → TLS Redis → pod with the operator's settings.
    move_keys(&router).await;
    assert_eq!(close_code(&mut ws).await, Some(CLOSE_RING_MOVED));
    assert_eq!(reset_outcome(&router).await, "published");
}
