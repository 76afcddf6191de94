//! A child process owned by a test: output to a log file, killed and reaped on drop, and the
//! log's tail printed if the test is panicking. Used for Envoy and for the `sluice` binary.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::{Error, Result};

/// Lines of log shown in errors and on panics.
pub const TAIL_LINES: usize = 40;

/// A running child process whose stdout and stderr go to one log file.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl ChildProcess {
    /// Spawns `command` with stdin closed and stdout and stderr appended to `log`. `name` labels
    /// messages ("envoy", "sluice standalone").
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<ChildProcess> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(Error::io(format!("opening {}", log.display())))?;
        let stdout = file
            .try_clone()
            .map_err(Error::io(format!("sharing {}", log.display())))?;
        command.stdin(Stdio::null()).stdout(stdout).stderr(file);
        let child = command.spawn().map_err(Error::io(format!(
            "starting {name} ({})",
            command.get_program().to_string_lossy()
        )))?;
        Ok(ChildProcess {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            exited: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// `Ok` while running; once it has exited, an error carrying the log tail. Call it inside
    /// wait loops so a crash fails the test at once, with the reason.
    pub fn check_running(&mut self) -> Result<()> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log: self.log.display().to_string(),
                tail: self.log_tail(TAIL_LINES),
            }),
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }

    /// Kills the process at once (SIGKILL: no cleanup, as a crash or a lost node) and reaps it;
    /// does nothing if it already ended.
    pub fn kill(&mut self) {
        if self.exit_status().is_some() {
            return;
        }
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
    }

    /// Asks the process to stop (SIGTERM, so it can stop its own children), waits up to five
    /// seconds, then kills (SIGKILL) and reaps it; does nothing if it already ended.
    pub fn stop(&mut self) {
        if self.exited.is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            use nix::sys::signal::{Signal, kill};
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(status)) = self.child.try_wait() {
                    self.exited = Some(status);
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log tail ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail(TAIL_LINES)
            );
        }
    }
}

/// Ports of the TCP sockets process `pid` listens on (IPv4 and IPv6, sorted, deduplicated), from
/// `/proc`: its open socket inodes matched against its network namespace's TCP tables.
pub fn listening_tcp_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode; 0A: LISTEN.
            if let (Some(local), Some(&"0A"), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
                && inodes.iter().any(|i| i == inode)
                && let Some(port) = local
                    .rsplit_once(':')
                    .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
            {
                ports.push(port);
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn exited_process_reports_its_log_tail() {
        let dir = crate::temp_dir().unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "echo first; echo 'it broke' >&2; exit 3"]);
        let mut process = ChildProcess::spawn("shell", command, &dir.path().join("log")).unwrap();
        let status = loop {
            if let Some(status) = process.exit_status() {
                break status;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(3));
        let err = process.check_running().unwrap_err().to_string();
        assert!(err.contains("shell exited"), "{err}");
        assert!(err.contains("first\nit broke"), "{err}");
    }

    #[test]
    fn kill_ends_a_process_that_ignores_sigterm() {
        let dir = crate::temp_dir().unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "trap '' TERM; while true; do sleep 1; done"]);
        let mut process =
            ChildProcess::spawn("stubborn", command, &dir.path().join("log")).unwrap();
        process.kill();
        let status = process.exit_status().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
        assert!(process.check_running().is_err());
    }

    #[test]
    fn drop_kills_a_running_process() {
        let dir = crate::temp_dir().unwrap();
        let mut command = Command::new("sleep");
        command.arg("600");
        let mut process = ChildProcess::spawn("sleeper", command, &dir.path().join("log")).unwrap();
        assert!(process.check_running().is_ok());
        let pid = process.pid();
        drop(process);
        // Reaped, so the pid no longer names our child.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(!status.contains("sleep"), "{status}");
    }
}
