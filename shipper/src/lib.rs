//! QUIC shipper with mutual TLS (see issue: transport). Not yet implemented.
