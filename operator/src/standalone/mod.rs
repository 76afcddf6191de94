//! `sluice standalone`: no cluster. Reads a manifest directory, serves xDS, runs one Envoy per
//! Gateway instance, and applies file changes live. The I/O shell around the pure pipeline
//! `source::files` → [`crate::pipeline`] (incremental DAG, translation) → `xds::cache`.
//!
//! xDS is mutual TLS unless `--insecure-xds`: at start Sluice makes a throwaway CA and a server
//! certificate (names `sluice-xds` and `localhost`, the xDS IP, 127.0.0.1 and ::1), and for each
//! instance a client certificate naming it, all in its private working directory (mode 0700,
//! removed on exit). Each Envoy's bootstrap points at its own instance's certificate.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::dag::{self, Selection};
use crate::pipeline::Pipelines;
use crate::provision::bootstrap::AdsFlavour;
use crate::provision::objects::EnvoyPorts;
use crate::snapshot::{ChangeSet, ClusterSnapshot};
use crate::source::files;
use crate::xds::cache::{Cache, InstanceResources};
use crate::xds::identity::DEFAULT_SERVER_NAME;
use crate::xds::translate::TranslateOptions;

mod credentials;
mod envoy;
mod state_file;

use credentials::{Pki, setup_pki};
use envoy::{Instance, remove_envoy_shared_memory, stop_child};

/// How listener ports are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PortMode {
    /// Envoy's default ports (`EnvoyPorts`: 8080 HTTP, 8443 HTTPS, 8002 stats) for the first instance; each further instance, in
    /// namespace/name order of first appearance, adds 10. (Envoy's admin is a Unix socket in the
    /// private working directory, never a port.)
    Fixed,
    /// Ports picked by the OS (printed, and written to `--state-file`).
    Auto,
}

#[derive(Clone, Debug)]
pub struct StandaloneOptions {
    pub manifests: PathBuf,
    /// Envoy binary; `None` serves xDS only.
    pub envoy: Option<PathBuf>,
    pub xds_address: SocketAddr,
    pub listen_address: String,
    pub ports: PortMode,
    pub ads: AdsFlavour,
    pub state_file: Option<PathBuf>,
    pub poll_interval: Duration,
    /// Serve xDS in plaintext to anyone (`--insecure-xds`); otherwise mutual TLS.
    pub insecure_xds: bool,
}

/// Ports of one instance's Envoy, and the number naming its admin socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InstancePorts {
    envoy: EnvoyPorts,
    /// Distinct per instance: Envoy's admin binds `envoy-{admin_id}.admin.sock` in the working
    /// directory (short, as Unix socket paths are limited to about 100 bytes).
    admin_id: u32,
}

/// Runs until Ctrl-C or SIGTERM, then stops Envoy children.
pub async fn run(opts: StandaloneOptions) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(opts.xds_address)
        .await
        .with_context(|| format!("binding the xDS server to {}", opts.xds_address))?;
    let xds_addr = listener.local_addr()?;

    // Private: it holds the xDS keys.
    let workdir = std::env::temp_dir().join(format!("sluice-standalone-{}", std::process::id()));
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&workdir)
            .with_context(|| format!("creating {}", workdir.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&workdir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", workdir.display()))?;
    }
    let (pki, server_tls) = if opts.insecure_xds {
        (None, None)
    } else {
        let (pki, tls) = setup_pki(&workdir, xds_addr)?;
        (Some(pki), Some(tls))
    };

    let cache = Arc::new(Cache::new());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::xds::server::serve(
        listener,
        cache.clone(),
        server_tls,
        async move {
            let _ = stop_rx.await;
        },
    ));
    match &pki {
        Some(pki) => eprintln!(
            "sluice: xDS server on {xds_addr} (mutual TLS; CA {}, server name {DEFAULT_SERVER_NAME})",
            pki.ca_file.display()
        ),
        None => eprintln!(
            "sluice: xDS server on {xds_addr} (plaintext, no authentication: --insecure-xds)"
        ),
    }

    let mut state = State {
        opts: &opts,
        cache: &cache,
        pki: pki.as_ref(),
        xds_addr,
        workdir: workdir.clone(),
        instances: BTreeMap::new(),
        pipelines: Pipelines::default(),
        has_good: false,
        next_fixed_slot: 0,
        next_admin_id: 0,
    };
    let mut fingerprint = dir_fingerprint(&opts.manifests);
    state.reload().await;

    let mut terminate = signal_terminate()?;
    let mut tick = tokio::time::interval(opts.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => {
                let now = dir_fingerprint(&opts.manifests);
                if now != fingerprint {
                    fingerprint = now;
                    state.reload().await;
                }
                state.reap_envoys();
            }
        }
    }
    eprintln!("sluice: stopping");
    for (name, inst) in &mut state.instances {
        if let Some(child) = inst.envoy.as_mut() {
            stop_child(child).await;
            eprintln!("sluice: stopped Envoy of {name}");
        }
        remove_envoy_shared_memory(&workdir.join(format!("{}.base-id", name.replace('/', "_"))));
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let _ = std::fs::remove_dir_all(&workdir);
    Ok(())
}

struct State<'a> {
    opts: &'a StandaloneOptions,
    cache: &'a Cache,
    pki: Option<&'a Pki>,
    xds_addr: SocketAddr,
    workdir: PathBuf,
    instances: BTreeMap<String, Instance>,
    /// The per-instance pipelines, and the snapshot last applied (the last good one).
    pipelines: Pipelines,
    has_good: bool,
    next_fixed_slot: u16,
    next_admin_id: u32,
}

impl State<'_> {
    /// Envoy's admin socket for an instance: in the private working directory (mode 0700), so
    /// only this user reaches it, and never a TCP port that a route or endpoint could reach.
    fn admin_socket(&self, ports: InstancePorts) -> PathBuf {
        self.workdir
            .join(format!("envoy-{}.admin.sock", ports.admin_id))
    }

    /// Loads the directory and applies it, unless it has errors and a good state exists already.
    async fn reload(&mut self) {
        let report = match files::load_dir(&self.opts.manifests) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sluice: error: {e}; keeping the last good configuration");
                return;
            }
        };
        for w in &report.warnings {
            eprintln!("sluice: warning: {w}");
        }
        for e in &report.errors {
            eprintln!("sluice: error: {e}");
        }
        for at in &report.snapshot.unloaded_gateways {
            eprintln!(
                "sluice: error: {at}: is or may be a Gateway and did not load; the default instance does not replace it"
            );
        }
        if !report.errors.is_empty() && self.has_good {
            eprintln!(
                "sluice: not applying this change; still serving the last good configuration"
            );
            return;
        }
        self.apply(Arc::new(report.snapshot)).await;
        self.has_good = true;
    }

    async fn apply(&mut self, snapshot: Arc<ClusterSnapshot>) {
        let changes = self.pipelines.next_snapshot(snapshot.clone());
        let selections: Vec<dag::Selection> = dag::instances(&snapshot)
            .into_iter()
            .map(dag::Selection::local)
            .collect();
        let wanted: Vec<String> = selections.iter().map(|s| s.gateway.to_string()).collect();

        // Instances that went away: stop their Envoy, drop their resources.
        let gone: Vec<String> = self
            .instances
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        for name in gone {
            if let Some(mut inst) = self.instances.remove(&name) {
                if let Some(child) = inst.envoy.as_mut() {
                    stop_child(child).await;
                }
                let _ = std::fs::remove_file(self.admin_socket(inst.ports));
                remove_envoy_shared_memory(
                    &self
                        .workdir
                        .join(format!("{}.base-id", name.replace('/', "_"))),
                );
                self.cache.remove(&name);
                eprintln!("sluice: instance {name} removed");
            }
        }

        for sel in &selections {
            let name = sel.gateway.to_string();
            let ports = match self.instances.get(&name) {
                Some(i) => i.ports,
                None => match self.allocate_ports() {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("sluice: error: {name}: {e:#}");
                        continue;
                    }
                },
            };
            self.publish(sel, &snapshot, &changes, ports);
            if !self.instances.contains_key(&name) {
                let inst = self.start_instance(sel, ports);
                self.instances.insert(name, inst);
            }
        }
        self.pipelines.retain(&wanted);
        self.write_state();
    }

    /// Brings one instance up to the snapshot and hands new resources to the cache.
    fn publish(
        &mut self,
        sel: &Selection,
        snapshot: &Arc<ClusterSnapshot>,
        changes: &ChangeSet,
        ports: InstancePorts,
    ) {
        let opts = self.translate_options(ports);
        let built = self
            .pipelines
            .instance(sel)
            .update(snapshot, sel, changes, &opts);
        if built.resources.is_none() {
            return; // Nothing this instance serves changed.
        }
        let dag = &built.dag;
        for s in &dag.statuses {
            if s.current_status != dag::Validity::Valid {
                eprintln!(
                    "sluice: {}: IngressRoute {}/{} is {}: {}",
                    dag.gateway,
                    s.namespace,
                    s.name,
                    s.current_status.as_str(),
                    s.description
                );
            }
        }
        let resources = match built.resources {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                eprintln!(
                    "sluice: error: {}: {e}; keeping its last good configuration",
                    dag.gateway
                );
                return;
            }
            None => return,
        };
        self.cache
            .set(&dag.gateway, InstanceResources::from(&resources));
    }

    /// Where an instance's listeners bind.
    fn translate_options(&self, ports: InstancePorts) -> TranslateOptions {
        TranslateOptions {
            http_address: self.opts.listen_address.clone(),
            http_port: ports.envoy.http,
            https_address: self.opts.listen_address.clone(),
            https_port: ports.envoy.https,
            stats_address: self.opts.listen_address.clone(),
            stats_port: ports.envoy.stats,
            admin_socket: self.admin_socket(ports).display().to_string(),
            // `--listen-address ::` is dual-stack, as a Gateway's default `spec.ipFamily`.
            ipv4_compat: true,
        }
    }

    fn allocate_ports(&mut self) -> anyhow::Result<InstancePorts> {
        let admin_id = self.next_admin_id;
        self.next_admin_id = admin_id.checked_add(1).context("too many instances")?;
        match self.opts.ports {
            PortMode::Fixed => {
                let offset = self
                    .next_fixed_slot
                    .checked_mul(10)
                    .context("too many instances")?;
                self.next_fixed_slot += 1;
                let base = EnvoyPorts::default();
                let port = |p: u16| p.checked_add(offset).context("too many instances");
                Ok(InstancePorts {
                    envoy: EnvoyPorts {
                        http: port(base.http)?,
                        https: port(base.https)?,
                        stats: port(base.stats)?,
                    },
                    admin_id,
                })
            }
            PortMode::Auto => {
                // Bind all three at once so they are distinct, then release them for Envoy.
                let listeners = (0..3)
                    .map(|_| std::net::TcpListener::bind((self.opts.listen_address.as_str(), 0)))
                    .collect::<Result<Vec<_>, _>>()
                    .context("picking free ports")?;
                let port = |i: usize| listeners[i].local_addr().map(|a| a.port());
                Ok(InstancePorts {
                    envoy: EnvoyPorts {
                        http: port(0)?,
                        https: port(1)?,
                        stats: port(2)?,
                    },
                    admin_id,
                })
            }
        }
    }
}

/// Paths, sizes and modification times of every manifest file: changes when any file does.
fn dir_fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

#[cfg(unix)]
fn signal_terminate() -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")
}
