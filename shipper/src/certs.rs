//! A private certificate authority and node certificates (rcgen), as `foxing-shipper certs` makes
//! them: `ca.pem` + `ca.key`, and `NAME.pem` + `NAME.key` per node, every file mode 0600.
//!
//! Node certificates are valid for both TLS server and client authentication, with the node
//! name as DNS subject alternative name (and as IP address SAN when the name is an address), so
//! one file pair serves a shipper, a replica, or a node that is promoted from one to the other.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Default validity of certificates made by `certs`.
pub const DEFAULT_VALIDITY_DAYS: u32 = 825;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("node name {0:?} is not a valid DNS name or IP address")]
    Name(String),
    #[error("{0} already exists; remove it first or choose another --out directory")]
    Exists(PathBuf),
}

/// The CA's subject: derived from its key so it can be rebuilt from `ca.key` alone when more
/// node certificates are added later.
fn ca_params(key: &KeyPair, days: u32) -> CertificateParams {
    let mut p = CertificateParams::default();
    let tag = crc32c::crc32c(key.public_key_raw());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Foxing");
    dn.push(DnType::CommonName, format!("Foxing CA {tag:08x}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(days as i64);
    p
}

/// A CA able to sign node certificates.
pub struct Ca {
    pub cert_pem: String,
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    pub fn generate(days: u32) -> Result<Ca, CertError> {
        let key = KeyPair::generate()?;
        let params = ca_params(&key, days);
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            params,
            key,
        })
    }

    /// Rebuilds the signing side of a CA made earlier from its files.
    pub fn load(cert_pem: String, key_pem: &str) -> Result<Ca, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let params = ca_params(&key, DEFAULT_VALIDITY_DAYS);
        Ok(Ca {
            cert_pem,
            params,
            key,
        })
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A node certificate for `name`, valid from `not_before` to `not_after`.
    pub fn issue(
        &self,
        name: &str,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Result<(String, String), CertError> {
        let san = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SanType::IpAddress(ip)],
            Err(_) => {
                if rustls::pki_types::ServerName::try_from(name.to_string()).is_err()
                    || name.is_empty()
                {
                    return Err(CertError::Name(name.to_string()));
                }
                vec![SanType::DnsName(
                    name.to_string()
                        .try_into()
                        .map_err(|_| CertError::Name(name.to_string()))?,
                )]
            }
        };
        let mut p = CertificateParams::default();
        p.subject_alt_names = san;
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = not_before;
        p.not_after = not_after;
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = p.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A node certificate valid from an hour ago for `days`.
    pub fn issue_for_days(&self, name: &str, days: u32) -> Result<(String, String), CertError> {
        let now = time::OffsetDateTime::now_utc();
        self.issue(
            name,
            now - time::Duration::hours(1),
            now + time::Duration::days(days as i64),
        )
    }
}

/// Writes `contents` to `path` with mode 0600, refusing to overwrite.
pub fn write_private(path: &Path, contents: &str) -> Result<(), CertError> {
    let io = |op, source| CertError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CertError::Exists(path.to_path_buf())
            } else {
                io("create", e)
            }
        })?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| io("write", e))
}

/// What `certs` wrote.
#[derive(Debug, Clone)]
pub struct Issued {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// (name, cert, key)
    pub nodes: Vec<(String, PathBuf, PathBuf)>,
    pub ca_reused: bool,
}

/// Makes (or reuses, when `out` already holds one) the CA and a certificate per name in `out`.
pub fn make_certs(out: &Path, names: &[String], days: u32) -> Result<Issued, CertError> {
    let io = |op, path: &Path, source| CertError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out).map_err(|e| io("create directory", out, e))?;
    std::fs::set_permissions(out, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| io("chmod", out, e))?;
    let ca_cert = out.join("ca.pem");
    let ca_key = out.join("ca.key");
    let (ca, ca_reused) = if ca_key.exists() {
        let cert = std::fs::read_to_string(&ca_cert).map_err(|e| io("read", &ca_cert, e))?;
        let key = std::fs::read_to_string(&ca_key).map_err(|e| io("read", &ca_key, e))?;
        (Ca::load(cert, &key)?, true)
    } else {
        let ca = Ca::generate(days)?;
        write_private(&ca_key, &ca.key_pem())?;
        write_private(&ca_cert, &ca.cert_pem)?;
        (ca, false)
    };
    let mut nodes = Vec::new();
    for name in names {
        let (cert, key) = ca.issue_for_days(name, days)?;
        let cp = out.join(format!("{name}.pem"));
        let kp = out.join(format!("{name}.key"));
        if cp.exists() || kp.exists() {
            return Err(CertError::Exists(cp));
        }
        write_private(&kp, &key)?;
        write_private(&cp, &cert)?;
        nodes.push((name.clone(), cp, kp));
    }
    Ok(Issued {
        ca_cert,
        ca_key,
        nodes,
        ca_reused,
    })
}
