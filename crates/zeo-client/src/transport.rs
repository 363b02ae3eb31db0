//! Opening the byte stream to a server: TCP or a Unix socket, optionally wrapped
//! in TLS. Everything above sees one boxed `AsyncRead + AsyncWrite`.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::ClientError;
use crate::options::ServerAddress;
use crate::tls::Tls;

/// Any bidirectional byte stream.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub(crate) type BoxedStream = Box<dyn Stream>;

fn connect_err(address: &ServerAddress, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Connect {
        address: address.to_string(),
        reason: reason.to_string(),
    }
}

/// Connects to `address` (no timeout here; the caller bounds the whole attempt).
pub(crate) async fn open(
    address: &ServerAddress,
    tls: Option<&Tls>,
) -> Result<BoxedStream, ClientError> {
    match address {
        ServerAddress::Tcp { host, port } => {
            let tcp = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| connect_err(address, e))?;
            // Small frames (one-way stores, votes) must not wait for Nagle.
            let _ = tcp.set_nodelay(true);
            wrap(address, tcp, tls).await
        }
        ServerAddress::Unix(path) => {
            #[cfg(unix)]
            {
                let unix = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| connect_err(address, e))?;
                wrap(address, unix, tls).await
            }
            #[cfg(not(unix))]
            {
                let _ = path;
                Err(connect_err(address, "Unix sockets are not supported here"))
            }
        }
    }
}

async fn wrap<S: Stream + 'static>(
    address: &ServerAddress,
    stream: S,
    tls: Option<&Tls>,
) -> Result<BoxedStream, ClientError> {
    match tls {
        None => Ok(Box::new(stream)),
        Some(tls) => {
            let name = tls.server_name(address)?;
            let stream = tls
                .connector()
                .connect(name, stream)
                .await
                .map_err(|e| connect_err(address, format!("TLS handshake: {e}")))?;
            Ok(Box::new(stream))
        }
    }
}
