//! Every Traefik HTTP matcher through `sluice standalone` and a real Envoy, each with requests
//! that match and requests that do not: `PathRegexp` (Traefik searches, so an unanchored
//! pattern matches in the middle of the path; Envoy full-matches the wrapped form),
//! `HeaderRegexp`, `Header` and `!Header`, `Query` (one and two arguments), `QueryRegexp`,
//! `Method` and `!Method`, `ClientIP` and `!ClientIP`, parentheses with `||` and `!` (De
//! Morgan), `HostRegexp` (v3 unanchored, v2 template) in the catch-all host; the v2 syntax
//! (multi-argument `Host`/`Path`/`PathPrefix`/`Method`, `Headers`, `HeadersRegexp`,
//! `Query(`k=v`)`, path templates); and Traefik's priority (the rule's length, unless an
//! explicit `priority` is given).
//!
//! One world, one Envoy: each case has a host of its own whose shortest rule, `Host(`h`)`, goes
//! to the backend `miss`, and whose rule under test goes to the backend `hit`; a request that
//! the rule does not take falls through to `miss`, exactly as Traefik tries its next router.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/traefik_http.rs"]
mod traefik_http;

use serde_json::{Value, json};

use sluice_e2e::backend::Backend;
use sluice_e2e::client::Request;
use sluice_e2e::manifests::Manifests;
use traefik_http::{ingress_route_of, route, services, start};

/// The rule under test on a host, and its fallback.
const HIT: &str = "hit";
const MISS: &str = "miss";

/// A route of the rule under test to `hit` (v3).
fn hit(rule: &str) -> Value {
    route(rule, &[], HIT)
}

/// A v2-syntax route to `hit`.
fn hit_v2(rule: &str) -> Value {
    let mut r = hit(rule);
    r["syntax"] = json!("v2");
    r
}

/// A route to `hit` with an explicit priority.
fn hit_at(rule: &str, priority: i64) -> Value {
    let mut r = hit(rule);
    r["priority"] = json!(priority);
    r
}

/// One request and the backend that must answer it.
struct Case {
    request: Request,
    /// `hit` or `miss`.
    expected: &'static str,
    what: String,
}

fn case(method: &str, host: &str, path: &str, headers: &[(&str, &str)], hit: bool) -> Case {
    let mut request = Request::new(method, host, path);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    Case {
        request,
        expected: if hit { HIT } else { MISS },
        what: format!("{method} http://{host}{path} {headers:?}"),
    }
}

fn get(host: &str, path: &str, headers: &[(&str, &str)], hit: bool) -> Case {
    case("GET", host, path, headers, hit)
}

/// Hosts with a route of their own (each also gets the fallback `Host(h)` to `miss`).
const HOSTS: &[&str] = &[
    "pathre.example.com",
    "anchored.example.com",
    "hdrre.example.com",
    "hdrfull.example.com",
    "hdr.example.com",
    "nothdr.example.com",
    "query.example.com",
    "queryre.example.com",
    "method.example.com",
    "notmethod.example.com",
    "clientip.example.com",
    "combo.example.com",
    "prec.example.com",
    "v2a.example.com",
    "v2b.example.com",
    "v2p.example.com",
    "v2h.example.com",
    "v2q.example.com",
    "v2m.example.com",
    "v2t.example.com",
    "prio.example.com",
    "prio2.example.com",
];

/// Rules whose priority (their length) the priority cases rely on.
const PRIO_HEADER: &str = "Host(`prio.example.com`) && PathPrefix(`/a`) && Header(`X-P`, `1`)";
const PRIO_PATH: &str = "Host(`prio.example.com`) && PathPrefix(`/a/b`)";
const PRIO_LONG_PATH: &str =
    "Host(`prio.example.com`) && PathPrefix(`/a/b/c/d/e/f/g/h/i/j/k/l/m/n`)";

fn routes() -> (Vec<Value>, Vec<Value>) {
    let mut exact = vec![
        // PathRegexp: unanchored searches (in the middle of the path, never in the query);
        // anchored at both ends is a full match.
        hit("Host(`pathre.example.com`) && PathRegexp(`[0-9]{3}`)"),
        hit("Host(`anchored.example.com`) && PathRegexp(`^/docs/[a-z]+$`)"),
        hit("Host(`hdrre.example.com`) && HeaderRegexp(`X-Version`, `beta`)"),
        hit("Host(`hdrfull.example.com`) && HeaderRegexp(`X-Version`, `^beta$`)"),
        hit("Host(`hdr.example.com`) && Header(`X-Env`, `prod`)"),
        hit("Host(`nothdr.example.com`) && !Header(`X-Block`, `yes`)"),
        hit("Host(`nothdr.example.com`) && PathPrefix(`/re`) && !HeaderRegexp(`X-Agent`, `bot`)"),
        hit("Host(`query.example.com`) && Query(`mode`, `fast`)"),
        hit("Host(`query.example.com`) && Path(`/flag`) && Query(`debug`)"),
        hit("Host(`queryre.example.com`) && QueryRegexp(`id`, `[0-9]+`)"),
        hit("Host(`method.example.com`) && Method(`POST`)"),
        hit("Host(`method.example.com`) && Path(`/lower`) && Method(`delete`)"),
        hit("Host(`notmethod.example.com`) && !Method(`GET`)"),
        hit("Host(`clientip.example.com`) && PathPrefix(`/in`) && ClientIP(`127.0.0.0/8`)"),
        hit("Host(`clientip.example.com`) && PathPrefix(`/out`) && ClientIP(`10.0.0.0/8`)"),
        hit("Host(`clientip.example.com`) && PathPrefix(`/not`) && !ClientIP(`127.0.0.1`)"),
        hit(
            "Host(`combo.example.com`) && (Path(`/a`) || Path(`/b`)) && \
             !(Method(`DELETE`) || Header(`X-Skip`, `1`))",
        ),
        // `&&` binds tighter than `||`.
        hit("Host(`prec.example.com`) && (Path(`/x`) || Header(`X-K`, `1`) && Path(`/y`))"),
        // v2.
        hit_v2("Host(`v2a.example.com`, `v2b.example.com`) && Path(`/one`, `/two`)"),
        hit_v2("Host(`v2p.example.com`) && PathPrefix(`/p1`, `/p2`)"),
        hit_v2("Host(`v2h.example.com`) && Headers(`X-Env`, `prod`)"),
        hit_v2(
            "Host(`v2h.example.com`) && PathPrefix(`/re`) && HeadersRegexp(`X-Version`, `beta`)",
        ),
        hit_v2("Host(`v2q.example.com`) && Query(`mode=fast`, `flag=`)"),
        hit_v2("Host(`v2m.example.com`) && Method(`PUT`, `PATCH`)"),
        hit_v2("Host(`v2t.example.com`) && Path(`/items/{id:[0-9]+}`)"),
        hit_v2("Host(`v2t.example.com`) && PathPrefix(`/users/{name}/`)"),
        // Priority: listed before the longer rule it loses to.
        route(PRIO_PATH, &[], MISS),
        hit(PRIO_HEADER),
        // Longer still: it takes its paths from the header rule (`miss` there can only be
        // this route, since the header rule outranks `Host(h)`).
        route(PRIO_LONG_PATH, &[], MISS),
        // An explicit priority wins over the longer rule; a low one loses to `Host(h)`.
        route(
            "Host(`prio2.example.com`) && PathPrefix(`/a/b/c`)",
            &[],
            MISS,
        ),
        hit_at("Host(`prio2.example.com`) && PathPrefix(`/a`)", 100),
        hit_at("Host(`prio2.example.com`) && PathPrefix(`/z/long/path`)", 1),
    ];
    for h in HOSTS {
        exact.push(route(&format!("Host(`{h}`)"), &[], MISS));
    }
    // The catch-all host (another IngressRoute: a host-less rule of an IngressRoute with hosts
    // would also apply to those hosts).
    let any = vec![
        hit("HostRegexp(`regex-[0-9]+`)"),
        hit_v2("HostRegexp(`{sub:[a-z]+}.tpl.example.org`)"),
        route("PathPrefix(`/`)", &[], MISS),
    ];
    (exact, any)
}

fn cases() -> Vec<Case> {
    let none: &[(&str, &str)] = &[];
    // !HeaderRegexp (X-Block: yes keeps the `!Header()` rule of the host off these).
    let agent = |agent: Option<&str>, hit: bool| {
        let mut headers = vec![("X-Block", "yes")];
        headers.extend(agent.map(|a| ("X-Agent", a)));
        get("nothdr.example.com", "/re", &headers, hit)
    };
    vec![
        agent(Some("curl"), true),
        agent(None, true),
        agent(Some("robot-7"), false),
        // PathRegexp.
        get("pathre.example.com", "/items/123/x", none, true),
        get("pathre.example.com", "/123", none, true),
        get("pathre.example.com", "/items/12/x", none, false),
        get("pathre.example.com", "/items/x?id=123", none, false),
        get("anchored.example.com", "/docs/abc", none, true),
        get("anchored.example.com", "/docs/abc/x", none, false),
        get("anchored.example.com", "/x/docs/abc", none, false),
        // PathRegexp sees the path Envoy normalised (unreserved characters decoded), as
        // Traefik sees Go's decoded path.
        get("anchored.example.com", "/docs/%61bc", none, true),
        // HeaderRegexp searches the value.
        get("hdrre.example.com", "/", &[("X-Version", "2-beta-7")], true),
        get(
            "hdrre.example.com",
            "/",
            &[("X-Version", "2-stable")],
            false,
        ),
        get("hdrre.example.com", "/", none, false),
        // Repeated header lines: any line matching is a match, as in Traefik (Envoy matches
        // each line, not the joined value); one line holding a comma is one value.
        get(
            "hdrfull.example.com",
            "/",
            &[("X-Version", "1"), ("X-Version", "beta")],
            true,
        ),
        get(
            "hdrfull.example.com",
            "/",
            &[("X-Version", "beta"), ("X-Version", "1")],
            true,
        ),
        get("hdrfull.example.com", "/", &[("X-Version", "beta")], true),
        get(
            "hdrfull.example.com",
            "/",
            &[("X-Version", "1,beta")],
            false,
        ),
        // Header: exact value, name in any case; repeated lines as above.
        get("hdr.example.com", "/", &[("X-Env", "prod")], true),
        get("hdr.example.com", "/", &[("x-env", "prod")], true),
        get("hdr.example.com", "/", &[("X-Env", "production")], false),
        get("hdr.example.com", "/", &[("X-Env", "Prod")], false),
        get("hdr.example.com", "/", none, false),
        get(
            "hdr.example.com",
            "/",
            &[("X-Env", "dev"), ("X-Env", "prod")],
            true,
        ),
        get(
            "hdr.example.com",
            "/",
            &[("X-Env", "prod"), ("X-Env", "dev")],
            true,
        ),
        get("hdr.example.com", "/", &[("X-Env", "dev,prod")], false),
        // !Header, !HeaderRegexp.
        get("nothdr.example.com", "/", none, true),
        get("nothdr.example.com", "/", &[("X-Block", "no")], true),
        get("nothdr.example.com", "/", &[("X-Block", "yes")], false),
        get(
            "nothdr.example.com",
            "/",
            &[("X-Block", "no"), ("X-Block", "yes")],
            false,
        ),
        get("nothdr.example.com", "/", &[("X-Block", "")], true),
        // Query with a value, and with a key only (an empty value, as Traefik's v3 reads it).
        get("query.example.com", "/?mode=fast", none, true),
        get("query.example.com", "/?a=1&mode=fast", none, true),
        get("query.example.com", "/?mode=slow", none, false),
        get("query.example.com", "/?mode=faster", none, false),
        get("query.example.com", "/", none, false),
        // README "`Query` with repeated names or encoded characters" (differs): Envoy
        // compares the first value as sent, Traefik every value decoded.
        get("query.example.com", "/?mode=fast&mode=slow", none, true),
        get("query.example.com", "/?mode=slow&mode=fast", none, false),
        get("query.example.com", "/?mode=%66ast", none, false),
        get("query.example.com", "/flag?debug", none, true),
        get("query.example.com", "/flag?debug=", none, true),
        get("query.example.com", "/flag?debug=1", none, false),
        get("query.example.com", "/flag", none, false),
        // QueryRegexp searches the value.
        get("queryre.example.com", "/?id=abc123def", none, true),
        get("queryre.example.com", "/?id=abc", none, false),
        get("queryre.example.com", "/?other=123", none, false),
        // Method (upper-cased, as Traefik does) and !Method.
        case("POST", "method.example.com", "/", none, true),
        get("method.example.com", "/", none, false),
        case("DELETE", "method.example.com", "/lower", none, true),
        get("method.example.com", "/lower", none, false),
        case("DELETE", "notmethod.example.com", "/", none, true),
        get("notmethod.example.com", "/", none, false),
        // ClientIP: the client is 127.0.0.1.
        get("clientip.example.com", "/in", none, true),
        get("clientip.example.com", "/out", none, false),
        get("clientip.example.com", "/not", none, false),
        // Parentheses, || and a negated disjunction.
        get("combo.example.com", "/a", none, true),
        get("combo.example.com", "/b", &[("X-Skip", "2")], true),
        get("combo.example.com", "/c", none, false),
        case("DELETE", "combo.example.com", "/a", none, false),
        get("combo.example.com", "/b", &[("X-Skip", "1")], false),
        get("prec.example.com", "/x", none, true),
        get("prec.example.com", "/x", &[("X-K", "0")], true),
        get("prec.example.com", "/y", &[("X-K", "1")], true),
        get("prec.example.com", "/y", none, false),
        // v2: several arguments are alternatives.
        get("v2a.example.com", "/one", none, true),
        get("v2b.example.com", "/two", none, true),
        get("v2a.example.com", "/three", none, false),
        get("v2b.example.com", "/one/x", none, false),
        get("v2a.example.com", "/%6Fne", none, true),
        get("v2a.example.com", "/one%2F", none, false),
        get("v2p.example.com", "/p2/x", none, true),
        get("v2p.example.com", "/p1", none, true),
        get("v2p.example.com", "/p3", none, false),
        get("v2h.example.com", "/", &[("X-Env", "prod")], true),
        get("v2h.example.com", "/", &[("X-Env", "production")], false),
        get("v2h.example.com", "/re", &[("X-Version", "2-beta")], true),
        get(
            "v2h.example.com",
            "/re",
            &[("X-Version", "2-stable")],
            false,
        ),
        // v2 Query(`k=v`): every pair required; `k=` only needs the key.
        get("v2q.example.com", "/?mode=fast&flag=x", none, true),
        get("v2q.example.com", "/?flag=&mode=fast", none, true),
        get("v2q.example.com", "/?mode=fast", none, false),
        get("v2q.example.com", "/?mode=slow&flag=1", none, false),
        case("PATCH", "v2m.example.com", "/", none, true),
        case("PUT", "v2m.example.com", "/", none, true),
        get("v2m.example.com", "/", none, false),
        // v2 templates: `Path` anchored at both ends, `PathPrefix` at the start.
        get("v2t.example.com", "/items/42", none, true),
        get("v2t.example.com", "/items/x", none, false),
        get("v2t.example.com", "/items/42/more", none, false),
        get("v2t.example.com", "/items/%34%32", none, true),
        get("v2t.example.com", "/users/bob/profile", none, true),
        get("v2t.example.com", "/users//profile", none, false),
        get("v2t.example.com", "/x/users/bob/", none, false),
        // HostRegexp in the catch-all host: v3 searches, a v2 template is anchored.
        get("a.regex-42.example.org", "/", none, true),
        get("a.regex-x.example.org", "/", none, false),
        get("abc.tpl.example.org", "/", none, true),
        get("abc1.tpl.example.org", "/", none, false),
        get("x.abc.tpl.example.org", "/", none, false),
        // Priority: the longer rule first, whatever the order in `routes`.
        get("prio.example.com", "/a/b/x", &[("X-P", "1")], true),
        get("prio.example.com", "/a/b/x", none, false),
        get(
            "prio.example.com",
            "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o",
            &[("X-P", "1")],
            false,
        ),
        // An explicit priority beats the longer rule; a low one loses even to `Host(h)`.
        get("prio2.example.com", "/a/b/c/d", none, true),
        get("prio2.example.com", "/z/long/path", none, false),
    ]
}

/// One IngressRoute per kind of host, a real Envoy, and every case's answering backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_matcher_takes_what_traefik_takes_and_no_more() {
    // The priority cases hold only while the rules keep these lengths.
    assert!(PRIO_HEADER.len() > PRIO_PATH.len() && PRIO_LONG_PATH.len() > PRIO_HEADER.len());
    let hit = Backend::start(HIT).await.unwrap();
    let miss = Backend::start(MISS).await.unwrap();
    let dir = Manifests::new().unwrap();
    let (exact, any) = routes();
    dir.write(
        "all.yaml",
        &(services(&[&hit, &miss])
            + &ingress_route_of("matchers", exact)
            + &ingress_route_of("any-host", any)),
    )
    .unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let http = ports.http;
    // Every host's fallback, and the catch-all's, is served: the world is in place.
    for host in HOSTS.iter().copied().chain(["nobody.example.net"]) {
        // (X-Block: yes keeps the `!Header(`X-Block`, `yes`)` rule off it.)
        let request = Request::get(host, "/fallback").header("X-Block", "yes");
        let what = format!("http://{host}/fallback to reach {MISS}");
        sluice
            .answer(http, &request, &what, |r| {
                r.status == 200 && r.backend().as_deref() == Some(MISS)
            })
            .await
            .unwrap();
    }
    let mut wrong = Vec::new();
    let all = cases();
    for c in &all {
        let resp = c.request.send(http).await.unwrap();
        let got = resp.backend();
        if resp.status != 200 || got.as_deref() != Some(c.expected) {
            wrong.push(format!(
                "{}: expected {}, got {} {}",
                c.what,
                c.expected,
                resp.status,
                got.unwrap_or_else(|| resp.text())
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases answered otherwise:\n{}",
        wrong.len(),
        all.len(),
        wrong.join("\n")
    );
    // Both backends were needed: the cases are not all one way.
    assert!(all.iter().any(|c| c.expected == HIT) && all.iter().any(|c| c.expected == MISS));
    sluice.check_running().unwrap();
}
