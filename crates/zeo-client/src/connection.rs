//! Opening one connection: transport (TCP / Unix socket, optionally TLS), the
//! handshake (the server announces `Z5` or `M5`; we answer with the same letter),
//! then `register(storage, read_only)` → the server's last tid, and `get_info`.
//! The whole attempt is bounded by the connect timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info};
use zeoraid_storage::Tid;
use zeoraid_wire::handshake::client_reply;
use zeoraid_wire::{encode_frame, FrameDecoder, Value};

use crate::callbacks::Callbacks;
use crate::convert::tid_of;
use crate::error::ClientError;
use crate::options::{ServerAddress, ZeoClientOptions};
use crate::rpc::{Session, SessionParams};
use crate::tls::Tls;
use crate::transport::{self, BoxedStream};

/// A registered connection and what registering told us.
pub(crate) struct Established {
    pub(crate) session: Arc<Session>,
    /// `register`'s answer: the server's last transaction.
    pub(crate) last_tid: Tid,
    /// `get_info`'s answer.
    pub(crate) info: Value,
}

fn connect_err(address: &ServerAddress, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Connect {
        address: address.to_string(),
        reason: reason.to_string(),
    }
}

/// Reads the server's protocol announcement and answers it.
async fn handshake(
    address: &ServerAddress,
    stream: &mut BoxedStream,
    max_frame_size: usize,
) -> Result<(zeoraid_wire::Encoding, BytesMut), ClientError> {
    let mut decoder = FrameDecoder::new(max_frame_size.min(1024));
    let mut buf = BytesMut::with_capacity(64);
    let announcement = loop {
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => break frame,
            Ok(None) => {}
            Err(e) => return Err(connect_err(address, format!("bad handshake frame: {e}"))),
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| connect_err(address, format!("reading handshake: {e}")))?;
        if n == 0 {
            return Err(connect_err(
                address,
                "server closed the connection during the handshake",
            ));
        }
    };
    let (reply, encoding) = client_reply(&announcement).ok_or_else(|| {
        connect_err(
            address,
            format!(
                "unsupported protocol {:?} (ZEO 5/6 servers announce Z5 or M5)",
                String::from_utf8_lossy(&announcement)
            ),
        )
    })?;
    let mut out = Vec::with_capacity(reply.len() + 4);
    encode_frame(&reply, &mut out)?;
    stream
        .write_all(&out)
        .await
        .map_err(|e| connect_err(address, format!("writing handshake: {e}")))?;
    stream
        .flush()
        .await
        .map_err(|e| connect_err(address, format!("writing handshake: {e}")))?;
    Ok((encoding, buf))
}

async fn establish_unbounded(
    address: &ServerAddress,
    options: &ZeoClientOptions,
    tls: Option<&Tls>,
    callbacks: Arc<Callbacks>,
    generation: u64,
) -> Result<Established, ClientError> {
    let mut stream = transport::open(address, tls).await?;
    let (encoding, leftover) = handshake(address, &mut stream, options.max_frame_size).await?;
    debug!(server = %address, ?encoding, "ZEO handshake done");
    let session = Session::start(
        stream,
        leftover,
        SessionParams {
            generation,
            address: address.clone(),
            encoding,
            heartbeat_interval: options.heartbeat_interval,
            slow_call: options.slow_call,
            max_frame_size: options.max_frame_size,
        },
        callbacks,
    );
    // Closes the session if registration fails or the attempt is cancelled (the
    // connect timeout), so no half-open connection is left behind.
    let mut guard = CloseOnDrop(Some(session.clone()));
    let registered = async {
        let reply = session
            .call(
                "register",
                Value::Tuple(vec![
                    Value::Str(options.storage.clone()),
                    Value::Int(i64::from(options.read_only)),
                ]),
                options.connect_timeout,
            )
            .await?;
        let last_tid = match &reply {
            Value::None => Tid::ZERO,
            v => tid_of(v, "register")?,
        };
        let info = session
            .call("get_info", Value::Tuple(vec![]), options.connect_timeout)
            .await?;
        if info.as_dict().is_none() {
            return Err(ClientError::Protocol(format!(
                "get_info returned a {}",
                info.type_name()
            )));
        }
        Ok((last_tid, info))
    }
    .await;
    match registered {
        Ok((last_tid, info)) => {
            guard.0 = None;
            Ok(Established {
                session,
                last_tid,
                info,
            })
        }
        Err(e) => {
            session.close(format!("registration failed: {e}"));
            Err(match e {
                e @ ClientError::Remote(_) => {
                    connect_err(address, format!("register({:?}): {e}", options.storage))
                }
                e => connect_err(address, e),
            })
        }
    }
}

struct CloseOnDrop(Option<Arc<Session>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            session.close("connection attempt abandoned");
        }
    }
}

/// Connects to `address` and registers, all within the connect timeout.
pub(crate) async fn establish(
    address: &ServerAddress,
    options: &ZeoClientOptions,
    tls: Option<&Tls>,
    callbacks: Arc<Callbacks>,
    generation: u64,
) -> Result<Established, ClientError> {
    let limit: Duration = options.connect_timeout;
    match tokio::time::timeout(
        limit,
        establish_unbounded(address, options, tls, callbacks, generation),
    )
    .await
    {
        Ok(Ok(established)) => {
            info!(
                server = %address,
                storage = %options.storage,
                generation,
                encoding = ?established.session.encoding,
                last_tid = ?established.last_tid,
                "connected to ZEO server"
            );
            Ok(established)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(connect_err(
            address,
            format!("no connection within {limit:?}"),
        )),
    }
}
