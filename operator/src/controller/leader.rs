//! Leader election with a coordination.k8s.io Lease. Every replica serves xDS; only the holder
//! of the lease writes to the API (statuses, provisioned objects).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (pod name, or host + pid).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// What one attempt concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Leading,
    Following,
}

/// Decides, purely, whether `identity` may take or keep `lease` at `now`.
pub fn may_hold(lease: &LeaseSpec, identity: &str, now: jiff::Timestamp) -> bool {
    if lease.holder_identity.as_deref().is_none_or(str::is_empty) {
        return true;
    }
    if lease.holder_identity.as_deref() == Some(identity) {
        return true;
    }
    let duration = lease.lease_duration_seconds.unwrap_or(15).max(1);
    match lease.renew_time.as_ref().or(lease.acquire_time.as_ref()) {
        None => true,
        Some(t) => t.0 + jiff::SignedDuration::from_secs(i64::from(duration)) < now,
    }
}

/// Bound on one acquire-or-renew attempt. A leader whose renewal hangs (an API server that
/// stopped answering) must step down well before its lease expires and another replica takes
/// over: the attempt starts at most `renew_every` after the last renewal, so it has to end
/// within what is left of the lease, halved for safety.
pub fn attempt_timeout(cfg: &LeaseConfig) -> Duration {
    (cfg.lease_duration.saturating_sub(cfg.renew_every) / 2).max(Duration::from_millis(100))
}

/// Runs the election loop forever, publishing whether this replica leads.
pub async fn run(client: kube::Client, cfg: LeaseConfig, leading: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let bound = attempt_timeout(&cfg);
    loop {
        let outcome = tokio::time::timeout(bound, try_acquire_or_renew(&api, &cfg)).await;
        let is_leader = matches!(outcome, Ok(Ok(Outcome::Leading)));
        match &outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, lease = %cfg.name, "lease update failed"),
            Err(_) => {
                tracing::warn!(lease = %cfg.name, after = ?bound, "lease update timed out");
            }
        }
        leading.send_if_modified(|v| {
            let changed = *v != is_leader;
            if changed {
                tracing::info!(identity = %cfg.identity, leader = is_leader, "leadership changed");
            }
            *v = is_leader;
            changed
        });
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// Gives the lease up if this replica holds it (on shutdown), so a follower can take it at once.
pub async fn release(client: &kube::Client, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let attempt = async {
        let Some(mut lease) = api.get_opt(&cfg.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        api.replace(&cfg.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    };
    match tokio::time::timeout(attempt_timeout(cfg), attempt).await {
        Ok(r) => r,
        Err(_) => Ok(()), // The lease simply expires.
    }
}

async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Outcome, kube::Error> {
    let now = jiff::Timestamp::now();
    let duration_secs = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15);
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Outcome::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Outcome::Following),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            if !may_hold(&spec, &cfg.identity, now) {
                return Ok(Outcome::Following);
            }
            let taking_over = spec.holder_identity.as_deref() != Some(cfg.identity.as_str());
            let mut new = spec;
            if taking_over {
                new.acquire_time = Some(MicroTime(now));
                new.lease_transitions = Some(new.lease_transitions.unwrap_or(0) + 1);
            }
            new.holder_identity = Some(cfg.identity.clone());
            new.lease_duration_seconds = Some(duration_secs);
            new.renew_time = Some(MicroTime(now));
            lease.spec = Some(new);
            // replace carries the resourceVersion we read: a concurrent writer makes this a 409.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(Outcome::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Outcome::Following),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_secs_ago: i64) -> LeaseSpec {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap_or_default();
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(
                now - jiff::SignedDuration::from_secs(renewed_secs_ago),
            )),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn attempts_end_before_the_lease_can_expire() {
        let cfg = |duration, renew| LeaseConfig {
            namespace: "ns".into(),
            name: "lease".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(duration),
            renew_every: Duration::from_secs(renew),
        };
        for (duration, renew) in [(15, 2), (3, 1), (2, 1), (10, 9)] {
            let c = cfg(duration, renew);
            assert!(
                c.renew_every + attempt_timeout(&c) < c.lease_duration,
                "{c:?}"
            );
        }
        assert_eq!(attempt_timeout(&cfg(15, 2)), Duration::from_millis(6500));
        // Nonsense settings still give a usable bound.
        assert_eq!(attempt_timeout(&cfg(1, 5)), Duration::from_millis(100));
    }

    #[test]
    fn lease_rules() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap_or_default();
        assert!(may_hold(&LeaseSpec::default(), "me", now));
        assert!(may_hold(&spec("me", 5), "me", now));
        assert!(!may_hold(&spec("other", 5), "me", now));
        assert!(may_hold(&spec("other", 16), "me", now));
    }
}
