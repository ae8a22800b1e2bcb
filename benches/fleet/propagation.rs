//! Propagation of revocations across a keygate fleet, as a client sees it.
//!
//! Standard library only: `benches/fleet.sh` compiles it with
//! `rustc -O --edition 2021` (no Cargo target, no dependencies), so it is
//! not a `cargo bench` target and does not touch `Cargo.toml`.
//!
//! ```text
//! propagation create ADMIN_PORT N KEYFILE
//!     POST /v1/keys N times on 127.0.0.1:ADMIN_PORT (one kept-alive
//!     connection), user `bench`, path `/api/`; writes "id key" lines.
//! propagation revoke ADMIN_A PROXY_B PROXY_C KEYFILE GAP_US RAWFILE
//!     For each key of KEYFILE, in order:
//!       1. two poller threads (one kept-alive connection each, to B's and
//!          C's proxy ports) start sending `GET /api/fleet-probe` with the
//!          key, GAP_US microseconds apart, and each reports its first 200
//!          (the key works there before it is revoked);
//!       2. once both have, `DELETE /v1/keys/{id}` on A's admin port (one
//!          kept-alive connection); t_sent before writing it, t_204 when
//!          the whole 204 has been read;
//!       3. each poller keeps polling until its first 403 and reports when
//!          that response had been read completely (t_403).
//!     Propagation to B or C = t_403 - t_204 (negative when the replica
//!     refused before A's answer reached the client; the resolution is one
//!     poll, whose round trip is printed). A's write latency = t_204 -
//!     t_sent. A key not refused within 5 s stops the run (exit 3).
//!     RAWFILE gets one line per key: i write_us b_us c_us b_polls c_polls.
//!     Prints p50 / p99 / max (nearest rank) of each series.
//! ```
//!
//! All clocks are one process's `Instant` (CLOCK_MONOTONIC); the only
//! sockets are to 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a replica may take to refuse a revoked key before the run is
/// declared broken (the SPEC's bound is 1 s).
const GIVE_UP: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["create", admin, n, keyfile] => create(port(admin), n.parse().expect("N"), keyfile),
        ["revoke", a, b, c, keyfile, gap, raw] => revoke(
            port(a),
            port(b),
            port(c),
            keyfile,
            Duration::from_micros(gap.parse().expect("GAP_US")),
            raw,
        ),
        _ => {
            eprintln!("usage: propagation create ADMIN_PORT N KEYFILE | revoke ADMIN_A PROXY_B PROXY_C KEYFILE GAP_US RAWFILE");
            std::process::exit(2);
        }
    }
}

fn port(text: &str) -> u16 {
    text.parse().expect("a port number")
}

// ------------------------------------------------------------ HTTP/1.1

/// One kept-alive HTTP/1.1 connection to 127.0.0.1:port.
struct Conn {
    port: u16,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let writer = stream.try_clone().expect("clone");
        Conn {
            port,
            reader: BufReader::with_capacity(16 * 1024, stream),
            writer,
        }
    }

    /// Sends `request` (complete bytes) and reads the whole response:
    /// (status, body). Reconnects once if the server had closed the
    /// connection.
    fn exchange(&mut self, request: &[u8]) -> (u16, Vec<u8>) {
        match self.try_exchange(request) {
            Ok(r) => r,
            Err(_) => {
                *self = Conn::open(self.port);
                self.try_exchange(request)
                    .unwrap_or_else(|e| panic!("request to 127.0.0.1:{} failed: {e}", self.port))
            }
        }
    }

    fn try_exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        self.writer.write_all(request)?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("closed"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("closed in headers"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            self.reader.read_exact(&mut body)?;
        }
        if close {
            *self = Conn::open(self.port);
        }
        Ok((status, body))
    }
}

fn base64(input: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `"name":"value"` from a flat JSON object (the admin API's answers).
fn json_str(body: &str, name: &str) -> Option<String> {
    let tag = format!("\"{name}\":\"");
    let start = body.find(&tag)? + tag.len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_owned())
}

// -------------------------------------------------------------- create

fn create(admin: u16, n: usize, keyfile: &str) {
    let mut conn = Conn::open(admin);
    let mut out = String::new();
    let t = Instant::now();
    for i in 0..n {
        let body = format!(r#"{{"user":"bench","name":"propagation {i}","path":"/api/"}}"#);
        let request = format!(
            "POST /v1/keys HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, reply) = conn.exchange(request.as_bytes());
        let reply = String::from_utf8_lossy(&reply);
        assert_eq!(status, 201, "POST /v1/keys answered {status}: {reply}");
        let (id, key) = (json_str(&reply, "id"), json_str(&reply, "key"));
        let (Some(id), Some(key)) = (id, key) else {
            panic!("no id or key in {reply}")
        };
        out.push_str(&format!("{id} {key}\n"));
    }
    std::fs::write(keyfile, out).expect("write KEYFILE");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "created {n} keys through 127.0.0.1:{admin} in {secs:.2} s ({:.2} ms per create)",
        secs * 1000.0 / n as f64
    );
}

// -------------------------------------------------------------- revoke

/// What a poller is told for each key.
struct Job {
    request: Vec<u8>,
}

/// What a poller reports.
enum Report {
    /// The key got its first 200 here.
    Accepted,
    /// The key got its first 403 here (after its 200s).
    Refused {
        at: Instant,
        polls: u32,
        rtt_total: Duration,
    },
}

fn poller(port: u16, gap: Duration, jobs: mpsc::Receiver<Job>, reports: mpsc::Sender<Report>) {
    let mut conn = Conn::open(port);
    for job in jobs {
        let mut accepted = false;
        let mut polls = 0u32;
        let mut rtt_total = Duration::ZERO;
        let started = Instant::now();
        loop {
            let sent = Instant::now();
            let (status, body) = conn.exchange(&job.request);
            let at = Instant::now();
            polls += 1;
            rtt_total += at - sent;
            match (status, accepted) {
                (200, false) => {
                    accepted = true;
                    reports.send(Report::Accepted).expect("main gone");
                }
                (200, true) => {}
                (403, true) => {
                    reports
                        .send(Report::Refused {
                            at,
                            polls,
                            rtt_total,
                        })
                        .expect("main gone");
                    break;
                }
                (status, _) => panic!(
                    "127.0.0.1:{port} answered {status} ({}) {}",
                    String::from_utf8_lossy(&body).trim(),
                    if accepted {
                        "after accepting the key: expected 200 or 403"
                    } else {
                        "before the revocation: expected 200"
                    }
                ),
            }
            if started.elapsed() > GIVE_UP {
                eprintln!(
                    "BROKEN: 127.0.0.1:{port} still accepts the key {} s after the poll began",
                    GIVE_UP.as_secs()
                );
                std::process::exit(3);
            }
            if !gap.is_zero() {
                thread::sleep(gap);
            }
        }
    }
}

fn revoke(a: u16, b: u16, c: u16, keyfile: &str, gap: Duration, raw: &str) {
    let keys: Vec<(String, String)> = std::fs::read_to_string(keyfile)
        .expect("read KEYFILE")
        .lines()
        .map(|l| {
            let (id, key) = l.split_once(' ').expect("id key");
            (id.to_owned(), key.to_owned())
        })
        .collect();
    let mut pollers = Vec::new();
    for port in [b, c] {
        let (job_tx, job_rx) = mpsc::channel();
        let (rep_tx, rep_rx) = mpsc::channel();
        let handle = thread::spawn(move || poller(port, gap, job_rx, rep_tx));
        pollers.push((job_tx, rep_rx, handle));
    }
    let mut admin = Conn::open(a);
    let mut write_us = Vec::new();
    let mut lat: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let (mut polls_total, mut rtt_total) = (0u64, Duration::ZERO);
    let mut lines = String::new();
    for (i, (id, key)) in keys.iter().enumerate() {
        let auth = base64(format!("haplo:{key}").as_bytes());
        let request = format!(
            "GET /api/fleet-probe HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\r\n"
        )
        .into_bytes();
        for (jobs, _, _) in &pollers {
            jobs.send(Job {
                request: request.clone(),
            })
            .expect("poller gone");
        }
        for (_, reports, _) in &pollers {
            match reports.recv().expect("poller gone") {
                Report::Accepted => {}
                Report::Refused { .. } => unreachable!("refused before accepted"),
            }
        }
        let delete = format!("DELETE /v1/keys/{id} HTTP/1.1\r\nHost: 127.0.0.1:{a}\r\n\r\n");
        let sent = Instant::now();
        let (status, body) = admin.exchange(delete.as_bytes());
        let t204 = Instant::now();
        assert_eq!(
            status,
            204,
            "DELETE /v1/keys/{id} on A answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        write_us.push((t204 - sent).as_secs_f64() * 1e6);
        let mut row = [0f64; 2];
        let mut polls = [0u32; 2];
        for (n, (_, reports, _)) in pollers.iter().enumerate() {
            match reports.recv().expect("poller gone") {
                Report::Refused {
                    at,
                    polls: p,
                    rtt_total: r,
                } => {
                    let us = if at >= t204 {
                        (at - t204).as_secs_f64() * 1e6
                    } else {
                        -((t204 - at).as_secs_f64() * 1e6)
                    };
                    row[n] = us;
                    polls[n] = p;
                    lat[n].push(us);
                    polls_total += u64::from(p);
                    rtt_total += r;
                }
                Report::Accepted => unreachable!("accepted twice"),
            }
        }
        lines.push_str(&format!(
            "{i} {:.0} {:.0} {:.0} {} {}\n",
            write_us[i], row[0], row[1], polls[0], polls[1]
        ));
    }
    for (jobs, _, handle) in pollers {
        drop(jobs);
        handle.join().expect("poller panicked");
    }
    std::fs::write(raw, lines).expect("write RAWFILE");
    let n = keys.len();
    println!(
        "{n} revocations on A (127.0.0.1:{a}); B = 127.0.0.1:{b}, C = 127.0.0.1:{c}; poll gap {} us, mean poll round trip {:.0} us ({} polls)",
        gap.as_micros(),
        rtt_total.as_secs_f64() * 1e6 / polls_total.max(1) as f64,
        polls_total
    );
    summary("A write (DELETE round trip)", &mut write_us);
    for (name, series) in ["B refuses, after A's 204", "C refuses, after A's 204"]
        .iter()
        .zip(lat.iter_mut())
    {
        let early = series.iter().filter(|us| **us < 0.0).count();
        summary(name, series);
        println!("    ({early} of {n} refused before A's 204 had been read)");
    }
    let mut worst: Vec<f64> = lat[0].iter().zip(&lat[1]).map(|(b, c)| b.max(*c)).collect();
    summary("slower of B and C", &mut worst);
}

/// Nearest-rank percentile of sorted `xs`.
fn pct(xs: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

fn summary(name: &str, xs: &mut [f64]) {
    xs.sort_by(f64::total_cmp);
    println!(
        "  {name:<30} p50 {:>8.0} us   p99 {:>8.0} us   max {:>8.0} us   (n={})",
        pct(xs, 50.0),
        pct(xs, 99.0),
        xs[xs.len() - 1],
        xs.len()
    );
}
