//! The shipper: streams the journal over QUIC with mutual TLS to replicas (`serve`), the TLS
//! setup both ends share (`tls`), and the private CA tooling (`certs`). The wire messages and
//! their rules live in `foxing_proto::wire`.

pub mod certs;
pub mod serve;
pub mod tls;

pub use serve::{serve, Metrics, ServeOptions};
pub use tls::TlsFiles;
