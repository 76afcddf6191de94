//! Quarantine with a real Envoy: when a value gets past Sluice's checks and Envoy rejects the
//! HTTPS listener every tenant shares, the object it is blamed on is left out of the next
//! configuration, so other tenants' changes reach Envoy again.
//!
//! Sluice's checks leave no known value Envoy rejects, so the test plays the missing check: it
//! duplicates the filter chain of one tenant's host in the translated listener before serving
//! it (Envoy refuses two filter chains with the same match), as a translation bug would. The
//! rest is Sluice's: the pipeline, the xDS cache and server, the blame and the quarantine, and
//! Envoy's own NACK over ADS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Xds, ads_bootstrap};

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::util::pack_any;
use prost::Message;
use sluice::dag::Selection;
use sluice::pipeline::InstancePipeline;
use sluice::snapshot::{ChangeSet, ClusterSnapshot};
use sluice::xds::cache::{Cache, InstanceResources, type_url};
use sluice::xds::translate::{HTTPS_LISTENER, TranslateOptions};
use sluice_e2e::backend::Backend;
use sluice_e2e::client::Request;
use sluice_e2e::envoy::Envoy;
use sluice_e2e::manifests;
use sluice_e2e::process::TAIL_LINES;
use sluice_e2e::tls::{TestCa, TlsClient};

/// How long a wait may take before the setup counts as broken; no assertion depends on it.
const PATIENCE: Duration = Duration::from_secs(60);

/// The host whose filter chain the "missing check" spoils.
const SPOILED: &str = "bad.example.com";

fn tls_root(ns: &str, name: &str, fqdn: &str) -> String {
    format!(
        "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\n\
         metadata: {{name: {name}, namespace: {ns}}}\nspec:\n  virtualhost: {{fqdn: {fqdn}, \
         tls: {{secretName: tls}}}}\n  routes:\n  - match: /\n    services: [{{name: web, port: 80}}]\n"
    )
}

/// What a translation bug would do: the spoiled host's filter chain twice.
fn spoil(resources: &mut InstanceResources) {
    let Some(listener) = resources.by_type()[type_url::LISTENER].get(HTTPS_LISTENER) else {
        return;
    };
    let mut listener = Listener::decode(listener.value()).unwrap();
    let spoiled = listener.filter_chains.iter().find(|c| {
        c.filter_chain_match
            .as_ref()
            .is_some_and(|m| m.server_names.iter().any(|n| n == SPOILED))
    });
    if let Some(chain) = spoiled.cloned() {
        listener.filter_chains.push(chain);
        resources.insert(HTTPS_LISTENER, pack_any(listener));
    }
}

/// One Gateway instance as `sluice standalone` runs it, with the test's manifests.
struct Instance {
    sel: Selection,
    opts: TranslateOptions,
    pipeline: InstancePipeline,
    snap: Arc<ClusterSnapshot>,
    cache: Arc<Cache>,
}

impl Instance {
    fn name(&self) -> String {
        self.sel.gateway.to_string()
    }

    /// Builds `yaml`'s world (after what the instance had) and serves it, spoiled.
    fn publish(&mut self, yaml: &str) {
        let report = sluice::source::load_sources([("world.yaml", yaml)]);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let snap = Arc::new(report.snapshot);
        let changes = ChangeSet::diff(&self.snap, &snap);
        self.snap = snap;
        self.update(&changes);
    }

    fn update(&mut self, changes: &ChangeSet) {
        let built = self
            .pipeline
            .update(&self.snap, &self.sel, changes, &self.opts);
        if let Some(resources) = built.resources {
            let mut resources = resources.unwrap();
            spoil(&mut resources);
            self.cache.set(&self.name(), resources);
        }
    }

    /// What the route reconcilers do when the rejections change.
    fn quarantine(&mut self) -> Vec<String> {
        let rejections = self.cache.rejections(&self.name());
        let newly = self.pipeline.quarantine_rejected(&rejections);
        if !newly.is_empty() {
            self.update(&ChangeSet::default());
        }
        newly
    }

    fn status(&self, key: &str) -> (String, String) {
        let (ns, name) = key.split_once('/').unwrap();
        let s = (self.pipeline.dag().statuses.iter())
            .find(|s| s.namespace == ns && s.name == name)
            .unwrap();
        (s.current_status.as_str().to_owned(), s.description.clone())
    }
}

async fn wait_for_rejection(instance: &Instance, envoy: &Envoy) {
    let name = instance.name();
    let rejected = sluice_e2e::wait_until("Envoy to reject the listener", PATIENCE, async || {
        !instance.cache.rejections(&name).is_empty()
    })
    .await;
    if let Err(e) = rejected {
        panic!("{e}\nEnvoy log:\n{}", envoy.log_tail(TAIL_LINES));
    }
}

async fn wait_for_answer(port: u16, host: &str, backend: &str, client: &TlsClient, envoy: &Envoy) {
    let what = format!("https://{host}/ to be answered by {backend}");
    let mut last = None;
    let answered = sluice_e2e::wait_until(&what, PATIENCE, async || {
        last = Some(Request::get(host, "/").send_tls(port, client).await);
        matches!(&last, Some(Ok(r)) if r.status == 200 && r.backend().as_deref() == Some(backend))
    })
    .await;
    if let Err(e) = answered {
        panic!(
            "{e}; last: {last:?}\nEnvoy log:\n{}",
            envoy.log_tail(TAIL_LINES)
        );
    }
}

#[tokio::test]
async fn a_rejected_tenant_is_left_out_and_the_others_go_on() {
    let ca = TestCa::new("quarantine test CA").unwrap();
    let client = TlsClient::trusting(&ca.cert_pem()).unwrap();
    let victim_backend = Backend::start("victim").await.unwrap();
    let evil_backend = Backend::start("evil").await.unwrap();
    let secret =
        |ns: &str, names: &[&str]| manifests::tls_secret(ns, "tls", &ca.issue(names).unwrap());
    let victim = [
        tls_root("victim", "a", "a.example.com"),
        manifests::service("victim", "web", 80, &[victim_backend.addr().port()]),
        secret("victim", &["a.example.com", "c.example.com"]),
    ]
    .join("\n---\n");
    let evil = [
        tls_root("evil", "bad", SPOILED),
        manifests::service("evil", "web", 80, &[evil_backend.addr().port()]),
        secret("evil", &[SPOILED]),
    ]
    .join("\n---\n");

    // Sluice's ADS server and an Envoy of the instance.
    let xds = Xds::start().await;
    let sel = Selection::default_instance().local();
    let opts = TranslateOptions {
        http_address: "127.0.0.1".into(),
        http_port: sluice_e2e::envoy_port().unwrap(),
        https_address: "127.0.0.1".into(),
        https_port: sluice_e2e::envoy_port().unwrap(),
        stats_address: "127.0.0.1".into(),
        stats_port: sluice_e2e::envoy_port().unwrap(),
        ipv4_compat: false,
        ..TranslateOptions::default()
    };
    let https = opts.https_port;
    let mut instance = Instance {
        pipeline: InstancePipeline::new(sel.clone()),
        sel,
        opts,
        snap: Arc::default(),
        cache: xds.cache.clone(),
    };
    instance.publish(&victim);
    let envoy = Envoy::start(ads_bootstrap("DELTA_GRPC", &instance.name(), xds.port))
        .await
        .unwrap();
    wait_for_answer(https, "a.example.com", "victim", &client, &envoy).await;

    // The spoiled tenant arrives: Envoy rejects the shared HTTPS listener.
    instance.publish(&[victim.as_str(), &evil].join("\n---\n"));
    wait_for_rejection(&instance, &envoy).await;
    let error = instance.cache.rejections(&instance.name())[0].error.clone();
    assert!(error.contains("filter chain"), "{error}");
    // The blamed object (one namespace's) is quarantined, and the listener without it accepted.
    assert_eq!(instance.quarantine(), ["evil/bad"]);
    let (validity, description) = instance.status("evil/bad");
    assert_eq!(validity, "invalid");
    assert!(description.starts_with("Envoy rejected the configuration made from this object"));
    assert!(description.contains("filter chain"), "{description}");
    let cleared = sluice_e2e::wait_until("the rejection to end", PATIENCE, async || {
        instance.cache.rejections(&instance.name()).is_empty()
    })
    .await;
    cleared.unwrap();

    // The victim's next host is served: without the quarantine the listener carrying it would
    // still carry the spoiled chain, and be rejected too.
    let victim_more = tls_root("victim", "c", "c.example.com");
    let world = [victim.as_str(), &evil, &victim_more].join("\n---\n");
    instance.publish(&world);
    wait_for_answer(https, "c.example.com", "victim", &client, &envoy).await;
    wait_for_answer(https, "a.example.com", "victim", &client, &envoy).await;
    assert_eq!(instance.status("evil/bad").0, "invalid");

    // Changes of what it does not read (a Service of its own namespace, anything of another)
    // do not end the quarantine; an edit of the object does, and the still spoiled object is
    // rejected and quarantined again.
    let more = |ns: &str, port: u16| manifests::service(ns, "more", 80, &[port]);
    let unread = [
        more("victim", victim_backend.addr().port()),
        more("evil", evil_backend.addr().port()),
    ];
    let world = [world.as_str(), &unread.concat()].join("\n---\n");
    instance.publish(&world);
    assert_eq!(instance.status("evil/bad").0, "invalid");
    let edited = world.replace(&evil, &evil.replace("match: /", "match: /v2"));
    assert_ne!(edited, world);
    instance.publish(&edited);
    assert_eq!(instance.status("evil/bad").0, "valid");
    wait_for_rejection(&instance, &envoy).await;
    assert_eq!(instance.quarantine(), ["evil/bad"]);
    assert_eq!(instance.status("evil/bad").0, "invalid");
    wait_for_answer(https, "c.example.com", "victim", &client, &envoy).await;

    drop(envoy);
    let _ = xds.stop.send(());
    xds.server.await.unwrap().unwrap();
}
