//! Shipping throughput and CPU: a journal of MIB MiB of incompressible 64 KiB writes is served by
//! `foxing-shipper serve` and received by an archive-only `foxing-applier --connect` (frames
//! checked, appended and fsynced in the replica's archive, acknowledged) over QUIC + mTLS on
//! loopback. Compared in the same run with raw loopback TCP moving the same number of bytes.
//!
//!     ship-bench WORKDIR [MIB]      (put WORKDIR on tmpfs to measure the network path alone)
//!
//! Prints the rates, the ratio, and CPU seconds per GB on each end; one JSON line for scripts.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use foxing_journal::{Journal, JournalOptions};
use foxing_proto::{Event, Op, RelPath, Writer};
use foxing_tests::{free_udp_port, Proc};

fn bin(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .with_file_name(name)
}

fn tcp_baseline(bytes: u64) -> anyhow::Result<f64> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let t = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let r = s.read(&mut buf)?;
            if r == 0 {
                return Ok(n);
            }
            n += r as u64;
        }
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    let mut chunk = vec![0u8; 1 << 20];
    fastrand::Rng::with_seed(1).fill(&mut chunk);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        s.write_all(&chunk)?;
        sent += chunk.len() as u64;
    }
    drop(s);
    let got = t.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    anyhow::ensure!(got == sent);
    Ok(sent as f64 / start.elapsed().as_secs_f64())
}

/// The transport's own limit: the same bytes over one QUIC stream between two endpoints built
/// with the shipper's TLS and transport configuration (mTLS, BBR, windows, MTU discovery), in
/// this process, with no journal, archive or framing: what any QUIC + TLS shipper could reach.
fn quic_baseline(bytes: u64, certs: &std::path::Path) -> anyhow::Result<f64> {
    use foxing_shipper::tls::{client_config, endpoint, server_config, TlsFiles};
    let files = |name: &str| TlsFiles {
        cert: certs.join(format!("{name}.pem")),
        key: certs.join(format!("{name}.key")),
        ca: certs.join("ca.pem"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = endpoint(
            "127.0.0.1:0".parse()?,
            Some(server_config(&files("source"))?),
        )?;
        let addr = server.local_addr()?;
        let sender = tokio::spawn(async move {
            let conn = server
                .accept()
                .await
                .ok_or_else(|| anyhow::anyhow!("no connection"))?
                .await?;
            let (mut send, mut recv) = conn.accept_bi().await?;
            let mut hello = [0u8; 1];
            recv.read_exact(&mut hello).await?;
            let mut chunk = vec![0u8; 1 << 20];
            fastrand::Rng::with_seed(1).fill(&mut chunk);
            let mut sent = 0u64;
            while sent < bytes {
                send.write_all(&chunk).await?;
                sent += chunk.len() as u64;
            }
            send.finish()?;
            let _ = recv.read_to_end(16).await;
            anyhow::Ok(sent)
        });
        let client = endpoint("127.0.0.1:0".parse()?, None)?;
        let conn = client
            .connect_with(client_config(&files("replica1"))?, addr, "source")?
            .await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let start = Instant::now();
        send.write_all(&[1]).await?;
        let mut got = 0u64;
        while let Some(c) = recv.read_chunk(usize::MAX, true).await? {
            got += c.bytes.len() as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        send.finish()?;
        let sent = sender.await??;
        anyhow::ensure!(got == sent, "received {got} of {sent} bytes");
        Ok(got as f64 / secs)
    })
}

fn main() -> anyhow::Result<()> {
    let mut a = std::env::args().skip(1);
    let work = PathBuf::from(
        a.next()
            .ok_or_else(|| anyhow::anyhow!("usage: ship-bench WORKDIR [MIB]"))?,
    );
    let mib: u64 = a.next().unwrap_or_else(|| "1024".into()).parse()?;
    let jdir = work.join("journal");
    std::fs::create_dir_all(&work)?;
    // The source journal: incompressible 64 KiB writes (stored raw: zstd's sample check skips them).
    {
        let mut j = Journal::open(&jdir, JournalOptions::default())?;
        let mut rng = fastrand::Rng::with_seed(7);
        let mut data = vec![0u8; 64 << 10];
        let records = mib * 16;
        let mut batch = Vec::new();
        for i in 0..records {
            rng.fill(&mut data);
            batch.push(Event {
                time_ns: foxing_proto::time::now_ns(),
                writer: Writer::default(),
                op: Op::Write {
                    path: RelPath::new(format!("f{}", i % 64)),
                    offset: (i / 64) * (64 << 10),
                    data: data.clone(),
                },
            });
            if batch.len() == 64 {
                j.append(std::mem::take(&mut batch))?;
            }
        }
        j.append(batch)?;
        j.sync()?;
    }
    let journal_bytes: u64 = std::fs::read_dir(jdir.join("segments"))?
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let certs = work.join("certs");
    foxing_shipper::certs::make_certs(&certs, &["source".into(), "replica1".into()], 2)?;
    let c = |f: &str| certs.join(f);
    let port = free_udp_port();
    let ship = Proc::spawn(
        "shipper",
        Command::new(bin("foxing-shipper"))
            .arg("serve")
            .arg("--journal")
            .arg(&jdir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cert")
            .arg(c("source.pem"))
            .arg("--key")
            .arg(c("source.key"))
            .arg("--ca")
            .arg(c("ca.pem"))
            .stderr(std::fs::File::create(work.join("shipper.log"))?),
    );
    std::thread::sleep(Duration::from_millis(300));
    let ship_cpu0 = foxing_tests::cpu_seconds(ship.pid());
    let start = Instant::now();
    let mut app = Proc::spawn(
        "applier",
        foxing_tests::connect_applier(
            bin("foxing-applier")
                .parent()
                .unwrap_or(std::path::Path::new(".")),
            &work.join("replica"),
            &work.join("state"),
            port,
            &certs,
        )
        .arg("--archive-only")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("applier.log"))?),
    );
    // CPU of the applier: sampled until it exits (the last sample is within a few ms of the end).
    let mut app_cpu = 0.0;
    loop {
        if let Ok(Some(st)) = app.child.try_wait() {
            anyhow::ensure!(
                st.success(),
                "the applier failed; see {}",
                work.join("applier.log").display()
            );
            break;
        }
        app_cpu = foxing_tests::cpu_seconds(app.pid()).max(app_cpu);
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = start.elapsed().as_secs_f64();
    let ship_cpu = foxing_tests::cpu_seconds(ship.pid()) - ship_cpu0;
    drop(ship);
    let rate = journal_bytes as f64 / secs;
    let tcp = tcp_baseline(journal_bytes)?;
    let quic = quic_baseline(journal_bytes, &certs)?;
    let gb = journal_bytes as f64 / 1e9;
    println!(
        "shipped {:.0} MiB of journal in {secs:.2} s: {:.0} MB/s; raw loopback TCP {:.0} MB/s; ratio {:.2}x",
        journal_bytes as f64 / (1 << 20) as f64,
        rate / 1e6,
        tcp / 1e6,
        rate / tcp
    );
    println!(
        "one QUIC stream, shipper's TLS and transport config, no journal: {:.0} MB/s ({:.2}x of TCP); Foxing reaches {:.2}x of it",
        quic / 1e6,
        quic / tcp,
        rate / quic
    );
    println!(
        "CPU: shipper {:.2} s/GB, applier (archive-only) >= {:.2} s/GB",
        ship_cpu / gb,
        app_cpu / gb
    );
    println!(
        "{{\"journal_bytes\": {journal_bytes}, \"seconds\": {secs:.3}, \"ship_mb_s\": {:.1}, \"tcp_mb_s\": {:.1}, \"quic_mb_s\": {:.1}, \"ratio\": {:.3}, \"shipper_cpu_s_per_gb\": {:.3}, \"applier_cpu_s_per_gb\": {:.3}}}",
        rate / 1e6,
        tcp / 1e6,
        quic / 1e6,
        rate / tcp,
        ship_cpu / gb,
        app_cpu / gb
    );
    Ok(())
}
