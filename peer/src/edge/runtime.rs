//! The async runtime handed to `webrtc`: its tokio runtime, except that every UDP socket it binds
//! gets a larger receive buffer.
//!
//! Why: a node relaying a few hundred Mbit/s through many edges on one host is sometimes busy for
//! a few milliseconds, long enough for the default receive buffer (208 KiB on Linux) to overflow.
//! The kernel then drops datagrams, and SCTP in `webrtc` 0.21 recovers a lost tail only after its
//! retransmission timeout, never under 1 s (`RTO_MIN`): the viewers below that edge stall. A larger
//! buffer absorbs the bursts. The kernel caps the request at `net.core.rmem_max` (4 MiB on stock
//! Debian) without an error, so the effective size is logged.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `webrtc`'s tokio runtime with sized UDP receive buffers; see the module docs.
#[derive(Debug)]
pub(super) struct BufferedRuntime {
    inner: TokioRuntime,
    /// Bytes asked for; 0 keeps the system's default.
    recv_buffer: usize,
}

impl BufferedRuntime {
    pub(super) fn shared(recv_buffer: usize) -> Arc<dyn Runtime> {
        Arc::new(Self {
            inner: TokioRuntime,
            recv_buffer,
        })
    }
}

impl Runtime for BufferedRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        if self.recv_buffer > 0 {
            size_recv_buffer(&socket, self.recv_buffer);
        }
        self.inner.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> BoxFuture<'a, io::Result<Arc<dyn AsyncTcpStream>>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

/// Whether this host's UDP sockets coalesce received datagrams (GRO), probed once on a loopback
/// socket: `webrtc` then reads into buffers that hold any datagram (see
/// [`super::EdgeConfig::sctp_mtu_toward`]). Outside a tokio runtime it cannot probe (the socket
/// needs the reactor) and says no.
pub(super) fn udp_coalesces() -> bool {
    static PROBED: OnceLock<bool> = OnceLock::new();
    if tokio::runtime::Handle::try_current().is_err() {
        return PROBED.get().copied().unwrap_or(false);
    }
    *PROBED.get_or_init(|| {
        let socket = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .and_then(|s| TokioRuntime.wrap_udp_socket(s));
        let segments = socket.as_ref().map_or(1, |s| s.max_gro_segments());
        tracing::debug!(segments, "UDP receive coalescing (GRO) probed");
        segments > 1
    })
}

/// Asks for a `bytes` receive buffer on `socket`; returns the size the kernel reports afterwards
/// (Linux reports twice the usable size, as it counts its bookkeeping too). A refusal is logged,
/// not fatal: the edge still works with the default buffer.
fn size_recv_buffer(socket: &std::net::UdpSocket, bytes: usize) -> usize {
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(bytes) {
        tracing::warn!("cannot size a UDP receive buffer: {e}");
    }
    let effective = sock.recv_buffer_size().unwrap_or(0);
    tracing::debug!(requested = bytes, effective, "UDP receive buffer");
    effective
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_get_the_requested_receive_buffer_up_to_the_system_cap() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let default = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok());
        let asked = 1 << 20;
        let effective = size_recv_buffer(&socket, asked);
        match cap {
            // Linux: the kernel grants min(asked, rmem_max) and reports it doubled.
            Some(cap) => assert_eq!(effective, 2 * asked.min(cap), "default was {default}"),
            None => assert!(effective >= default),
        }
    }
}
