//! Sluice: a Kubernetes operator running per-team Envoy ingress for Contour's IngressRoute API.
//!
//! Layout follows DESIGN.md: sources build a [`snapshot::ClusterSnapshot`]; [`dag::build`] and
//! `xds::translate` are pure functions of it; servers and controllers live at the edges.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod controller;
pub mod dag;
pub mod drain;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod pki;
pub mod provision;
pub mod render;
pub mod render_provision;
pub mod snapshot;
pub mod source;
pub mod standalone;
pub mod telemetry;
pub mod traefik;
pub mod xds;
