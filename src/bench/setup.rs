//! The processes a benchmark measures: ws-pods, a router and nginx.
//!
//! Pods and the router are children of this very binary (`wsring pod …`,
//! `wsring router …`), i.e. the code the images run; the ring is given to the
//! router with `PUT /ring`, the way the operator does it. nginx gets a
//! generated config in a private temporary prefix, routing with
//! `hash $arg_key consistent;` over the same pods. Every child logs into the
//! temporary directory (shown if it fails to start), is stopped with SIGTERM
//! by [`Bench::shutdown`] and, should that never run, killed on drop.

use std::fmt::Write as _;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use hyper::Method;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use wsring::procfs::children_of;
use wsring_core::{Member, Ring, RingSpec};
use wsring_router::PodTransport;

use crate::dev::supervisor::{free_port, wait_for_port};
use crate::http::{self, HttpClient};

/// How long a child may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Token for the children's admin APIs (loopback only, lives as long as the run).
const TOKEN: &str = "wsring-bench-token";
/// Cluster name the children are started with.
const CLUSTER: &str = "bench";

/// One child process with the log file it writes to.
pub struct Proc {
    /// What it is (`router`, `bench-0`, `nginx`), for messages.
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Process id (None once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Fail with the tail of the child's log if it has already exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!(
                "{} exited ({status}); last log lines:\n{}",
                self.name,
                log_tail(&self.log)
            );
        }
        Ok(())
    }

    /// SIGTERM, wait, SIGKILL if it does not go.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(child = %self.name, "no exit after SIGTERM; killing");
            let _ = self.child.kill().await;
        }
    }
}

impl Drop for Proc {
    /// Only when [`Bench::shutdown`] did not run (error, Ctrl-C): SIGTERM the
    /// child's own children first (nginx workers outlive a killed master),
    /// then the child; `kill_on_drop` follows with SIGKILL.
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            for p in children_of(pid).into_iter().chain([pid]) {
                if let Ok(p) = i32::try_from(p) {
                    let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
                }
            }
        }
    }
}

/// A ws-pod child and its addresses.
pub struct Pod {
    /// Ring member name.
    pub name: String,
    /// WebSocket listener.
    pub addr: SocketAddr,
    /// Admin listener (`/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// The process.
    pub proc: Proc,
}

/// The router child and its addresses.
pub struct Router {
    /// Public WebSocket listener.
    pub addr: SocketAddr,
    /// Admin listener (`/ring`, `/metrics`).
    pub admin: SocketAddr,
    /// The process.
    pub proc: Proc,
}

/// The nginx child (master; workers are its children).
pub struct Nginx {
    /// Listener proxying to the pods.
    pub addr: SocketAddr,
    /// `nginx -v` output, for the report.
    pub version: String,
    /// The master process.
    pub proc: Proc,
}

/// Which processes a benchmark needs.
pub struct Plan {
    /// Number of ws-pods.
    pub pods: usize,
    /// nginx binary, or None to leave nginx out.
    pub nginx: Option<PathBuf>,
    /// `worker_connections` for nginx (it counts both the client and the upstream side).
    pub nginx_worker_connections: usize,
    /// Keep the temporary directory (children's logs, nginx.conf) for inspection.
    pub keep_logs: bool,
    /// How the router reaches the pods.
    pub pod_transport: PodTransport,
}

/// Everything started for one benchmark; stop it with [`Bench::shutdown`].
pub struct Bench {
    /// Temporary directory with logs and nginx prefix; removed on drop.
    pub dir: tempfile::TempDir,
    /// The pods, in ring order of names.
    pub pods: Vec<Pod>,
    /// The router.
    pub router: Router,
    /// nginx, unless left out.
    pub nginx: Option<Nginx>,
    /// The ring the router was given (used to send direct connections to the owner).
    pub ring: Ring,
    /// Admin HTTP client.
    pub http: HttpClient,
    keep_logs: bool,
}

impl Bench {
    /// Start pods, router (with the ring) and nginx, and wait until all are ready.
    pub async fn start(plan: &Plan) -> anyhow::Result<Bench> {
        let dir = tempfile::Builder::new()
            .prefix("wsring-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let exe = std::env::current_exe().context("locating the wsring binary")?;
        let http = http::client();
        let mut pods = Vec::with_capacity(plan.pods);
        for i in 0..plan.pods {
            pods.push(start_pod(&exe, dir.path(), &format!("bench-{i}"))?);
        }
        let router = start_router(&exe, dir.path(), plan.pod_transport)?;
        let members = pods
            .iter()
            .map(|p| Member {
                name: p.name.clone(),
                addr: p.addr.to_string(),
                admin: p.admin.to_string(),
            })
            .collect();
        let spec = RingSpec::new(1, wsring_core::ring::DEFAULT_VNODES, None, members)?;
        // Children are owned from here on: an early return drops (kills) them.
        let mut bench = Bench {
            dir,
            pods,
            router,
            nginx: None,
            ring: Ring::build(spec)?,
            http,
            keep_logs: plan.keep_logs,
        };
        for i in 0..bench.pods.len() {
            let admin = bench.pods[i].admin;
            wait_ready(&bench.http, &mut bench.pods[i].proc, admin, "/readyz").await?;
        }
        let admin = bench.router.admin;
        wait_ready(&bench.http, &mut bench.router.proc, admin, "/healthz").await?;
        bench.put_ring().await?;
        if let Some(nginx) = &plan.nginx {
            bench.nginx = Some(start_nginx(nginx, &bench, plan.nginx_worker_connections).await?);
        }
        Ok(bench)
    }

    /// Give the router the ring over all pods (`PUT /ring`, as the operator does).
    async fn put_ring(&self) -> anyhow::Result<()> {
        let spec = self.ring.spec();
        let url = format!("http://{}/ring", self.router.admin);
        let (status, body) = http::call(
            &self.http,
            Method::PUT,
            &url,
            Some(TOKEN),
            Some(spec.to_json()),
        )
        .await?;
        if !status.is_success() {
            bail!(
                "router refused the ring: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// The pod owning `key` on the router's ring (where a direct client goes).
    pub fn owner_addr(&self, key: &str) -> anyhow::Result<SocketAddr> {
        let owner = self.ring.owner(key).context("empty ring")?;
        let pod = self
            .pods
            .iter()
            .find(|p| p.name == owner.name)
            .context("ring names an unknown pod")?;
        Ok(pod.addr)
    }

    /// Fail if any child has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for pod in &mut self.pods {
            pod.proc.check_alive()?;
        }
        self.router.proc.check_alive()?;
        if let Some(nginx) = &mut self.nginx {
            nginx.proc.check_alive()?;
        }
        Ok(())
    }

    /// Stop every child (nginx and router first, so pods see their clients leave).
    pub async fn shutdown(self) {
        if let Some(nginx) = self.nginx {
            nginx.proc.stop().await;
        }
        self.router.proc.stop().await;
        for pod in self.pods {
            pod.proc.stop().await;
        }
        if self.keep_logs {
            eprintln!("logs and nginx.conf kept in {}", self.dir.keep().display());
        }
        // Otherwise `self.dir` is dropped here and the directory goes with it.
    }
}

/// Log file for a child, opened for both stdout and stderr.
fn log_file(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, Stdio, Stdio)> {
    let path = dir.join(format!("{name}.log"));
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let err = file.try_clone()?;
    Ok((path, Stdio::from(file), Stdio::from(err)))
}

/// The last lines of a child's log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn loopback(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn start_pod(exe: &Path, dir: &Path, name: &str) -> anyhow::Result<Pod> {
    let addr = loopback(free_port()?);
    let admin = loopback(free_port()?);
    let (log, child) = spawn_role(
        exe,
        dir,
        ("pod", name),
        (addr, admin),
        &["--pod-name", name],
    )?;
    Ok(Pod {
        name: name.to_owned(),
        addr,
        admin,
        proc: Proc {
            name: name.to_owned(),
            child,
            log,
        },
    })
}

/// Spawn `wsring ROLE` (`role` = subcommand, log name) on `listen`/`admin`
/// with the bench cluster and token, logging to a file in `dir`.
fn spawn_role(
    exe: &Path,
    dir: &Path,
    (role, name): (&str, &str),
    (listen, admin): (SocketAddr, SocketAddr),
    extra: &[&str],
) -> anyhow::Result<(PathBuf, Child)> {
    let (log, out, err) = log_file(dir, name)?;
    let child = Command::new(exe)
        .arg(role)
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--cluster", CLUSTER])
        .args(extra)
        .env("WSRING_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {name}"))?;
    Ok((log, child))
}

fn start_router(exe: &Path, dir: &Path, transport: PodTransport) -> anyhow::Result<Router> {
    let addr = loopback(free_port()?);
    let admin = loopback(free_port()?);
    let (log, child) = spawn_role(
        exe,
        dir,
        ("router", "router"),
        (addr, admin),
        &[
            "--router-id",
            "bench-router",
            "--pod-transport",
            transport.as_str(),
        ],
    )?;
    Ok(Router {
        addr,
        admin,
        proc: Proc {
            name: "router".to_owned(),
            child,
            log,
        },
    })
}

/// Poll `http://admin{path}` until it answers 200, failing early if the child exits.
async fn wait_ready(
    http: &HttpClient,
    proc: &mut Proc,
    admin: SocketAddr,
    path: &str,
) -> anyhow::Result<()> {
    let url = format!("http://{admin}{path}");
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        proc.check_alive()?;
        if let Ok((status, _)) = http::call(http, Method::GET, &url, None, None).await {
            if status.is_success() {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{}: {url} did not answer 200 within {START_TIMEOUT:?}; last log lines:\n{}",
                proc.name,
                log_tail(&proc.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Worker processes for nginx: one per CPU, like the router's tokio runtime,
/// which runs one worker thread per CPU (tokio's default).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The nginx configuration: a plain WebSocket reverse proxy with consistent
/// hashing on the `key` query parameter over the same pods.
pub fn nginx_conf(
    dir: &Path,
    listen: SocketAddr,
    pods: &[SocketAddr],
    workers: usize,
    worker_connections: usize,
) -> String {
    let d = dir.display();
    let mut servers = String::new();
    for pod in pods {
        let _ = writeln!(servers, "        server {pod};");
    }
    format!(
        r#"# Generated by `wsring bench`: nginx as a key-affine WebSocket proxy.
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;

events {{
    worker_connections {worker_connections};
}}

http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    tcp_nodelay on;

    upstream pods {{
        hash $arg_key consistent;
{servers}    }}

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    server {{
        listen {listen} backlog=4096;
        location / {{
            proxy_pass http://pods;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"#,
        nofile = worker_connections * 2 + 64,
    )
}

async fn start_nginx(
    nginx: &Path,
    bench: &Bench,
    worker_connections: usize,
) -> anyhow::Result<Nginx> {
    let version = Command::new(nginx)
        .arg("-v")
        .output()
        .await
        .with_context(|| {
            format!(
                "running {} -v (install nginx with `apt-get install -y nginx`, or pass --skip-nginx)",
                nginx.display()
            )
        })?;
    let version = String::from_utf8_lossy(&version.stderr)
        .trim()
        .trim_start_matches("nginx version: ")
        .to_owned();
    let dir = bench.dir.path();
    let addr = loopback(free_port()?);
    let pods: Vec<SocketAddr> = bench.pods.iter().map(|p| p.addr).collect();
    let conf_path = dir.join("nginx.conf");
    std::fs::write(
        &conf_path,
        nginx_conf(dir, addr, &pods, cpu_count(), worker_connections),
    )
    .context("writing nginx.conf")?;
    let (log, out, err) = log_file(dir, "nginx")?;
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", nginx.display()))?;
    let mut proc = Proc {
        name: "nginx".to_owned(),
        child,
        log,
    };
    tokio::select! {
        r = wait_for_port(addr) => r.context("nginx did not start")?,
        _ = async {
            loop {
                if proc.check_alive().is_err() { break; }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } => {
            let tail = log_tail(&dir.join("nginx-error.log"));
            proc.check_alive().map_err(|e| e.context(tail))?;
        }
    }
    Ok(Nginx {
        addr,
        version,
        proc,
    })
}

/// CPU time (user + system, all threads, reaped children excluded) of a process.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: state is the first, utime the 12th, stime the 13th.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let ticks: u64 = rest.next()?.parse::<u64>().ok()? + rest.next()?.parse::<u64>().ok()?;
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / per_sec))
}

/// CPU time used so far by each kind of server process.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSnapshot {
    /// The router.
    pub router: Duration,
    /// nginx master and workers.
    pub nginx: Duration,
    /// All pods together.
    pub pods: Duration,
}

impl Bench {
    /// CPU time of router, nginx and pods so far (for CPU cost per message).
    pub fn cpu(&self) -> CpuSnapshot {
        let of = |pid: Option<u32>| pid.and_then(cpu_time).unwrap_or_default();
        let nginx = self.nginx.as_ref().and_then(|n| n.proc.pid()).map(|pid| {
            of(Some(pid))
                + children_of(pid)
                    .into_iter()
                    .map(|c| of(Some(c)))
                    .sum::<Duration>()
        });
        CpuSnapshot {
            router: of(self.router.proc.pid()),
            nginx: nginx.unwrap_or_default(),
            pods: self.pods.iter().map(|p| of(p.proc.pid())).sum(),
        }
    }
}

/// The 1, 5 and 15 minute load averages: how busy the machine was otherwise.
pub fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The value of the first unlabelled sample whose name ends in `suffix` in a
/// Prometheus text exposition (e.g. `…_active_connections`).
pub fn metric_value(text: &str, suffix: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.split_once(' ')?;
        name.ends_with(suffix)
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Open connections a router or pod reports on its admin `/metrics`.
pub async fn active_connections(http: &HttpClient, admin: SocketAddr) -> anyhow::Result<u64> {
    let url = format!("http://{admin}/metrics");
    let (status, body) = http::call(http, Method::GET, &url, Some(TOKEN), None).await?;
    if !status.is_success() {
        bail!("{url}: {status}");
    }
    let text = String::from_utf8_lossy(&body);
    metric_value(&text, "active_connections")
        .map(|v| v as u64)
        .with_context(|| format!("{url}: no *_active_connections gauge"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_finds_the_unlabelled_gauge() {
        let text = "# HELP x y\nwsring_router_connections_total{result=\"upgraded\"} 3\n\
                    wsring_router_active_connections 42\n";
        assert_eq!(metric_value(text, "active_connections"), Some(42.0));
        assert_eq!(metric_value(text, "nothing"), None);
    }

    #[test]
    fn nginx_conf_hashes_on_the_key_parameter() {
        let conf = nginx_conf(
            Path::new("/tmp/x"),
            loopback(1),
            &[loopback(2), loopback(3)],
            2,
            1024,
        );
        assert!(conf.contains("hash $arg_key consistent;"));
        assert!(conf.contains("server 127.0.0.1:2;\n        server 127.0.0.1:3;"));
        assert!(conf.contains("worker_processes 2;"));
        assert!(conf.contains("proxy_buffering off;"));
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(cpu_time(std::process::id()).unwrap() > Duration::ZERO);
    }
}
