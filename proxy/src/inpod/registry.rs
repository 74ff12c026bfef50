//! The pods in-pod mode captures, and what each ZDS request does to them (pure: the
//! listeners are started and stopped through a [`PodSink`]). ztunnel's semantics
//! (`src/inpod/statemanager.rs`):
//!
//! | request | before `SnapshotSent` | after |
//! |---|---|---|
//! | Add | start (same namespace again: nothing; another one: replace); the uid is in the snapshot | start / replace |
//! | Keep | the uid is in the snapshot | refused |
//! | Del | the uid leaves the snapshot (reconcile stops it) | stop |
//! | SnapshotSent | stop every pod not in the snapshot | refused (sent twice) |
//!
//! A new connection starts a new snapshot; a dropped one stops nothing. A refused request
//! changes nothing.

use std::collections::{HashMap, HashSet};

use super::zds::{Request, ZdsError};
use super::{NetnsId, PodInfo, PodUid};

/// A pod's network namespace as the registry needs it: which one it is.
pub trait Namespace {
    fn id(&self) -> NetnsId;
}

/// Starts and stops a pod's listeners (every core's, in the proxy).
pub trait PodSink {
    type Netns: Namespace;
    /// What a started pod holds until it is stopped.
    type Pod;
    fn start(
        &mut self,
        uid: &PodUid,
        info: &PodInfo,
        netns: Self::Netns,
    ) -> Result<Self::Pod, String>;
    /// Closes the pod's listeners; its connections drain.
    fn stop(&mut self, uid: &PodUid, pod: Self::Pod);
}

struct Running<P> {
    netns: NetnsId,
    pod: P,
}

/// The captured pods and the snapshot of the current connection.
pub struct Registry<S: PodSink> {
    pods: HashMap<PodUid, Running<S::Pod>>,
    snapshot_done: bool,
    /// Added or kept since the connection opened, before `SnapshotSent`.
    snapshot: HashSet<PodUid>,
}

impl<S: PodSink> Default for Registry<S> {
    fn default() -> Self {
        Registry {
            pods: HashMap::new(),
            snapshot_done: false,
            snapshot: HashSet::new(),
        }
    }
}

impl<S: PodSink> Registry<S> {
    /// A new connection to the CNI: a new snapshot begins; the pods stay.
    pub fn connected(&mut self) {
        self.snapshot.clear();
        self.snapshot_done = false;
    }

    /// Whether the current connection's snapshot was reconciled (ztunnel's readiness).
    pub fn synced(&self) -> bool {
        self.snapshot_done
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn contains(&self, uid: &PodUid) -> bool {
        self.pods.contains_key(uid)
    }

    /// Applies one request; the result is what the Ack says.
    pub fn handle(&mut self, req: Request<S::Netns>, sink: &mut S) -> Result<(), ZdsError> {
        match req {
            Request::Add { uid, info, netns } => self.add(uid, info, netns, sink),
            Request::Keep { uid } => {
                if self.snapshot_done {
                    return Err(ZdsError::KeepAfterSnapshot);
                }
                self.snapshot.insert(uid);
                Ok(())
            }
            Request::Del { uid } => {
                if self.snapshot_done {
                    self.stop(&uid, sink);
                } else {
                    self.snapshot.remove(&uid);
                }
                Ok(())
            }
            Request::SnapshotSent => {
                if self.snapshot_done {
                    return Err(ZdsError::SnapshotTwice);
                }
                self.reconcile(sink);
                self.snapshot_done = true;
                Ok(())
            }
        }
    }

    /// Stops every pod (the proxy is shutting down).
    pub fn stop_all(&mut self, sink: &mut S) {
        for (uid, r) in self.pods.drain() {
            sink.stop(&uid, r.pod);
        }
    }

    fn add(
        &mut self,
        uid: PodUid,
        info: Option<PodInfo>,
        netns: S::Netns,
        sink: &mut S,
    ) -> Result<(), ZdsError> {
        let info = info.ok_or(ZdsError::NoWorkloadInfo)?;
        if !self.snapshot_done {
            self.snapshot.insert(uid.clone());
        }
        let id = netns.id();
        match self.pods.get(&uid) {
            Some(r) if r.netns == id => return Ok(()),
            // The pod's sandbox was re-created with a fresh namespace.
            Some(_) => self.stop(&uid, sink),
            None => {}
        }
        let pod = sink.start(&uid, &info, netns).map_err(ZdsError::Start)?;
        self.pods.insert(uid, Running { netns: id, pod });
        Ok(())
    }

    fn stop(&mut self, uid: &PodUid, sink: &mut S) {
        if let Some(r) = self.pods.remove(uid) {
            sink.stop(uid, r.pod);
        }
    }

    fn reconcile(&mut self, sink: &mut S) {
        let gone: Vec<PodUid> = self
            .pods
            .keys()
            .filter(|uid| !self.snapshot.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            self.stop(&uid, sink);
        }
        self.snapshot.clear();
    }
}

#[cfg(test)]
mod tests;
