//! Traefik objects in a snapshot: each kind is held per API group, since `traefik.io` and the
//! legacy `traefik.containo.us` may both hold an object of the same namespace/name, and the
//! `traefik.io` one wins while it exists (as in Traefik 2.10+). Readers use [`TraefikObjects::get`]
//! and [`TraefikObjects::effective`], which apply that rule.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::traefik::{self as t, Decoded, Group};

use super::{ObjKey, PMap};

/// A Traefik IngressRoute as stored: decoded, or why it did not decode.
pub type TraefikRoute = Decoded<t::IngressRoute>;
/// A Traefik Middleware as stored.
pub type TraefikMiddleware = Decoded<t::Middleware>;
/// A Traefik IngressRouteTCP as stored.
pub type TraefikTcpRoute = Decoded<t::IngressRouteTCP>;
/// A Traefik TLSOption as stored.
pub type TraefikTlsOption = Decoded<t::TLSOption>;
/// A Traefik TLSStore as stored.
pub type TraefikTlsStore = Decoded<t::TLSStore>;
/// A TraefikService as stored.
pub type TraefikServiceObj = Decoded<t::TraefikService>;
/// A Traefik ServersTransport as stored.
pub type TraefikTransport = Decoded<t::ServersTransport>;

/// The Traefik kinds a snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TraefikKind {
    IngressRoute,
    Middleware,
    IngressRouteTcp,
    TlsOption,
    TlsStore,
    TraefikService,
    ServersTransport,
}

impl TraefikKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TraefikKind::IngressRoute => "IngressRoute",
            TraefikKind::Middleware => "Middleware",
            TraefikKind::IngressRouteTcp => "IngressRouteTCP",
            TraefikKind::TlsOption => "TLSOption",
            TraefikKind::TlsStore => "TLSStore",
            TraefikKind::TraefikService => "TraefikService",
            TraefikKind::ServersTransport => "ServersTransport",
        }
    }
}

/// The objects of one Traefik kind, by group and namespace/name.
#[derive(Clone, Debug, PartialEq)]
pub struct TraefikObjects<T> {
    /// `traefik.io/v1alpha1`.
    pub current: PMap<ObjKey, Arc<Decoded<T>>>,
    /// `traefik.containo.us/v1alpha1`.
    pub legacy: PMap<ObjKey, Arc<Decoded<T>>>,
}

impl<T> Default for TraefikObjects<T> {
    fn default() -> Self {
        Self {
            current: PMap::default(),
            legacy: PMap::default(),
        }
    }
}

impl<T> TraefikObjects<T> {
    /// The objects of one group.
    pub fn group(&self, group: Group) -> &PMap<ObjKey, Arc<Decoded<T>>> {
        match group {
            Group::TraefikIo => &self.current,
            Group::ContainoUs => &self.legacy,
        }
    }

    pub(super) fn group_mut(&mut self, group: Group) -> &mut PMap<ObjKey, Arc<Decoded<T>>> {
        match group {
            Group::TraefikIo => &mut self.current,
            Group::ContainoUs => &mut self.legacy,
        }
    }

    /// The object read for `key`: the `traefik.io` one, else the legacy one.
    pub fn get(&self, key: &ObjKey) -> Option<&Arc<Decoded<T>>> {
        self.current.get(key).or_else(|| self.legacy.get(key))
    }

    /// Every object read (one per namespace/name, `traefik.io` first), in key order.
    pub fn effective(&self) -> BTreeMap<&ObjKey, &Arc<Decoded<T>>> {
        let mut out: BTreeMap<&ObjKey, &Arc<Decoded<T>>> = self.legacy.iter().collect();
        out.extend(self.current.iter());
        out
    }

    /// Every object read, like [`Self::effective`] but unordered and without building a map:
    /// the `traefik.io` ones, then the legacy ones they do not shadow.
    pub fn read(&self) -> impl Iterator<Item = &Arc<Decoded<T>>> {
        self.current.values().chain(
            self.legacy
                .iter()
                .filter(|(key, _)| !self.current.contains_key(*key))
                .map(|(_, obj)| obj),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty() && self.legacy.is_empty()
    }
}

/// The key of a stored Traefik object; objects without a namespace are in `default`.
pub fn traefik_key<T>(obj: &Decoded<T>) -> ObjKey {
    let namespace = match obj.namespace() {
        "" => "default",
        ns => ns,
    };
    ObjKey::new(namespace, obj.name())
}
