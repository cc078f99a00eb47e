//! Certificates made on the spot (a test CA, server and client certificates for 127.0.0.1)
//! and TLS clients that trust them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tempfile::TempDir;
use tokio::net::TcpStream;

/// A PEM certificate chain and its key, as files.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate's DER, to recognise it on the wire.
    pub der: Vec<u8>,
}

/// A test certificate authority with a directory for the files it issues.
pub struct Pki {
    dir: TempDir,
    /// Signs the certificates this CA issues.
    issuer: Issuer<'static, KeyPair>,
    pub ca_path: PathBuf,
    pub ca_pem: String,
    issued: std::sync::atomic::AtomicUsize,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "rwproxy test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&ca_key).expect("CA");
        let ca_pem = ca.pem();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &ca_pem).expect("write CA");
        Pki {
            dir,
            issuer: Issuer::new(params, ca_key),
            ca_path,
            ca_pem,
            issued: Default::default(),
        }
    }

    /// The directory the files live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `127.0.0.1` and `localhost`, in new files.
    pub fn server(&self) -> Identity {
        let n = self.next();
        self.issue(
            ExtendedKeyUsagePurpose::ServerAuth,
            &format!("server-{n}"),
            &self.dir().join(format!("server-{n}.pem")),
            &self.dir().join(format!("server-{n}.key")),
        )
    }

    /// A client certificate, in new files.
    pub fn client(&self) -> Identity {
        let n = self.next();
        self.issue(
            ExtendedKeyUsagePurpose::ClientAuth,
            &format!("client-{n}"),
            &self.dir().join(format!("client-{n}.pem")),
            &self.dir().join(format!("client-{n}.key")),
        )
    }

    /// A new server certificate written over the files at `cert` and `key`.
    pub fn server_at(&self, cert: &Path, key: &Path) -> Identity {
        let n = self.next();
        self.issue(
            ExtendedKeyUsagePurpose::ServerAuth,
            &format!("server-{n}"),
            cert,
            key,
        )
    }

    fn next(&self) -> usize {
        self.issued
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    fn issue(
        &self,
        usage: ExtendedKeyUsagePurpose,
        name: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> Identity {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let identity = Identity {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        };
        std::fs::write(cert_path, &identity.cert_pem).expect("write cert");
        std::fs::write(key_path, &identity.key_pem).expect("write key");
        identity
    }

    /// A reqwest client trusting this CA (HTTP/2 by ALPN when the server offers it), presenting
    /// `identity` when given, reporting the server's certificate (`TlsInfo`), and opening a
    /// new connection for every request.
    pub fn reqwest(&self, identity: Option<&Identity>) -> reqwest::Client {
        let mut builder = crate::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .tls_info(true)
            .pool_max_idle_per_host(0)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA"),
            );
        if let Some(id) = identity {
            let pem = format!("{}{}", id.cert_pem, id.key_pem);
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("id"));
        }
        builder.build().expect("client")
    }

    /// A rustls client config trusting this CA, offering `alpn`.
    pub fn rustls_client(
        &self,
        alpn: &[&[u8]],
        identity: Option<&Identity>,
    ) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(id) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// A TLS connection to `addr` (as `127.0.0.1`) offering `alpn`.
    pub async fn connect(
        &self,
        addr: &str,
        alpn: &[&[u8]],
        identity: Option<&Identity>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let config = self.rustls_client(alpn, identity);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, tcp).await
    }
}

/// The server certificate a response came over (reqwest with `tls_info(true)`).
pub fn peer_certificate(response: &reqwest::Response) -> Option<Vec<u8>> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
}
