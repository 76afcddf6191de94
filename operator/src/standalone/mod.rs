//! `sluice standalone`: no cluster. Reads a manifest directory, serves xDS, runs one Envoy per
//! Gateway instance, and applies file changes live: the directory is watched with inotify
//! (polled every few seconds only when it cannot be watched), and a change re-reads only the
//! files that changed (`source::incremental`). The I/O shell around the pure pipeline
//! `source` → [`crate::pipeline`] (incremental DAG, translation) → `xds::cache`.
//!
//! xDS is mutual TLS unless `--insecure-xds`: at start Sluice makes a throwaway CA and a server
//! certificate (names `sluice-xds` and `localhost`, the xDS IP, 127.0.0.1 and ::1), and for each
//! instance a client certificate naming it, all in its private working directory (mode 0700,
//! removed on exit). Each Envoy's bootstrap points at its own instance's certificate.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::dag::{self, Selection};
use crate::pipeline::Pipelines;
use crate::pki::identity::DEFAULT_SERVER_NAME;
use crate::provision::bootstrap::AdsFlavour;
use crate::provision::objects::EnvoyPorts;
use crate::snapshot::{ChangeSet, ClusterSnapshot, LiveSnapshot};
use crate::source::{IncrementalLoader, LoadError, LoadWarning};
use crate::xds::cache::Cache;
use crate::xds::translate::TranslateOptions;

mod claims_file;
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
    /// Where host claim dates are kept across restarts (`--claims-file`).
    pub claims_file: Option<PathBuf>,
    /// How long a burst of file events may settle before the directory is read again.
    pub debounce: Duration,
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
        loader: IncrementalLoader::new(&opts.manifests),
        live: LiveSnapshot::default(),
        applied: false,
        last_problems: None,
        next_fixed_slot: 0,
        next_admin_id: 0,
        claims: opts
            .claims_file
            .as_deref()
            .map(claims_file::ClaimsFile::load),
    };
    // Changes arrive from inotify; without it, a slow poll of the file stamps finds them. The
    // watch starts before the first read, so no change falls between the two.
    let changed = Arc::new(tokio::sync::Notify::new());
    let hints = Arc::new(std::sync::Mutex::new(Some(BTreeSet::new())));
    let watcher = watch_manifests(&opts.manifests, changed.clone(), hints.clone());
    state.reload(None).await;
    let fallback = match &watcher {
        Ok(_) => None,
        Err(e) => {
            eprintln!(
                "sluice: warning: cannot watch {} ({e}); polling it every {} s instead",
                opts.manifests.display(),
                FALLBACK_POLL.as_secs()
            );
            Some(FALLBACK_POLL)
        }
    };
    let mut poll = tokio::time::interval(fallback.unwrap_or(Duration::from_secs(3600)));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reap = tokio::time::interval(REAP_INTERVAL);
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut terminate = signal_terminate()?;
    let mut rejections = cache.watch_rejections();
    loop {
        tokio::select! {
            Ok(()) = rejections.changed() => state.quarantine_rejected().await,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            () = changed.notified() => {
                // Let a burst of writes (an editor's save, `kubectl`-style rewrites) settle.
                tokio::time::sleep(opts.debounce).await;
                let paths = hints
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .replace(BTreeSet::new());
                state.reload(paths).await;
            }
            _ = poll.tick(), if fallback.is_some() => state.reload(None).await,
            _ = reap.tick() => state.reap_envoys(),
        }
    }
    drop(watcher);
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
    /// The per-instance pipelines.
    pipelines: Pipelines,
    loader: IncrementalLoader,
    /// The snapshot last applied (the last good one), updated in place by each accepted delta,
    /// which also lists what changed for the pipelines.
    live: LiveSnapshot,
    /// Whether a snapshot was applied yet.
    applied: bool,
    /// Warnings, errors and unloaded Gateways last reported.
    last_problems: Option<Problems>,
    next_fixed_slot: u16,
    next_admin_id: u32,
    /// The claims file, when one was asked for.
    claims: Option<claims_file::ClaimsFile>,
}

impl State<'_> {
    /// Envoy's admin socket for an instance: in the private working directory (mode 0700), so
    /// only this user reaches it, and never a TCP port that a route or endpoint could reach.
    fn admin_socket(&self, ports: InstancePorts) -> PathBuf {
        self.workdir
            .join(format!("envoy-{}.admin.sock", ports.admin_id))
    }

    /// Re-reads what changed in the directory and applies it, unless it has errors and a good
    /// state exists already. Reports problems only when they changed, so the fallback poll is
    /// quiet.
    /// Reads the changes: of `paths` only when the file-system events named them all (see
    /// [`IncrementalLoader::reload_paths`]), of the whole directory when `None`.
    async fn reload(&mut self, paths: Option<BTreeSet<PathBuf>>) {
        let reloaded = match &paths {
            Some(paths) => self.loader.reload_paths(paths),
            None => self.loader.reload(),
        };
        let reload = match reloaded {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sluice: error: {e}; keeping the last good configuration");
                return;
            }
        };
        let problems = (
            reload.warnings.clone(),
            reload.errors.clone(),
            reload.unloaded_gateways.clone(),
        );
        let unchanged = self.last_problems.as_ref() == Some(&problems);
        if unchanged && reload.delta.is_empty() && self.applied {
            return;
        }
        if !unchanged {
            for w in &reload.warnings {
                eprintln!("sluice: warning: {w}");
            }
            for e in &reload.errors {
                eprintln!("sluice: error: {e}");
            }
            for at in &reload.unloaded_gateways {
                eprintln!(
                    "sluice: error: {at}: is or may be a Gateway and did not load; the default instance does not replace it"
                );
            }
        }
        self.last_problems = Some(problems);
        if !reload.errors.is_empty() && self.applied {
            if !unchanged {
                eprintln!(
                    "sluice: not applying this change; still serving the last good configuration"
                );
            }
            return;
        }
        // The delta is applied to the last good snapshot in place (O(delta × log n)), which
        // lists what it changed: nothing compares whole snapshots, and old and new snapshots
        // share every object and map node the delta did not touch.
        reload.delta.apply_to(&mut self.live);
        self.live.set_unloaded_gateways(reload.unloaded_gateways);
        self.loader.accept();
        let (snapshot, changes) = self.live.take();
        self.apply(snapshot, changes).await;
        self.applied = true;
    }

    /// Leaves out of the next configuration the objects an Envoy rejected the configuration of
    /// (`dag::quarantine`), and builds it.
    async fn quarantine_rejected(&mut self) {
        if !self.applied {
            return;
        }
        let mut any = false;
        for (name, pipeline) in self.pipelines.iter_mut() {
            for owner in pipeline.quarantine_rejected(&self.cache.rejections(name)) {
                let described = crate::dag::owner::Owner::parse(&owner)
                    .map_or_else(|| owner.clone(), |o| o.describe());
                eprintln!(
                    "sluice: warning: {name}: Envoy rejected the configuration made from {described}; it is left out until it, or a Secret or other object it reads, changes"
                );
                any = true;
            }
        }
        if any {
            let (snapshot, changes) = self.live.take();
            self.apply(snapshot, changes).await;
        }
    }

    async fn apply(&mut self, snapshot: Arc<ClusterSnapshot>, changes: ChangeSet) {
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
            let (ports, reserved) = match self.instances.get(&name) {
                Some(i) => (i.ports, Vec::new()),
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
                let mut inst = self.start_instance(sel, ports);
                inst.reserved = reserved;
                self.instances.insert(name, inst);
            }
        }
        self.pipelines.retain(&wanted);
        if let Some(claims) = &mut self.claims {
            claims.save(&self.pipelines);
        }
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
        let pipeline = self.pipelines.instance(sel);
        // Before its first build: the claim dates kept from the last run.
        if let Some(record) = self
            .claims
            .as_mut()
            .and_then(|c| c.take(&sel.gateway.to_string()))
        {
            pipeline.import_claims(record);
        }
        let built = match pipeline.update_guarded(snapshot, sel, changes, &opts) {
            Ok(built) => built,
            Err(e) => {
                // A bug, but it must not stop the other instances: this one keeps its last
                // good configuration and builds everything again at the next change.
                eprintln!(
                    "sluice: error: {}: building the configuration panicked: {}; keeping its last good configuration",
                    sel.gateway,
                    printable(&e.message)
                );
                return;
            }
        };
        if built.resources.is_none() {
            return; // Nothing this instance serves changed.
        }
        let dag = &built.dag;
        for line in verdict_lines(dag, pipeline.status_tally()) {
            eprintln!("{line}");
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
        self.cache.set(&dag.gateway, resources);
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
            // The pipeline sets it from the Gateway (`with_selection`).
            xff_trusted_hops: 0,
        }
    }

    /// The instance's ports, and the sockets holding them (none for fixed ports).
    fn allocate_ports(&mut self) -> anyhow::Result<(InstancePorts, Vec<tokio::net::TcpSocket>)> {
        let admin_id = self.next_admin_id;
        self.next_admin_id = admin_id.checked_add(1).context("too many instances")?;
        match self.opts.ports {
            PortMode::Fixed => {
                let offset = self
                    .next_fixed_slot
                    .checked_mul(10)
                    .context("too many instances")?;
                let base = EnvoyPorts::default();
                let port = |p: u16| p.checked_add(offset).context("too many instances");
                let envoy = EnvoyPorts {
                    http: port(base.http)?,
                    https: port(base.https)?,
                    stats: port(base.stats)?,
                };
                // A port in use leaves the slot free: the next reload tries the same ports.
                let held = hold_fixed_ports(
                    &self.opts.listen_address,
                    [envoy.http, envoy.https, envoy.stats],
                )?;
                self.next_fixed_slot += 1;
                Ok((InstancePorts { envoy, admin_id }, held))
            }
            PortMode::Auto => {
                let reserved = reserve_ports(&self.opts.listen_address)?;
                let port = |i: usize| reserved[i].local_addr().map(|a| a.port());
                Ok((
                    InstancePorts {
                        envoy: EnvoyPorts {
                            http: port(0)?,
                            https: port(1)?,
                            stats: port(2)?,
                        },
                        admin_id,
                    },
                    reserved,
                ))
            }
        }
    }
}

/// The socket address `listen_address` names, with port 0.
fn listen_socket_address(listen_address: &str) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs as _;
    (listen_address, 0)
        .to_socket_addrs()
        .with_context(|| format!("resolving the listen address {listen_address}"))?
        .next()
        .with_context(|| format!("the listen address {listen_address} resolves to nothing"))
}

/// A bound, never listening socket with `SO_REUSEPORT` (and without `SO_REUSEADDR`) on `addr`.
/// Envoy binds its listeners with `SO_REUSEPORT` too (its default on Linux), so it can take
/// the port; the OS never hands it to anyone's `bind(0)` while the socket lives, and a plain
/// bind of it (another standalone's check below) fails.
fn hold_port(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Three distinct ports picked by the OS, each held by [`hold_port`] for as long as the
/// instance lives. Releasing the ports before Envoy bound them let two instances (two
/// standalones, as in parallel tests) get the same port, and Envoy's `SO_REUSEPORT` then shared
/// it between the two Envoys: some connections reached the other.
fn reserve_ports(listen_address: &str) -> anyhow::Result<Vec<tokio::net::TcpSocket>> {
    let addr = listen_socket_address(listen_address)?;
    (0..3)
        .map(|_| hold_port(addr))
        .collect::<std::io::Result<Vec<_>>>()
        .context("picking free ports")
}

/// Checks that nobody uses the fixed `ports` on `listen_address`, then holds them (as
/// [`reserve_ports`] does). Without the check, a second Envoy on the same ports (another
/// standalone still running, any Envoy of the same user) would share them through
/// `SO_REUSEPORT` without an error, each answering part of the other's connections. The check
/// is a plain bind (`SO_REUSEADDR`, as Envoy's, so connections of a previous run waiting in
/// `TIME_WAIT` do not count); where a port passes it but cannot be held, it goes unheld.
fn hold_fixed_ports(
    listen_address: &str,
    ports: [u16; 3],
) -> anyhow::Result<Vec<tokio::net::TcpSocket>> {
    let addr = listen_socket_address(listen_address)?;
    let mut held = Vec::with_capacity(ports.len());
    for port in ports {
        let addr = std::net::SocketAddr::new(addr.ip(), port);
        std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "port {port} on {} is in use (another sluice standalone or Envoy?); \
                 stop it, or use --ports auto",
                addr.ip()
            )
        })?;
        held.extend(hold_port(addr).ok());
    }
    Ok(held)
}

/// How often the directory is polled when it cannot be watched.
const FALLBACK_POLL: Duration = Duration::from_secs(5);
/// How often Envoy children are checked for having exited.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

type Problems = (Vec<LoadWarning>, Vec<LoadError>, Vec<String>);

/// Watches the manifest directory (recursively; for one file, its directory) and wakes
/// `changed` on anything but reads, Sluice's own included.
/// Paths named by the file-system events since the last reload; `None`: some event named none
/// (or was lost), so the whole directory is read again.
type Hints = Arc<std::sync::Mutex<Option<BTreeSet<PathBuf>>>>;

/// At most this many paths are remembered between reloads; past it, the directory is read again.
const MAX_HINTS: usize = 1024;

fn watch_manifests(
    path: &Path,
    changed: Arc<tokio::sync::Notify>,
    hints: Hints,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::event::{AccessKind, AccessMode, EventKind};
    use notify::{RecursiveMode, Watcher as _};
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // An error may mean lost events (a full queue): read the directory again.
            Err(_) => true,
            Ok(event) => match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                EventKind::Access(_) => false,
                _ => true,
            },
        };
        if relevant {
            let mut hints = hints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &event {
                Ok(event) if !event.paths.is_empty() && !event.need_rescan() => {
                    if let Some(paths) = hints.as_mut() {
                        paths.extend(event.paths.iter().cloned());
                        if paths.len() > MAX_HINTS {
                            *hints = None;
                        }
                    }
                }
                _ => *hints = None,
            }
            drop(hints);
            changed.notify_one();
        }
    })?;
    if path.is_file() {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        watcher.watch(
            parent.unwrap_or(Path::new(".")),
            RecursiveMode::NonRecursive,
        )?;
    } else {
        watcher.watch(path, RecursiveMode::Recursive)?;
    }
    Ok(watcher)
}

fn signal_terminate() -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")
}

/// `text` with control characters escaped (`\u{1b}`), everything else as it is.
/// The line standalone prints for each IngressRoute and Traefik object the instance does not
/// find valid, in the DAG's order, found through the statuses not valid that `tally` (`dag`'s,
/// kept by the pipeline) lists: no look at every status. Descriptions quote what tenants wrote
/// (a Traefik rule may carry escape sequences): escaped, so that no manifest can write control
/// sequences to the terminal.
pub fn verdict_lines<'a>(
    dag: &'a dag::Dag,
    tally: &'a dag::StatusTally,
) -> impl Iterator<Item = String> + 'a {
    let (routes, objects) = tally.not_valid(dag);
    let routes = routes.map(|s| {
        format!(
            "sluice: {}: IngressRoute {}/{} is {}: {}",
            dag.gateway,
            s.namespace,
            s.name,
            s.current_status.as_str(),
            printable(&s.description)
        )
    });
    let objects = objects.map(|s| {
        format!(
            "sluice: {}: {} {}/{} ({}) is {}: {}",
            dag.gateway,
            s.kind,
            s.namespace,
            s.name,
            s.api_version,
            s.current_status.as_str(),
            printable(&s.description)
        )
    });
    routes.chain(objects)
}

fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert_eq!(
            super::printable("rule \"Host(`a`)\" \u{1b}[2J\nnext é"),
            "rule \"Host(`a`)\" \\u{1b}[2J\\nnext é"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod port_tests {
    /// The picked ports stay taken for anyone without `SO_REUSEPORT` (and so for every other
    /// `bind(0)`), while Envoy, which binds with `SO_REUSEPORT`, can still take them.
    #[tokio::test]
    async fn picked_ports_stay_held_until_the_instance_goes() {
        let reserved = super::reserve_ports("127.0.0.1").unwrap();
        let ports: Vec<u16> = reserved
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert_eq!(
            ports
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            3
        );
        for &port in &ports {
            let err = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "port {port}");
            let envoy_like = tokio::net::TcpSocket::new_v4().unwrap();
            envoy_like.set_reuseport(true).unwrap();
            envoy_like.bind(([127, 0, 0, 1], port).into()).unwrap();
            envoy_like.listen(1).unwrap();
        }
        drop(reserved);
    }

    /// Fixed ports someone listens on are refused, naming the port; free ones are held.
    #[tokio::test]
    async fn fixed_ports_in_use_are_refused_and_free_ones_held() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        let free = super::reserve_ports("127.0.0.1").unwrap();
        let free_ports: Vec<u16> = free
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        drop(free);
        let err = super::hold_fixed_ports("127.0.0.1", [free_ports[0], busy_port, free_ports[1]])
            .unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!("port {busy_port} on 127.0.0.1 is in use")),
            "{err:#}"
        );
        let held =
            super::hold_fixed_ports("127.0.0.1", [free_ports[0], free_ports[1], free_ports[2]])
                .unwrap();
        assert_eq!(held.len(), 3);
        // A second standalone's check sees them taken.
        assert!(super::hold_fixed_ports("127.0.0.1", [free_ports[2], 0, 0]).is_err());
        // An Envoy of the same user listening with SO_REUSEPORT (what the check must catch).
        drop(held);
        let envoy_like = super::hold_port(([127, 0, 0, 1], free_ports[0]).into()).unwrap();
        let _listening = envoy_like.listen(1).unwrap();
        assert!(super::hold_fixed_ports("127.0.0.1", [free_ports[0], 0, 0]).is_err());
    }
}
