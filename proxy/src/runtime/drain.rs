//! Graceful drain, per core: a one-shot signal the core raises when the process is asked
//! to stop, which inbound HBONE connections await next to their `accept` (they answer it
//! with GOAWAY and keep serving the streams they have).

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::task::{Poll, Waker};

/// Raised once; every waiter wakes.
#[derive(Default)]
pub struct Drain {
    raised: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Drain {
    /// Raises the signal and wakes every waiter.
    pub fn raise(&self) {
        self.raised.set(true);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    pub fn raised(&self) -> bool {
        self.raised.get()
    }

    /// Completes once the signal is raised. A task polling it again registers once.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.raised.get() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn waiters_register_once_and_wake_on_raise() {
        let drain = Drain::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = pin!(drain.wait());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(drain.waiters.borrow().len(), 1);
        drain.raise();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(fut.as_mut().poll(&mut cx).is_ready());
        assert!(drain.raised());
    }
}
