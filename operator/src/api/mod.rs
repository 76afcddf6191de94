//! Custom resource types: the Contour `contour.heptio.com/v1beta1` API users write, and Sluice's own
//! `sluice.dev/v1alpha1` `Gateway`. Types only: validation of values lives in `dag`, so that values
//! the reference reports in status (a negative weight, a port out of range) reach the status path.

pub mod gateway;
pub mod ingressroute;

pub use gateway::{Gateway, GatewaySpec, GatewayStatus};
pub use ingressroute::{IngressRoute, IngressRouteSpec, TLSCertificateDelegation};

/// Ingress class annotations, in order of precedence.
pub const INGRESS_CLASS_ANNOTATIONS: [&str; 2] = [
    "contour.heptio.com/ingress.class",
    "kubernetes.io/ingress.class",
];

/// All CRDs Sluice installs, as one multi-document YAML string.
pub fn crds_yaml() -> Result<String, serde_norway::Error> {
    use kube::CustomResourceExt;
    let crds = [
        IngressRoute::crd(),
        TLSCertificateDelegation::crd(),
        Gateway::crd(),
    ];
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&crd)?);
    }
    Ok(out)
}
