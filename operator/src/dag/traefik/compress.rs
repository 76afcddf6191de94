//! The `compress` middleware as the Gateway's own compressor, enabled on the routes that list it
//! and disabled on every other Traefik route (Traefik compresses only where asked). The
//! Gateway's compressor is one per listener (gzip, Envoy's content types, from 30 bytes), and an
//! Envoy route can only switch it on or off, so options asking for other settings are refused,
//! naming the field and why.

use crate::traefik::middleware::Compress;

/// Refuses what a route cannot change in the Gateway's compressor.
pub(super) fn check(c: &Compress) -> Result<(), String> {
    const WHY: &str = "an Envoy route can only switch the Gateway's compressor (gzip, Envoy's \
                       list of compressible content types, from 30 bytes) on or off";
    if !c.encodings.iter().any(|e| e == "gzip") {
        return Err(format!("encodings: must include gzip: {WHY}"));
    }
    if c.default_encoding.as_deref().is_some_and(|d| d != "gzip") {
        return Err(format!("defaultEncoding: only gzip is served: {WHY}"));
    }
    if !c.excluded_content_types.is_empty() {
        return Err(format!("excludedContentTypes: not served: {WHY}"));
    }
    if !c.included_content_types.is_empty() {
        return Err(format!("includedContentTypes: not served: {WHY}"));
    }
    if c.min_response_body_bytes != 1024 {
        return Err(format!(
            "minResponseBodyBytes: only Traefik's default (1024) is accepted, and Envoy then \
             compresses from 30 bytes: {WHY}"
        ));
    }
    Ok(())
}
