//! The fake istio-cni: pod namespaces ([`pods`]), istio-cni's in-pod rules ([`rules`]) and,
//! here, its ZDS side: a SOCK_SEQPACKET listener at the path the proxy dials
//! (`INPOD_UDS`), one blocking connection at a time. As istio-cni's node agent does
//! (istio/istio `cni/pkg/nodeagent/ztunnelserver.go`): read the proxy's `ZdsHello`, send
//! the snapshot one request at a time, waiting for each Ack, then `SnapshotSent`.

pub mod pods;
pub mod rules;

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use prost::Message;
use socket2::{Domain, SockAddr, Socket, Type};
use zring_xds::zds::{self, workload_request::Payload};

/// The listening socket; removed from the file system when dropped.
pub struct ZdsServer {
    sock: Socket,
    path: PathBuf,
}

impl ZdsServer {
    pub fn bind(path: &Path) -> anyhow::Result<Self> {
        let _ = std::fs::remove_file(path);
        let sock = Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
        sock.bind(&SockAddr::unix(path)?)
            .with_context(|| format!("bind {}", path.display()))?;
        sock.listen(16)?;
        Ok(ZdsServer {
            sock,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for the proxy, then reads its hello.
    pub fn accept(&self, timeout: Duration) -> anyhow::Result<ZdsConn> {
        self.sock.set_nonblocking(true)?;
        let deadline = std::time::Instant::now() + timeout;
        let sock = loop {
            match self.sock.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > deadline {
                        bail!(
                            "no proxy connected to {} in {timeout:?}",
                            self.path.display()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        };
        sock.set_nonblocking(false)?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        let conn = ZdsConn { sock };
        let hello = zds::ZdsHello::decode(conn.recv()?.as_slice()).context("ZdsHello")?;
        if hello.version != zds::Version::V1 as i32 {
            bail!("hello with version {}", hello.version);
        }
        Ok(conn)
    }
}

impl Drop for ZdsServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One proxy connection. Each request returns the Ack's error ("" = success).
pub struct ZdsConn {
    sock: Socket,
}

/// The pod's name, namespace and service account as AddWorkload carries them.
pub struct Info<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub service_account: &'a str,
}

impl ZdsConn {
    pub fn add(
        &self,
        uid: &str,
        info: Option<Info<'_>>,
        netns: Option<BorrowedFd<'_>>,
    ) -> anyhow::Result<String> {
        let add = zds::AddWorkload {
            uid: uid.into(),
            workload_info: info.map(|i| zds::WorkloadInfo {
                name: i.name.into(),
                namespace: i.namespace.into(),
                service_account: i.service_account.into(),
            }),
        };
        let fds: Vec<BorrowedFd<'_>> = netns.into_iter().collect();
        self.request(&packet(Payload::Add(add)), &fds)
    }

    pub fn keep(&self, uid: &str) -> anyhow::Result<String> {
        self.request(
            &packet(Payload::Keep(zds::KeepWorkload { uid: uid.into() })),
            &[],
        )
    }

    pub fn del(&self, uid: &str) -> anyhow::Result<String> {
        self.request(
            &packet(Payload::Del(zds::DelWorkload { uid: uid.into() })),
            &[],
        )
    }

    pub fn snapshot_sent(&self) -> anyhow::Result<String> {
        self.request(&packet(Payload::SnapshotSent(zds::SnapshotSent {})), &[])
    }

    /// Sends any bytes with any descriptors and returns the Ack's error.
    pub fn request(&self, data: &[u8], fds: &[BorrowedFd<'_>]) -> anyhow::Result<String> {
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
        sendmsg::<()>(
            self.sock.as_raw_fd(),
            &[IoSlice::new(data)],
            cmsgs,
            MsgFlags::empty(),
            None,
        )
        .context("send to the proxy")?;
        let resp =
            zds::WorkloadResponse::decode(self.recv()?.as_slice()).context("WorkloadResponse")?;
        match resp.payload {
            Some(zds::workload_response::Payload::Ack(a)) => Ok(a.error),
            None => bail!("response without an Ack"),
        }
    }

    fn recv(&self) -> anyhow::Result<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        let n = nix::sys::socket::recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::empty())
            .context("read from the proxy")?;
        if n == 0 {
            bail!("the proxy closed the ZDS connection");
        }
        buf.truncate(n);
        Ok(buf)
    }
}

fn packet(p: Payload) -> Vec<u8> {
    zds::WorkloadRequest { payload: Some(p) }.encode_to_vec()
}
