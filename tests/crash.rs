//! Issue 4: crash safety, CI size. `benches/crash.sh` is the long run.
//!
//! The compiled binary runs over one store. In each cycle, admin writers
//! create keys and revoke them concurrently, and keygate is SIGKILLed after
//! a random number of acknowledgements, with requests still in flight; in
//! some cycles it is also killed while it is opening the store. After every
//! restart the store must open cleanly, every key whose 201 was received
//! must authenticate, and every key whose 204 was received must be refused.
//! A request cut by the kill has an unknown outcome and is not judged.

mod support;

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;

use serde_json::json;
use support::binary::{config_text, try_send, ConfigFile, Keygate, Serving};
use support::{RecordingUpstream, Req, PATIENCE};
use tokio::sync::mpsc;

const CYCLES: u64 = 6;
const WRITERS: usize = 3;

/// A number in `0..n` that differs from run to run.
fn random_below(n: u64) -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(n);
    hasher.finish() % n
}

/// What a writer had acknowledged, or was about to ask.
#[derive(Debug)]
enum Ack {
    /// 201 received for this key.
    Created(String),
    /// A revocation of this key is about to be sent.
    Revoking(String),
    /// 204 received for this key.
    Revoked(String),
}

/// Creates keys and revokes every other one until keygate stops answering.
async fn writer(admin: SocketAddr, w: usize, acks: mpsc::UnboundedSender<Ack>) {
    let host = admin.to_string();
    let mut previous: Option<String> = None;
    for n in 0u64.. {
        let create = Req::new("POST", "/v1/keys")
            .host(&host)
            .json(&json!({"user": format!("writer-{w}"), "name": format!("k{n}")}));
        let Some(resp) = try_send(&create, admin).await else {
            return;
        };
        assert_eq!(resp.status, 201, "create: {}", resp.text());
        let key = resp.json()["key"].as_str().expect("a key").to_owned();
        let _ = acks.send(Ack::Created(key.clone()));
        if let (0, Some(old)) = (n % 2, previous.take()) {
            let _ = acks.send(Ack::Revoking(old.clone()));
            let revoke = Req::new("DELETE", &format!("/v1/keys/{}", &old[..16])).host(&host);
            let Some(resp) = try_send(&revoke, admin).await else {
                return;
            };
            assert_eq!(resp.status, 204, "revoke: {}", resp.text());
            let _ = acks.send(Ack::Revoked(old));
        }
        previous = Some(key);
    }
}

/// What the writers have been told so far.
#[derive(Debug, Default)]
struct Ledger {
    created: Vec<String>,
    revoking: HashSet<String>,
    revoked: Vec<String>,
}

impl Ledger {
    fn record(&mut self, ack: Ack) -> bool {
        match ack {
            Ack::Created(key) => self.created.push(key),
            Ack::Revoking(key) => {
                self.revoking.insert(key);
                return false;
            }
            Ack::Revoked(key) => self.revoked.push(key),
        }
        true
    }

    /// Every acknowledged change is in effect in `running`.
    async fn verify(&self, running: &Serving) {
        for key in self.created.iter().filter(|k| !self.revoking.contains(*k)) {
            let resp = Req::get("/api/x").basic(key).send(running.proxy_addr).await;
            assert_eq!(resp.status, 200, "acknowledged key {} lost", &key[..16]);
        }
        for key in &self.revoked {
            let resp = Req::get("/api/x").basic(key).send(running.proxy_addr).await;
            resp.assert_refused(403, "INVALID-API-KEY");
        }
    }
}

#[tokio::test]
async fn acknowledged_creates_and_revokes_survive_sigkill_at_random_moments() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ConfigFile::new(&config_text(
        &dir.path().join("keygate.redb"),
        Some(upstream.addr),
        // Revoked keys are presented on purpose: never throttle.
        "[throttle]\nmax_failures = 1000000\nwindow_secs = 1\n",
    ));
    let mut ledger = Ledger::default();
    for cycle in 0..CYCLES {
        if cycle % 2 == 1 {
            // Killed while it opens the store, before it serves.
            Keygate::spawn(&config.path).kill();
        }
        let mut running = Keygate::start(&config.path).await;
        ledger.verify(&running).await;

        let (tx, mut rx) = mpsc::unbounded_channel();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(running.admin_addr, w, tx.clone())))
            .collect();
        drop(tx);
        // The random moment: after 5 to 40 acknowledgements.
        let wanted = 5 + random_below(36);
        let mut acknowledged = 0;
        while acknowledged < wanted {
            let ack = tokio::time::timeout(PATIENCE, rx.recv())
                .await
                .expect("the writers make progress")
                .expect("writers running");
            if ledger.record(ack) {
                acknowledged += 1;
            }
        }
        running.keygate.kill();
        for writer in writers {
            tokio::time::timeout(PATIENCE, writer)
                .await
                .expect("writers stop once keygate is gone")
                .expect("writer did not panic");
        }
        while let Some(ack) = rx.recv().await {
            ledger.record(ack);
        }
    }
    let running = Keygate::start(&config.path).await;
    ledger.verify(&running).await;
    assert!(
        ledger.created.len() >= 5 * CYCLES as usize,
        "{} keys created",
        ledger.created.len()
    );
}
