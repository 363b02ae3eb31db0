//! A tiny ZEO client over the wire codec, and a server on 127.0.0.1 for tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeoraid_memstorage::MemStorage;
use zeoraid_storage::Storage;
use zeoraid_wire::{FrameDecoder, Value};
use zeoraid_zeo_server::codec::{decode_any, encode_call};
use zeoraid_zeo_server::{Address, Encoding, ServerOptions, ZeoServer};

pub mod held;

/// `loadBefore`'s "current revision" tid (ZODB's `maxtid`).
pub const MAX_TID: [u8; 8] = [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
/// An explicit tid later than any commit of a test (not `MAX_TID`, which asks
/// for the current revision as of the published tid).
pub const BEYOND_EVERY_COMMIT: [u8; 8] = [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe];

pub struct TestServer {
    pub addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(options: ServerOptions) -> TestServer {
        Self::start_with(options, Arc::new(MemStorage::new())).await
    }

    pub async fn start_with(options: ServerOptions, storage: Arc<dyn Storage>) -> TestServer {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let server = ZeoServer::new(options, vec![("1".to_string(), storage)]);
        let bound = server
            .bind(&"127.0.0.1:0".parse::<Address>().unwrap())
            .await
            .unwrap();
        let addr = bound.local_addr().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            bound
                .run(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops")
                .unwrap();
        }
    }
}

/// A message received from the server.
#[derive(Debug, Clone)]
pub enum Received {
    Reply(Value, Value),
    Error(Value, String, Value),
    Callback(String, Vec<Value>),
}

pub struct TestClient {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    pub encoding: Encoding,
    next_id: i64,
    pending: Vec<Received>,
    pub callbacks: Vec<(String, Vec<Value>)>,
}

pub const WAIT: Duration = Duration::from_secs(5);

impl TestClient {
    /// Connect and do the handshake, answering with the server's letter.
    pub async fn connect(addr: &str) -> TestClient {
        let mut c = Self::connect_raw(addr).await;
        let hello = c.read_frame().await.expect("server announces");
        assert!(hello == b"Z5" || hello == b"M5", "announcement {hello:?}");
        c.encoding = if hello[0] == b'M' {
            Encoding::Msgpack
        } else {
            Encoding::Pickle
        };
        c.write_frame(&hello).await;
        c
    }

    pub async fn connect_raw(addr: &str) -> TestClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        Self::from_stream(stream)
    }

    /// Connect with a tiny receive buffer (for a client that stops reading).
    pub async fn connect_small_buffer(addr: &str) -> TestClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
        let mut c = Self::from_stream(stream);
        let hello = c.read_frame().await.expect("server announces");
        c.write_frame(&hello).await;
        c
    }

    fn from_stream(stream: TcpStream) -> TestClient {
        TestClient {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(1 << 30),
            encoding: Encoding::Pickle,
            next_id: 1,
            pending: Vec::new(),
            callbacks: Vec::new(),
        }
    }

    pub async fn write_frame(&mut self, payload: &[u8]) {
        let mut out = BytesMut::new();
        out.put_u32(payload.len() as u32);
        out.put_slice(payload);
        self.stream.write_all(&out).await.unwrap();
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame, or None when the server closed the connection.
    pub async fn read_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(f.to_vec());
            }
            match tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
                Err(_) => panic!("timed out waiting for the server"),
            }
        }
    }

    /// Whether the server closes the connection (reading only EOF).
    pub async fn is_closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.read_frame()).await {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    async fn read_message(&mut self) -> Option<Received> {
        let frame = self.read_frame().await?;
        let items = decode_any(&frame, self.encoding).unwrap();
        let [msgid, flag, name, args]: [Value; 4] = items.try_into().unwrap();
        let name = name.as_str().unwrap().to_owned();
        if name == ".reply" {
            if flag.as_int() == Some(2) {
                let parts = args.into_tuple_or_list().unwrap();
                let class = parts[0].as_str().unwrap().to_owned();
                Some(Received::Error(msgid, class, parts[1].clone()))
            } else {
                Some(Received::Reply(msgid, args))
            }
        } else {
            Some(Received::Callback(name, args.into_tuple_or_list().unwrap()))
        }
    }

    pub async fn send(&mut self, msgid: Value, oneway: bool, name: &str, args: Vec<Value>) {
        let frame = encode_call(msgid, oneway, name, args, self.encoding).unwrap();
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Send a call without waiting; returns its msgid.
    pub async fn start_call(&mut self, name: &str, args: Vec<Value>) -> Value {
        let id = Value::Int(self.next_id);
        self.next_id += 1;
        self.send(id.clone(), false, name, args).await;
        id
    }

    pub async fn oneway(&mut self, name: &str, args: Vec<Value>) {
        self.send(Value::Int(0), true, name, args).await;
    }

    /// Wait for the reply to `msgid`, collecting callbacks on the way.
    pub async fn wait_reply(&mut self, msgid: &Value) -> Result<Value, (String, Value)> {
        loop {
            if let Some(pos) = self.pending.iter().position(|r| match r {
                Received::Reply(id, _) | Received::Error(id, _, _) => id == msgid,
                _ => false,
            }) {
                return match self.pending.remove(pos) {
                    Received::Reply(_, v) => Ok(v),
                    Received::Error(_, c, p) => Err((c, p)),
                    Received::Callback(..) => unreachable!(),
                };
            }
            match self
                .read_message()
                .await
                .expect("connection closed while waiting for a reply")
            {
                Received::Callback(name, args) => self.callbacks.push((name, args)),
                other => self.pending.push(other),
            }
        }
    }

    /// Whether a reply to `msgid` arrives within `within`.
    pub async fn reply_within(
        &mut self,
        msgid: &Value,
        within: Duration,
    ) -> Option<Result<Value, (String, Value)>> {
        tokio::time::timeout(within, self.wait_reply(msgid))
            .await
            .ok()
    }

    pub async fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value, (String, Value)> {
        let id = self.start_call(name, args).await;
        self.wait_reply(&id).await
    }

    pub async fn ok(&mut self, name: &str, args: Vec<Value>) -> Value {
        match self.call(name, args).await {
            Ok(v) => v,
            Err(e) => panic!("{name} failed: {e:?}"),
        }
    }

    pub async fn register(&mut self) -> Value {
        self.ok("register", vec![Value::from("1"), Value::Bool(false)])
            .await
    }

    /// Wait for a callback named `name`.
    pub async fn wait_callback(&mut self, name: &str) -> Vec<Value> {
        loop {
            if let Some(pos) = self.callbacks.iter().position(|(n, _)| n == name) {
                return self.callbacks.remove(pos).1;
            }
            match self
                .read_message()
                .await
                .expect("connection closed while waiting for a callback")
            {
                Received::Callback(n, args) => self.callbacks.push((n, args)),
                other => self.pending.push(other),
            }
        }
    }

    /// One commit of `stores` (oid, serial, data) with transaction id `txn`.
    pub async fn commit(
        &mut self,
        txn: i64,
        stores: &[(Vec<u8>, Vec<u8>, Vec<u8>)],
    ) -> Result<Value, (String, Value)> {
        self.begin(txn).await;
        for (oid, serial, data) in stores {
            self.store(txn, oid, serial, data).await;
        }
        let voted = self.call("vote", vec![Value::Int(txn)]).await?;
        assert_eq!(
            voted.as_tuple_or_list().map(<[Value]>::len),
            Some(0),
            "vote result {voted:?}"
        );
        self.call("tpc_finish", vec![Value::Int(txn)]).await
    }

    pub async fn begin(&mut self, txn: i64) {
        self.oneway(
            "tpc_begin",
            vec![
                Value::Int(txn),
                Value::from(&b""[..]),
                Value::from(&b"test"[..]),
                Value::Dict(vec![]),
                Value::None,
                Value::from(" "),
            ],
        )
        .await;
    }

    pub async fn store(&mut self, txn: i64, oid: &[u8], serial: &[u8], data: &[u8]) {
        self.oneway(
            "storea",
            vec![
                Value::from(oid),
                Value::from(serial),
                Value::from(data),
                Value::Int(txn),
            ],
        )
        .await;
    }
}

pub fn oid(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

pub const Z64: [u8; 8] = [0; 8];
