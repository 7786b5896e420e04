//! TLS material: the self-generated development CA and server certificate, and loading PEM files into rustls.
//!
//! Development certificates let a fresh checkout serve HTTPS with no setup; an operator trusts
//! `ca.pem` once in a test browser. Production deployments pass real files with `--tls-cert/--tls-key`.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot generate the development certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} holds no PEM {what}")]
    Missing { path: PathBuf, what: &'static str },
    #[error("{path} is not a valid PEM {what}: {detail}")]
    Pem { path: PathBuf, what: &'static str, detail: String },
    #[error("the private key does not match the certificate, or is not usable: {0}")]
    Mismatch(rustls::Error),
}

/// Paths of a certificate chain and its key.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Returns the development server certificate in `dir`, generating a CA and certificate first
/// if they are not there yet. `generated` tells the caller whether this run made them.
pub fn ensure_development(dir: &Path, hostnames: &[String]) -> Result<(CertPaths, bool), CertError> {
    let paths = CertPaths { cert: dir.join(SERVER_CERT_FILE), key: dir.join(SERVER_KEY_FILE) };
    if paths.cert.is_file() && paths.key.is_file() && dir.join(CA_CERT_FILE).is_file() {
        return Ok((paths, false));
    }
    generate_development(dir, hostnames)?;
    Ok((paths, true))
}

/// Writes a fresh development CA and a server certificate signed by it, replacing any there.
pub fn generate_development(dir: &Path, hostnames: &[String]) -> Result<CertPaths, CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Io { action: "create", path: dir.into(), source })?;
    let now = OffsetDateTime::now_utc();

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("Gatehouse development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - Duration::hours(1);
    ca_params.not_after = now + Duration::days(3650);
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let mut server_params = CertificateParams::default();
    server_params.distinguished_name = name("Gatehouse development server");
    server_params.subject_alt_names = subject_alt_names(hostnames)?;
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.not_before = now - Duration::hours(1);
    // Browsers refuse leaf certificates valid for more than 398 days.
    server_params.not_after = now + Duration::days(397);
    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    write_file(&dir.join(CA_CERT_FILE), ca_cert.pem().as_bytes(), 0o644)?;
    write_file(&dir.join(CA_KEY_FILE), ca_key.serialize_pem().as_bytes(), 0o600)?;
    let chain = format!("{}{}", server_cert.pem(), ca_cert.pem());
    write_file(&dir.join(SERVER_CERT_FILE), chain.as_bytes(), 0o644)?;
    write_file(&dir.join(SERVER_KEY_FILE), server_key.serialize_pem().as_bytes(), 0o600)?;
    Ok(CertPaths { cert: dir.join(SERVER_CERT_FILE), key: dir.join(SERVER_KEY_FILE) })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Gatehouse");
    dn
}

fn subject_alt_names(hostnames: &[String]) -> Result<Vec<SanType>, rcgen::Error> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    names.extend(hostnames.iter().filter(|h| !names.contains(h)).cloned().collect::<Vec<_>>());
    names
        .into_iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.try_into()?)),
        })
        .collect()
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    crate::files::write_atomic(path, bytes, mode).map_err(|source| CertError::Io {
        action: "write",
        path: path.into(),
        source,
    })
}

/// Builds the rustls server configuration: TLS 1.2 and 1.3 only, rustls' safe cipher suites,
/// aws-lc-rs as the one crypto provider.
pub fn server_config(paths: &CertPaths) -> Result<Arc<rustls::ServerConfig>, CertError> {
    let chain = load_certs(&paths.cert)?;
    let key = load_key(&paths.key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(CertError::Mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(CertError::Mismatch)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let what = "certificate";
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CertError::Pem { path: path.into(), what, detail: e.to_string() })?;
    if certs.is_empty() {
        return Err(CertError::Missing { path: path.into(), what });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => CertError::Missing { path: path.into(), what: "private key" },
        e => CertError::Pem { path: path.into(), what: "private key", detail: e.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (paths, generated) = ensure_development(dir.path(), &["gatehouse.test".into()]).unwrap();
        assert!(generated);
        for key in [&paths.key, &dir.path().join(CA_KEY_FILE)] {
            assert_eq!(fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let before = fs::read(&paths.cert).unwrap();
        let (_, generated) = ensure_development(dir.path(), &[]).unwrap();
        assert!(!generated);
        assert_eq!(before, fs::read(&paths.cert).unwrap());
        server_config(&paths).unwrap();
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let pa = generate_development(a.path(), &[]).unwrap();
        let pb = generate_development(b.path(), &[]).unwrap();
        let err = server_config(&CertPaths { cert: pa.cert, key: pb.key }).unwrap_err();
        assert!(matches!(err, CertError::Mismatch(_)), "{err}");
    }
}
