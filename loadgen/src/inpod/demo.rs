//! `demo --inpod`: the demo's two nodes with in-pod capture. Each node's zring runs in its
//! ztunnel pod with `--inpod` instead of plumbing the node; the project's fake istio-cni
//! (`testsupport::cni`) installs istio-cni's in-pod rules inside each enrolled app pod and
//! hands the pod's namespace to that node's zring over ZDS, as istio-cni's node agent does.

use crate::error::{Error, Result};
use crate::mesh::NAMESPACE;
use crate::topo::plan::{Node, Role};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testsupport::cni::{pods, Info, ZdsConn, ZdsServer};

/// How long a node's zring may take to dial its CNI's socket.
const ZDS_ACCEPT: Duration = Duration::from_secs(30);

/// The fake CNI of every node: its ZDS connections stay open while the topology is up (a
/// dropped one would keep the pods anyway, as ztunnel does).
#[derive(Default)]
pub struct Cni {
    /// Each connection before its listening socket (fields drop in order).
    nodes: Vec<(ZdsConn, ZdsServer)>,
}

/// The CNI's socket for `node`, bound before its zring starts.
pub fn listen(dir: &Path, node: &Node) -> Result<(ZdsServer, PathBuf)> {
    let path = dir.join(format!("zds-{}.sock", node.name));
    let server = ZdsServer::bind(&path).map_err(cni_error("binding the ZDS socket"))?;
    Ok((server, path))
}

/// `zring run`'s arguments for in-pod mode with the CNI at `uds`.
pub fn args(uds: &Path) -> [String; 4] {
    [
        "--inpod".into(),
        "true".into(),
        "--inpod-uds".into(),
        uds.display().to_string(),
    ]
}

impl Cni {
    /// Waits for `node`'s zring, enrols the node's HBONE app pods (rules, then
    /// AddWorkload with the pod's name, namespace and service account) and sends
    /// SnapshotSent; every Ack must be empty.
    pub fn hand_over(&mut self, server: ZdsServer, node: &Node) -> Result<()> {
        let conn = server
            .accept(ZDS_ACCEPT)
            .map_err(cni_error(&format!("{}'s zring on ZDS", node.name)))?;
        let enrolled = node
            .pods
            .iter()
            .filter(|p| p.enrolled && p.role != Role::Ztunnel);
        for pod in enrolled {
            pods::enrol_netns(&pod.netns).map_err(cni_error("istio-cni's in-pod rules"))?;
            let fd = pods::open_netns(&pod.netns).map_err(cni_error("the pod's namespace"))?;
            let info = Info {
                name: pod.name,
                namespace: NAMESPACE,
                service_account: pod.name,
            };
            let uid = format!("cluster1//v1/Pod/{NAMESPACE}/{}", pod.name);
            let acked = conn
                .add(&uid, Some(info), Some(fd.as_fd()))
                .map_err(cni_error("AddWorkload"))?;
            refused(&acked, &format!("AddWorkload {}", pod.name))?;
        }
        let acked = conn.snapshot_sent().map_err(cni_error("SnapshotSent"))?;
        refused(&acked, "SnapshotSent")?;
        self.nodes.push((conn, server));
        Ok(())
    }
}

fn refused(ack: &str, what: &str) -> Result<()> {
    if ack.is_empty() {
        return Ok(());
    }
    Err(Error::Topology(format!("zring refused {what}: {ack}")))
}

fn cni_error(what: &str) -> impl FnOnce(anyhow::Error) -> Error + '_ {
    move |e| Error::Topology(format!("fake istio-cni, {what}: {e:#}"))
}
