//! The TLS handshake, driven by hand over a tokio stream so that the presented chain, the
//! negotiated parameters and the exact failure survive a handshake that fails part-way.

use std::sync::{Arc, Mutex};

use certpilot_core::{ErrorKind, ProbeError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, ClientConnection, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{AlertDescription, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the handshake produced: the chain (when the server sent one) and the negotiated
/// parameters, plus the error that ended it early, if any.
pub(crate) struct Handshake {
    pub chain: Option<Vec<CertificateDer<'static>>>,
    pub version: Option<String>,
    pub cipher: Option<String>,
    pub error: Option<ProbeError>,
}

/// Records the chain the server presents and accepts it, whatever it is.
///
/// A scanner must see certificates that do not validate (that is what it reports), so trust
/// is judged afterwards by `validate`, not here. Accepting every handshake signature is safe
/// because the connection carries no data: it is closed as soon as the handshake ends.
#[derive(Debug)]
pub(crate) struct CaptureChain {
    seen: Mutex<Option<Vec<CertificateDer<'static>>>>,
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for CaptureChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(chain);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// Builds a fresh client configuration per probe: a shared one would resume sessions, and a
/// resumed handshake carries no certificate.
pub(crate) fn client_config(
    provider: &Arc<CryptoProvider>,
) -> (Arc<ClientConfig>, Arc<CaptureChain>) {
    let mut schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    // Offer the legacy schemes too, so servers with SHA-1-only keys still hand over their
    // certificate and get reported, rather than failing the handshake.
    for legacy in [
        SignatureScheme::RSA_PKCS1_SHA1,
        SignatureScheme::ECDSA_SHA1_Legacy,
    ] {
        if !schemes.contains(&legacy) {
            schemes.push(legacy);
        }
    }
    let capture = Arc::new(CaptureChain {
        seen: Mutex::new(None),
        schemes,
    });
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    // The provider is aws-lc-rs's own with both versions: this cannot fail.
    #[allow(clippy::expect_used)]
    let mut config = builder
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    (Arc::new(config), capture)
}

/// Runs the handshake on `stream`. Returns once the client side of the handshake is done,
/// the peer fails it, or the stream errors; the caller bounds it with its deadline.
pub(crate) async fn handshake(
    stream: &mut TcpStream,
    provider: &Arc<CryptoProvider>,
    server_name: ServerName<'static>,
) -> Handshake {
    let (config, capture) = client_config(provider);
    let mut outcome = Handshake {
        chain: None,
        version: None,
        cipher: None,
        error: None,
    };
    let mut conn = match ClientConnection::new(config, server_name) {
        Ok(conn) => conn,
        Err(e) => {
            outcome.error = Some(ProbeError::new(ErrorKind::Other, format!("TLS setup: {e}")));
            return outcome;
        }
    };
    outcome.error = drive(stream, &mut conn).await.err();
    outcome.version = conn.protocol_version().map(version_name);
    outcome.cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()));
    outcome.chain = capture.seen.lock().ok().and_then(|mut c| c.take());
    if outcome.error.is_none() {
        // Be polite: say goodbye so the server does not log an abrupt disconnect.
        conn.send_close_notify();
        let _ = flush(stream, &mut conn).await;
    }
    outcome
}

async fn drive(stream: &mut TcpStream, conn: &mut ClientConnection) -> Result<(), ProbeError> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut first_bytes: Option<[u8; 3]> = None;
    loop {
        flush(stream, conn).await?;
        if !conn.is_handshaking() {
            return Ok(());
        }
        let n = stream.read(&mut buf).await.map_err(io_error)?;
        if n == 0 {
            return Err(ProbeError::new(
                ErrorKind::Reset,
                if first_bytes.is_none() {
                    "peer closed the connection without answering the TLS ClientHello"
                } else {
                    "peer closed the connection during the TLS handshake"
                },
            ));
        }
        if first_bytes.is_none() {
            let mut head = [0u8; 3];
            head[..n.min(3)].copy_from_slice(&buf[..n.min(3)]);
            if !looks_like_tls(&head[..n.min(3)]) {
                return Err(ProbeError::new(
                    ErrorKind::NotTls,
                    format!(
                        "peer answered with non-TLS data: {}",
                        printable_prefix(&buf[..n.min(32)])
                    ),
                ));
            }
            first_bytes = Some(head);
        }
        let mut data = &buf[..n];
        while !data.is_empty() {
            conn.read_tls(&mut data)
                .map_err(|e| ProbeError::new(ErrorKind::Other, format!("TLS read: {e}")))?;
            if let Err(e) = conn.process_new_packets() {
                // rustls queues an alert for the peer; send it before giving up.
                let _ = flush(stream, conn).await;
                return Err(classify(&e));
            }
        }
    }
}

async fn flush(stream: &mut TcpStream, conn: &mut ClientConnection) -> Result<(), ProbeError> {
    while conn.wants_write() {
        let mut out = Vec::new();
        conn.write_tls(&mut out)
            .map_err(|e| ProbeError::new(ErrorKind::Other, format!("TLS write: {e}")))?;
        stream.write_all(&out).await.map_err(io_error)?;
    }
    Ok(())
}

/// A TLS record starts with a content type from 20 to 24 and a major version of 3.
fn looks_like_tls(head: &[u8]) -> bool {
    match head {
        [] => true,
        [t] => (20..=24).contains(t),
        [t, major, ..] => (20..=24).contains(t) && *major == 3,
    }
}

fn printable_prefix(bytes: &[u8]) -> String {
    let text: String = bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("{text:?}")
}

pub(crate) fn io_error(e: std::io::Error) -> ProbeError {
    use std::io::ErrorKind as Io;
    if ProbeError::is_local_resource(&e) {
        return ProbeError::new(ErrorKind::Local, format!("on this machine: {e}"));
    }
    let (kind, message) = match e.kind() {
        Io::ConnectionRefused => (ErrorKind::Refused, "connection refused".to_owned()),
        Io::ConnectionReset | Io::ConnectionAborted => {
            (ErrorKind::Reset, "connection reset by peer".to_owned())
        }
        Io::BrokenPipe | Io::UnexpectedEof => {
            (ErrorKind::Reset, "connection closed by peer".to_owned())
        }
        Io::TimedOut => (ErrorKind::Timeout, "connection timed out".to_owned()),
        _ => (ErrorKind::Other, e.to_string()),
    };
    ProbeError::new(kind, message)
}

fn classify(e: &rustls::Error) -> ProbeError {
    use rustls::Error as E;
    match e {
        E::AlertReceived(alert) => ProbeError::alert(&alert_name(*alert)),
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::PeerMisbehaved(_)
        | E::PeerIncompatible(_)
        | E::DecryptError => ProbeError::new(ErrorKind::TlsProtocol, e.to_string()),
        _ => ProbeError::new(ErrorKind::Other, e.to_string()),
    }
}

/// The RFC 8446 name of an alert (`handshake_failure`), derived from rustls's variant name.
pub(crate) fn alert_name(alert: AlertDescription) -> String {
    match alert {
        // rustls spells these the British way or with other words than the RFC.
        AlertDescription::UnrecognisedName => return "unrecognized_name".into(),
        AlertDescription::Unknown(code) => return format!("unknown_alert_{code}"),
        _ => {}
    }
    let debug = format!("{alert:?}");
    let mut name = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

pub(crate) fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_follow_the_rfc() {
        assert_eq!(
            alert_name(AlertDescription::HandshakeFailure),
            "handshake_failure"
        );
        assert_eq!(
            alert_name(AlertDescription::ProtocolVersion),
            "protocol_version"
        );
        assert_eq!(
            alert_name(AlertDescription::UnrecognisedName),
            "unrecognized_name"
        );
        assert_eq!(
            alert_name(AlertDescription::CertificateRequired),
            "certificate_required"
        );
        assert_eq!(
            alert_name(AlertDescription::Unknown(200)),
            "unknown_alert_200"
        );
    }

    #[test]
    fn tls_is_recognised_by_its_record_header() {
        assert!(looks_like_tls(&[0x16, 0x03, 0x01]));
        assert!(looks_like_tls(&[0x15, 0x03, 0x03]));
        assert!(!looks_like_tls(b"HTT"));
        assert!(!looks_like_tls(&[0x16, 0x02, 0x00]));
    }
}
