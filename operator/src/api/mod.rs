//! Custom resource types: the Contour `contour.heptio.com/v1beta1` API users write, and Sluice's own
//! `sluice.dev/v1alpha1` `Gateway`. Types only: validation of values lives in `dag`, so that values
//! the reference reports in status (a negative weight, a port out of range) reach the status path.

pub mod gateway;
pub mod ingressroute;
pub mod traefik;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

pub use gateway::{Gateway, GatewaySpec, GatewayStatus};
pub use ingressroute::{IngressRoute, IngressRouteSpec, TLSCertificateDelegation};

/// Ingress class annotations, in order of precedence.
pub const INGRESS_CLASS_ANNOTATIONS: [&str; 2] = [
    "contour.heptio.com/ingress.class",
    "kubernetes.io/ingress.class",
];

/// All CRDs Sluice installs, in install order.
///
/// The `contour.heptio.com` CRDs may be applied over the ones Contour (up to 1.5) installed through
/// apiextensions v1beta1, which the API server keeps with `preserveUnknownFields: true`. Their
/// schemas therefore carry no `default:` (kube-apiserver refuses defaults while
/// `preserveUnknownFields` is true, and an apply leaves the old `true` in place unless the new
/// object says otherwise); the same defaults are applied in code, by the serde `default`s of the
/// types. They also set `preserveUnknownFields: false` explicitly, so that applying them over a
/// legacy CRD turns pruning on (allowed on update once the schema is structural).
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![
        legacy_compatible(IngressRoute::crd()),
        legacy_compatible(TLSCertificateDelegation::crd()),
        Gateway::crd(),
    ]
}

/// All CRDs Sluice installs, as one multi-document YAML string.
pub fn crds_yaml() -> Result<String, serde_norway::Error> {
    yaml_stream(&crds())
}

/// CRDs as one multi-document YAML string, each document opened by `---`.
pub(crate) fn yaml_stream(
    crds: &[CustomResourceDefinition],
) -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(crd)?);
    }
    Ok(out)
}

/// A CRD that may replace a legacy (apiextensions v1beta1) one: no server-side defaults, and
/// `preserveUnknownFields: false` said explicitly.
fn legacy_compatible(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    crd.spec.preserve_unknown_fields = Some(false);
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            strip_defaults(schema);
        }
    }
    crd
}

/// Removes every `default` from a schema and the schemas nested in it.
fn strip_defaults(schema: &mut JSONSchemaProps) {
    schema.default = None;
    let mut nested: Vec<&mut JSONSchemaProps> = Vec::new();
    for map in [
        &mut schema.properties,
        &mut schema.pattern_properties,
        &mut schema.definitions,
    ]
    .into_iter()
    .flatten()
    {
        nested.extend(map.values_mut());
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
        .into_iter()
        .flatten()
    {
        nested.extend(list.iter_mut());
    }
    if let Some(not) = schema.not.as_deref_mut() {
        nested.push(not);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(s)) => nested.push(s),
        Some(JSONSchemaPropsOrArray::Schemas(list)) => nested.extend(list.iter_mut()),
        None => {}
    }
    for or_bool in [
        &mut schema.additional_properties,
        &mut schema.additional_items,
    ]
    .into_iter()
    .flatten()
    {
        if let JSONSchemaPropsOrBool::Schema(s) = or_bool {
            nested.push(s);
        }
    }
    for s in nested {
        strip_defaults(s);
    }
}
