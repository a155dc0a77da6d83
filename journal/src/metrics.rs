//! A minimal HTTP endpoint for Prometheus text metrics (any path, GET), on its own thread.
//! Shared by the recorder, the shipper and the applier (`--metrics-listen`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

/// Renders the current metrics in the Prometheus text exposition format.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT_MS: u64 = 2_000;

/// Binds `addr` now (so a bad address fails at startup) and serves `render()` to every request
/// on a background thread for the life of the process.
pub fn serve_metrics(addr: SocketAddr, render: Render) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("foxing-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_millis(REQUEST_TIMEOUT_MS)));
                let _ = s.set_write_timeout(Some(Duration::from_millis(REQUEST_TIMEOUT_MS)));
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req);
                let body = render();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
            }
        })?;
    tracing::info!(addr = %local, "metrics endpoint listening");
    Ok(local)
}

/// Escapes a label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends one metric with HELP and TYPE lines.
pub fn metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    labels: &str,
    value: impl std::fmt::Display,
) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_rendered_text() {
        let addr =
            serve_metrics("127.0.0.1:0".parse().unwrap(), Arc::new(|| "x 1\n".into())).unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"));
        assert!(out.ends_with("\r\n\r\nx 1\n"), "{out}");
        assert_eq!(label("a\"b"), "a\\\"b");
    }
}
