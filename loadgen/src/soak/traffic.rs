//! The soak's traffic: an echo server in the server pod and, in the client pod, one task
//! per connection that opens at its slot of the ramp, then repeats rounds (a payload
//! slice out, the same bytes back, FNV of both compared) until the end, then half-closes
//! and waits for the server's EOF.

use crate::checksum::{fnv, payload, Rng};
use crate::client::connect;
use crate::error::{Error, Result};
use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of the shared block every round's payload is a slice of.
const BLOCK: usize = 256 * 1024;
/// A round whose echo takes longer than this counts its bytes as lost.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters shared by every core and read by the sampler while the soak runs.
#[derive(Debug, Default)]
pub struct Live {
    pub open: AtomicUsize,
    pub peak_open: AtomicUsize,
    pub rounds: AtomicU64,
    pub sent: AtomicU64,
    pub verified: AtomicU64,
    pub corrupted_rounds: AtomicU64,
    pub lost_bytes: AtomicU64,
    pub failed_conns: AtomicU64,
    /// The first failure, for the report.
    pub first_error: std::sync::Mutex<Option<String>>,
}

impl Live {
    fn fail(&self, e: &Error) {
        self.failed_conns.fetch_add(1, Relaxed);
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| e.to_string());
    }

    fn opened(&self) {
        let now = self.open.fetch_add(1, Relaxed) + 1;
        self.peak_open.fetch_max(now, Relaxed);
    }
}

/// What one core's connections do.
#[derive(Debug, Clone)]
pub struct ConnPlan {
    pub target: SocketAddr,
    /// Connection ids of this core: `first..first + count` out of `total`.
    pub first: usize,
    pub count: usize,
    pub total: usize,
    pub start: Instant,
    pub ramp: Duration,
    pub end: Instant,
    pub payload: usize,
    pub interval: Duration,
    pub seed: u64,
}

/// Runs the echo server on `addr` until the process is stopped (`soak-echo`, started
/// by the soak inside the server pod: a process of its own, so the client's and the
/// server's ends of every connection do not share one descriptor limit).
pub fn serve_echo(addr: SocketAddr) -> Result<()> {
    crate::cores::block_on(async move {
        let opts = ListenerOpts::new().backlog(16_384);
        let l = TcpListener::bind_with_config(addr, &opts)
            .map_err(Error::io(format!("soak echo server listening on {addr}")))?;
        while let Ok((s, _)) = l.accept().await {
            monoio::spawn(echo(s));
        }
        Ok(())
    })?
}

async fn echo(mut s: TcpStream) {
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let (res, b) = s.read(buf).await;
        match res {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        let (res, b) = s.write_all(b).await;
        if res.is_err() {
            return;
        }
        buf = b;
    }
}

/// Runs this core's connections to completion.
pub async fn run_conns(plan: ConnPlan, live: Arc<Live>) -> Result<()> {
    let block = Rc::new(payload(plan.seed, BLOCK));
    let plan = Rc::new(plan);
    let tasks: Vec<_> = (plan.first..plan.first + plan.count)
        .map(|id| monoio::spawn(conn(id, plan.clone(), block.clone(), live.clone())))
        .collect();
    for t in tasks {
        t.await;
    }
    Ok(())
}

async fn conn(id: usize, plan: Rc<ConnPlan>, block: Rc<Vec<u8>>, live: Arc<Live>) {
    let slot = plan.start + plan.ramp.mul_f64(id as f64 / plan.total.max(1) as f64);
    monoio::time::sleep(slot.saturating_duration_since(Instant::now())).await;
    let mut s = match connect(plan.target).await {
        Ok(s) => s,
        Err(e) => return live.fail(&e),
    };
    live.opened();
    let mut rng = Rng::new(plan.seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9));
    let res = rounds(&mut s, &plan, &block, &live, &mut rng).await;
    let res = match res {
        Ok(()) => close(s, plan.target).await,
        Err(e) => Err(e),
    };
    live.open.fetch_sub(1, Relaxed);
    if let Err(e) = res {
        live.fail(&e);
    }
}

async fn rounds(
    s: &mut TcpStream,
    plan: &ConnPlan,
    block: &[u8],
    live: &Live,
    rng: &mut Rng,
) -> Result<()> {
    let mut back = vec![0u8; plan.payload];
    while Instant::now() < plan.end {
        let off = (rng.next_u64() as usize) % (block.len() - plan.payload);
        let out = block[off..off + plan.payload].to_vec();
        let want = fnv(&out);
        live.sent.fetch_add(out.len() as u64, Relaxed);
        back = match round(s, out, back).await {
            Ok(b) => b,
            Err(e) => {
                live.lost_bytes.fetch_add(plan.payload as u64, Relaxed);
                return Err(e);
            }
        };
        let got = fnv(&back);
        live.rounds.fetch_add(1, Relaxed);
        if got != want {
            live.corrupted_rounds.fetch_add(1, Relaxed);
            return Err(Error::Checksum {
                server: plan.target,
                sent: want,
                got,
            });
        }
        live.verified.fetch_add(back.len() as u64, Relaxed);
        // Jittered so the connections' rounds do not line up.
        let jitter = plan
            .interval
            .mul_f64(0.5 + (rng.next_u64() % 1000) as f64 / 1000.0);
        monoio::time::sleep(jitter.min(plan.end.saturating_duration_since(Instant::now()))).await;
    }
    Ok(())
}

/// One round: writes `out`, reads the same number of bytes back into `back`.
async fn round(s: &mut TcpStream, out: Vec<u8>, back: Vec<u8>) -> Result<Vec<u8>> {
    let work = async {
        let (res, _) = s.write_all(out).await;
        res.map_err(Error::io("soak: writing a round"))?;
        let (res, back) = s.read_exact(back).await;
        res.map_err(Error::io("soak: reading a round's echo"))?;
        Ok(back)
    };
    monoio::time::timeout(ROUND_TIMEOUT, work)
        .await
        .map_err(|_| Error::io("soak: a round's echo")(std::io::ErrorKind::TimedOut.into()))?
}

/// Half-closes and waits for the server's EOF: the connection ends cleanly on both sides.
async fn close(s: TcpStream, server: SocketAddr) -> Result<()> {
    let mut s = s;
    monoio::io::AsyncWriteRent::shutdown(&mut s)
        .await
        .map_err(Error::io("soak: half-closing"))?;
    let (res, b) = s.read(vec![0u8; 64]).await;
    match res {
        Ok(0) => Ok(()),
        Ok(_) => Err(Error::ByteCount {
            server,
            sent: 0,
            got: b.len() as u64,
        }),
        Err(e) => Err(Error::io("soak: waiting for the server's EOF")(e)),
    }
}
