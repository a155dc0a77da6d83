//! `foxing-shipper`: make certificates (`certs`) and stream a journal to replicas (`serve`).
//!
//! Exit codes: 0 ok, 1 failure, 2 usage error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use foxing_shipper::certs::{make_certs, DEFAULT_VALIDITY_DAYS};
use foxing_shipper::{Metrics, ServeOptions, TlsFiles};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "foxing-shipper",
    version,
    about = "Stream a Foxing journal to replicas over QUIC with mutual TLS"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make a private CA (or reuse the one in --out) and a certificate + key per node name.
    Certs {
        /// Directory for ca.pem, ca.key, NAME.pem, NAME.key (created with mode 0700).
        #[arg(long)]
        out: PathBuf,
        /// Node names (DNS names or IP addresses), e.g. --name source --name replica1.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Validity of new certificates in days.
        #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
        days: u32,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the journal to replicas until SIGTERM/SIGINT.
    Serve {
        #[arg(long)]
        journal: Option<PathBuf>,
        /// UDP address to listen on, e.g. 0.0.0.0:7878.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// This shipper's certificate (NAME.pem from `certs`).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Its private key (NAME.key).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The CA that signed the replicas' certificates (ca.pem).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// TOML configuration file (its [shipper] section; options given here win).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Limit each replica's stream to this many bytes per second (e.g. 12500000 = 100 Mbit/s).
        #[arg(long)]
        max_bytes_per_sec: Option<u64>,
        /// Serve Prometheus metrics over HTTP on this address.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
}

fn main() -> ExitCode {
    // Like other command-line tools: a closed pipe (`... | head`) ends the process quietly
    // instead of a panic on the next print.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("foxing-shipper: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Certs {
            out,
            names,
            days,
            json,
        } => {
            let issued = make_certs(&out, &names, days)
                .with_context(|| format!("cannot make certificates in {}", out.display()))?;
            if json {
                let v = json!({
                    "ca_cert": issued.ca_cert, "ca_key": issued.ca_key, "ca_reused": issued.ca_reused,
                    "nodes": issued.nodes.iter().map(|(n, c, k)| json!({"name": n, "cert": c, "key": k})).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "CA certificate {} ({}): copy to every node, pass as --ca",
                issued.ca_cert.display(),
                if issued.ca_reused { "reused" } else { "new" }
            );
            println!(
                "CA key         {}: keep offline; only `certs` needs it (to add nodes)",
                issued.ca_key.display()
            );
            for (n, c, k) in &issued.nodes {
                println!(
                    "node {n}: {} + {} -> to host {n}, pass as --cert/--key (shipper: serve; replica: foxing-applier --connect, with --name {n})",
                    c.display(),
                    k.display()
                );
            }
            println!("all files are mode 0600; transfer them over a secure channel");
            Ok(())
        }
        Cmd::Serve {
            journal,
            listen,
            cert,
            key,
            ca,
            max_bytes_per_sec,
            metrics_listen,
            config,
        } => {
            let c = foxing_journal::config::Config::load(config.as_deref())?.shipper;
            let need = |what: &str| {
                format!("give --{what} (or `{what}` in the config's [shipper] section)")
            };
            let addr = |s: Option<String>, what: &str| -> anyhow::Result<Option<SocketAddr>> {
                s.map(|a| {
                    a.parse().with_context(|| {
                        format!("config [shipper] {what} = {a:?} is not an address")
                    })
                })
                .transpose()
            };
            let journal = journal.or(c.journal).with_context(|| need("journal"))?;
            let listen = match listen {
                Some(l) => l,
                None => addr(c.listen, "listen")?.with_context(|| need("listen"))?,
            };
            let cert = cert.or(c.cert).with_context(|| need("cert"))?;
            let key = key.or(c.key).with_context(|| need("key"))?;
            let ca = ca.or(c.ca).with_context(|| need("ca"))?;
            let max_bytes_per_sec = max_bytes_per_sec.or(c.max_bytes_per_sec).filter(|&r| r > 0);
            let metrics_listen = match metrics_listen {
                Some(m) => Some(m),
                None => addr(c.metrics_listen, "metrics_listen")?,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(async move {
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let metrics = Arc::new(Metrics::default());
                if let Some(addr) = metrics_listen {
                    let m = metrics.clone();
                    foxing_journal::metrics::serve_metrics(addr, Arc::new(move || m.render()))
                        .with_context(|| format!("cannot serve metrics on {addr}"))?;
                }
                tokio::spawn(async move {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .expect("install SIGTERM handler");
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                    tracing::info!("stopping on signal");
                    let _ = stop_tx.send(true);
                });
                let opts = ServeOptions {
                    journal: journal.clone(),
                    listen,
                    tls: TlsFiles { cert, key, ca },
                    max_bytes_per_sec,
                };
                foxing_shipper::serve(opts, metrics, stop_rx)
                    .await
                    .with_context(|| format!("cannot serve journal {}", journal.display()))
            })
        }
    }
}
