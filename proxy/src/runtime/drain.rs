//! Graceful drain, per core: a one-shot signal the core raises when the process is asked
//! to stop, which inbound HBONE connections await next to their `accept` (they answer it
//! with GOAWAY and keep serving the streams they have).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Raised once; every waiter wakes.
#[derive(Default)]
pub struct Drain {
    raised: Cell<bool>,
    /// One slot per live [`DrainWait`]; freed slots are `None` and reused.
    waiters: RefCell<Vec<Option<Waker>>>,
}

impl Drain {
    /// Raises the signal and wakes every waiter.
    pub fn raise(&self) {
        self.raised.set(true);
        for waker in self
            .waiters
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
        {
            waker.wake();
        }
    }

    pub fn raised(&self) -> bool {
        self.raised.get()
    }

    /// Completes once the signal is raised. Keep one per waiting task and poll it again
    /// and again: it holds one slot and only refreshes its waker there.
    pub fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            drain: self,
            slot: None,
        }
    }

    fn register(&self, slot: &mut Option<usize>, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        match *slot {
            Some(i) => match &mut waiters[i] {
                Some(w) => w.clone_from(waker),
                empty => *empty = Some(waker.clone()),
            },
            None => {
                let i = waiters.iter().position(Option::is_none).unwrap_or_else(|| {
                    waiters.push(None);
                    waiters.len() - 1
                });
                waiters[i] = Some(waker.clone());
                *slot = Some(i);
            }
        }
    }
}

/// The future of [`Drain::wait`]; frees its slot when dropped.
pub struct DrainWait<'a> {
    drain: &'a Drain,
    slot: Option<usize>,
}

impl Future for DrainWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.drain.raised.get() {
            return Poll::Ready(());
        }
        this.drain.register(&mut this.slot, cx.waker());
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            self.drain.waiters.borrow_mut()[i] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn waiters_hold_one_slot_each_and_wake_on_raise() {
        let drain = Drain::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = pin!(drain.wait());
        for _ in 0..1000 {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(drain.waiters.borrow().len(), 1);
        {
            // A waiter that goes away frees its slot for the next one.
            let mut other = pin!(drain.wait());
            assert!(other.as_mut().poll(&mut cx).is_pending());
            assert_eq!(drain.waiters.borrow().len(), 2);
        }
        assert!(drain.waiters.borrow()[1].is_none());
        let mut third = pin!(drain.wait());
        assert!(third.as_mut().poll(&mut cx).is_pending());
        assert_eq!(drain.waiters.borrow().len(), 2);
        drain.raise();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert!(fut.as_mut().poll(&mut cx).is_ready());
        assert!(drain.raised());
    }
}
