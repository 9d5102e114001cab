//! Load on the coordinator's gRPC port (run by `tests/bench/grpc_limits.sh`): a real
//! coordinator and agent (Sandbox), then 1,000 TCP connections that never present a
//! certificate and 500 job watches from one valid operator certificate. Prints the
//! coordinator's RSS before, at the peak and after, how many connections and watches the
//! coordinator refused, and whether the agent stayed connected and an operator could still
//! work. A benchmark: it prints figures and asserts nothing.

use std::time::{Duration, Instant};

use lifeboat_e2e::{Sandbox, SandboxTarget, agent::agent_connected};
use lifeboat_proto::v1::{self as pb, control_client::ControlClient};

fn main() -> anyhow::Result<()> {
    // A pg_dump that hangs: the backup job stays running, so the watches stay open.
    let dir = lifeboat_e2e::TestDir::new("grpc-load");
    let bin = lifeboat_e2e::wrappers::PgBinDir::new(&dir.path().join("bin"));
    bin.wrap("pg_dump", "exec sleep 600");
    let s = Sandbox::builder("grpc-load")
        .dir(dir)
        .target(SandboxTarget::new("app").pg_bin_dir(bin.path()))
        .operator("loadtest", "viewer")
        .build();
    let pid = s.coordinator.pid();
    let addr: std::net::SocketAddr = s.coordinator.grpc_addr().parse()?;
    let rss_before = lifeboat_e2e::process::status_kib(pid, "VmRSS:");
    let rt = tokio::runtime::Runtime::new()?;
    let files = lifeboat_common::tls::TlsFiles {
        ca: s.pki.ca(),
        cert: s.pki.dir().join("loadtest.pem"),
        key: s.pki.dir().join("loadtest.key"),
    };
    let job_id = {
        let out = s.admin.run_json(&["backup", "run", &s.target("app")]);
        lifeboat_e2e::sandbox::find_str(&out.json(), "job_id").unwrap_or_default()
    };
    let url = s.coordinator.url();
    let (refused_conns, watches_ok, watches_refused, held) = rt.block_on(async {
        // 1,000 connections that never start a TLS handshake.
        let mut silent = Vec::new();
        let mut closed = 0usize;
        // From 127.0.0.2: another source address than the operator's and the agent's, as an
        // attacker's would be.
        for _ in 0..1000 {
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            sock.bind("127.0.0.2:0".parse().expect("addr"))
                .expect("bind 127.0.0.2");
            match sock.connect(addr).await {
                Ok(c) => silent.push(c),
                Err(_) => closed += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Count the ones the coordinator closed at once.
        let mut open = Vec::new();
        for mut c in silent {
            let mut b = [0u8; 1];
            match tokio::time::timeout(
                Duration::from_millis(2),
                tokio::io::AsyncReadExt::read(&mut c, &mut b),
            )
            .await
            {
                Ok(_) => closed += 1,
                Err(_) => open.push(c),
            }
        }
        // 500 watches over 8 connections, one operator certificate.
        let mut ok = 0usize;
        let mut refused = 0usize;
        let mut streams = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..8 {
            let ep = lifeboat_common::tls::client_endpoint(&url, &files, None).expect("endpoint");
            clients.push(ControlClient::new(ep.connect_lazy()));
        }
        for i in 0..500 {
            let mut c = clients[i % clients.len()].clone();
            match c
                .watch_job(pb::GetJobRequest {
                    job_id: job_id.clone(),
                })
                .await
            {
                Ok(s) => {
                    ok += 1;
                    streams.push(s.into_inner());
                }
                Err(e) => {
                    if refused == 0 {
                        println!("  first refused watch: {}", e.message());
                    }
                    refused += 1;
                }
            }
        }
        (closed, ok, refused, (open, streams))
    });
    let rss_peak_now = lifeboat_e2e::process::status_kib(pid, "VmRSS:");
    let t0 = Instant::now();
    let admin_ok = s.admin.run(&["jobs", "show", &job_id]).success();
    let admin_ms = t0.elapsed().as_millis();
    let agent_ok = agent_connected(&s.admin, s.agent.name()).is_ok();
    drop(held);
    std::thread::sleep(Duration::from_secs(11));
    let rss_after = lifeboat_e2e::process::status_kib(pid, "VmRSS:");
    let hwm = lifeboat_e2e::process::status_kib(pid, "VmHWM:");
    s.admin.run(&["jobs", "cancel", &job_id]);
    println!("grpc load: 1000 silent TCP connections + 500 watches from one operator certificate");
    println!("  connections closed at once by the handshake caps: {refused_conns} of 1000");
    println!("  watches accepted: {watches_ok}, refused (per-operator cap): {watches_refused}");
    println!(
        "  during the load: `lifeboat jobs show` ok={admin_ok} in {admin_ms} ms; agent connected={agent_ok}"
    );
    println!(
        "  coordinator RSS: before {} MiB, under load {} MiB, peak (VmHWM) {} MiB, 11 s after {} MiB",
        rss_before / 1024,
        rss_peak_now / 1024,
        hwm / 1024,
        rss_after / 1024
    );
    s.shutdown();
    Ok(())
}
