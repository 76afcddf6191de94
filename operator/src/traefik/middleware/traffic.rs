//! rateLimit, retry, compress and buffering.

use crate::api::traefik::middleware as api;

use super::super::duration;
use super::auth::{IpStrategy, ip_strategy};

/// Shortest refill period Envoy's local rate limiter accepts.
const MIN_FILL_MS: u64 = 50;

/// Whose requests share a token bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RateSource {
    Ip(IpStrategy),
    /// Lower-case request header name.
    RequestHeader(String),
    RequestHost,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per period; 0 means no limit.
    pub average: u32,
    pub period_ms: u64,
    /// Bucket size (at least 1).
    pub burst: u32,
    pub source: RateSource,
}

fn non_negative_u32(v: i64, field: &str) -> Result<u32, String> {
    u32::try_from(v).map_err(|_| format!(".{field}: {v} must be 0 to {}", u32::MAX))
}

pub(super) fn rate_limit(r: &api::RateLimit) -> Result<RateLimit, String> {
    let average = non_negative_u32(r.average.unwrap_or(0), "average")?;
    let period_ms = match &r.period {
        None => 1000,
        Some(p) => duration::millis(p).map_err(|e| format!(".period: {e}"))?,
    };
    if average > 0 && period_ms < MIN_FILL_MS {
        return Err(format!(
            ".period: must be at least {MIN_FILL_MS}ms (Envoy's shortest refill)"
        ));
    }
    let burst = non_negative_u32(r.burst.unwrap_or(1), "burst")?.max(1);
    let source = match &r.source_criterion {
        None => RateSource::Ip(IpStrategy::Peer),
        Some(c) => {
            let header = c.request_header_name.as_deref().filter(|h| !h.is_empty());
            let host = c.request_host.unwrap_or(false);
            match (&c.ip_strategy, header, host) {
                (Some(_), Some(_), _) | (Some(_), _, true) | (_, Some(_), true) => {
                    return Err(
                        ".sourceCriterion: set only one of ipStrategy, requestHeaderName \
                                and requestHost"
                            .into(),
                    );
                }
                (_, Some(h), _) => {
                    let ok = h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if !ok {
                        return Err(format!(
                            ".sourceCriterion.requestHeaderName: {h:?} is not a header name"
                        ));
                    }
                    RateSource::RequestHeader(h.to_ascii_lowercase())
                }
                (_, _, true) => RateSource::RequestHost,
                (s, None, false) => {
                    RateSource::Ip(ip_strategy(s.as_ref(), ".sourceCriterion.ipStrategy")?)
                }
            }
        }
    };
    Ok(RateLimit {
        average,
        period_ms,
        burst,
        source,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Total tries, the first included (Envoy `num_retries` is one less).
    pub attempts: u32,
    pub initial_interval_ms: Option<u64>,
}

/// Most tries accepted.
const MAX_ATTEMPTS: i64 = 10;

pub(super) fn retry(r: &api::Retry) -> Result<Retry, String> {
    if !(1..=MAX_ATTEMPTS).contains(&r.attempts) {
        return Err(format!(".attempts: must be 1 to {MAX_ATTEMPTS}"));
    }
    let initial_interval_ms = match &r.initial_interval {
        None => None,
        Some(d) => Some(duration::millis(d).map_err(|e| format!(".initialInterval: {e}"))?),
    }
    .filter(|ms| *ms > 0);
    Ok(Retry {
        attempts: r.attempts.unsigned_abs() as u32,
        initial_interval_ms,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compress {
    /// `gzip`, `br`, `zstd`, in preference order.
    pub encodings: Vec<String>,
    pub default_encoding: Option<String>,
    pub min_response_body_bytes: u32,
    pub excluded_content_types: Vec<String>,
    pub included_content_types: Vec<String>,
}

const ENCODINGS: [&str; 3] = ["gzip", "br", "zstd"];

fn media_type(v: &str) -> bool {
    let tok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let base = v.split(';').next().unwrap_or("").trim();
    base.split_once('/').is_some_and(|(t, s)| tok(t) && tok(s))
        && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

pub(super) fn compress(c: &api::Compress) -> Result<Compress, String> {
    let encodings = if c.encodings.is_empty() {
        ENCODINGS.iter().map(|e| (*e).to_owned()).collect()
    } else {
        for (i, e) in c.encodings.iter().enumerate() {
            if !ENCODINGS.contains(&e.as_str()) {
                return Err(format!(".encodings[{i}]: {e:?} must be gzip, br or zstd"));
            }
        }
        c.encodings.clone()
    };
    let default_encoding = c.default_encoding.clone().filter(|d| !d.is_empty());
    if let Some(d) = &default_encoding
        && !encodings.contains(d)
    {
        return Err(format!(
            ".defaultEncoding: {d:?} is not one of the encodings"
        ));
    }
    if !c.excluded_content_types.is_empty() && !c.included_content_types.is_empty() {
        return Err(".includedContentTypes: cannot be used with excludedContentTypes".into());
    }
    for (field, list) in [
        ("excludedContentTypes", &c.excluded_content_types),
        ("includedContentTypes", &c.included_content_types),
    ] {
        if let Some((i, v)) = list.iter().enumerate().find(|(_, v)| !media_type(v)) {
            return Err(format!(".{field}[{i}]: {v:?} is not a media type"));
        }
    }
    let min = c.min_response_body_bytes.unwrap_or(1024);
    let min_response_body_bytes = u32::try_from(min)
        .map_err(|_| format!(".minResponseBodyBytes: {min} must be 0 to {}", u32::MAX))?;
    Ok(Compress {
        encodings,
        default_encoding,
        min_response_body_bytes,
        excluded_content_types: c.excluded_content_types.clone(),
        included_content_types: c.included_content_types.clone(),
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffering {
    /// Larger requests get 413; `None` buffers without a limit Envoy can express, so it is
    /// refused at build time unless set.
    pub max_request_body_bytes: u32,
}

pub(super) fn buffering(b: &api::Buffering) -> Result<Buffering, String> {
    if b.max_response_body_bytes.is_some_and(|n| n > 0) {
        return Err(
            ".maxResponseBodyBytes: Envoy has no response size limit; not supported".into(),
        );
    }
    if b.retry_expression.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(".retryExpression: not supported by Sluice (use the retry middleware)".into());
    }
    for (field, v) in [
        ("memRequestBodyBytes", b.mem_request_body_bytes),
        ("memResponseBodyBytes", b.mem_response_body_bytes),
    ] {
        if v.is_some_and(|n| n < 0) {
            return Err(format!(".{field}: must not be negative"));
        }
    }
    match b.max_request_body_bytes {
        Some(n) if n > 0 => Ok(Buffering {
            max_request_body_bytes: u32::try_from(n).map_err(|_| {
                format!(
                    ".maxRequestBodyBytes: {n} is above Envoy's limit of {}",
                    u32::MAX
                )
            })?,
        }),
        Some(n) if n < 0 => Err(".maxRequestBodyBytes: must not be negative".into()),
        _ => Err(".maxRequestBodyBytes: Envoy buffers only up to a limit; set one".into()),
    }
}
