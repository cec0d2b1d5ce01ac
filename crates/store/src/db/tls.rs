//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` ask for it:
//! - `disable`: none;
//! - `prefer` (the default) and `require`: encrypted; the server's certificate is checked only
//!   when `sslrootcert` names the authorities to check it with (as libpq does);
//! - `verify-ca` and `verify-full`: encrypted, and the certificate must chain to `sslrootcert`
//!   (or, without one, to the system's authorities) and name the host.
//!
//! Amazon RDS and Aurora certificates chain to Amazon's RDS authorities, which are not in the
//! system's store: give their bundle as `sslrootcert` to have them checked.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{Error, Result};

/// `url` without the parameters the client library does not take, and the TLS configuration
/// to connect with (`None`: no TLS).
pub(super) fn settings(url: &str) -> Result<(String, Option<ClientConfig>)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = "prefer".to_string();
    let mut root_file = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "sslmode" => mode = value.to_string(),
            "sslrootcert" => root_file = Some(value.to_string()),
            _ => kept.push(pair),
        }
    }
    let verify = match mode.as_str() {
        "disable" => return Ok((with_query(base, &kept, None), None)),
        "allow" | "prefer" | "require" => root_file.is_some(),
        "verify-ca" | "verify-full" => true,
        other => {
            return Err(Error::Tls(format!(
                "sslmode={other} is none of disable, prefer, require, verify-ca, verify-full"
            )));
        }
    };
    // The client library knows prefer and require; the checking is done here.
    let client_mode = if mode == "prefer" || mode == "allow" { "prefer" } else { "require" };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let config = if verify {
        builder.with_root_certificates(roots(root_file.as_deref())?).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth()
    };
    Ok((with_query(base, &kept, Some(client_mode)), Some(config)))
}

fn with_query(base: &str, kept: &[&str], mode: Option<&str>) -> String {
    let mut pairs: Vec<String> = kept.iter().map(|p| p.to_string()).collect();
    if let Some(mode) = mode {
        pairs.push(format!("sslmode={mode}"));
    }
    if pairs.is_empty() { base.to_string() } else { format!("{base}?{}", pairs.join("&")) }
}

/// The authorities of the PEM file `path`, or the system's.
fn roots(path: Option<&str>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match path {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::Tls(format!("sslrootcert {path}: {e}")))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Tls(format!("sslrootcert {path}: {e}")))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::Tls(format!("sslrootcert {path}: no certificate in it")));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(Error::Tls(
                    "no system certificate authorities to check the server with: give sslrootcert".into(),
                ));
            }
        }
    }
    Ok(store)
}

/// Encryption without checking who the server is: libpq's `sslmode=require`. The handshake's
/// signatures are still checked, so the session is with the holder of the certificate shown.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_the_client_library_and_root_files_are_read() {
        let (url, tls) = settings("postgres://u@h/db?sslmode=disable&application_name=gt").unwrap();
        assert_eq!(url, "postgres://u@h/db?application_name=gt");
        assert!(tls.is_none());
        let (url, tls) = settings("postgres://u@h/db").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=prefer");
        assert!(tls.is_some());
        let (url, _) = settings("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=require");
        let missing = settings("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem");
        assert!(missing.unwrap_err().to_string().contains("sslrootcert /nonexistent.pem"));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let url = format!("postgres://u@h/db?sslrootcert={}&sslmode=verify-full", empty.display());
        assert!(settings(&url).unwrap_err().to_string().contains("no certificate"));
        assert!(
            settings("postgres://u@h/db?sslmode=always").unwrap_err().to_string().contains("sslmode=always")
        );
    }
}
