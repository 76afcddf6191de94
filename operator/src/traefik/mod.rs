//! Traefik's CRD dialect, the pure part: the rule grammar ([`rule`], [`matcher`]), the
//! translation of a rule into Envoy-expressible route matches ([`matches`], [`tcp`]), regex
//! checks ([`regex`]), durations ([`duration`]) and the Middleware model ([`middleware`]).
//!
//! Nothing here reads the cluster or builds Envoy resources: every function is a pure function
//! of the decoded objects (`crate::api::traefik`), returning either a typed model or a message
//! that names the field and the part of the value that is refused. The DAG adapter
//! (`dag::traefik`) builds on it.

pub mod duration;
pub mod matcher;
pub mod matches;
pub mod middleware;
pub mod regex;
pub mod rule;
pub mod tcp;
pub mod tls;
pub mod work;

#[cfg(test)]
mod tests;

/// The longest header name or query key a rule or Middleware may name. Envoy refuses query
/// parameter names over 1 KiB and header names over 16 KiB; real ones are short.
pub const MAX_NAME_LEN: usize = 256;
