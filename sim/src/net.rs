//! turmoil's simulated sockets, adapted to what the real code expects: pingora streams for the
//! gateway (its accepted connections and its connections to backends) and hyper connections for
//! the demo banks and the clients. Nothing here touches the operating system's network.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora::connectors::L4Connect;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use turmoil::net::TcpStream;

/// A simulated TCP stream seen by pingora as a virtual socket.
struct SimSocket(TcpStream);

impl std::fmt::Debug for SimSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSocket")
            .field("peer", &self.0.peer_addr().ok())
            .finish()
    }
}

impl AsyncRead for SimSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl VirtualSocket for SimSocket {
    /// Socket options mean nothing on the simulated network.
    fn set_socket_option(&self, _opt: VirtualSockOpt) -> io::Result<()> {
        Ok(())
    }
}

fn l4_stream(stream: TcpStream) -> L4Stream {
    L4Stream::from(VirtualSocketStream::new(Box::new(SimSocket(stream))))
}

/// An accepted simulated connection, as the gateway's listener applications take it.
pub(crate) fn downstream(stream: TcpStream) -> pingora::protocols::Stream {
    Box::new(l4_stream(stream))
}

/// Dials backends over the simulated network: the gateway's
/// [`lockstep::BackendConnector`] in the simulation.
#[derive(Debug, Default)]
pub(crate) struct SimConnector;

#[async_trait]
impl L4Connect for SimConnector {
    async fn connect(&self, addr: &PeerAddr) -> pingora::Result<L4Stream> {
        let PeerAddr::Inet(inet) = addr else {
            return pingora::Error::e_explain(
                pingora::ErrorType::ConnectError,
                "the simulation has no unix sockets",
            );
        };
        match TcpStream::connect(*inet).await {
            Ok(stream) => Ok(l4_stream(stream)),
            Err(e) => pingora::Error::e_explain(
                pingora::ErrorType::ConnectRefused,
                format!("simulated connect to {inet}: {e}"),
            ),
        }
    }
}
