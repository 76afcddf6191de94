//! An in-memory Kubernetes API server for the operator's end-to-end tests.
//!
//! These machines cannot run kube-apiserver, so this serves the part of the HTTP API that kube-rs
//! clients and kube-runtime watchers use, over plain HTTP/1.1 on `127.0.0.1:<random port>`, with
//! JSON bodies. [`ApiServer::write_kubeconfig`] writes a kubeconfig pointing at it.
//!
//! # Use
//!
//! [`ApiServer::start`] binds `127.0.0.1:0` and serves from its own thread and Tokio runtime, so
//! sync tests and any runtime flavour can use it; dropping the server stops it and ends every
//! connection and watch. Tests seed and inspect objects in-process, without HTTP:
//! [`ApiServer::create`], [`ApiServer::apply`] (server-side apply as [`TEST_FIELD_MANAGER`],
//! forced), [`ApiServer::apply_status`], [`ApiServer::apply_yaml`] (multi-document, e.g. the
//! operator's CRDs), [`ApiServer::get`], [`ApiServer::list`], [`ApiServer::delete`] (with the
//! same cascade as over HTTP), and wait with [`ApiServer::wait_for`], which re-checks a
//! condition after every change. [`ApiServer::watches_started`] counts watch requests, to see
//! clients re-watch after `timeoutSeconds`. [`ApiServer::requests`] lists every HTTP request
//! served (method, path, query, response code, and the bearer token as the user, so clients
//! given [`ApiServer::write_kubeconfig_for`] kubeconfigs can be told apart; each carries `seq`,
//! its arrival order, and [`ApiServer::requests_arrived`] marks a point in it).
//!
//! # Fault injection
//!
//! [`ApiServer::inject`] puts a [`Fault`] in force: the requests it matches fail with an error
//! code and a `Status` body (`InternalError` for 500, `TooManyRequests` with `Retry-After: 1`
//! for 429, `ServiceUnavailable` for 503) without touching the store, or are answered late, or
//! both. [`Fault::watches`] with code 410 ends matching watches as kube-apiserver does when
//! their resourceVersion is compacted (an `ERROR` event with a 410 `Expired` Status), the ones
//! already open when it is injected included. A fault matches a resource (`leases`, with its subresources, or `ingressroutes/status`
//! alone), only writes ([`Fault::writes`]: reads and watches keep working) or every request
//! ([`Fault::requests`]), and optionally one user ([`Fault::by`], the bearer token of a
//! [`ApiServer::write_kubeconfig_for`] kubeconfig). It lasts until [`ApiServer::clear_fault`] /
//! [`ApiServer::clear_faults`], or for [`Fault::lasting`]. Latency is waited before the request
//! is handled, after its `seq` is taken. Failed and delayed requests are recorded in
//! [`ApiServer::requests`] with the code they got. For example, make one operator replica's
//! Lease renewals fail with 500 for two seconds:
//!
//! ```ignore
//! server.inject(Fault::writes("leases").by("alpha").failing_with(500).lasting(Duration::from_secs(2)));
//! ```
//!
//! # What it does
//!
//! - Discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`,
//!   and aggregated discovery (`as=APIGroupDiscoveryList`) on `/api` and `/apis`.
//! - Resources: core v1 namespaces, services, endpoints, secrets, configmaps, serviceaccounts,
//!   pods, events, nodes, persistentvolumeclaims; apps/v1 daemonsets, deployments, replicasets;
//!   discovery.k8s.io/v1 endpointslices; coordination.k8s.io/v1 leases; events.k8s.io/v1 events;
//!   policy/v1 poddisruptionbudgets; rbac.authorization.k8s.io/v1 roles, rolebindings,
//!   clusterroles, clusterrolebindings; apiextensions.k8s.io/v1 customresourcedefinitions; and
//!   every resource a stored CRD defines (group, served versions, plural, kind, scope, status
//!   subresource), served from the moment the CRD is created until it is deleted.
//! - Verbs: get, list (namespaced and across namespaces; `labelSelector` with `=`, `==`, `!=`,
//!   `in`, `notin`, exists, `!` not-exists; `fieldSelector` with `=`, `==`, `!=` on the fields
//!   the kind supports (see Validation); `limit` and `continue`), watch, create (POST, `generateName`), update (PUT), patch (JSON patch, merge
//!   patch, strategic merge patch, server-side apply), delete, deletecollection; the `status`
//!   subresource (get, update, patch, apply) where the resource has one; metadata-only requests
//!   (`as=PartialObjectMetadata[List]`).
//! - Status with and without a subresource, as kube-apiserver: where the CRD's version has
//!   `subresources.status`, writes to the main resource leave `status` as stored and writes to
//!   `/status` touch only `status`; without it, `/status` answers 404 for every verb and
//!   `status` is an ordinary field, written (and counted in `generation`) through the main
//!   resource. A CRD that gains or loses the subresource switches at once, for stored objects too.
//! - One global resourceVersion counter; every write that changes an object bumps it, a write
//!   that changes nothing bumps nothing and sends no event. `metadata.generation` starts at 1 and
//!   grows when anything but metadata (and status, for resources with a status subresource)
//!   changes. `uid` and `creationTimestamp` are set on create.
//! - `metadata.managedFields` (apiserver `pkg/endpoints/handlers/fieldmanager`,
//!   structured-merge-diff `fieldpath` for `FieldsV1`): one entry per field manager, operation
//!   and subresource, with `manager`, `operation` (`Apply` for server-side apply, `Update` for
//!   create, update and the other patches), `apiVersion` (of the request), `time` (of the
//!   manager's last write), `fieldsType: FieldsV1`, `fieldsV1` (`{"f:spec": {"f:x": {}}}`) and
//!   `subresource: status` for `/status` writes. The manager is the request's `fieldManager`,
//!   else its `User-Agent` up to the first `/`; in-process [`ApiServer::create`] writes as
//!   [`TEST_FIELD_MANAGER`]. An `Apply` entry holds the fields of the manager's last applied
//!   configuration (replaced on its next apply); an `Update` entry gains the fields its write set
//!   or changed, which leave every other `Update` entry; fields gone from the object leave every
//!   entry, and an `Update` entry left empty goes. Fields reach into lists as Kubernetes' do:
//!   `k:{"name":"envoy"}` for a map-list item (with its own `"."`), `v:"x"` for a set member,
//!   one field for an atomic list; an update also takes the fields it changes out of their
//!   appliers' configurations. Writes the server makes itself (garbage
//!   collection) are nobody's. Managed fields sent by clients are ignored; a write that changes
//!   nothing but entry times changes nothing. See the Limits for the approximations.
//! - Watches stream newline-delimited `ADDED`/`MODIFIED`/`DELETED`/`BOOKMARK` events, one HTTP
//!   chunk per event, from a bounded history of changes ([`ApiServerOptions::history_limit`]).
//!   A resourceVersion older than the history gets an `ERROR` event carrying a 410 `Expired`
//!   Status (HTTP 200, as kube-apiserver does, so kube-runtime re-lists). No resourceVersion (or
//!   `0`), or `sendInitialEvents=true`, starts with synthetic `ADDED` events for the current
//!   objects (the latter followed by the `k8s.io/initial-events-end` bookmark). Objects that
//!   start or stop matching a watch's selectors arrive as `ADDED`/`DELETED`. `timeoutSeconds`
//!   ends the stream (with a last bookmark when bookmarks are allowed); bookmarks are otherwise
//!   sent every [`ApiServerOptions::bookmark_interval`].
//! - Conflicts and errors are `Status` objects: 404 NotFound, 409 AlreadyExists / Conflict
//!   (stale resourceVersion in PUT or in a patch, failed delete preconditions, apply conflicts
//!   without `force`), 422 Invalid (the rules under Validation, missing fieldManager on apply,
//!   malformed metadata, invalid CRDs, failed JSON-patch tests), 400 BadRequest (undecodable
//!   bodies, mismatched apiVersion/kind/name/namespace, the selectors under Validation), 405
//!   MethodNotAllowed, 415 for unknown patch types.
//! - Deletion honours `metadata.finalizers` (sets `deletionTimestamp`; the object goes when the
//!   last finalizer is removed) and preconditions, then garbage-collects dependents at once:
//!   objects whose every owner reference points at a gone uid are deleted (recursively, each
//!   under the same finalizer rules); objects with other live owners lose the dangling reference.
//!   The same happens to an object written later with references to gone owners (as
//!   Kubernetes' garbage collector finds such late dependents). `Orphan` strips the owner
//!   reference instead. Deleting a namespace deletes everything in it;
//!   deleting a CRD deletes all its objects and stops serving the resource. Namespaced objects
//!   can only be created in an existing namespace; `default`, `kube-system`, `kube-public` and
//!   `kube-node-lease` exist from the start.
//!
//! # Impersonation and RBAC
//!
//! A request with `Impersonate-User` (a kubeconfig user with `as:`, see
//! [`ApiServer::write_kubeconfig_as`]) is recorded with that user
//! ([`RequestRecord::impersonated`]) and authorized against the stored ClusterRoles, Roles and
//! their bindings as kube-apiserver's RBAC authorizer does (`rbac.rs`): 403 `Forbidden`
//! (`<resource>.<group> "<name>" is forbidden: User "<user>" cannot <verb> resource "<resource>"
//! in API group "<group>" in the namespace "<ns>"`) unless a bound rule grants the verb on the
//! resource (or `resource/status`) and, where the rule names them, the object. Discovery is
//! open to everyone (as `system:discovery`). Requests that impersonate nobody are not
//! authorized. Aggregated ClusterRoles and non-resource URL rules are not modelled, nor the
//! `impersonate` right of the real user, nor admission plugins such as
//! OwnerReferencesPermissionEnforcement.
//!
//! # Validation
//!
//! The double refuses what kube-apiserver refuses in these cases, with the same code and
//! reason: 422 `Invalid` with a `Status` whose `details.causes[*].field` names each refused field
//! (all of them, as Kubernetes lists every error), or 400 `BadRequest` for selectors. The rules,
//! and where Kubernetes has them (`kubernetes/kubernetes`, `kubernetes/apimachinery`):
//!
//! - `metadata.name`: a DNS-1123 subdomain (at most 253 characters of `[a-z0-9-.]`, each
//!   dot-separated part non-empty and starting and ending alphanumeric; the parts are not limited
//!   to 63) for most kinds; a DNS-1123 label (at most 63, no dots) for Namespaces; a DNS-1035
//!   label (also starting with a letter) for Services; a path segment (not `.`/`..`, no `/` or
//!   `%`) for RBAC objects (apimachinery `pkg/util/validation/validation.go` IsDNS1123Subdomain,
//!   IsDNS1123Label, IsDNS1035Label; `pkg/api/validation/objectmeta.go` ValidateObjectMetaAccessor;
//!   `pkg/apis/core/validation/validation.go` ValidateNamespaceName, ValidateServiceName;
//!   `pkg/api/validation/path` for RBAC).
//! - `metadata.generateName`: checked by the kind's name rule as a prefix (a trailing `-` is
//!   allowed), error on `metadata.generateName`; only its first 58 characters are kept so that the
//!   generated name (5 random characters added) fits in 63 (ValidateObjectMetaAccessor;
//!   apiserver `pkg/storage/names` SimpleNameGenerator).
//! - `metadata.labels`: keys are qualified names, an optional prefix (a DNS-1123 subdomain, at
//!   most 253) and `/`, then a name of 1 to 63 characters of `[A-Za-z0-9_.-]` starting and ending
//!   alphanumeric, with at most one `/`; values are empty or at most 63 characters of the same set,
//!   starting and ending alphanumeric. Errors name `metadata.labels` (key) or
//!   `metadata.labels[<key>]` (value) (apimachinery `pkg/apis/meta/v1/validation` ValidateLabels,
//!   `pkg/util/validation` IsQualifiedName, IsValidLabelValue).
//! - `metadata.annotations`: keys are qualified names, checked lowercased (so `Example.COM/X` is
//!   accepted); keys and values together take at most 256 KiB (262144 bytes) (`objectmeta.go`
//!   ValidateAnnotations, TotalAnnotationSizeLimitB).
//! - `labelSelector` on list, watch and deletecollection: 400 unless every key is a qualified
//!   name, every value a label value (so `sluice.dev/gateway=ns/name` is refused), and `in`/`notin`
//!   sets are not empty (apimachinery `pkg/labels/selector.go` Parse, NewRequirement).
//! - `fieldSelector`: 400 `field label not supported: <field>` unless the field is
//!   `metadata.name`, `metadata.namespace`, or one the kind supports: Pods `spec.nodeName`,
//!   `spec.restartPolicy`, `spec.schedulerName`, `spec.serviceAccountName`, `spec.hostNetwork`,
//!   `status.phase`, `status.podIP`, `status.podIPs`, `status.nominatedNodeName`; Secrets
//!   `type`; Namespaces `status.phase`; Nodes `spec.unschedulable`; Services `spec.clusterIP`,
//!   `spec.type`; core Events `involvedObject.*`, `reason`, `reportingComponent`, `source`,
//!   `type`; ReplicaSets `status.replicas`; custom resources the `selectableFields` of their CRD
//!   (pooled over served versions) (each kind's `pkg/registry/.../strategy.go` GetAttrs /
//!   ToSelectableFields and the field label conversion functions).
//! - Endpoints: every `subsets[*].addresses[*].ip` and `subsets[*].notReadyAddresses[*].ip` must
//!   be an IP address and not unspecified (`0.0.0.0`, `::`), loopback (127.0.0.0/8, `::1`),
//!   link-local (169.254.0.0/16, fe80::/10) or link-local multicast (224.0.0.0/24, ff02::/16 and
//!   the other `ffX2::` scopes); IPv4-mapped IPv6 addresses are judged as IPv4
//!   (`pkg/apis/core/validation/validation.go` validateEndpointAddress, ValidateEndpointIP,
//!   formerly ValidateNonSpecialIP).
//! - EndpointSlices: `addressType` is required and one of `IPv4`, `IPv6`, `FQDN`; with `IPv4` or
//!   `IPv6` every `endpoints[*].addresses[*]` must be an address of that family and pass the same
//!   special-address rule as Endpoints (`pkg/apis/discovery/validation/validation.go`
//!   validateEndpoints, validateAddressType). FQDN addresses are not checked here.
//! - Pods and DaemonSets (pod template): a container's (or init container's) resource request
//!   may not exceed its limit of the same resource, refused at
//!   `spec[.template.spec].containers[i].resources.requests` with "must be less than or equal
//!   to <resource> limit of <limit>" (`pkg/apis/core/validation/validation.go`
//!   ValidateResourceRequirements). Quantities are compared exactly; one this server does not
//!   parse is not judged.
//! - Pod specs (Pods, and DaemonSets' `spec.template.spec`; `builtin.rs`, from
//!   `pkg/apis/core/validation/validation.go` validateContainers, validateContainerPorts,
//!   validateProbe, ValidateTolerations): at least one container; each container (and init
//!   container) has a name that is a DNS-1123 label, unique in the pod (`Duplicate value`), and
//!   an image; container ports are 1..65535 (`hostPort` 0..65535), protocol `TCP`, `UDP` or
//!   `SCTP`, names IANA service names (at most 15 characters of `[a-z0-9-]`, a letter, no
//!   leading, trailing or doubled `-`) unique in the container; each probe has exactly one
//!   handler (`exec`, `httpGet`, `tcpSocket`, `grpc`: `Required value: must specify a handler
//!   type` / `Forbidden: may not specify more than 1 handler type`), `httpGet`/`tcpSocket` ports
//!   are numbers 1..65535 or port names, counts are not negative, and liveness and startup
//!   probes have `successThreshold` 1; tolerations have a qualified-name key or none (then
//!   operator `Exists`), operator `Equal` (a label value) or `Exists` (no value: "value must be
//!   empty when `operator` is 'Exists'"), effect empty, `NoSchedule`, `PreferNoSchedule` or
//!   `NoExecute`, and `tolerationSeconds` only with `NoExecute`; a template's `restartPolicy` is
//!   `Always`. Other pod fields (volumes, env, security contexts, ...) are not checked.
//! - DaemonSets (`pkg/apis/apps/validation` ValidateDaemonSetSpec): `spec.selector` is required
//!   and not empty, must match `spec.template.metadata.labels` (matchLabels and
//!   matchExpressions; "`selector` does not match template `labels`") and is immutable
//!   (`field is immutable`).
//! - Services (ValidateService): `spec.type` is `ClusterIP` (default), `NodePort`,
//!   `LoadBalancer` or `ExternalName`; ports are required (but for ExternalName), each with a
//!   port 1..65535, protocol `TCP`/`UDP`/`SCTP`, a `targetPort` number or port name, and a name
//!   (a DNS-1123 label, unique) required when there are several; `nodePort` and
//!   `externalTrafficPolicy` ("may only be set when `type` is 'NodePort' or 'LoadBalancer'";
//!   `Cluster` or `Local`) only for NodePort and LoadBalancer. IP families, cluster IPs and
//!   session affinity are not checked.
//! - Secrets and ConfigMaps (ValidateSecret, ValidateConfigMap): keys are config keys
//!   (`[-._a-zA-Z0-9]+`, not `.`/`..`); contents at most 1 MiB (Secrets refused at `data`,
//!   ConfigMaps at the empty path, as Kubernetes does); no key in both `data` and `binaryData`;
//!   with `immutable: true` stored, `data` (and `binaryData`) and `immutable` cannot change;
//!   a Secret's `type` is immutable (default `Opaque`) and `kubernetes.io/tls` needs `tls.crt` and
//!   `tls.key` (`data[tls.key]: Required value`).
//! - Leases (`pkg/apis/coordination/validation` ValidateLeaseSpec): `leaseDurationSeconds`
//!   greater than 0 and `leaseTransitions` not negative, when set.
//!
//! - CustomResourceDefinitions (apiextensions v1): `spec.group`, `spec.names.plural` (lowercase)
//!   and `kind` are required, `metadata.name` is `<plural>.<group>`, `spec.scope` is `Namespaced`
//!   or `Cluster` and immutable, at least one version is served. `spec.preserveUnknownFields`
//!   cannot be set to true (`cannot set to true, set x-kubernetes-preserve-unknown-fields to
//!   true in spec.versions[*].schema instead`) unless the stored CRD already has it; while it is
//!   true, no version's schema may set `default` (`spec.preserveUnknownFields: Invalid value:
//!   true: must be false in order to use defaults in the schema`); turning it from true to false
//!   is accepted. An apply that does not mention the field leaves a stored `true` in place, so
//!   a CRD with defaults cannot be applied over one that has it
//!   (`apiextensions/validation/validation.go` validatePreserveUnknownFields,
//!   validateCustomResourceDefinitionSpec, specHasDefaults). [`ApiServer::create_v1beta1_crd`]
//!   makes the CRDs that clusters keep from apiextensions v1beta1 (which defaulted the field to
//!   true, as Contour up to 1.5 installed its CRDs): the create-time refusal is skipped, the
//!   defaults rule is not.
//!
//! - Custom objects, against the `openAPIV3Schema` of their CRD's version (the one named by the
//!   object's `apiVersion`), on create, update, patch and apply, main resource and `/status`
//!   alike (apiextensions-apiserver `pkg/apiserver/schema/pruning`,
//!   `pkg/apiserver/schema/defaulting` PruneNonNullableNullsWithoutDefaults,
//!   `pkg/apiserver/validation` with kube-openapi's validators). First pruning, unless the CRD
//!   still has `spec.preserveUnknownFields: true` (a CRD kept from v1beta1 stores anything its
//!   schema allows): fields neither in `properties` nor covered by an `additionalProperties`
//!   schema are dropped silently, unless the object sets `x-kubernetes-preserve-unknown-fields`
//!   or `additionalProperties: true`; `apiVersion`, `kind` and `metadata` at the top level (and in
//!   `x-kubernetes-embedded-resource` objects) are kept; a `null` map value whose schema is not
//!   `nullable` is dropped. A write left unchanged by pruning changes nothing. Then validation,
//!   every error reported with its path (`spec.routes[0].services[0].port`, map keys after a
//!   dot): `type` (`Invalid value: "string": <path> in body must be of type integer: "string"`;
//!   `integer` also takes whole floats; `x-kubernetes-int-or-string` takes `integer,string`),
//!   `nullable` (`null` passes every check), `enum` (`Unsupported value: "x": supported values:
//!   "a", "b"`), `required` (`Required value` on the missing field), `minimum`/`maximum` and
//!   their `exclusive` forms (`Invalid value: 0: <path> in body should be greater than or equal
//!   to 1`), `minLength` (`should be at least N chars long`), `maxLength` (`Too long: may not be
//!   more than N bytes`). Causes carry kube's reasons (`FieldValueInvalid`,
//!   `FieldValueNotSupported`, `FieldValueRequired`, `FieldValueTooLong`) and the message names
//!   the kind with its group (`IngressRoute.contour.heptio.com "x" is invalid: ...`). On
//!   updates a value equal to the stored one at the same place is not judged again
//!   (`pkg/apiserver/validation/ratcheting.go`, on by default since Kubernetes 1.30), so an
//!   object stored under an older schema keeps taking status writes and changes elsewhere.
//!
//! [`ApiServerOptions::allow_loopback_endpoints`] (off by default) is the one deliberate
//! departure: it accepts loopback addresses in Endpoints and EndpointSlices, for tests whose
//! backends must listen on 127.0.0.1. Tests using it must skip those steps against a real cluster.
//!
//! # Limits
//!
//! - No authentication (a bearer token is recorded as the user, never checked), authorization
//!   only of impersonated requests (below), admission, TLS, HTTP/2, protobuf, YAML request bodies (except apply patches), `dryRun`
//!   (rejected with 400), or `kubectl` table output.
//! - No controllers: nothing schedules pods, fills endpoints, allocates cluster IPs, runs
//!   DaemonSets or Deployments (tests may run `crate::kubelet` for DaemonSets), or defaults
//!   fields. Beyond the rules under Validation, contents are not validated (built-in kinds have
//!   no schema here; unknown fields of built-in objects are kept). Of CRD schemas, `default` is
//!   not applied; `pattern`, `format`, `minItems`/`maxItems`, `uniqueItems`,
//!   `minProperties`/`maxProperties`, `anyOf`/`oneOf`/`allOf`/`not`, `x-kubernetes-validations`
//!   (CEL) and list types are not checked; `metadata` of custom objects is checked by the
//!   metadata rules only; ratcheting correlates list items by index (kube only correlates
//!   map-lists by key and sets).
//!   Other metadata rules of Kubernetes (ownerReferences, finalizer names, immutable fields on
//!   update), the other fields of Endpoints and EndpointSlices (ports, hostnames, FQDNs) and the
//!   built-in kinds not listed under Validation (Deployments, RBAC objects, events, ...) are not
//!   checked.
//! - CRD versions share one stored object: a request through another version only rewrites
//!   `apiVersion` (no conversion). CRD `status` is set at once to Established/NamesAccepted.
//!   Schemas are not checked to be structural.
//! - Server-side apply is approximated (see `apply.rs`, `lists.rs`): maps merge; lists merge
//!   as Kubernetes merges them (by key for containers, env, ports, volumes, volumeMounts,
//!   conditions, ownerReferences and the other lists `lists.rs` names, or as a CRD's
//!   `x-kubernetes-list-type` says; finalizers as a set; everything else atomic), new map-list
//!   items appended in applied order (kube may interleave); a list with an item lacking its key
//!   (and no default) or two items with one key is treated as atomic (kube refuses the apply).
//!   A field a manager stops applying is removed unless another manager owns it or something
//!   beneath it; conflicts (409 without `force`) are fields whose applied value differs from the
//!   live one and that another manager owns, by apply or by update (a manager's own `Update`
//!   entry never conflicts with its apply). In `managedFields` no map is owned as a whole (no
//!   `"."` keys for maps; list items have theirs); identity fields (`apiVersion`, `kind`,
//!   `metadata.name`, ...) are nobody's.
//!   Strategic merge patch is a JSON merge patch.
//! - Deletion is immediate (no grace periods); `Foreground` propagation behaves like
//!   `Background` (the owner goes first); namespace and CRD deletion ignore the finalizers of the
//!   objects they sweep away. Owner references match by uid only.
//! - Lists are consistent only within one page: a `continue` page shows current objects after
//!   the last key returned, though it reports the first page's resourceVersion (so a watch
//!   started from it replays any change in between); a token older than the event history is
//!   410 Expired. `resourceVersion`/`resourceVersionMatch` on list are ignored (always the
//!   latest state). A watch from a resourceVersion newer than the server's waits for it silently.
//! - Label selectors do not support the numeric `gt`/`lt` operators; field selector values are
//!   compared as text.

mod apply;
mod builtin;
mod error;
mod fault;
mod http;
mod lists;
mod managed;
mod meta;
mod rbac;
mod resources;
mod schema;
mod selector;
mod store;
mod validation;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

pub use error::ApiError;
pub use fault::Fault;
use store::{DeleteOptions, PatchKind, Store, Target, present};

/// The field manager of [`ApiServer::apply`] and [`ApiServer::apply_status`].
pub const TEST_FIELD_MANAGER: &str = "e2e-test";

/// Tunables; the defaults suit tests.
#[derive(Clone, Debug)]
pub struct ApiServerOptions {
    /// How many change events are kept for watches to resume from.
    pub history_limit: usize,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Watch duration when the request has no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// Accept loopback addresses (127.0.0.0/8, ::1) in Endpoints and EndpointSlices, which
    /// kube-apiserver refuses. Off by default; only for tests whose backends must listen on
    /// 127.0.0.1 and that skip those steps against a real cluster.
    pub allow_loopback_endpoints: bool,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
            default_watch_timeout: Duration::from_secs(1800),
            allow_loopback_endpoints: false,
        }
    }
}

/// State shared by the HTTP tasks and the in-process accessors.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// The latest resourceVersion, for watches to wake on.
    changes: watch::Sender<u64>,
    options: ApiServerOptions,
    address: String,
    /// Watch requests accepted so far.
    watches: watch::Sender<u64>,
    /// Every request served, in the order they were answered.
    requests: Mutex<Vec<RequestRecord>>,
    /// Requests received so far (the next one's [`RequestRecord::seq`]).
    arrivals: AtomicU64,
    /// Injected faults in force (expired ones are dropped as requests come).
    faults: Mutex<Vec<fault::ActiveFault>>,
    next_fault: AtomicU64,
    /// Bumped when a fault is injected, for open watches to check whether it ends them.
    fault_epoch: watch::Sender<u64>,
}

/// One request the server answered, for tests that check who wrote what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// The path, e.g. `/apis/contour.heptio.com/v1beta1/namespaces/a/ingressroutes/x/status`.
    pub path: String,
    /// The raw query string (empty without one).
    pub query: String,
    /// The bearer token of the request, taken as the user's name (see
    /// [`ApiServer::kubeconfig_yaml_for`]); empty without one.
    pub user: String,
    /// The user the request impersonated (`Impersonate-User`, as kube-rs sends for a
    /// kubeconfig user with `as:`); empty without impersonation.
    pub impersonated: String,
    /// The response status code (200 for a watch that started).
    pub code: u16,
    /// The order in which the request arrived (from 0), before any injected latency; the
    /// records themselves are in the order the requests were answered.
    pub seq: u64,
}

impl RequestRecord {
    /// Whether the request could change state (anything but GET, HEAD, OPTIONS).
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The number of the request arriving now.
    fn arrive(&self) -> u64 {
        self.arrivals.fetch_add(1, Ordering::SeqCst)
    }

    /// What the faults in force do to a request.
    fn fault_effect(&self, target: &fault::RequestTarget<'_>) -> fault::Effect {
        let mut faults = self
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fault::effect(&mut faults, target)
    }

    fn record(&self, r: RequestRecord) {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(r);
    }

    /// Runs a write and wakes watches if it changed anything.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = self.lock();
        let before = store.resource_version();
        let out = f(&mut store);
        let after = store.resource_version();
        drop(store);
        if after != before {
            self.changes.send_replace(after);
        }
        out
    }
}

/// A running in-memory API server; stops when dropped.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Starts a server with default options on `127.0.0.1:0`, on its own thread and runtime (so
    /// it works from sync tests and from any Tokio runtime).
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(ApiServerOptions::default())
    }

    pub fn start_with(options: ApiServerOptions) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let mut store = Store::new(options.history_limit);
        store.allow_loopback_endpoints = options.allow_loopback_endpoints;
        let (changes, _) = watch::channel(store.resource_version());
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            changes,
            options,
            address: addr.to_string(),
            watches: watch::channel(0).0,
            requests: Mutex::new(Vec::new()),
            arrivals: AtomicU64::new(0),
            faults: Mutex::new(Vec::new()),
            next_fault: AtomicU64::new(0),
            fault_epoch: watch::channel(0).0,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (shutdown, stop) = oneshot::channel();
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("apiserver-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(serve(listener, serving, stop));
                // Dropping the runtime here ends every connection and watch task.
            })?;
        Ok(Self {
            shared,
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig for this server (context `sluice-e2e`, namespace `default`, no credentials).
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_with_user("{}")
    }

    /// A kubeconfig whose requests carry `user` as their bearer token, so that
    /// [`ApiServer::requests`] tells several clients apart (the token is not checked). `user`
    /// must be a plain token (letters, digits, `-`, `_`, `.`).
    pub fn kubeconfig_yaml_for(&self, user: &str) -> String {
        self.kubeconfig_with_user(&format!("{{token: {user}}}"))
    }

    fn kubeconfig_with_user(&self, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sluice-e2e\n  cluster:\n    server: {}\ncontexts:\n- name: sluice-e2e\n  context:\n    cluster: sluice-e2e\n    user: sluice-e2e\n    namespace: default\ncurrent-context: sluice-e2e\nusers:\n- name: sluice-e2e\n  user: {user}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes `dir/kubeconfig` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml())?;
        Ok(path)
    }

    /// Writes `dir/kubeconfig-<user>` (see [`ApiServer::kubeconfig_yaml_for`]) and returns its
    /// path.
    pub fn write_kubeconfig_for(&self, dir: &Path, user: &str) -> std::io::Result<PathBuf> {
        let path = dir.join(format!("kubeconfig-{user}"));
        std::fs::write(&path, self.kubeconfig_yaml_for(user))?;
        Ok(path)
    }

    /// Writes `dir/kubeconfig-<user>-as` for bearer token `user` impersonating `as_user` (the
    /// kubeconfig's `as:`), so that its requests are authorized by RBAC, and returns its path.
    pub fn write_kubeconfig_as(
        &self,
        dir: &Path,
        user: &str,
        as_user: &str,
    ) -> std::io::Result<PathBuf> {
        let path = dir.join(format!("kubeconfig-{user}-as"));
        let yaml = self.kubeconfig_with_user(&format!("{{token: {user}, as: {as_user:?}}}"));
        std::fs::write(&path, yaml)?;
        Ok(path)
    }

    /// Every request served so far, oldest first (requests made in-process are not included).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many requests have arrived so far: requests whose [`RequestRecord::seq`] is at least
    /// this number arrive after the call.
    pub fn requests_arrived(&self) -> u64 {
        self.shared.arrivals.load(Ordering::SeqCst)
    }

    /// Puts `fault` in force (see [`Fault`]) from now until it lasted its time or is cleared;
    /// returns its id for [`ApiServer::clear_fault`].
    pub fn inject(&self, fault: Fault) -> u64 {
        let id = self.shared.next_fault.fetch_add(1, Ordering::SeqCst);
        let until = fault.lasting.map(|d| std::time::Instant::now() + d);
        self.shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(fault::ActiveFault { id, fault, until });
        self.shared.fault_epoch.send_modify(|n| *n += 1);
        id
    }

    /// Ends one injected fault (requests already delayed by it still fail or wait).
    pub fn clear_fault(&self, id: u64) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|f| f.id != id);
    }

    /// Ends every injected fault.
    pub fn clear_faults(&self) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().resource_version()
    }

    fn target(
        store: &Store,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Target, ApiError> {
        let (rt, version) = store.resolve_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!(
                "no resource for apiVersion {api_version:?} kind {kind:?}"
            ))
        })?;
        let namespace = if rt.namespaced {
            namespace.unwrap_or("default").to_string()
        } else {
            String::new()
        };
        Ok(Target {
            key: rt.key(),
            version,
            namespace,
        })
    }

    fn target_of(store: &Store, obj: &Value) -> Result<(Target, String), ApiError> {
        let field = |f: &str| obj.get(f).and_then(Value::as_str).unwrap_or_default();
        let ns = meta::meta_str(obj, "namespace");
        let t = Self::target(
            store,
            field("apiVersion"),
            field("kind"),
            (!ns.is_empty()).then_some(ns),
        )?;
        Ok((t, meta::meta_str(obj, "name").to_string()))
    }

    fn show(store: &Store, t: &Target, obj: &Value) -> Value {
        store
            .types()
            .find(|rt| rt.key() == t.key)
            .map_or_else(|| obj.clone(), |rt| present(rt, &t.version, obj))
    }

    /// How many watch requests the server has accepted (to see clients re-watch).
    pub fn watches_started(&self) -> u64 {
        *self.shared.watches.borrow()
    }

    /// One object, or `None` (also for an unknown kind). `namespace` defaults to `default` for
    /// namespaced kinds.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let store = self.shared.lock();
        let t = Self::target(&store, api_version, kind, namespace).ok()?;
        let obj = store.get(&t, name).ok()?;
        Some(Self::show(&store, &t, &obj))
    }

    /// All objects of a kind, in one namespace or (`None`) across all namespaces.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let store = self.shared.lock();
        let Ok(mut t) = Self::target(&store, api_version, kind, namespace) else {
            return Vec::new();
        };
        if namespace.is_none() {
            t.namespace.clear();
        }
        store
            .all(&t.key)
            .iter()
            .filter(|o| t.namespace.is_empty() || meta::meta_str(o, "namespace") == t.namespace)
            .map(|o| Self::show(&store, &t, o))
            .collect()
    }

    /// How many objects of a kind (in every namespace) satisfy `f`, which sees their stored
    /// form; nothing is copied, so this is cheap enough to poll with thousands of objects.
    pub fn count(&self, api_version: &str, kind: &str, f: impl Fn(&Value) -> bool) -> usize {
        let store = self.shared.lock();
        let Ok(t) = Self::target(&store, api_version, kind, None) else {
            return 0;
        };
        store.each(&t.key).filter(|o| f(o)).count()
    }

    /// Creates an object (its `apiVersion`, `kind`, `metadata.namespace` say where).
    pub fn create(&self, obj: Value) -> Result<Value, ApiError> {
        self.shared.write(|store| {
            let (t, _) = Self::target_of(store, &obj)?;
            let created = store.create(&t, obj, Some(TEST_FIELD_MANAGER))?;
            Ok(Self::show(store, &t, &created))
        })
    }

    fn apply_with(&self, obj: &Value, status: bool) -> Result<Value, ApiError> {
        let body = serde_json::to_vec(obj).map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.shared.write(|store| {
            let (t, name) = Self::target_of(store, obj)?;
            let (applied, _) = store.patch(
                &t,
                &name,
                PatchKind::Apply,
                &body,
                status,
                Some(TEST_FIELD_MANAGER),
                true,
            )?;
            Ok(Self::show(store, &t, &applied))
        })
    }

    /// Creates a CRD the way one created through `apiextensions.k8s.io/v1beta1` (served until
    /// Kubernetes 1.22; Contour up to 1.5 installed its CRDs so) is kept by a cluster upgraded
    /// since: `spec.preserveUnknownFields: true` is accepted, which a v1 create refuses.
    /// Everything else is checked as for [`ApiServer::create`], so a schema with `default:`
    /// is still refused.
    pub fn create_v1beta1_crd(&self, crd: Value) -> Result<Value, ApiError> {
        self.shared.write(|store| {
            let (t, _) = Self::target_of(store, &crd)?;
            store.v1beta1_crd_write = true;
            let created = store.create(&t, crd, Some(TEST_FIELD_MANAGER));
            store.v1beta1_crd_write = false;
            let created = created?;
            Ok(Self::show(store, &t, &created))
        })
    }

    /// Server-side apply (field manager [`TEST_FIELD_MANAGER`], forced): creates or merges.
    pub fn apply(&self, obj: Value) -> Result<Value, ApiError> {
        self.apply_with(&obj, false)
    }

    /// Server-side apply to the `status` subresource.
    pub fn apply_status(&self, obj: Value) -> Result<Value, ApiError> {
        self.apply_with(&obj, true)
    }

    /// Applies every document of a multi-document YAML string (e.g. CRDs), in order.
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        for doc in serde_norway::Deserializer::from_str(yaml) {
            let value = Value::deserialize(doc)
                .map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")))?;
            if !value.is_null() {
                out.push(self.apply(value)?);
            }
        }
        Ok(out)
    }

    /// Deletes an object (background propagation); returns it as last stored, with
    /// `deletionTimestamp` when finalizers hold it back.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.shared.write(|store| {
            let t = Self::target(store, api_version, kind, namespace)?;
            let (obj, _) = store.delete(&t, name, &DeleteOptions::default())?;
            Ok(Self::show(store, &t, &obj))
        })
    }

    /// Waits until `f` returns `Some`, re-checking after every change and every new watch; `None` after `timeout`.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Self) -> Option<T>,
    ) -> Option<T> {
        let mut changes = self.shared.changes.subscribe();
        let mut watches = self.shared.watches.subscribe();
        let wait = async {
            loop {
                changes.borrow_and_update();
                watches.borrow_and_update();
                if let Some(found) = f(self) {
                    return Some(found);
                }
                let woke = tokio::select! {
                    r = changes.changed() => r,
                    r = watches.changed() => r,
                };
                if woke.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| http::handle(shared.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}
