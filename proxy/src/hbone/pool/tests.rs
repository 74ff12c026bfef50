use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, AbortHandle};

use super::*;

fn key(src_ip: Option<&str>, dst: &str) -> PoolKey {
    PoolKey {
        src_identity: Identity::new("cluster.local", "default", "sleep"),
        dst_identity: Identity::new("cluster.local", "default", "httpbin"),
        dst: dst.parse().unwrap(),
        src_ip: src_ip.map(|s| s.parse().unwrap()),
        placement: None,
    }
}

fn conn(id: u32) -> Conn<u32> {
    let (abort, _) = AbortHandle::new_pair();
    Conn::new(id, Rc::new(Cell::new(false)), abort)
}

/// A connect that opens connection 1, 2, … at once, counting them in `opened`.
fn numbered(opened: &Cell<u32>) -> impl Fn() -> std::future::Ready<Result<Conn<u32>, String>> + '_ {
    move || {
        opened.set(opened.get() + 1);
        std::future::ready(Ok(conn(opened.get())))
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn key_distinguishes_source_ip_and_identity() {
    let a = key(Some("10.244.1.4"), "10.244.2.5:15008");
    assert_eq!(a, key(Some("10.244.1.4"), "10.244.2.5:15008"));
    assert_ne!(a, key(Some("10.244.1.5"), "10.244.2.5:15008"));
    assert_ne!(a, key(None, "10.244.2.5:15008"));
    assert_ne!(a, key(Some("10.244.1.4"), "10.244.2.6:15008"));
    let mut other = a.clone();
    other.src_identity = Identity::new("cluster.local", "default", "other");
    assert_ne!(a, other);
}

#[test]
fn burst_for_new_key_opens_one_connection_per_max_streams() {
    let pool: Pool<u32, String> = Pool::new(100);
    let opened = Cell::new(0u32);
    let k = key(Some("10.244.1.4"), "10.244.2.5:15008");
    let leases = block_on(join_all((0..250).map(|_| {
        pool.checkout(&k, || {
            opened.set(opened.get() + 1);
            let id = opened.get();
            async move {
                monoio::time::sleep(Duration::from_millis(5)).await;
                Ok(conn(id))
            }
        })
    })));
    let leases: Vec<_> = leases.into_iter().map(Result::unwrap).collect();
    assert_eq!(opened.get(), 3, "250 streams at 100 per connection need 3");
    assert_eq!(pool.len(), 3);
    let on_first = leases.iter().filter(|l| *l.handle() == 1).count();
    assert_eq!(on_first, 100);
}

#[test]
fn released_slots_are_reused_and_idle_connections_evicted() {
    let pool: Pool<u32, String> = Pool::new(2);
    let k = key(None, "127.0.0.2:15008");
    let opened = Cell::new(0u32);
    let connect = numbered(&opened);
    block_on(async {
        let a = pool.checkout(&k, &connect).await.unwrap();
        drop(a);
        let _b = pool.checkout(&k, &connect).await.unwrap();
    });
    assert_eq!(opened.get(), 1);
    let later = Instant::now() + Duration::from_secs(301);
    assert_eq!(pool.evict_idle(Instant::now(), Duration::from_secs(300)), 0);
    assert_eq!(pool.evict_idle(later, Duration::from_secs(300)), 1);
    assert!(pool.is_empty());
}

#[test]
fn a_key_keeps_one_idle_connection_after_a_burst() {
    let pool: Pool<u32, String> = Pool::new(2);
    let k = key(None, "127.0.0.2:15008");
    let opened = Cell::new(0u32);
    let connect = numbered(&opened);
    let leases = block_on(join_all((0..6).map(|_| pool.checkout(&k, &connect))));
    let mut leases: Vec<_> = leases.into_iter().map(Result::unwrap).collect();
    assert_eq!(pool.len(), 3);
    // One connection still carries a stream: it stays, and so does one idle one.
    leases.retain(|l| *l.handle() == 3);
    assert_eq!(leases.len(), 2);
    leases.pop();
    let idle = Duration::from_secs(300);
    assert_eq!(pool.evict_idle(Instant::now(), idle), 1);
    assert_eq!(pool.len(), 2);
    drop(leases);
    assert_eq!(pool.evict_idle(Instant::now(), idle), 1);
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.evict_idle(Instant::now(), idle), 0);
}

#[test]
fn close_idle_takes_the_kept_connection_too_but_not_a_busy_one() {
    let pool: Pool<u32, String> = Pool::new(2);
    let (a, b) = (key(None, "127.0.0.2:15008"), key(None, "127.0.0.3:15008"));
    let opened = Cell::new(0u32);
    let connect = numbered(&opened);
    let mut leases: Vec<_> = block_on(join_all((0..4).map(|_| pool.checkout(&a, &connect))))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let busy = block_on(pool.checkout(&b, &connect)).unwrap();
    assert_eq!(pool.len(), 3);
    leases.clear();
    // evict_idle keeps one idle connection of `a`; close_idle does not.
    assert_eq!(pool.evict_idle(Instant::now(), Duration::from_secs(300)), 1);
    assert_eq!(pool.close_idle(), 1);
    assert_eq!(pool.len(), 1);
    assert_eq!(*busy.handle(), 3);
    drop(busy);
    assert_eq!(pool.close_idle(), 1);
    assert!(pool.is_empty());
}

#[test]
fn dead_connections_are_replaced_and_errors_shared() {
    let pool: Pool<u32, String> = Pool::new(10);
    let k = key(None, "127.0.0.2:15008");
    block_on(async {
        let lease = pool
            .checkout(&k, || std::future::ready(Ok(conn(1))))
            .await
            .unwrap();
        lease.mark_dead();
        let next = pool
            .checkout(&k, || std::future::ready(Ok(conn(2))))
            .await
            .unwrap();
        assert_eq!(*next.handle(), 2);
        let other = key(None, "127.0.0.3:15008");
        let err = pool
            .checkout(&other, || std::future::ready(Err("refused".to_string())))
            .await
            .err()
            .unwrap();
        assert_eq!(*err, "refused");
    });
    assert_eq!(pool.len(), 1);
}
