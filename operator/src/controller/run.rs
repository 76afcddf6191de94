//! `sluice run`: wires the watches, the route reconciler, the Gateway controller, leader
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

use crate::controller::{crds, gateway, http, leader, routes};
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
    /// IngressRoute status writes in flight at once (`--status-writes-in-flight`).
    pub status_writes_in_flight: usize,
    /// How long one IngressRoute status write or Event may take (`--status-call-timeout-seconds`).
    pub status_call_timeout: Duration,
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
    /// Lifetime of the xDS server and client certificates (`--xds-cert-validity-seconds`).
    pub xds_cert_validity: Duration,
    /// Namespaces whose objects are watched (`--watch-namespaces`).
    pub watch: crate::source::kube::WatchScope,
    /// How often API discovery is asked whether Traefik's CRDs are served.
    pub traefik_discovery: Duration,
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
    let mut server_names = crate::provision::xds_tls::xds_server_names(&opts.namespace);
    server_names.extend(opts.xds_server_names.iter().cloned());
    let (xds_tls, xds_ca) = if opts.insecure_xds {
        tracing::warn!(
            "--insecure-xds: Envoys connect to xDS without TLS; any client can fetch any Gateway's configuration"
        );
        (None, None)
    } else {
        let (tls, ca) = tokio::select! {
            r = ensure_xds_pki(&client, &opts.namespace, &server_names, opts.xds_cert_validity) => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        };
        (Some(watch::channel(tls)), Some(Arc::new(ca)))
    };
    let mut server = crate::xds::server::AdsServer::new(cache.clone(), {
        let xds_metrics = Arc::new(crate::xds::server::ServerMetrics::new()?);
        xds_metrics.register(&metrics.registry)?;
        xds_metrics
    });
    if let (Some((tls_tx, tls_rx)), Some(ca)) = (xds_tls, &xds_ca) {
        server = server.with_tls_updates(tls_rx);
        // Renewal (by the leader) and reload (by every replica) of the server certificate.
        let certs = ServerCertificate {
            client: client.clone(),
            namespace: opts.namespace.clone(),
            names: server_names.clone(),
            ca: ca.clone(),
            leadership: leadership.clone(),
            metrics: metrics.clone(),
            tls: tls_tx,
        };
        let s = shutdown(shutdown_rx.clone());
        tasks.spawn(async move {
            tokio::select! {
                () = certs.maintain() => {}
                () = s => {}
            }
            Ok(())
        });
    }
    tasks.spawn({
        let s = shutdown(shutdown_rx.clone());
        async move { server.serve(xds_listener, s).await.context("xDS server") }
    });
    tokio::select! {
        () = wait_for_crds(&client) => {}
        _ = tokio::signal::ctrl_c() => return Ok(()),
        _ = terminate.recv() => return Ok(()),
    }
    // A cluster that ran Contour may still have Contour's CRDs: see what they are, say so, and
    // look again from time to time (the status writer also looks when a write hints at a change).
    let crd_state = crds::CrdState::default();
    crds::check(&client, &crd_state, &metrics).await;
    tasks.spawn({
        let (c, s, m) = (client.clone(), crd_state.clone(), metrics.clone());
        async move {
            crds::recheck(c, s, m).await;
            Ok(())
        }
    });
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

    if let crate::source::kube::WatchScope::Namespaces(ns) = &opts.watch {
        tracing::info!(namespaces = %ns.iter().cloned().collect::<Vec<_>>().join(","), "watching only these namespaces");
    }
    let (stores, changed) = crate::source::kube::start(&client, &opts.watch);
    // Traefik's CRDs are optional: watched where discovery finds them served, before the first
    // build (so readiness waits for their lists too), then looked for again periodically.
    stores.traefik.discover().await;
    tasks.spawn({
        let (traefik, interval) = (stores.traefik.clone(), opts.traefik_discovery);
        async move {
            traefik.maintain(interval).await;
            Ok(())
        }
    });
    let route_counts: routes::SharedRouteCounts = Arc::new(Mutex::new(BTreeMap::new()));
    let dags: routes::SharedDags = Arc::new(Mutex::new(BTreeMap::new()));
    let claims_problems: crate::controller::claims::SharedClaimsProblems = Arc::default();
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
            status_writes_in_flight: opts.status_writes_in_flight,
            call_timeout: opts.status_call_timeout,
            resync: Duration::from_secs(30),
            route_counts: route_counts.clone(),
            dags: dags.clone(),
            counts_changed: counts_tx,
            claims_problems: claims_problems.clone(),
            lease: (lease.namespace.clone(), lease.name.clone()),
            allow_loopback_endpoints: opts.allow_loopback_endpoints,
            crds: crd_state.clone(),
            recorder: routes::EventSink::new(
                client.clone(),
                kube::runtime::events::Reporter {
                    controller: routes::EVENT_REPORTER.to_owned(),
                    instance: Some(opts.identity.clone()),
                },
                opts.status_call_timeout,
            ),
        };
        async move {
            routes::run(ctx, changed, ready_tx).await;
            Ok(())
        }
    });
    // Only the leader sets the client certificates' expiry (it renews them): forget them on
    // stepping down, before they go stale.
    tasks.spawn({
        let mut changes = leadership.changes();
        let metrics = metrics.clone();
        async move {
            while changes.changed().await.is_ok() {
                if !*changes.borrow_and_update() {
                    metrics.forget_xds_client_certificates();
                }
            }
            // The election task ended: that one reports it.
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    tasks.spawn({
        let ctx = gateway::GatewayContext {
            watch: opts.watch.clone(),
            xds_ca: xds_ca.clone(),
            client: client.clone(),
            metrics: metrics.clone(),
            leadership,
            provision: opts.provision.clone(),
            route_counts,
            dags,
            claims_problems,
            cache: cache.clone(),
            call_timeout: opts.status_call_timeout,
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

/// The xDS server certificate kept current: the leader renews the shared Secret when a third of
/// its lifetime is left; every replica re-reads it and serves what it holds.
struct ServerCertificate {
    client: kube::Client,
    namespace: String,
    names: Vec<String>,
    ca: Arc<crate::pki::identity::CertificateAuthority>,
    leadership: leader::Leadership,
    metrics: Metrics,
    /// What the xDS server accepts new connections with.
    tls: watch::Sender<crate::pki::XdsServerTls>,
}

impl ServerCertificate {
    /// Checks the Secret at least every [`Self::period`], and when renewal falls due. Never
    /// returns.
    async fn maintain(self) {
        if let Some(not_after) = self.ca.not_after() {
            self.metrics.set_xds_certificate_expiry("ca", "", not_after);
        }
        loop {
            let next = match self.check().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the xDS server certificate; retrying");
                    self.period()
                }
            };
            tokio::time::sleep(next).await;
        }
    }

    /// Every minute; more often for short-lived certificates (a sixth of their lifetime).
    fn period(&self) -> Duration {
        (self.ca.leaf_validity() / 6).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// One check: renew if leading and due, reload if the Secret changed. Returns when to check
    /// again.
    async fn check(&self) -> anyhow::Result<Duration> {
        use crate::provision::xds_tls;
        use k8s_openapi::api::core::v1::Secret;
        use kube::api::{Patch, PatchParams};
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let now = std::time::SystemTime::now();
        let mut secret = api.get_opt(xds_tls::XDS_SERVER_SECRET).await?;
        if self.leadership.is_leading() {
            let desired = xds_tls::desired_xds_server_secret(
                &self.ca,
                &self.namespace,
                &self.names,
                secret.as_ref(),
                now,
            )?;
            let unchanged = secret
                .as_ref()
                .is_some_and(|s| s.data == desired.data && s.type_ == desired.type_);
            // Asked again just before the write, as every provisioning write.
            if !unchanged && self.leadership.is_leading() {
                let applied = api
                    .patch(
                        xds_tls::XDS_SERVER_SECRET,
                        &PatchParams::apply(crate::provision::FIELD_MANAGER).force(),
                        &Patch::Apply(&desired),
                    )
                    .await?;
                tracing::info!(
                    secret = xds_tls::XDS_SERVER_SECRET,
                    "renewed the xDS server certificate"
                );
                secret = Some(applied);
            }
        }
        let Some(secret) = secret else {
            anyhow::bail!("Secret {} is missing", xds_tls::XDS_SERVER_SECRET);
        };
        let tls = xds_tls::server_tls_from_secret(&secret)?;
        self.tls.send_if_modified(|current| {
            let changed = *current != tls;
            if changed {
                tracing::info!(
                    secret = xds_tls::XDS_SERVER_SECRET,
                    "the xDS server certificate changed; new connections use the new one"
                );
                *current = tls;
            }
            changed
        });
        if let Some(not_after) = xds_tls::certificate_not_after(&secret) {
            self.metrics
                .set_xds_certificate_expiry("server", "", not_after);
        }
        Ok(xds_tls::renewal_due_in(&secret, now).clamp(Duration::from_secs(1), self.period()))
    }
}

/// Loads (or, first replica, creates) the xDS CA Secret and applies the server certificate
/// Secret (certificates valid for `validity`); retries until the API answers. Secret contents
/// are never logged.
async fn ensure_xds_pki(
    client: &kube::Client,
    namespace: &str,
    names: &[String],
    validity: Duration,
) -> anyhow::Result<(
    crate::pki::XdsServerTls,
    crate::pki::identity::CertificateAuthority,
)> {
    use crate::provision::xds_tls;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams, PostParams};
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    loop {
        let attempt = async {
            let now = std::time::SystemTime::now();
            let existing = api.get_opt(xds_tls::XDS_CA_SECRET).await?;
            let mut loaded = xds_tls::load_or_build_ca(existing.as_ref(), namespace, now)?;
            loaded.ca = loaded.ca.with_leaf_validity(validity);
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
                names,
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
