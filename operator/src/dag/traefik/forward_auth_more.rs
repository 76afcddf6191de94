//! The `forwardAuth` fields beyond the address, checked against what Envoy's `ext_authz` can do
//! per route (one filter per listener, each route enabling it with its own `check_settings`).
//!
//! - **`trustForwardHeader: true`** is served, and serves exactly what `false` does. In Traefik
//!   the option makes the middleware keep the request's `X-Forwarded-Method`, `-Proto`, `-Host`,
//!   `-Uri` and `-For` instead of writing its own; but an entry point that does not trust the
//!   client (Traefik's default: no `forwardedHeaders.trustedIPs`, not `insecure`) has already
//!   deleted the client's copies of all of them (and `-Port`, `-Server`, `X-Real-Ip`) and written
//!   its own `-Proto` and `-Host` from the request. The Gateway trusts no client (it has no
//!   trusted-hops setting), so the copies the middleware could keep are the Gateway's: the
//!   method, host, URI and TCP peer of the request Envoy received, which is what
//!   `xds::translate::ext_authz` sends. (One value differs and is in the README: Traefik's
//!   entry point writes `ws`/`wss` as the `-Proto` of a WebSocket handshake, which a trusting
//!   middleware forwards; Envoy sends `http`/`https`.)
//! - **`authRequestHeaders`** is refused ([`WHY_NO_REQUEST_HEADERS`]).
//! - **`addAuthCookiesToResponse`** is refused where the Middleware is read
//!   (`traefik::middleware::auth`): Envoy passes auth response headers to the client by header
//!   name (`allowed_client_headers_on_success`, which a route could set), so it would pass every
//!   `Set-Cookie` the auth server sends, not the named cookies only, and add them beside the
//!   backend's cookies of the same name, which Traefik replaces.

/// Why `authRequestHeaders` is refused.
pub(super) const WHY_NO_REQUEST_HEADERS: &str = "not served: Envoy's ext_authz takes the \
     request headers sent to the auth server from the filter's `allowed_headers`, one list per \
     listener (every header, Traefik's default without this field); a route's `check_settings` \
     cannot narrow it (the `authorization_request.allowed_headers` of its HTTP service is \
     deprecated and ignored), and a filter per header list would change the listeners every \
     tenant shares, draining all their connections, whenever a list was added or removed";
