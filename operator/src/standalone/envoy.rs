//! Envoy process supervision: one Envoy per instance, started with its bootstrap, reported when
//! it exits on its own, stopped (and its shared memory removed) when the instance goes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use super::credentials::ClientFiles;
use super::{InstancePorts, State};
use crate::dag::Selection;
use crate::pki::identity::DEFAULT_SERVER_NAME;
use crate::provision::bootstrap::{BootstrapOptions, XdsClientTls, build_bootstrap};

pub(super) struct Instance {
    pub(super) ports: InstancePorts,
    pub(super) envoy: Option<Child>,
    pub(super) log: Option<PathBuf>,
    pub(super) xds_client: Option<ClientFiles>,
    /// Sockets holding the instance's picked ports while it lives (`--ports auto`).
    pub(super) reserved: Vec<tokio::net::TcpSocket>,
}

/// Envoy's hot-restart shared memory outlives even a clean exit; its name comes from the base id
/// Envoy wrote to `base_id_path` (`envoy_shared_memory_{base_id * 10 + epoch}`, epoch 0 here).
pub(super) fn remove_envoy_shared_memory(base_id_path: &Path) {
    if let Some(id) = std::fs::read_to_string(base_id_path)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
    {
        let _ = std::fs::remove_file(format!(
            "/dev/shm/envoy_shared_memory_{}",
            id.saturating_mul(10)
        ));
    }
}

impl State<'_> {
    pub(super) fn start_instance(&self, sel: &Selection, ports: InstancePorts) -> Instance {
        let name = sel.gateway.to_string();
        let xds_client = match self.pki {
            None => None,
            Some(pki) => match self.write_client_credentials(pki, sel) {
                Ok(files) => Some((pki, files)),
                Err(e) => {
                    eprintln!("sluice: error: instance {name}: {e:#}");
                    return Instance {
                        ports,
                        envoy: None,
                        log: None,
                        xds_client: None,
                        reserved: Vec::new(),
                    };
                }
            },
        };
        let Some(envoy) = &self.opts.envoy else {
            match &xds_client {
                Some((pki, files)) => eprintln!(
                    "sluice: instance {name}: serving xDS only (--no-envoy); client certificate {}, key {}, CA {}, server name {DEFAULT_SERVER_NAME}",
                    files.cert.display(),
                    files.key.display(),
                    pki.ca_file.display()
                ),
                None => eprintln!("sluice: instance {name}: serving xDS only (--no-envoy)"),
            }
            return Instance {
                ports,
                envoy: None,
                log: None,
                xds_client: xds_client.map(|(_, f)| f),
                reserved: Vec::new(),
            };
        };
        let slug = name.replace('/', "_");
        let mut bopts = BootstrapOptions::new(
            sel.gateway.clone(),
            self.xds_addr.ip().to_string(),
            self.xds_addr.port(),
        );
        bopts.ads = self.opts.ads;
        let admin_socket = self.admin_socket(ports);
        bopts.admin_socket = admin_socket.display().to_string();
        bopts.tls = xds_client.as_ref().map(|(pki, files)| XdsClientTls {
            ca_file: pki.ca_file.display().to_string(),
            cert_file: files.cert.display().to_string(),
            key_file: files.key.display().to_string(),
            server_name: DEFAULT_SERVER_NAME.to_owned(),
        });
        let xds_client = xds_client.map(|(_, f)| f);
        let bootstrap_path = self.workdir.join(format!("{slug}.bootstrap.json"));
        let log = self.workdir.join(format!("{slug}.envoy.log"));
        let spawned = std::fs::write(&bootstrap_path, build_bootstrap(&bopts).to_string())
            .context("writing the bootstrap")
            .and_then(|()| {
                let log_file = std::fs::File::create(&log).context("creating the Envoy log")?;
                Command::new(envoy)
                    .arg("-c")
                    .arg(&bootstrap_path)
                    .arg("--use-dynamic-base-id")
                    .arg("--base-id-path")
                    .arg(self.workdir.join(format!("{slug}.base-id")))
                    .arg("--log-level")
                    .arg("warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log_file)
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("starting {}", envoy.display()))
            });
        match spawned {
            Ok(child) => {
                let host = match self.opts.listen_address.as_str() {
                    ipv6 if ipv6.contains(':') => format!("[{ipv6}]"),
                    other => other.to_owned(),
                };
                println!(
                    "gateway {name}: http://{host}:{} https://{host}:{} stats http://{host}:{}/stats/prometheus (Envoy pid {}, log {}, admin socket {})",
                    ports.envoy.http,
                    ports.envoy.https,
                    ports.envoy.stats,
                    child.id().unwrap_or_default(),
                    log.display(),
                    admin_socket.display()
                );
                Instance {
                    ports,
                    envoy: Some(child),
                    log: Some(log),
                    xds_client,
                    reserved: Vec::new(),
                }
            }
            Err(e) => {
                eprintln!("sluice: error: instance {name}: {e:#}");
                Instance {
                    ports,
                    envoy: None,
                    log: Some(log),
                    xds_client,
                    reserved: Vec::new(),
                }
            }
        }
    }

    /// Reports Envoys that exited on their own (a bad bootstrap, a port in use).
    pub(super) fn reap_envoys(&mut self) {
        for (name, inst) in &mut self.instances {
            let Some(child) = inst.envoy.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                let tail = inst.log.as_deref().map(log_tail).unwrap_or_default();
                eprintln!("sluice: error: Envoy of {name} exited ({status}):\n{tail}");
                inst.envoy = None;
            }
        }
    }
}

pub(super) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Asks a child to stop (SIGTERM), then kills it if it has not exited within five seconds.
pub(super) async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}
