//! TLS for both ends: TLS 1.3 only, ALPN "foxing/1", the peer always verified against the private
//! CA (mutual TLS; there is no plaintext or skip-verify mode), QUIC transport limits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Connection is closed after this long without any packet from the peer.
pub const IDLE_TIMEOUT_MS: u64 = 30_000;
/// Keepalive packets are sent this often so an idle session stays up.
pub const KEEPALIVE_INTERVAL_MS: u64 = 5_000;
/// Per-stream receive window: the bytes a sender may have beyond the receiver's contiguous
/// offset. 4 MiB covers a 100 Mbit/s link at 50 ms RTT (625 KB in flight) six times over. It is
/// also bounded from above: quinn's receiver closes the connection with "too many gaps in stream
/// buffer" past 1,024 out-of-order ranges, and on a lossy WAN with a tail-drop buffer a 16 MiB
/// window reached that every run (test: wan_link_with_1pct_loss_keeps_most_of_its_rate).
pub const STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// Per-connection receive and send windows: the bound on unacknowledged bytes in flight.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;

/// Largest UDP payload path MTU discovery may probe for.
pub const MTU_UPPER_BOUND_BYTES: u16 = 65_000;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no {what}")]
    Empty { what: &'static str, path: PathBuf },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("QUIC crypto setup: {0}")]
    Quic(String),
}

/// The files a node needs: its certificate chain and key, and the CA that signs its peers.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct Loaded {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<rustls::RootCertStore>,
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let chain = read_certs(&files.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Read {
        what: "private key",
        path: files.key.clone(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(&files.ca, "CA certificate")? {
        roots.add(c)?;
    }
    Ok(Loaded {
        chain,
        key,
        roots: Arc::new(roots),
    })
}

fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_millis(IDLE_TIMEOUT_MS))
            .expect("constant idle timeout fits"),
    ));
    t.keep_alive_interval(Some(Duration::from_millis(KEEPALIVE_INTERVAL_MS)));
    t.stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW_BYTES));
    t.receive_window(quinn::VarInt::from_u32(CONNECTION_WINDOW_BYTES));
    t.send_window(CONNECTION_WINDOW_BYTES as u64);
    // Path MTU discovery may grow datagrams up to this size where the path allows (loopback,
    // jumbo-frame LANs); fewer, larger packets cost far less CPU per byte.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND_BYTES);
    t.mtu_discovery_config(Some(mtu));
    // BBR: random loss on a WAN (1 % halves Cubic's window every few round trips, measured at
    // 0.02x of a 100 Mbit/s, 50 ms link) does not make BBR back off; it paces to the bottleneck.
    t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(1));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    t
}

/// The shipper's QUIC server configuration: clients must present a certificate from the CA.
pub fn server_config(files: &TlsFiles) -> Result<quinn::ServerConfig, TlsError> {
    let l = load(files)?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(l.roots, provider()).build()?;
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(l.chain, l.key)?;
    c.alpn_protocols = vec![foxing_proto::wire::ALPN.to_vec()];
    c.max_early_data_size = 0;
    let q = quinn::crypto::rustls::QuicServerConfig::try_from(c)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(q));
    sc.transport_config(Arc::new(transport()));
    Ok(sc)
}

/// The replica's QUIC client configuration: the server must present a certificate from the CA
/// valid for the name it is dialled by.
pub fn client_config(files: &TlsFiles) -> Result<quinn::ClientConfig, TlsError> {
    let l = load(files)?;
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(l.roots)
        .with_client_auth_cert(l.chain, l.key)?;
    c.alpn_protocols = vec![foxing_proto::wire::ALPN.to_vec()];
    let q = quinn::crypto::rustls::QuicClientConfig::try_from(c)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut cc = quinn::ClientConfig::new(Arc::new(q));
    cc.transport_config(Arc::new(transport()));
    Ok(cc)
}

/// Whether the peer's end-entity certificate (already verified against the CA by the handshake)
/// is valid for `name`.
pub fn peer_valid_for(conn: &quinn::Connection, name: &str) -> bool {
    let Some(certs) = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
    else {
        return false;
    };
    let Some(leaf) = certs.first() else {
        return false;
    };
    let Ok(server_name) = ServerName::try_from(name.to_string()) else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf)
        .and_then(|c| c.verify_is_valid_for_subject_name(&server_name))
        .is_ok()
}

/// A short reason for a failed handshake, for logs and the failures-by-reason metric. rustls
/// reports certificate problems inside the QUIC transport error text.
pub fn failure_reason(e: &quinn::ConnectionError) -> &'static str {
    let s = e.to_string().to_ascii_lowercase();
    let has = |k: &str| s.contains(k);
    if has("expired") {
        "certificate_expired"
    } else if has("notvalidyet") || has("not valid yet") {
        "certificate_not_yet_valid"
    } else if has("unknownissuer") || has("unknown issuer") || has("unknown_ca") || has("unknownca")
    {
        "unknown_ca"
    } else if has("nocertificatespresented")
        || has("no certificates")
        || has("certificate required")
        || has("certificaterequired")
    {
        "no_client_certificate"
    } else if has("notvalidforname") || has("not valid for name") {
        "certificate_name"
    } else if has("application protocol") || has("alpn") {
        "alpn"
    } else if matches!(e, quinn::ConnectionError::TimedOut) {
        "timeout"
    } else if has("tls") || has("certificate") || has("crypto") {
        "tls"
    } else {
        "other"
    }
}

/// UDP socket buffers asked for (bursts of large datagrams overflow the 208 KiB default, and
/// every drop halves the congestion window). As root the system maximum is bypassed.
pub const UDP_BUFFER_BYTES: usize = 8 << 20;

/// A QUIC endpoint on `addr` with enlarged socket buffers; a server when `server` is given.
pub fn endpoint(
    addr: std::net::SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    use rustix::net::sockopt;
    let socket = std::net::UdpSocket::bind(addr)?;
    if sockopt::set_socket_recv_buffer_size_force(&socket, UDP_BUFFER_BYTES).is_err() {
        let _ = sockopt::set_socket_recv_buffer_size(&socket, UDP_BUFFER_BYTES);
    }
    if sockopt::set_socket_send_buffer_size_force(&socket, UDP_BUFFER_BYTES).is_err() {
        let _ = sockopt::set_socket_send_buffer_size(&socket, UDP_BUFFER_BYTES);
    }
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}
