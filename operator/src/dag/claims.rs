//! Host ownership: which root IngressRoute may claim which fqdn, and which claimant wins (the
//! oldest claim: first when it was first seen, see `claim_ages`; then creationTimestamp,
//! unknown counting as newest; then namespace/name).

use std::cmp::Ordering;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::checks;
use super::model::msg;
use super::select::Selection;
use crate::api::IngressRoute;
use crate::snapshot::ObjKey;

/// The fqdn a selected IngressRoute claims: `None` when it is not a root, `Err` with its status
/// description when it may claim none (wrong namespace, no or a malformed fqdn).
pub fn claim(
    sel: &Selection,
    key: &ObjKey,
    route: &IngressRoute,
) -> Option<Result<String, String>> {
    let vh = route.spec.virtualhost.as_ref()?;
    if !sel.root_allowed(&key.namespace) {
        return Some(Err(msg::ROOT_NAMESPACE.to_owned()));
    }
    let fqdn = vh.fqdn.trim();
    if fqdn.is_empty() {
        return Some(Err(msg::FQDN_REQUIRED.to_owned()));
    }
    if fqdn.contains('*') {
        return Some(Err(format!(
            "Spec.VirtualHost.Fqdn {fqdn:?} cannot use wildcards"
        )));
    }
    Some(checks::dns_name(fqdn).map_err(|e| format!("Spec.VirtualHost.Fqdn {fqdn:?}: {e}")))
}

/// The status of a claimant that lost `fqdn` to `owner`.
pub fn taken(fqdn: &str, owner: &ObjKey) -> String {
    format!("fqdn {fqdn:?} is already used by the older IngressRoute {owner}")
}

/// A root claiming an fqdn; orders oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimant {
    /// The update at which this claim on this fqdn was first seen (0: it stood at the
    /// instance's first build); see `claim_ages`.
    pub since: u64,
    pub created: Option<Time>,
    pub key: ObjKey,
    /// A Traefik IngressRoute (else a Contour root): on a full tie, Contour's comes first.
    pub traefik: bool,
    /// A Traefik IngressRouteTCP (`traefik` is set too): on a full tie, it comes last.
    pub tcp: bool,
    /// Refused while parsing: it claims the names its rules name (see
    /// `traefik::refused_hosts`) and holds them unserved while it is the oldest.
    pub refused: bool,
    /// Claims through a form of rule that versions before this one did not claim with
    /// (`HostSNIRegexp()`, refused and claiming nothing before): at a start, on a name the
    /// record does not hold, it goes behind the claims that are not, as a refused one does
    /// (`ClaimAges::seed_refused`), so an old object whose rule this version starts to serve
    /// does not take, at the upgrade, a name another root held.
    pub late: bool,
}

impl Claimant {
    pub fn new(key: &ObjKey, route: &IngressRoute) -> Self {
        Self {
            since: 0,
            created: route.metadata.creation_timestamp.clone(),
            key: key.clone(),
            traefik: false,
            tcp: false,
            refused: false,
            late: false,
        }
    }

    /// A Traefik IngressRoute claiming hosts.
    pub fn traefik(key: &ObjKey, created: Option<Time>) -> Self {
        Self {
            since: 0,
            created,
            key: key.clone(),
            traefik: true,
            tcp: false,
            refused: false,
            late: false,
        }
    }

    /// A Traefik IngressRouteTCP claiming hosts.
    pub fn traefik_tcp(key: &ObjKey, created: Option<Time>) -> Self {
        Self {
            tcp: true,
            ..Self::traefik(key, created)
        }
    }

    /// This claimant, refused while parsing when `refused`.
    pub fn refused(self, refused: bool) -> Self {
        Self { refused, ..self }
    }

    /// This claimant, claiming through a form of rule new in this version when `late`.
    pub fn late(self, late: bool) -> Self {
        Self { late, ..self }
    }

    /// Whether, at a start, on a name the record does not hold, its claim goes behind the
    /// claims of roots that are neither refused nor `late`.
    pub fn behind_at_start(&self) -> bool {
        self.refused || self.late
    }
}

impl Ord for Claimant {
    fn cmp(&self, other: &Self) -> Ordering {
        let (ta, tb) = (self.created.as_ref(), other.created.as_ref());
        (
            self.since,
            ta.is_none(),
            ta.map(|t| &t.0),
            &self.key,
            self.traefik,
            self.tcp,
            self.refused,
            self.late,
        )
            .cmp(&(
                other.since,
                tb.is_none(),
                tb.map(|t| &t.0),
                &other.key,
                other.traefik,
                other.tcp,
                other.refused,
                other.late,
            ))
    }
}

impl Claimant {
    /// The same root (whatever the claim's dates).
    pub fn same_root(&self, other: &Self) -> bool {
        self.key == other.key && self.traefik == other.traefik && self.tcp == other.tcp
    }
}

impl PartialOrd for Claimant {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
