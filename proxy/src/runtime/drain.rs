//! Graceful drain, per core: a one-shot signal the core raises when the process is asked
//! to stop, which inbound HBONE connections await next to their `accept` (they answer it
//! with GOAWAY and keep serving the streams they have). In-pod mode drains one pod the
//! same way on DelWorkload: its own [`Drain`] (GOAWAY), and its connections' tasks held in
//! [`Conns`], closed all at once when the drain timeout passes.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_util::future::{abortable, AbortHandle};

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

/// The connection tasks of one group (a pod's, on one core), each abortable: the group can
/// be closed at once when its drain times out. A task leaves the group when it ends.
#[derive(Default)]
pub struct Conns {
    /// One slot per live task; freed slots are `None` and reused.
    slots: RefCell<Vec<Option<AbortHandle>>>,
    open: Cell<usize>,
}

impl Conns {
    /// `task` as a member of the group: it runs as it would, unless [`Conns::close_all`]
    /// drops it first (its sockets close, its accounting counts it closed).
    pub fn track<F: Future<Output = ()>>(self: &Rc<Self>, task: F) -> impl Future<Output = ()> {
        let (task, handle) = abortable(task);
        let slot = self.insert(handle);
        let member = Member {
            conns: self.clone(),
            slot,
        };
        async move {
            let _member = member;
            let _ = task.await;
        }
    }

    /// Tasks still running.
    pub fn len(&self) -> usize {
        self.open.get()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Aborts every task; each is dropped on its next poll. Returns how many there were.
    pub fn close_all(&self) -> usize {
        let slots = self.slots.borrow();
        slots.iter().flatten().for_each(AbortHandle::abort);
        self.open.get()
    }

    fn insert(&self, handle: AbortHandle) -> usize {
        let mut slots = self.slots.borrow_mut();
        self.open.set(self.open.get() + 1);
        match slots.iter().position(Option::is_none) {
            Some(i) => {
                slots[i] = Some(handle);
                i
            }
            None => {
                slots.push(Some(handle));
                slots.len() - 1
            }
        }
    }
}

/// A tracked task's place in its group, freed when the task ends or is dropped.
struct Member {
    conns: Rc<Conns>,
    slot: usize,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.conns.slots.borrow_mut()[self.slot] = None;
        self.conns.open.set(self.conns.open.get() - 1);
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

    /// Sets its flag when dropped (a connection's socket closing).
    struct Closes(Rc<Cell<bool>>);
    impl Drop for Closes {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    #[test]
    fn tracked_tasks_leave_when_done_and_are_dropped_by_close_all() {
        let conns = Rc::new(Conns::default());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        // A task that finishes on its own frees its slot.
        let mut done = pin!(conns.track(async {}));
        assert_eq!(conns.len(), 1);
        assert!(done.as_mut().poll(&mut cx).is_ready());
        assert!(conns.is_empty());
        // A task that never finishes is dropped on its first poll after close_all.
        let closed = Rc::new(Cell::new(false));
        let held = Closes(closed.clone());
        let mut stuck = pin!(conns.track(async move {
            let _held = held;
            std::future::pending::<()>().await
        }));
        assert!(stuck.as_mut().poll(&mut cx).is_pending());
        assert_eq!(conns.len(), 1);
        assert_eq!(conns.slots.borrow().len(), 1, "the freed slot is reused");
        assert_eq!(conns.close_all(), 1);
        assert!(stuck.as_mut().poll(&mut cx).is_ready());
        assert!(closed.get(), "the aborted task's state was dropped");
        assert!(conns.is_empty());
    }
}
