//! A count of the objects of one resource that satisfy a condition, kept up to date from the
//! server's change history: each [`Tally::count`] looks at the objects written since the last
//! one (O(changes)), not at every object (O(objects)), so a benchmark can poll thousands of
//! objects often without its polls taking the cores it measures. Where the history no longer
//! reaches back to the last count (events of the resource dropped since), it counts every
//! object again.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::meta::meta_str;
use super::resources::TypeKey;
use super::store::{EventType, ObjName};
use super::{ApiServer, Shared};

/// See the module: made by [`ApiServer::tally`].
pub struct Tally<F> {
    shared: Arc<Shared>,
    key: Option<TypeKey>,
    f: F,
    /// The resourceVersion counted up to (`None`: count everything next time).
    cursor: Option<u64>,
    /// The objects that satisfy `f`, as of `cursor`.
    matching: HashSet<ObjName>,
}

/// What one look at the store gave: every object, or the changes since the cursor.
enum Read {
    All(Vec<Arc<Value>>),
    Changes(Vec<(EventType, Arc<Value>)>),
}

impl ApiServer {
    /// A [`Tally`] of the objects of `kind` (in every namespace) whose stored form satisfies
    /// `f`; an unknown kind counts nothing.
    pub fn tally<F: Fn(&Value) -> bool>(&self, api_version: &str, kind: &str, f: F) -> Tally<F> {
        let key = {
            let store = self.shared.lock();
            Self::target(&store, api_version, kind, None)
                .ok()
                .map(|t| t.key)
        };
        Tally {
            shared: self.shared.clone(),
            key,
            f,
            cursor: None,
            matching: HashSet::new(),
        }
    }
}

impl<F: Fn(&Value) -> bool> Tally<F> {
    /// How many objects satisfy the condition now. The store is locked only to take pointers
    /// (to the changed objects, or to all of them); the condition runs after.
    pub fn count(&mut self) -> usize {
        let Some(key) = &self.key else {
            return 0;
        };
        let (read, upto) = {
            let store = self.shared.lock();
            let changes = self
                .cursor
                .and_then(|since| store.events_since(since, key, true).ok());
            match changes {
                Some((events, upto)) => (
                    Read::Changes(
                        events
                            .iter()
                            .map(|e| (e.kind, Arc::clone(&e.object)))
                            .collect(),
                    ),
                    upto,
                ),
                None => (
                    Read::All(store.each(key).cloned().collect()),
                    store.resource_version(),
                ),
            }
        };
        let name = |o: &Value| -> ObjName {
            (
                meta_str(o, "namespace").to_string(),
                meta_str(o, "name").to_string(),
            )
        };
        match read {
            Read::All(objects) => {
                self.matching = objects
                    .iter()
                    .filter(|o| (self.f)(o))
                    .map(|o| name(o))
                    .collect();
            }
            Read::Changes(events) => {
                for (kind, obj) in events {
                    if kind != EventType::Deleted && (self.f)(&obj) {
                        self.matching.insert(name(&obj));
                    } else {
                        self.matching.remove(&name(&obj));
                    }
                }
            }
        }
        self.cursor = Some(upto);
        self.matching.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use serde_json::{Value, json};

    use super::super::{ApiServer, ApiServerOptions};

    fn config_map(name: &str, mark: Option<&str>) -> Value {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"namespace": "default", "name": name}});
        if let Some(mark) = mark {
            cm["data"] = json!({"mark": mark});
        }
        cm
    }

    fn marked(o: &Value) -> bool {
        o["data"]["mark"].as_str() == Some("yes")
    }

    /// Through creates, updates that make an object match and stop matching, deletions, writes
    /// of other resources, and a history too short to reach back (counted whole again), the
    /// tally says what a full count says.
    #[test]
    fn a_tally_counts_what_a_full_count_counts() {
        for history_limit in [1, 3, 10_000] {
            let server = ApiServer::start_with(ApiServerOptions {
                history_limit,
                ..ApiServerOptions::default()
            })
            .expect("server");
            let mut tally = server.tally("v1", "ConfigMap", marked);
            let mut check = |step: &str| {
                let full = server.count("v1", "ConfigMap", marked);
                assert_eq!(tally.count(), full, "history {history_limit}, after {step}");
            };
            check("nothing");
            for i in 0..6 {
                let mark = if i % 2 == 0 { Some("yes") } else { None };
                server
                    .create(config_map(&format!("c{i}"), mark))
                    .expect("create");
                check(&format!("creating c{i}"));
            }
            server.apply(config_map("c1", Some("yes"))).expect("apply");
            check("c1 marked");
            server.apply(config_map("c0", Some("no"))).expect("apply");
            check("c0 unmarked");
            server
                .create(json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"namespace": "default", "name": "s"}}))
                .expect("secret");
            check("another resource");
            server
                .delete("v1", "ConfigMap", Some("default"), "c2")
                .expect("delete");
            check("deleting c2");
            server
                .delete("v1", "ConfigMap", Some("default"), "c3")
                .expect("delete");
            server.create(config_map("c2", None)).expect("create");
            server.apply(config_map("c5", Some("yes"))).expect("apply");
            check("several writes between counts");
        }
    }

    #[test]
    fn an_unknown_kind_counts_nothing() {
        let server = ApiServer::start().expect("server");
        assert_eq!(server.tally("v1", "NoSuchKind", |_| true).count(), 0);
    }
}
