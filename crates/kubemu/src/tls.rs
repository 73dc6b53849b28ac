//! The TLS side: a certificate for `127.0.0.1`, `::1` and `localhost` made at start (self-signed,
//! so it is its own CA), and the accept loop serving the router over HTTP/1.1 and HTTP/2.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The certificate (PEM, for the kubeconfig) and the server configuration.
pub struct Identity {
    /// PEM of the self-signed certificate.
    pub cert_pem: String,
    /// Server configuration.
    pub config: Arc<rustls::ServerConfig>,
}

/// Make a certificate and a server configuration; with `dir`, reuse `dir/tls.crt` and
/// `dir/tls.key` when they exist (a restarted emulator keeps its clients' kubeconfig valid),
/// else write them there.
pub fn identity(dir: Option<&std::path::Path>) -> Result<Identity, String> {
    let files = dir.map(|d| (d.join("tls.crt"), d.join("tls.key")));
    let (cert_pem, der, key) = match &files {
        Some((c, k)) if c.exists() && k.exists() => {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
            };
            let (cert_pem, key_pem) = (read(c)?, read(k)?);
            let der = pem_der(&cert_pem, "CERTIFICATE")
                .ok_or(format!("{}: no certificate", c.display()))?;
            let key = pem_der(&key_pem, "PRIVATE KEY")
                .ok_or(format!("{}: no PKCS#8 key", k.display()))?;
            (
                cert_pem,
                CertificateDer::from(der),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
        }
        _ => {
            let names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
            let ck = rcgen::generate_simple_self_signed(names)
                .map_err(|e| format!("certificate: {e}"))?;
            let der = CertificateDer::from(ck.cert.der().to_vec());
            let key_der = ck.signing_key.serialize_der();
            if let Some((c, k)) = &files {
                std::fs::write(c, ck.cert.pem()).map_err(|e| format!("{}: {e}", c.display()))?;
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(k)
                    .and_then(|mut f| f.write_all(ck.signing_key.serialize_pem().as_bytes()))
                    .map_err(|e| format!("{}: {e}", k.display()))?;
            }
            (
                ck.cert.pem(),
                der,
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der)),
            )
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .map_err(|e| format!("TLS: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Identity {
        cert_pem,
        config: Arc::new(config),
    })
}

/// The DER body of the first PEM block labelled `label`.
fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem.split(&begin).nth(1)?.split(&end).next()?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Accept TLS connections on `listener` and serve `router` on each, forever.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: axum::Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors or similar: back off rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = TowerToHyperService::new(router);
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}
