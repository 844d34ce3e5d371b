//! Lease behaviour on tokio's paused clock: deterministic, instant.

use super::*;

fn leases() -> Arc<Leases> {
    Leases::new(
        "dev".into(),
        Arc::new(StatusHub::ready("cal".into(), Default::default())),
        3,
    )
}

const TTL: Duration = Duration::from_secs(10);

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_fifo_order() {
    let l = leases();
    let first = l.acquire(TTL, None, "test".into()).await.unwrap();
    let mut order = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..3 {
        let l = Arc::clone(&l);
        let tx = tx.clone();
        tokio::spawn(async move {
            let got = l.acquire(TTL, None, "test".into()).await.unwrap();
            tx.send((n, got.id.clone())).unwrap();
        });
        tokio::task::yield_now().await; // queue in spawn order
    }
    assert_eq!(l.status.snapshot().waiters, 3);
    l.release(&first.id).unwrap();
    for _ in 0..3 {
        let (n, id) = rx.recv().await.unwrap();
        order.push(n);
        l.release(&id).unwrap();
    }
    assert_eq!(order, [0, 1, 2]);
    assert!(!l.status.snapshot().leased);
}

#[tokio::test(start_paused = true)]
async fn silent_holder_expires_after_ttl_and_next_waiter_is_served() {
    let l = leases();
    let stop = CancellationToken::new();
    tokio::spawn(Arc::clone(&l).run_expiry(stop.clone()));
    let first = l.acquire(TTL, None, "test".into()).await.unwrap();
    let t0 = Instant::now();
    let second = l.acquire(TTL, None, "test".into()).await.unwrap();
    assert_eq!(
        t0.elapsed(),
        TTL,
        "waiter served exactly when the TTL ran out"
    );
    let err = l.begin_use(&first.id).unwrap_err().to_string();
    assert!(err.contains("expired"), "{err}");
    assert!(l.begin_use(&second.id).is_ok());
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn use_and_keepalive_refresh_the_ttl_and_in_flight_batches_hold_it() {
    let l = leases();
    let stop = CancellationToken::new();
    tokio::spawn(Arc::clone(&l).run_expiry(stop.clone()));
    let lease = l.acquire(TTL, None, "test".into()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    l.keep_alive(&lease.id).unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let busy = l.begin_use(&lease.id).unwrap();
    // A batch longer than the TTL must not lose its lease mid-measurement.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(l.status.snapshot().leased);
    drop(busy);
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(
        l.keep_alive(&lease.id).is_ok(),
        "TTL restarts when the batch ends"
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(l.keep_alive(&lease.id).is_err());
    assert!(!l.status.snapshot().leased);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn the_expiry_task_alone_frees_a_lease_ttl_after_its_last_batch() {
    let l = leases();
    let stop = CancellationToken::new();
    tokio::spawn(Arc::clone(&l).run_expiry(stop.clone()));
    let lease = l.acquire(TTL, None, "test".into()).await.unwrap();
    // Short batches while the task sleeps towards its deadline (they do
    // not wake it): it finds each later deadline when it gets there.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(l.begin_use(&lease.id).unwrap());
    }
    // A batch longer than the TTL: the task parks with no deadline, and
    // the batch's end wakes it.
    let busy = l.begin_use(&lease.id).unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(busy);
    tokio::time::sleep(TTL - Duration::from_secs(1)).await;
    assert!(l.status.snapshot().leased);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !l.status.snapshot().leased,
        "expired with no call to notice"
    );
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_leaves_the_queue() {
    let l = leases();
    let held = l.acquire(TTL, None, "test".into()).await.unwrap();
    let err = l
        .acquire(TTL, Some(Duration::from_secs(2)), "test".into())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseWait(_)));
    assert_eq!(l.status.snapshot().waiters, 0);
    // and releasing does not hand the device to the departed waiter
    l.release(&held.id).unwrap();
    assert!(!l.status.snapshot().leased);
    assert!(
        l.acquire(TTL, Some(Duration::ZERO), "test".into())
            .await
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn lease_errors_say_what_happened() {
    let l = leases();
    let e = l.begin_use("").unwrap_err().to_string();
    assert!(e.contains("missing") && e.contains("AcquireLease"), "{e}");
    let e = l.begin_use("nope").unwrap_err().to_string();
    assert!(e.contains("'nope' is not a lease of device 'dev'"), "{e}");
    let lease = l.acquire(TTL, None, "test".into()).await.unwrap();
    l.release(&lease.id).unwrap();
    let e = l.begin_use(&lease.id).unwrap_err().to_string();
    assert!(e.contains("was released"), "{e}");
    assert!(l.release(&lease.id).is_err(), "double release is an error");
}

#[tokio::test(start_paused = true)]
async fn past_max_waiters_the_next_is_refused_not_queued() {
    let l = leases();
    let _held = l.acquire(TTL, None, "holder".into()).await.unwrap();
    let mut waiting = Vec::new();
    for n in 0..3 {
        let l = Arc::clone(&l);
        waiting.push(tokio::spawn(async move {
            l.acquire(TTL, None, format!("w{n}").into()).await
        }));
    }
    while l.lock().waiters.len() < 3 {
        tokio::task::yield_now().await;
    }
    let err = l.acquire(TTL, None, "late".into()).await.unwrap_err();
    assert!(matches!(err, Error::Exhausted(_)), "{err}");
    assert!(err.to_string().contains("3 clients waiting"), "{err}");
    for w in waiting {
        w.abort();
    }
}
