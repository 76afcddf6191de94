//! Running the `sluice` binary under test: one-shot commands ([`run`]), the long-running
//! `sluice standalone` ([`Standalone`]) and the in-cluster operator `sluice run` ([`Operator`]).
//!
//! The binary is `$SLUICE_BIN` if set, else `sluice` next to the test executable's target
//! directory (`target/debug/sluice`). Cargo does not build another package's binary for this
//! crate's tests, so run `cargo build -p sluice` before `cargo test -p sluice-e2e`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::backend::Echo;
use crate::client::{Request, Response};
use crate::envoy::envoy_binary;
use crate::process::ChildProcess;
use crate::{Error, Result, TempDir, free_port, temp_dir};

/// The instance `sluice standalone` runs when the manifests hold no Gateway.
pub const DEFAULT_INSTANCE: &str = "sluice-system/default";

/// Environment variable naming the `sluice` binary to test.
pub const SLUICE_BIN_ENV: &str = "SLUICE_BIN";

/// Bound on one [`run`].
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The `sluice` binary: `$SLUICE_BIN`, else `<target>/<profile>/sluice` found from the running
/// test executable (`<target>/<profile>/deps/<test>`).
pub fn sluice_binary() -> Result<PathBuf> {
    if let Some(explicit) = std::env::var_os(SLUICE_BIN_ENV).filter(|p| !p.is_empty()) {
        let explicit = PathBuf::from(explicit);
        return if explicit.is_file() {
            Ok(explicit)
        } else {
            Err(Error::SluiceNotFound(format!(
                "{SLUICE_BIN_ENV}={} is not a file",
                explicit.display()
            )))
        };
    }
    let exe = std::env::current_exe().map_err(Error::io("locating the test executable"))?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("sluice"))
        .collect();
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| {
            Error::SluiceNotFound(format!(
                "none of {} exists",
                candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Runs `sluice ARGS` to completion and returns its stdout; a non-zero exit is
/// [`Error::CommandFailed`] with stderr.
pub async fn run(args: &[&str]) -> Result<String> {
    let binary = sluice_binary()?;
    let describe = || format!("sluice {}", args.join(" "));
    let mut command = tokio::process::Command::new(&binary);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .map_err(|_| Error::Timeout {
            what: describe(),
            after: RUN_TIMEOUT,
        })?
        .map_err(Error::io(format!("running {}", binary.display())))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::CommandFailed {
            command: describe(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Options for [`Standalone`]; from [`Standalone::builder`].
#[derive(Debug, Clone)]
pub struct StandaloneBuilder {
    manifests: PathBuf,
    args: Vec<OsString>,
}

impl StandaloneBuilder {
    /// Adds a command-line argument after `--manifests DIR`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Spawns `sluice standalone --manifests DIR --envoy ENVOY --ports auto --xds-address
    /// 127.0.0.1:0 --state-file STATE ARGS`, logging to a file in a
    /// fresh temporary directory. Returns once the process is started; tests then poll for the
    /// behaviour they expect (see [`crate::wait_for`]) and call [`Standalone::check_running`]
    /// in the poll so a crash ends the wait with sluice's log.
    pub fn start(self) -> Result<Standalone> {
        let binary = sluice_binary()?;
        let envoy = envoy_binary()?;
        let dir = temp_dir()?;
        let mut command = Command::new(&binary);
        command
            .arg("standalone")
            .arg("--manifests")
            .arg(&self.manifests)
            .arg("--envoy")
            .arg(&envoy)
            .args([
                "--ports",
                "auto",
                "--xds-address",
                "127.0.0.1:0",
                "--state-file",
            ])
            .arg(dir.path().join(STATE_FILE))
            .args(&self.args)
            .current_dir(dir.path());
        let process =
            ChildProcess::spawn("sluice standalone", command, &dir.path().join("sluice.log"))?;
        Ok(Standalone { process, dir })
    }
}

/// Name of the state file `sluice standalone --state-file` writes in the working directory.
pub const STATE_FILE: &str = "state.json";

/// Ports of one Gateway instance's Envoy, from the standalone state file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstancePorts {
    pub gateway: String,
    pub http: u16,
    pub https: u16,
    pub stats: u16,
    /// Envoy's admin interface: a Unix socket in standalone's private directory (no port).
    pub admin_socket: PathBuf,
    pub envoy_pid: Option<u32>,
}

#[derive(Clone, Debug, serde::Deserialize)]
struct StateFile {
    gateways: Vec<InstancePorts>,
}

/// A running `sluice standalone`; stopped on drop (SIGTERM, so it stops its Envoys; SIGKILL
/// after a grace period).
#[derive(Debug)]
pub struct Standalone {
    process: ChildProcess,
    // Last, so the directory outlives the process.
    dir: TempDir,
}

impl Standalone {
    /// Options for running standalone on the manifest directory `manifests`.
    pub fn builder(manifests: &Path) -> StandaloneBuilder {
        StandaloneBuilder {
            manifests: manifests.to_owned(),
            args: Vec::new(),
        }
    }

    /// Starts `sluice standalone --manifests DIR` with default options.
    pub fn start(manifests: &Path) -> Result<Standalone> {
        Standalone::builder(manifests).start()
    }

    /// `Ok` while sluice runs; its log tail once it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.process.check_running()
    }

    /// The sluice process (pid, liveness, log).
    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }

    /// Everything sluice has logged so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// Waits until sluice has logged a line containing every one of `parts`, and returns it;
    /// fails after `timeout` or if sluice exits (printing the whole log to stderr).
    pub async fn wait_log_line(&mut self, parts: &[&str], timeout: Duration) -> Result<String> {
        let what = format!("a sluice log line containing {parts:?}");
        let found = crate::try_wait_for(&what, timeout, async || {
            self.check_running()?;
            Ok(self
                .log()
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_owned))
        })
        .await;
        if found.is_err() {
            eprintln!("--- sluice log ---\n{}", self.log());
        }
        found
    }

    /// The working directory of the process, holding `sluice.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The instances sluice runs now (empty until it has written its state file).
    pub fn instances(&self) -> Vec<InstancePorts> {
        std::fs::read_to_string(self.dir.path().join(STATE_FILE))
            .ok()
            .and_then(|text| serde_json::from_str::<StateFile>(&text).ok())
            .map(|s| s.gateways)
            .unwrap_or_default()
    }

    /// Waits until the instance `gateway` (`namespace/name`) is running, and returns its ports.
    pub async fn instance(&mut self, gateway: &str, timeout: Duration) -> Result<InstancePorts> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.check_running()?;
            if let Some(i) = self.instances().into_iter().find(|i| i.gateway == gateway) {
                return Ok(i);
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "instance {gateway} to start; sluice log:\n{}",
                        self.process.log_tail(40)
                    ),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until `request` sent to `port` (plain HTTP) gets a response `accept` takes, for at
    /// most `timeout`; the error names `what`, the last answer and the log's tail.
    pub async fn wait_answer(
        &mut self,
        port: u16,
        request: &Request,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&Response) -> bool,
    ) -> Result<Response> {
        let mut last = String::from("nothing yet");
        let result = crate::try_wait_for(what, timeout, async || {
            self.check_running()?;
            match request.send(port).await {
                Ok(resp) if accept(&resp) => return Ok(Some(resp)),
                Ok(resp) => last = format!("{} {}", resp.status, resp.text()),
                Err(e) => last = e.to_string(),
            }
            Ok(None)
        })
        .await;
        result.map_err(|e| match e {
            Error::Timeout { what, after } => Error::Timeout {
                what: format!("{what}; last answer: {last}\n{}", self.process.log_tail(40)),
                after,
            },
            other => other,
        })
    }

    /// [`Standalone::wait_answer`] for [`TRAFFIC_WAIT`], the tests' usual wait.
    pub async fn answer(
        &mut self,
        port: u16,
        request: &Request,
        what: &str,
        accept: impl Fn(&Response) -> bool,
    ) -> Result<Response> {
        self.wait_answer(port, request, what, TRAFFIC_WAIT, accept)
            .await
    }

    /// Waits until `GET http://host/` through `port` is answered 200 by an echo backend, and
    /// returns what the backend saw.
    pub async fn echo_ok(&mut self, port: u16, host: &str) -> Result<Echo> {
        let request = Request::get(host, "/");
        let what = format!("http://{host}/ to be answered 200");
        self.answer(port, &request, &what, |r| r.status == 200)
            .await?
            .echo()
    }

    /// The default instance's ports (manifests without a Gateway).
    pub async fn default_instance(&mut self, timeout: Duration) -> Result<InstancePorts> {
        self.instance(DEFAULT_INSTANCE, timeout).await
    }
}

/// How long tests wait for traffic to be answered as expected.
pub const TRAFFIC_WAIT: Duration = Duration::from_secs(30);

/// Namespace `sluice run` is told it runs in (its Lease lives there).
pub const OPERATOR_NAMESPACE: &str = "sluice-system";

/// Every port one `sluice run` uses: its own listeners (xDS, HTTP) and the Envoy ports it writes
/// into generated configuration, so a real Envoy started from its bootstrap runs on this machine
/// without clashing with anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperatorPorts {
    /// The xDS server (`--xds-address` and `--xds-service-address`, on 127.0.0.1).
    pub xds: u16,
    /// `/metrics`, `/healthz`, `/readyz` (`--http-address`, on 127.0.0.1).
    pub http: u16,
    /// Envoy's `ingress_http` listener (`--envoy-http-port`).
    pub envoy_http: u16,
    /// Envoy's `ingress_https` listener (`--envoy-https-port`).
    pub envoy_https: u16,
    /// Envoy's health and stats listener (`--envoy-stats-port`).
    pub envoy_stats: u16,
}

impl OperatorPorts {
    /// Ports for the operator that were free a moment ago (see [`free_port`]), and ports held
    /// for Envoy's listeners (see [`envoy_port`](crate::envoy_port)), all distinct.
    pub fn free() -> Result<OperatorPorts> {
        let mut ports: Vec<u16> = Vec::with_capacity(5);
        while ports.len() < 2 {
            let p = free_port()?;
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        for _ in 0..3 {
            ports.push(crate::envoy_port()?);
        }
        Ok(OperatorPorts {
            xds: ports[0],
            http: ports[1],
            envoy_http: ports[2],
            envoy_https: ports[3],
            envoy_stats: ports[4],
        })
    }
}

/// Options for [`Operator`]; from [`Operator::builder`].
#[derive(Debug, Clone)]
pub struct OperatorBuilder {
    kubeconfig: PathBuf,
    identity: String,
    ports: Option<OperatorPorts>,
    envs: Vec<(OsString, OsString)>,
    args: Vec<OsString>,
    ipv6: bool,
}

impl OperatorBuilder {
    /// Listens on the IPv6 wildcard `[::]` (the operator's default, dual-stack) instead of
    /// 127.0.0.1, and gives Envoys `[::1]:X` as the xDS address.
    pub fn ipv6(mut self) -> Self {
        self.ipv6 = true;
        self
    }

    /// `--identity` for leader election; default `sluice-e2e`.
    pub fn identity(mut self, identity: &str) -> Self {
        self.identity = identity.to_owned();
        self
    }

    /// Uses these ports instead of fresh free ones.
    pub fn ports(mut self, ports: OperatorPorts) -> Self {
        self.ports = Some(ports);
        self
    }

    /// Adds a command-line argument after the harness's own (e.g. `--lease-duration-seconds`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the process (e.g. `RUST_LOG`).
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((name.into(), value.into()));
        self
    }

    /// Spawns `sluice run --kubeconfig FILE --namespace sluice-system --identity ID
    /// --xds-address 127.0.0.1:X --xds-service-address 127.0.0.1:X --http-address 127.0.0.1:H
    /// --envoy-{http,https,stats,admin}-port ... ARGS` (`[::]` and `[::1]` with [`Self::ipv6`]),
    /// logging to `operator.log` in a fresh
    /// temporary directory. Returns once the process is started; see [`Operator::wait_ready`].
    pub fn start(self) -> Result<Operator> {
        let binary = sluice_binary()?;
        let ports = match self.ports {
            Some(p) => p,
            None => OperatorPorts::free()?,
        };
        let dir = temp_dir()?;
        let (listen, service) = if self.ipv6 {
            ("[::]", "[::1]")
        } else {
            ("127.0.0.1", "127.0.0.1")
        };
        let xds = format!("{listen}:{}", ports.xds);
        let xds_service = format!("{service}:{}", ports.xds);
        let mut command = Command::new(&binary);
        command
            .arg("run")
            // The tests' backends listen on 127.0.0.1 (see the Endpoints they create).
            .arg("--allow-loopback-endpoints")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "--namespace",
                OPERATOR_NAMESPACE,
                "--identity",
                &self.identity,
            ])
            .args(["--xds-address", &xds, "--xds-service-address", &xds_service])
            .arg("--http-address")
            .arg(format!("{listen}:{}", ports.http))
            .arg("--envoy-http-port")
            .arg(ports.envoy_http.to_string())
            .arg("--envoy-https-port")
            .arg(ports.envoy_https.to_string())
            .arg("--envoy-stats-port")
            .arg(ports.envoy_stats.to_string())
            .args(&self.args)
            // Neither the developer's kubeconfig nor an in-cluster identity may leak in.
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(dir.path());
        let name = format!("sluice run ({})", self.identity);
        let process = ChildProcess::spawn(&name, command, &dir.path().join("operator.log"))?;
        Ok(Operator {
            process,
            ports,
            identity: self.identity,
            dir,
        })
    }
}

/// A running `sluice run`; stopped on drop (SIGTERM, then SIGKILL after a grace period).
#[derive(Debug)]
pub struct Operator {
    process: ChildProcess,
    ports: OperatorPorts,
    identity: String,
    // Last, so the directory outlives the process.
    dir: TempDir,
}

impl Operator {
    /// Options for running `sluice run` against the cluster of `kubeconfig`.
    pub fn builder(kubeconfig: &Path) -> OperatorBuilder {
        OperatorBuilder {
            kubeconfig: kubeconfig.to_owned(),
            identity: "sluice-e2e".to_owned(),
            ports: None,
            envs: Vec::new(),
            args: Vec::new(),
            ipv6: false,
        }
    }

    pub fn ports(&self) -> OperatorPorts {
        self.ports
    }

    /// The `--identity` it runs with.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// `127.0.0.1:<xds port>`.
    pub fn xds_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.xds)
    }

    /// `Ok` while it runs; its log tail once it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.process.check_running()
    }

    /// The process (pid, liveness, log).
    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// SIGKILL, as a crash: no graceful shutdown, the lease is not released.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// GET `path` on its HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
    pub async fn get(&self, path: &str) -> Result<Response> {
        Request::get("127.0.0.1", path)
            .timeout(Duration::from_secs(5))
            .send(self.ports.http)
            .await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        let resp = self.get("/metrics").await?;
        if resp.status != 200 {
            return Err(Error::Protocol(format!(
                "/metrics answered {}: {}",
                resp.status,
                resp.text()
            )));
        }
        Ok(resp.text())
    }

    /// Waits until `/readyz` answers 200 (every watch listed, configuration published).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.check_running()?;
            let last = match self.get("/readyz").await {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => format!("{} {}", r.status, r.text().trim()),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "{} to be ready (last /readyz: {last}); log:\n{}",
                        self.process.name(),
                        self.process.log_tail(40)
                    ),
                    after: timeout,
                });
            }
            tokio::time::sleep(crate::POLL_INTERVAL).await;
        }
    }

    /// The working directory, holding `operator.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The value of the sample `name{labels}` in Prometheus text exposition `text`; the labels must
/// match exactly (all of them, any order).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, found) = match series.split_once('{') {
                Some((m, rest)) => (m, parse_labels(rest.strip_suffix('}')?)?),
                None => (series, Vec::new()),
            };
            let mut want: Vec<(String, String)> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            want.sort();
            (metric == name && found == want).then(|| value.parse().ok())?
        })
}

/// `a="x",b="y"` into sorted pairs; label values here never hold quotes or commas escaped.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        out.push((
            k.to_owned(),
            v.strip_prefix('"')?.strip_suffix('"')?.to_owned(),
        ));
    }
    out.sort();
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_are_found_by_name_and_exact_labels() {
        let text = "# HELP sluice_ingressroutes x\n# TYPE sluice_ingressroutes gauge\n\
                    sluice_ingressroutes{gateway=\"a/gw\",status=\"valid\"} 2\n\
                    sluice_ingressroutes{gateway=\"a/gw\",status=\"invalid\"} 0\n\
                    sluice_up 1\n";
        let v = |labels: &[(&str, &str)]| metric_value(text, "sluice_ingressroutes", labels);
        assert_eq!(v(&[("status", "valid"), ("gateway", "a/gw")]), Some(2.0));
        assert_eq!(v(&[("gateway", "a/gw"), ("status", "invalid")]), Some(0.0));
        assert_eq!(v(&[("gateway", "a/gw")]), None);
        assert_eq!(v(&[("gateway", "b/gw"), ("status", "valid")]), None);
        assert_eq!(metric_value(text, "sluice_up", &[]), Some(1.0));
        assert_eq!(metric_value(text, "sluice_down", &[]), None);
    }

    #[test]
    fn operator_ports_are_distinct() {
        let p = OperatorPorts::free().unwrap();
        let mut all = vec![p.xds, p.http, p.envoy_http, p.envoy_https, p.envoy_stats];
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 5);
    }
}
