//! Running the `sluice` binary under test: one-shot commands ([`run`]) and the long-running
//! `sluice standalone` ([`Standalone`]).
//!
//! The binary is `$SLUICE_BIN` if set, else `sluice` next to the test executable's target
//! directory (`target/debug/sluice`). Cargo does not build another package's binary for this
//! crate's tests, so run `cargo build -p sluice` before `cargo test -p sluice-e2e`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::envoy::envoy_binary;
use crate::process::ChildProcess;
use crate::{Error, Result, TempDir, temp_dir};

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
    pub admin: u16,
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

    /// The default instance's ports (manifests without a Gateway).
    pub async fn default_instance(&mut self, timeout: Duration) -> Result<InstancePorts> {
        self.instance(DEFAULT_INSTANCE, timeout).await
    }
}
