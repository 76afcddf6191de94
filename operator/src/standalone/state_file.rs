//! The state file (`--state-file`): where each instance listens, its Envoy, and the xDS
//! credentials, written atomically for scripts and tests to read.

use serde_json::json;
use tokio::process::Child;

use super::State;
use crate::pki::identity::DEFAULT_SERVER_NAME;

impl State<'_> {
    /// Writes the state file, if one was asked for.
    pub(super) fn write_state(&self) {
        let Some(path) = &self.opts.state_file else {
            return;
        };
        let gateways: Vec<_> = self
            .instances
            .iter()
            .map(|(name, i)| {
                json!({
                    "gateway": name,
                    "http": i.ports.envoy.http,
                    "https": i.ports.envoy.https,
                    "stats": i.ports.envoy.stats,
                    "adminSocket": self.admin_socket(i.ports).display().to_string(),
                    "envoyPid": i.envoy.as_ref().and_then(Child::id),
                    "xdsClientCert": i.xds_client.as_ref().map(|f| f.cert.display().to_string()),
                    "xdsClientKey": i.xds_client.as_ref().map(|f| f.key.display().to_string()),
                })
            })
            .collect();
        let xds_tls = self.pki.map(
            |p| json!({"ca": p.ca_file.display().to_string(), "serverName": DEFAULT_SERVER_NAME}),
        );
        let state = json!({
            "xds": self.xds_addr.to_string(),
            "xdsTls": xds_tls,
            "gateways": gateways,
        });
        // Write then rename, so readers never see half a file.
        let tmp = path.with_extension("tmp");
        if let Err(e) =
            std::fs::write(&tmp, state.to_string()).and_then(|()| std::fs::rename(&tmp, path))
        {
            eprintln!("sluice: error: writing {}: {e}", path.display());
        }
    }
}
