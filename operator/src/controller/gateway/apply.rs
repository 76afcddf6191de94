//! Reading and applying a Gateway's objects, only over objects the Gateway owns.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{GatewayContext, GatewayError};
use crate::api::Gateway;
use crate::controller::leader::Leadership;
use crate::provision::status::{ObjectFailure, ObjectProblem};
use crate::provision::{self, FIELD_MANAGER};

/// Attempts at applying one object whose resourceVersion changed since it was read.
const APPLY_ATTEMPTS: usize = 3;

/// What provisioning a Gateway's objects left: its DaemonSet and Service as the API has them (if
/// they are the Gateway's), and the objects that could not be read or applied.
#[derive(Default)]
pub(super) struct Provisioned {
    pub(super) daemon_set: Option<DaemonSet>,
    pub(super) service: Option<Service>,
    pub(super) failures: Vec<ObjectFailure>,
    /// When the xDS client certificate is due for renewal.
    pub(super) xds_client_renewal: Option<Duration>,
}

/// Applies the Gateway's objects, only over objects the Gateway owns.
///
/// Every provisioned name is read first: if one is taken by an object without an owner
/// reference to this Gateway (by uid), nothing is applied at all, so no object Sluice did not
/// create is changed, adopted or (through the owner reference) deleted, and no Envoy runs with
/// somebody else's bootstrap, credentials or ServiceAccount. Each apply then carries the
/// resourceVersion that was read, so an object replaced in between is not overwritten.
/// The DaemonSet is applied only once what it mounts and runs as (ServiceAccount, ConfigMap,
/// xDS client Secret) is; the Service regardless.
pub(super) async fn provision_objects(
    ctx: &GatewayContext,
    ns: &str,
    gw: &Gateway,
    plan: &provision::Plan<'_>,
) -> Result<Provisioned, GatewayError> {
    let client = &ctx.client;
    // `is_same_live_object` made sure the Gateway has a uid.
    let uid = gw.metadata.uid.clone().unwrap_or_default();
    let mut failures = Vec::new();
    let secret = match &ctx.xds_ca {
        Some(_) => {
            let name = provision::objects::xds_client_secret_name(&gw.name_any());
            keep(
                read_owned::<Secret>(client, ns, &uid, &name).await,
                &mut failures,
            )
            .flatten()
        }
        None => None,
    };
    let envoy = &plan.envoy_name;
    let service_account = keep(
        read_owned::<ServiceAccount>(client, ns, &uid, envoy).await,
        &mut failures,
    )
    .flatten();
    let config_map = keep(
        read_owned::<ConfigMap>(client, ns, &uid, &plan.config_map_name).await,
        &mut failures,
    )
    .flatten();
    let daemon_set = keep(
        read_owned::<DaemonSet>(client, ns, &uid, envoy).await,
        &mut failures,
    )
    .flatten();
    let service = keep(
        read_owned::<Service>(client, ns, &uid, envoy).await,
        &mut failures,
    )
    .flatten();
    if !failures.is_empty() {
        return Ok(Provisioned {
            daemon_set,
            service,
            failures,
            xds_client_renewal: None,
        });
    }

    let mut xds_client_renewal = None;
    let mut xds_client_hash = None;
    if let Some(ca) = &ctx.xds_ca {
        let now = std::time::SystemTime::now();
        let desired_secret =
            provision::xds_tls::desired_xds_client_secret(gw, ca, secret.as_ref(), now)
                .map_err(GatewayError::XdsCredentials)?;
        if let Some(applied) = keep(
            apply_owned(client, &ctx.leadership, ns, &desired_secret, &uid, secret).await,
            &mut failures,
        ) {
            xds_client_renewal = Some(provision::xds_tls::renewal_due_in(&applied, now));
            if let Some(not_after) = provision::xds_tls::certificate_not_after(&applied) {
                ctx.metrics.set_xds_certificate_expiry(
                    "client",
                    &format!("{ns}/{}", gw.name_any()),
                    not_after,
                );
            }
            xds_client_hash = Some(provision::xds_tls::xds_client_secret_hash(&applied));
        }
    }
    let desired = plan.objects(xds_client_hash.as_deref());
    keep(
        apply_owned(
            client,
            &ctx.leadership,
            ns,
            &desired.service_account,
            &uid,
            service_account,
        )
        .await,
        &mut failures,
    );
    keep(
        apply_owned(
            client,
            &ctx.leadership,
            ns,
            &desired.config_map,
            &uid,
            config_map,
        )
        .await,
        &mut failures,
    );
    let daemon_set = if failures.is_empty() {
        keep(
            apply_owned(
                client,
                &ctx.leadership,
                ns,
                &desired.daemon_set,
                &uid,
                daemon_set.clone(),
            )
            .await,
            &mut failures,
        )
        .or(daemon_set)
    } else {
        daemon_set
    };
    let service = keep(
        apply_owned(
            client,
            &ctx.leadership,
            ns,
            &desired.service,
            &uid,
            service.clone(),
        )
        .await,
        &mut failures,
    )
    .or(service);
    Ok(Provisioned {
        daemon_set,
        service,
        failures,
        xds_client_renewal,
    })
}

/// `r`'s value, or `None` with its failure added to `failures`.
pub(super) fn keep<T>(r: Result<T, ObjectFailure>, failures: &mut Vec<ObjectFailure>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(f) => {
            failures.push(f);
            None
        }
    }
}

/// Whether `obj` has an owner reference to the object with `uid`.
pub(super) fn is_owned_by(obj: &ObjectMeta, uid: &str) -> bool {
    !uid.is_empty() && obj.owner_references.iter().flatten().any(|r| r.uid == uid)
}

/// The API's own message of an error, when it sent one.
pub(super) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

pub(super) fn failure_of<K>(obj: &K, ns: &str, problem: ObjectProblem) -> ObjectFailure
where
    K: Resource,
    K::DynamicType: Default,
{
    failure_named::<K>(&obj.name_any(), ns, problem)
}

/// A failure of the object of kind `K` named `name`.
pub(super) fn failure_named<K>(name: &str, ns: &str, problem: ObjectProblem) -> ObjectFailure
where
    K: Resource,
    K::DynamicType: Default,
{
    let dt = K::DynamicType::default();
    ObjectFailure {
        api_version: K::api_version(&dt).into_owned(),
        kind: K::kind(&dt).into_owned(),
        namespace: ns.to_owned(),
        name: name.to_owned(),
        problem,
    }
}

pub(super) fn failure_label(problem: &ObjectProblem) -> &'static str {
    match problem {
        ObjectProblem::NotOwned => "not_owned",
        ObjectProblem::ReadFailed(_) => "read",
        ObjectProblem::ApplyFailed(_) => "apply",
    }
}

/// The object of `like`'s kind and name, if it exists and is owned by `uid`; `Err` when it
/// exists and is not, or cannot be read.
pub(super) async fn read_owned<K>(
    client: &kube::Client,
    ns: &str,
    uid: &str,
    name: &str,
) -> Result<Option<K>, ObjectFailure>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match Api::<K>::namespaced(client.clone(), ns).get_opt(name).await {
        Ok(Some(found)) if is_owned_by(found.meta(), uid) => Ok(Some(found)),
        Ok(Some(_)) => Err(failure_named::<K>(name, ns, ObjectProblem::NotOwned)),
        Ok(None) => Ok(None),
        Err(e) => Err(failure_named::<K>(
            name,
            ns,
            ObjectProblem::ReadFailed(api_message(&e)),
        )),
    }
}

/// Server-side applies `desired` over `existing` (the Gateway's own object as last read, or
/// `None` if there was none), with its resourceVersion as a precondition. When the object
/// changed in between it is read again, its ownership checked again, and the apply retried.
pub(super) async fn apply_owned<K>(
    client: &kube::Client,
    leadership: &Leadership,
    ns: &str,
    desired: &K,
    uid: &str,
    mut existing: Option<K>,
) -> Result<K, ObjectFailure>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = desired.name_any();
    let api = Api::<K>::namespaced(client.clone(), ns);
    let mut attempt = 1;
    loop {
        let mut obj = desired.clone();
        obj.meta_mut().resource_version = existing
            .as_ref()
            .and_then(|e| e.meta().resource_version.clone());
        // Every write asks first: a replica that lost the lease writes nothing more (the
        // reconcile's status write, which would report this, asks too).
        if !leadership.is_leading() {
            return Err(failure_of(
                desired,
                ns,
                ObjectProblem::ApplyFailed("this replica no longer leads".into()),
            ));
        }
        match api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
        {
            Ok(applied) => return Ok(applied),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < APPLY_ATTEMPTS => {
                attempt += 1;
                existing = read_owned(client, ns, uid, &desired.name_any()).await?;
            }
            Err(e) => {
                return Err(failure_of(
                    desired,
                    ns,
                    ObjectProblem::ApplyFailed(api_message(&e)),
                ));
            }
        }
    }
}
