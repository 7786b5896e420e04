//! TLS settings for reaching a gateway that trusts only its own (development) CA.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A client configuration (aws-lc-rs, TLS 1.2 and 1.3) that trusts only the CAs in `ca_pem`.
pub fn trusting(ca_pem: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_pem).with_context(|| format!("reading {}", ca_pem.display()))?;
    for cert in certs {
        roots.add(cert.with_context(|| format!("parsing {}", ca_pem.display()))?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
