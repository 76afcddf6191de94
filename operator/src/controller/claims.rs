//! Host claim dates kept across restarts and changes of leader (see `dag::ClaimRecord`): each
//! Gateway's record lives in the ConfigMap `<gateway>-claims` of the Gateway's namespace,
//! owned by the Gateway (deleted with it) and labelled `app.kubernetes.io/name: sluice-claims`
//! and `sluice.dev/gateway: <gateway>`.
//!
//! - Every replica reads it before the instance's first build, so a restarted operator, a new
//!   leader and a follower started later order contested claims as the leader did.
//! - Only the leader writes it, from a writer task of its own per Gateway ([`ClaimsWriter`]), so
//!   a slow or hung API server never holds the Gateway's configuration back: the latest record
//!   wins, a failed write is tried again, and losing the lease stops the writer at once (an
//!   in-flight request is dropped).
//! - Every write is conditional: the writer reads the ConfigMap, decides ([`decide`]), and
//!   creates it (409 if it appeared meanwhile) or applies it carrying the `resourceVersion` it
//!   read (409 if it changed meanwhile); on a 409 it reads again and decides again. The record
//!   names the term it was written in (the Lease's uid, holder and `leaseTransitions`): a writer
//!   whose term is older than the stored one's (a former leader, stuck, that has not yet seen
//!   that it lost the lease) never writes over it, and a new leader stamps the record with its
//!   term once even if it holds the same record (so a write of the former leader still in
//!   flight, based on what it read before, fails with a 409). Terms of two Leases do not
//!   compare: a record stamped under another Lease than the writer's is written over only once
//!   the writer has read the Lease and found its own (the other one was deleted); a Lease of
//!   another uid, or none, means the writer's Lease was deleted and it no longer leads.
//! - Bounded: a record over [`RECORD_BUDGET`] bytes leaves names out (logged, see
//!   `dag::claim_record` for which), so the ConfigMap stays under the API server's 1 MiB.
//! - Not trusted blindly: a ConfigMap not owned by this Gateway (by uid), of another format or
//!   Gateway, or unreadable is logged and ignored; one not owned by this Gateway is not written
//!   either, and the Gateway's status says so (`Degraded`, reason `ClaimsConfigMapNotOwned`)
//!   until it is gone (looked at again every [`FOREIGN_RECHECK`]); a recorded claim of an
//!   object that no longer claims the name, or of another object under that name (another
//!   uid), is ignored by the DAG.
//!
//! The Gateway's namespace holds the Envoy bootstrap the operator provisions too: whoever may
//! write there already controls the Gateway's Envoys, so it is trusted with the record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

use crate::api::gateway::Gateway;
use crate::controller::leader::LeaseTerm;
use crate::dag::ClaimRecord;
use crate::provision::objects::{LABEL_GATEWAY, gateway_ref};
use crate::provision::{FIELD_MANAGER, names};

#[cfg(test)]
mod tests;
mod writer;

pub use writer::{ClaimsWriter, WriterContext};

/// The claims ConfigMaps the leader found taken by one its Gateway does not own, by Gateway
/// (`namespace/name`): `namespace/name` of the ConfigMap. The Gateway controller shows them in
/// the Gateway's status.
pub type SharedClaimsProblems = Arc<Mutex<BTreeMap<String, String>>>;

/// How often a ConfigMap not owned by the Gateway is looked at again (to see it gone).
pub const FOREIGN_RECHECK: Duration = Duration::from_secs(10);

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

/// What the ConfigMap's [`DATA_KEY`] holds. Fields a newer version adds are ignored (a
/// version rolled back to still reads the record); one that changes what the known fields mean
/// changes [`FORMAT`], and a record of another format is not used (logged).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    format: String,
    /// `namespace/name` of the Gateway.
    gateway: String,
    /// The leader's term the record was written in (absent from records of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written_by: Option<WrittenBy>,
    record: ClaimRecord,
}

/// The term of leadership a record was written in (see [`LeaseTerm`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WrittenBy {
    lease_uid: String,
    holder: String,
    lease_transitions: i32,
}

impl WrittenBy {
    fn of(term: &LeaseTerm) -> Self {
        Self {
            lease_uid: term.lease_uid.clone(),
            holder: term.holder.clone(),
            lease_transitions: term.transitions,
        }
    }
}

/// The name of Gateway `name`'s claims ConfigMap.
pub fn config_map_name(gateway: &str) -> String {
    names::object_name(gateway, NAME_SUFFIX)
}

/// What the name of `gw`'s claims ConfigMap holds (with the `resourceVersion` read).
#[derive(Debug)]
enum Found {
    /// No ConfigMap: an empty record.
    Absent,
    Record {
        record: ClaimRecord,
        written_by: Option<WrittenBy>,
        resource_version: String,
    },
    /// A ConfigMap that cannot be used (logged); `owned`: by this Gateway, so it may be
    /// written over; otherwise it is left alone.
    Unusable {
        owned: bool,
        resource_version: String,
    },
}

/// What the leader does with the ConfigMap it read, to store `record` in `term`.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// It holds the record already.
    Stored,
    /// A leader of a later term wrote it: this replica no longer leads (it will see that),
    /// and writes nothing over it.
    Newer,
    /// Taken by a ConfigMap the Gateway does not own: left alone, and reported.
    Foreign,
    /// There is none: create it.
    Create,
    /// Write over it, on condition that it still has this `resourceVersion`.
    Replace(String),
    /// It was written under another Lease (by uid): either one deleted since (write over it,
    /// on condition, as for [`Decision::Replace`]) or the current one, this writer's Lease being
    /// the deleted one (then this replica no longer leads: write nothing). Which, only the
    /// Lease tells: the writer reads it (see `writer::store`).
    OtherLease(String),
}

/// Decides what to do with `found` to store `record` in `term` (see [`Decision`]).
fn decide(found: &Found, record: &ClaimRecord, term: &LeaseTerm) -> Decision {
    match found {
        // An empty record is what no ConfigMap means.
        Found::Absent if record.is_empty() => Decision::Stored,
        Found::Absent => Decision::Create,
        Found::Unusable { owned: false, .. } => Decision::Foreign,
        Found::Unusable {
            owned: true,
            resource_version,
        } => Decision::Replace(resource_version.clone()),
        Found::Record {
            record: stored,
            written_by,
            resource_version,
        } => {
            // Terms compare within one Lease: a Lease deleted and created again starts from 0,
            // and only its current holder can renew it.
            let newer = written_by.as_ref().is_some_and(|w| {
                w.lease_uid == term.lease_uid && w.lease_transitions > term.transitions
            });
            let other_lease = written_by
                .as_ref()
                .is_some_and(|w| w.lease_uid != term.lease_uid);
            // The same record stamped with an earlier term is stamped again with this one: a
            // write of that earlier term still in flight (read before) then fails with a 409.
            let mine = written_by.as_ref() == Some(&WrittenBy::of(term));
            if newer {
                Decision::Newer
            } else if stored == record && mine {
                Decision::Stored
            } else if other_lease {
                Decision::OtherLease(resource_version.clone())
            } else {
                Decision::Replace(resource_version.clone())
            }
        }
    }
}

/// What the ConfigMap of `gw` holds; `Err` when the API could not be asked.
async fn read_once(client: &kube::Client, gw: &Gateway) -> Result<Found, String> {
    let Ok(r) = gateway_ref(gw) else {
        return Ok(Found::Unusable {
            owned: false,
            resource_version: String::new(),
        });
    };
    let gateway = format!("{}/{}", r.namespace, r.name);
    let name = config_map_name(&r.name);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &r.namespace);
    let cm = match api.get_opt(&name).await {
        Ok(Some(cm)) => cm,
        Ok(None) => return Ok(Found::Absent),
        Err(e) => return Err(e.to_string()),
    };
    let resource_version = cm.metadata.resource_version.clone().unwrap_or_default();
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
            Some(Ok(s)) => {
                return Ok(Found::Record {
                    record: s.record,
                    written_by: s.written_by,
                    resource_version,
                });
            }
        }
    } else {
        Some("not owned by this Gateway, so never written either".to_owned())
    };
    if let Some(problem) = problem {
        tracing::warn!(gateway = %gateway, config_map = %name, problem = %problem,
            "claims ConfigMap ignored: contested host claims are ordered by creation time");
    }
    Ok(Found::Unusable {
        owned,
        resource_version,
    })
}

/// The record of `gw`, for its instance's first build; `None` when there is none, or it could
/// not be read (logged).
pub async fn read(client: &kube::Client, gw: &Gateway) -> Option<ClaimRecord> {
    for attempt in 1..=READ_ATTEMPTS {
        match read_once(client, gw).await {
            Ok(Found::Record { record, .. }) => return Some(record),
            Ok(_) => return None,
            Err(e) if attempt == READ_ATTEMPTS => {
                tracing::warn!(error = %e, "claims ConfigMap not read: contested host claims are ordered by creation time");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500) * attempt).await,
        }
    }
    None
}

/// Why a write was not made.
#[derive(Debug)]
enum WriteError {
    /// The ConfigMap changed (or appeared) since it was read: read again and decide again.
    Conflict,
    Other(String),
}

/// Writes `gw`'s ConfigMap holding `record`, written in `term`: creates it (`rv`: `None`), or
/// applies it on condition that it still has resourceVersion `rv`.
async fn write(
    client: &kube::Client,
    gw: &Gateway,
    record: &ClaimRecord,
    term: &LeaseTerm,
    rv: Option<String>,
) -> Result<(), WriteError> {
    let r = gateway_ref(gw)
        .map_err(|(gw, field)| WriteError::Other(format!("Gateway {gw}: no {field}")))?;
    let stored = Stored {
        format: FORMAT.to_owned(),
        gateway: format!("{}/{}", r.namespace, r.name),
        written_by: Some(WrittenBy::of(term)),
        record: record.clone(),
    };
    let text = serde_json::to_string(&stored).map_err(|e| WriteError::Other(e.to_string()))?;
    let name = config_map_name(&r.name);
    let create = rv.is_none();
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(r.namespace.clone()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
                (LABEL_GATEWAY.to_owned(), r.name.clone()),
            ])),
            owner_references: Some(vec![r.owner]),
            // The precondition: kube-apiserver refuses the apply with a 409 if the object's
            // resourceVersion is another.
            resource_version: rv,
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(DATA_KEY.to_owned(), text)])),
        ..ConfigMap::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &r.namespace);
    let written = if create {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        api.create(&params, &cm).await.map(|_| ())
    } else {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(&cm))
            .await
            .map(|_| ())
    };
    match written {
        Ok(()) => {
            tracing::info!(config_map = %name, names = record.names.len(), term = term.transitions, "claims ConfigMap written");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Err(WriteError::Conflict),
        Err(e) => Err(WriteError::Other(e.to_string())),
    }
}
