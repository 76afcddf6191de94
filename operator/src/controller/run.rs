//! `sluice run`: wires the reflectors, the route reconciler, the Gateway controller, leader
//! election, the xDS server and the HTTP endpoint together.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use tokio::sync::watch;

use crate::controller::{gateway, http, leader, routes};
use crate::metrics::Metrics;
use crate::xds::cache::Cache;
use crate::xds::translate::TranslateOptions;

/// CRDs the operator needs before it can start.
pub const REQUIRED_CRDS: [&str; 3] = [
    "ingressroutes.contour.heptio.com",
    "tlscertificatedelegations.contour.heptio.com",
    "gateways.sluice.dev",
];

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the operator (its Lease lives here).
    pub namespace: String,
    pub identity: String,
    pub xds_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub lease_name: String,
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub lease_renew_deadline: Duration,
    /// How often the Lease is read and (by the leader) renewed.
    pub lease_renew: Duration,
    pub debounce: Duration,
    pub provision: crate::provision::ProvisionContext,
    pub translate: TranslateOptions,
    /// Serve xDS without TLS (`--insecure-xds`); otherwise the operator keeps a CA and a server
    /// certificate in Secrets of its namespace and issues one client certificate per Gateway.
    pub insecure_xds: bool,
    /// Route to loopback endpoint addresses (`--allow-loopback-endpoints`, tests only).
    pub allow_loopback_endpoints: bool,
    /// Extra DNS names (or IPs) the xDS server certificate carries, e.g. a custom
    /// `--xds-service-address` host.
    pub xds_server_names: Vec<String>,
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let client = client(opts.kubeconfig.as_ref()).await?;

    let metrics = Metrics::new().context("registering metrics")?;
    let cache = Arc::new(Cache::new());
    let (ready_tx, ready_rx) = watch::channel(false);
    let (leading_tx, leadership) = leader::leadership();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let http_listener = crate::net::bind(opts.http_listen)
        .with_context(|| format!("binding the HTTP endpoint to {}", opts.http_listen))?;
    let xds_listener = crate::net::bind(opts.xds_listen)
        .with_context(|| format!("binding the xDS server to {}", opts.xds_listen))?;
    tracing::info!(http = %http_listener.local_addr()?, xds = %xds_listener.local_addr()?, identity = %opts.identity, "starting");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tasks = tokio::task::JoinSet::new();
    // The HTTP endpoint answers from the start: /healthz while CRDs are missing keeps a liveness
    // probe from restarting the pod in a loop; /readyz says 503 until the first sync.
    tasks.spawn({
        let (m, r, s) = (
            metrics.clone(),
            ready_rx.clone(),
            shutdown(shutdown_rx.clone()),
        );
        async move {
            http::serve(http_listener, m, r, s)
                .await
                .context("HTTP endpoint")
        }
    });
    // The xDS PKI: the CA and server certificate live in Secrets of the operator's namespace,
    // shared by every replica.
    let (xds_tls, xds_ca) = if opts.insecure_xds {
        tracing::warn!(
            "--insecure-xds: Envoys connect to xDS without TLS; any client can fetch any Gateway's configuration"
        );
        (None, None)
    } else {
        let (tls, ca) = tokio::select! {
            r = ensure_xds_pki(&client, &opts.namespace, &opts.xds_server_names) => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        };
        (Some(tls), Some(Arc::new(ca)))
    };
    tasks.spawn({
        let xds_metrics = Arc::new(crate::xds::server::ServerMetrics::new()?);
        xds_metrics.register(&metrics.registry)?;
        let server =
            crate::xds::server::AdsServer::new(cache.clone(), xds_metrics).with_tls(xds_tls);
        let s = shutdown(shutdown_rx.clone());
        async move { server.serve(xds_listener, s).await.context("xDS server") }
    });
    tokio::select! {
        () = wait_for_crds(&client) => {}
        _ = tokio::signal::ctrl_c() => return Ok(()),
        _ = terminate.recv() => return Ok(()),
    }
    let lease = leader::LeaseConfig {
        namespace: opts.namespace.clone(),
        name: opts.lease_name.clone(),
        identity: opts.identity.clone(),
        lease_duration: opts.lease_duration,
        renew_deadline: opts.lease_renew_deadline,
        retry_period: opts.lease_renew,
    };
    leader::check_config(&lease).map_err(|e| anyhow::anyhow!("leader election: {e}"))?;
    tasks.spawn({
        let cfg = lease.clone();
        let c = client.clone();
        async move {
            leader::run(c, cfg, leading_tx).await;
            Ok(())
        }
    });

    let (stores, changed) = crate::source::kube::start(&client);
    let route_counts: routes::SharedRouteCounts = Arc::new(Mutex::new(BTreeMap::new()));
    let dags: routes::SharedDags = Arc::new(Mutex::new(BTreeMap::new()));
    let (counts_tx, counts_rx) = watch::channel(0u64);
    tasks.spawn({
        let ctx = routes::RoutesContext {
            client: client.clone(),
            stores: stores.clone(),
            cache: cache.clone(),
            metrics: metrics.clone(),
            leadership: leadership.clone(),
            translate: opts.translate.clone(),
            debounce: opts.debounce,
            resync: Duration::from_secs(30),
            route_counts: route_counts.clone(),
            dags: dags.clone(),
            counts_changed: counts_tx,
            allow_loopback_endpoints: opts.allow_loopback_endpoints,
        };
        async move {
            routes::run(ctx, changed, ready_tx).await;
            Ok(())
        }
    });
    tasks.spawn({
        let ctx = gateway::GatewayContext {
            xds_ca: xds_ca.clone(),
            client: client.clone(),
            metrics: metrics.clone(),
            leadership,
            provision: opts.provision.clone(),
            route_counts,
            dags,
            cache: cache.clone(),
            recorder: kube::runtime::events::Recorder::new(
                client.clone(),
                kube::runtime::events::Reporter {
                    controller: gateway::EVENT_REPORTER.to_owned(),
                    instance: Some(opts.identity.clone()),
                },
            ),
        };
        async move {
            gateway::run(ctx, counts_rx).await;
            Ok(())
        }
    });

    let result = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
        Some(r) = tasks.join_next() => match r {
            Ok(Ok(())) => Err(anyhow::anyhow!("a component stopped unexpectedly")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("a component panicked: {e}")),
        },
    };
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {
            tasks.abort_all();
        }
    })
    .await;
    // Hand over at once instead of making the next replica wait out the lease.
    if let Err(e) = leader::release(&client, &lease).await {
        tracing::warn!(error = %e, "could not release the lease; another replica takes over when it expires");
    }
    result
}

/// Loads (or, first replica, creates) the xDS CA Secret and applies the server certificate
/// Secret; retries until the API answers. Secret contents are never logged.
async fn ensure_xds_pki(
    client: &kube::Client,
    namespace: &str,
    extra_names: &[String],
) -> anyhow::Result<(
    crate::xds::server::XdsServerTls,
    crate::xds::identity::CertificateAuthority,
)> {
    use crate::provision::xds_tls;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams, PostParams};
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut names = xds_tls::xds_server_names(namespace);
    names.extend(extra_names.iter().cloned());
    loop {
        let attempt = async {
            let now = std::time::SystemTime::now();
            let existing = api.get_opt(xds_tls::XDS_CA_SECRET).await?;
            let loaded = xds_tls::load_or_build_ca(existing.as_ref(), namespace, now)?;
            if let Some(create) = &loaded.create {
                match api.create(&PostParams::default(), create).await {
                    Ok(_) => tracing::info!(secret = xds_tls::XDS_CA_SECRET, "created the xDS CA"),
                    // Another replica was first: use its CA.
                    Err(kube::Error::Api(e)) if e.code == 409 => return Ok(None),
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            }
            let existing = api.get_opt(xds_tls::XDS_SERVER_SECRET).await?;
            let server = xds_tls::desired_xds_server_secret(
                &loaded.ca,
                namespace,
                &names,
                existing.as_ref(),
                now,
            )?;
            // A certificate still good is kept as it is: no write (followers write nothing).
            if let Some(existing) =
                existing.filter(|e| e.data == server.data && e.type_ == server.type_)
            {
                return Ok(Some((
                    xds_tls::server_tls_from_secret(&existing)?,
                    loaded.ca,
                )));
            }
            let applied = api
                .patch(
                    xds_tls::XDS_SERVER_SECRET,
                    &PatchParams::apply(crate::provision::FIELD_MANAGER).force(),
                    &Patch::Apply(&server),
                )
                .await?;
            Ok(Some((
                xds_tls::server_tls_from_secret(&applied)?,
                loaded.ca,
            )))
        };
        match attempt.await {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up the xDS certificates yet; retrying in 2s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("finding a kubeconfig or in-cluster config")?,
    };
    kube::Client::try_from(config).context("creating the Kubernetes client")
}

/// Blocks until every CRD Sluice serves is installed, saying which are missing.
async fn wait_for_crds(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    loop {
        let mut missing = Vec::new();
        for name in REQUIRED_CRDS {
            match api.get_opt(name).await {
                Ok(Some(_)) => {}
                Ok(None) => missing.push(name),
                Err(e) => {
                    tracing::warn!(crd = name, error = %e, "cannot check CRD");
                    missing.push(name);
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        tracing::error!(
            missing = ?missing,
            "required CRDs are not installed; install them with `sluice crds | kubectl apply -f -`; retrying in 2s"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
