//! Host claim dates kept across restarts and changes of leader (see `dag::ClaimRecord`): each
//! Gateway's record lives in the ConfigMap `<gateway>-claims` of the Gateway's namespace,
//! owned by the Gateway (deleted with it) and labelled `app.kubernetes.io/name: sluice-claims`
//! and `sluice.dev/gateway: <gateway>`.
//!
//! - Every replica reads it before the instance's first build, so a restarted operator, a new
//!   leader and a follower started later order contested claims as the leader did.
//! - Only the leader writes it (server-side apply, the operator's field manager), and only when
//!   the record differs from what the ConfigMap holds: after a pass that changed the DAG, and
//!   once when this replica becomes leader (it reads the ConfigMap then).
//! - Bounded: a record over [`RECORD_BUDGET`] bytes leaves names out (logged, see
//!   `dag::claim_record` for which), so the ConfigMap stays under the API server's 1 MiB.
//! - Not trusted blindly: a ConfigMap not owned by this Gateway (by uid), of another format or
//!   Gateway, or unreadable is logged and ignored; one not owned by this Gateway is not written
//!   either (until this replica leads again and finds the name free); a recorded claim of an
//!   object that no longer claims the name is ignored by the DAG.
//!
//! The Gateway's namespace holds the Envoy bootstrap the operator provisions too: whoever may
//! write there already controls the Gateway's Envoys, so it is trusted with the record.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use crate::api::gateway::Gateway;
use crate::controller::leader::Leadership;
use crate::dag::ClaimRecord;
use crate::pipeline::InstancePipeline;
use crate::provision::objects::{LABEL_GATEWAY, gateway_ref};
use crate::provision::{FIELD_MANAGER, names};

/// The key of the record in the ConfigMap.
pub const DATA_KEY: &str = "claims.json";

/// Suffix of the ConfigMap's name after the Gateway's.
pub const NAME_SUFFIX: &str = "claims";

/// `app.kubernetes.io/name` of the ConfigMap.
pub const APP_NAME: &str = "sluice-claims";

/// The record's format.
pub const FORMAT: &str = "sluice.dev/claims/v1";

/// A record larger than this leaves names out: the ConfigMap's data stays well under the
/// 1 MiB kube-apiserver allows.
pub const RECORD_BUDGET: usize = 900 * 1024;

/// Reads that fail (not a 404) are tried this many times before the instance builds without.
const READ_ATTEMPTS: u32 = 3;

/// What the ConfigMap's [`DATA_KEY`] holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    format: String,
    /// `namespace/name` of the Gateway.
    gateway: String,
    record: ClaimRecord,
}

/// The name of Gateway `name`'s claims ConfigMap.
pub fn config_map_name(gateway: &str) -> String {
    names::object_name(gateway, NAME_SUFFIX)
}

/// What the name of `gw`'s claims ConfigMap holds.
#[derive(Debug)]
enum Found {
    /// No ConfigMap: an empty record.
    Absent,
    Record(ClaimRecord),
    /// A ConfigMap that cannot be used (logged); `owned`: by this Gateway, so it may be
    /// written over; otherwise it is left alone.
    Unusable {
        owned: bool,
    },
}

/// What the ConfigMap of `gw` holds; `Err` when the API could not be asked.
async fn read_once(client: &kube::Client, gw: &Gateway) -> Result<Found, String> {
    let Ok(r) = gateway_ref(gw) else {
        return Ok(Found::Unusable { owned: false });
    };
    let gateway = format!("{}/{}", r.namespace, r.name);
    let name = config_map_name(&r.name);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &r.namespace);
    let cm = match api.get_opt(&name).await {
        Ok(Some(cm)) => cm,
        Ok(None) => return Ok(Found::Absent),
        Err(e) => return Err(e.to_string()),
    };
    let owned = (cm.metadata.owner_references.iter().flatten()).any(|o| o.uid == r.owner.uid);
    let problem = if owned {
        let text = cm.data.as_ref().and_then(|d| d.get(DATA_KEY));
        match text.map(|t| serde_json::from_str::<Stored>(t)) {
            None => Some(format!("no {DATA_KEY}")),
            Some(Err(e)) => Some(format!("{DATA_KEY}: {e}")),
            Some(Ok(s)) if s.format != FORMAT => {
                Some(format!("{DATA_KEY}: format is not {FORMAT}"))
            }
            Some(Ok(s)) if s.gateway != gateway => {
                Some(format!("{DATA_KEY}: the record of another Gateway"))
            }
            Some(Ok(s)) => return Ok(Found::Record(s.record)),
        }
    } else {
        Some("not owned by this Gateway, so never written either".to_owned())
    };
    if let Some(problem) = problem {
        tracing::warn!(gateway = %gateway, config_map = %name, problem = %problem,
            "claims ConfigMap ignored: contested host claims are ordered by creation time");
    }
    Ok(Found::Unusable { owned })
}

/// The record of `gw`, for its instance's first build; `None` when there is none, or it could
/// not be read (logged).
pub async fn read(client: &kube::Client, gw: &Gateway) -> Option<ClaimRecord> {
    for attempt in 1..=READ_ATTEMPTS {
        match read_once(client, gw).await {
            Ok(Found::Record(record)) => return Some(record),
            Ok(_) => return None,
            Err(e) if attempt == READ_ATTEMPTS => {
                tracing::warn!(error = %e, "claims ConfigMap not read: contested host claims are ordered by creation time");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500) * attempt).await,
        }
    }
    None
}

/// The leader's writer of one instance's record.
#[derive(Debug, Default)]
pub struct ClaimsWriter {
    /// What the ConfigMap holds, as far as this replica knows (`None`: unknown, write).
    stored: Option<ClaimRecord>,
    /// The name is taken by a ConfigMap this Gateway does not own: nothing is written.
    foreign: bool,
    /// This replica led at the last pass.
    leading: bool,
    /// A pass changed the DAG since the record was last compared.
    dirty: bool,
    /// Names left out, as last logged.
    dropped: usize,
}

/// How long a claims read or write may hold the Gateway's build loop.
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl ClaimsWriter {
    /// Writes `pipeline`'s record for `gw` if this replica leads and the ConfigMap holds
    /// another; `changed`: the pass changed the DAG. A failed write is tried again next pass.
    pub async fn sync(
        &mut self,
        client: &kube::Client,
        leadership: &Leadership,
        gw: &Gateway,
        pipeline: &InstancePipeline,
        changed: bool,
    ) {
        self.dirty |= changed;
        if !leadership.is_leading() {
            self.leading = false;
            return;
        }
        if !self.leading {
            self.leading = true;
            self.dirty = true;
            let found = match tokio::time::timeout(SYNC_TIMEOUT, read_once(client, gw)).await {
                Ok(found) => found,
                Err(_) => Err("the claims ConfigMap did not answer in time".into()),
            };
            self.foreign = matches!(found, Ok(Found::Unusable { owned: false }));
            self.stored = match found {
                Ok(Found::Absent) => Some(ClaimRecord::default()),
                Ok(Found::Record(record)) => Some(record),
                Ok(Found::Unusable { .. }) | Err(_) => None,
            };
        }
        if !self.dirty || self.foreign {
            return;
        }
        let Some((record, dropped)) = pipeline.claim_record(RECORD_BUDGET) else {
            return;
        };
        if dropped != self.dropped && dropped > 0 {
            tracing::warn!(
                dropped,
                budget = RECORD_BUDGET,
                "contested host names left out of the claims ConfigMap (over its budget)"
            );
        }
        self.dropped = dropped;
        if self.stored.as_ref() == Some(&record) {
            self.dirty = false;
            return;
        }
        // Bounded: the write is awaited in the Gateway's build loop, and a slow API server must
        // not hold back its configuration for long (a write that times out is tried again).
        let written = tokio::time::timeout(SYNC_TIMEOUT, write(client, leadership, gw, &record))
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()));
        match written {
            Ok(()) => {
                self.stored = Some(record);
                self.dirty = false;
            }
            Err(e) => tracing::warn!(error = %e, "claims ConfigMap not written; tried again"),
        }
    }
}

/// Applies `gw`'s ConfigMap holding `record`.
async fn write(
    client: &kube::Client,
    leadership: &Leadership,
    gw: &Gateway,
    record: &ClaimRecord,
) -> Result<(), String> {
    let r = gateway_ref(gw).map_err(|(gw, field)| format!("Gateway {gw}: no {field}"))?;
    let stored = Stored {
        format: FORMAT.to_owned(),
        gateway: format!("{}/{}", r.namespace, r.name),
        record: record.clone(),
    };
    let text = serde_json::to_string(&stored).map_err(|e| e.to_string())?;
    let name = config_map_name(&r.name);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(r.namespace.clone()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
                (LABEL_GATEWAY.to_owned(), r.name.clone()),
            ])),
            owner_references: Some(vec![r.owner]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(DATA_KEY.to_owned(), text)])),
        ..ConfigMap::default()
    };
    // Asked right before the write: a replica that lost the lease writes nothing more.
    if !leadership.is_leading() {
        return Err("this replica no longer leads".to_owned());
    }
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &r.namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await
    .map(|_| tracing::info!(config_map = %name, names = record.names.len(), "claims ConfigMap written"))
    .map_err(|e| e.to_string())
}
