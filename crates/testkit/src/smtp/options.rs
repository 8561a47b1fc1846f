//! What a sink offers and requires beyond plain RFC 5321: STARTTLS with a certificate signed by a
//! CA made for the sink, and the one login AUTH accepts.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// What a [`MailSink`] offers and requires beyond plain RFC 5321. The default is a plain
/// server that takes mail from anyone, like a relay on localhost.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub(super) starttls: bool,
    pub(super) login: Option<Login>,
}

impl Options {
    /// Offers STARTTLS (RFC 3207) with a certificate for `localhost` and 127.0.0.1, signed by a
    /// CA made when the sink starts ([`MailSink::ca_pem`]). Mail is still taken in clear.
    pub fn starttls(mut self) -> Self {
        self.starttls = true;
        self
    }

    /// Requires AUTH (RFC 4954) as `user` with `password` before MAIL. AUTH is offered only
    /// inside TLS, so this offers STARTTLS as well.
    pub fn require_auth(mut self, user: &str, password: &str) -> Self {
        self.starttls = true;
        self.login = Some(Login {
            user: user.to_string(),
            password: password.to_string(),
        });
        self
    }
}

#[derive(Debug, Clone)]
pub(super) struct Login {
    pub(super) user: String,
    pub(super) password: String,
}

/// A CA made for one sink, and the acceptor of a server certificate it signed for
/// `localhost` and 127.0.0.1; with the CA's certificate in PEM.
pub(super) fn test_ca() -> std::io::Result<(TlsAcceptor, String)> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(std::io::Error::other)?;
    ca.distinguished_name
        .push(DnType::CommonName, "mailsink test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(std::io::Error::other)?;
    let ca = CertifiedIssuer::self_signed(ca, ca_key).map_err(std::io::Error::other)?;

    let mut server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(std::io::Error::other)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().map_err(std::io::Error::other)?;
    let certificate = server
        .signed_by(&server_key, &ca)
        .map_err(std::io::Error::other)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(vec![certificate.der().clone()], key)
    .map_err(std::io::Error::other)?;
    Ok((TlsAcceptor::from(Arc::new(config)), ca.pem()))
}
