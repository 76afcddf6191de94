//! The throwaway xDS certificate authority of one standalone run, and each instance's client
//! credentials, written to the private working directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;

use super::State;
use crate::dag::Selection;
use crate::pki::XdsServerTls;
use crate::pki::identity::CertificateAuthority;

/// The xDS CA of one standalone run and where its certificate is written.
pub(super) struct Pki {
    pub(super) ca: CertificateAuthority,
    pub(super) ca_file: PathBuf,
}

/// File paths of one instance's xDS client credentials.
#[derive(Clone, Debug)]
pub(super) struct ClientFiles {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

/// Makes the CA and the server certificate, and writes the CA certificate to `workdir`.
pub(super) fn setup_pki(
    workdir: &Path,
    xds_addr: SocketAddr,
) -> anyhow::Result<(Pki, XdsServerTls)> {
    let now = SystemTime::now();
    let ca = CertificateAuthority::generate(now).context("creating the xDS CA")?;
    let mut ips = vec![
        std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    if !xds_addr.ip().is_unspecified() && !ips.contains(&xds_addr.ip()) {
        ips.push(xds_addr.ip());
    }
    let server = ca
        .issue_server(&["localhost".to_owned()], &ips, now)
        .context("creating the xDS server certificate")?;
    let ca_file = workdir.join("xds-ca.crt");
    write_file(&ca_file, ca.cert_pem(), 0o644)?;
    let tls = XdsServerTls {
        cert_pem: server.cert_pem,
        key_pem: server.key_pem,
        client_ca_pem: ca.cert_pem().to_owned(),
    };
    Ok((Pki { ca, ca_file }, tls))
}

/// Writes a file readable as `mode` says (keys: 0600), replacing an existing one.
pub(super) fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

impl State<'_> {
    /// Issues an instance's xDS client certificate and writes it (key mode 0600).
    pub(super) fn write_client_credentials(
        &self,
        pki: &Pki,
        sel: &Selection,
    ) -> anyhow::Result<ClientFiles> {
        let slug = sel.gateway.to_string().replace('/', "_");
        let issued = pki
            .ca
            .issue_gateway(&sel.gateway, SystemTime::now())
            .context("issuing the xDS client certificate")?;
        let files = ClientFiles {
            cert: self.workdir.join(format!("{slug}.xds.crt")),
            key: self.workdir.join(format!("{slug}.xds.key")),
        };
        write_file(&files.cert, &issued.cert_pem, 0o644)?;
        write_file(&files.key, &issued.key_pem, 0o600)?;
        Ok(files)
    }
}
