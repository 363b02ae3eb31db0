//! The listener and the per-connection task: bind a TCP `host:port` or a Unix
//! socket path, accept clients (optionally through TLS), run the handshake and a
//! [`Session`] for each, and stop gracefully on shutdown. Also the state shared by
//! all connections of one served storage ([`ServedStorage`]: commit lock,
//! invalidation queue, registered connections, statistics).

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, Notify, RwLock};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};
use zeoraid_storage::{Oid, Storage, Tid};
use zeoraid_wire::Value;

use crate::codec::{encode_callback, Encoding};
use crate::commit_lock::CommitLock;
use crate::connection::{
    parse_handshake, short_repr, spawn_writer, ConnHandle, ConnId, Delivery, FrameReader,
    Handshake, OutputLimits, DEFAULT_HANDSHAKE_TIMEOUT,
};
use crate::error::{CloseReason, ServerError};
use crate::invalidation::{info_args, invalidate_args, InvalidationQueue};
use crate::management::ManagementHook;
use crate::session::Session;
use crate::shutdown::Shutdown;
use crate::tls::TlsOptions;

/// How the server behaves; the `<zeo>` section of a configuration maps onto this.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Refuse every write (ZEO's `read-only`).
    pub read_only: bool,
    /// Transactions kept for `getInvalidations` (ZEO's `invalidation-queue-size`).
    pub invalidation_queue_size: usize,
    /// Beyond the queue, compute invalidations by iterating the storage for clients
    /// whose last transaction is younger than this (ZEO's `invalidation-age`).
    pub invalidation_age: Option<Duration>,
    /// Close the connection of a client that holds the commit lock longer.
    pub transaction_timeout: Option<Duration>,
    /// Announce msgpack (`M5`) instead of pickle (`Z5`).
    pub msgpack: bool,
    /// Largest frame accepted from a client; a larger one closes the connection.
    pub max_frame_size: usize,
    /// TLS with required client certificates.
    pub tls: Option<TlsOptions>,
    /// Where blob uploads (`storeBlobStart`…) are written before the vote.
    /// Default: the system temporary directory.
    pub blob_temp_dir: Option<PathBuf>,
    /// How long a client may take to answer the handshake, and how long it may
    /// stay silent in the middle of a frame (it is then disconnected; idle time
    /// between frames is not limited).
    pub handshake_timeout: Duration,
    /// Output queue limits of each connection.
    pub output_limits: OutputLimits,
    /// Refuse connections beyond this many (closed right after accept).
    pub max_connections: Option<usize>,
    /// On shutdown, how long voted transactions get to finish.
    pub shutdown_grace: Duration,
    /// Answers gocept.zeoraid's `raid_*` methods for registered clients; without
    /// it they are unknown methods (the connection is closed, as in ZEO).
    pub management: Option<ManagementHook>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            read_only: false,
            invalidation_queue_size: 100,
            invalidation_age: None,
            transaction_timeout: None,
            msgpack: false,
            max_frame_size: zeoraid_wire::DEFAULT_MAX_FRAME_SIZE,
            tls: None,
            blob_temp_dir: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            output_limits: OutputLimits {
                soft_limit: 4 * 1024 * 1024,
                hard_limit: 256 * 1024 * 1024,
            },
            max_connections: None,
            shutdown_grace: Duration::from_secs(30),
            management: None,
        }
    }
}

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `host:port` (a bare port means all interfaces).
    Tcp(String),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

impl FromStr for Address {
    type Err = ServerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ServerError::BadAddress(s.to_owned()));
        }
        if s.chars().all(|c| c.is_ascii_digit()) {
            return Ok(Address::Tcp(format!("0.0.0.0:{s}")));
        }
        if let Some((host, port)) = s.rsplit_once(':') {
            if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) && !host.contains('/') {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let host = if host.is_empty() { "0.0.0.0" } else { host };
                return Ok(if host.contains(':') {
                    Address::Tcp(format!("[{host}]:{port}"))
                } else {
                    Address::Tcp(format!("{host}:{port}"))
                });
            }
        }
        Ok(Address::Unix(PathBuf::from(s)))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Counters of one storage, as `server_status` reports them.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    pub stores: u64,
    pub commits: u64,
    pub aborts: u64,
    pub active_txns: i64,
    pub conflicts: u64,
    pub conflicts_resolved: u64,
    pub start: String,
}

/// Invalidations written into connections' buffers and not yet sent
/// ([`ServedStorage::invalidate`]): sent by [`Unsent::send`], or when dropped.
#[must_use = "send it once the visibility lock is released"]
pub(crate) struct Unsent(Vec<Arc<ConnHandle>>);

impl Unsent {
    pub fn send(mut self) {
        self.send_now();
    }

    fn send_now(&mut self) {
        for conn in self.0.drain(..) {
            conn.flush_direct();
        }
    }
}

impl Drop for Unsent {
    fn drop(&mut self) {
        self.send_now();
    }
}

/// Everything the connections of one storage share.
pub(crate) struct ServedStorage {
    pub name: String,
    pub storage: Arc<dyn Storage>,
    pub lock: Arc<CommitLock>,
    pub invq: Mutex<InvalidationQueue>,
    pub conns: Mutex<Vec<Arc<ConnHandle>>>,
    /// Loads hold it shared while reading and queueing their reply; a finish holds
    /// it exclusively while queueing a commit's invalidations (after the storage
    /// made the commit visible). So a reply built from data older than a commit
    /// is queued before that commit's invalidation, as in ZEO's single-threaded
    /// server; a load that already sees the commit may be answered before its
    /// invalidation (docs/zeo-server.md, "Ordering", says why clients accept that).
    pub visibility: Arc<RwLock<()>>,
    /// `server_status()['loads']`, counted without a lock (every load bumps it).
    pub loads: AtomicU64,
    /// The newest tid whose invalidations are queued to every registered
    /// connection (the invalidation queue's latest), readable without a lock;
    /// changed only under `visibility`'s exclusive side.
    published: AtomicU64,
    /// Woken when `published` changes or a finish fails: loads that read a
    /// revision newer than `published` wait for it.
    pub published_changed: Notify,
    /// Commits past their storage's commit point, published in that order once
    /// durable (`publication.rs`).
    pub publication: Arc<crate::publication::PublicationQueue>,
    pub stats: Mutex<Stats>,
    /// The storage's blob directory when clients share it (`storeBlobShared`).
    pub shared_blob_dir: Option<PathBuf>,
}

impl ServedStorage {
    pub fn stat<F: FnOnce(&mut Stats)>(&self, f: F) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s)
        }
    }

    pub fn count_load(&self) {
        self.loads.fetch_add(1, Ordering::Relaxed);
    }

    /// The newest tid whose invalidations are queued to every registered
    /// connection: what `register` and `lastTransaction` answer, and the newest
    /// revision a load may return. The storage's own last transaction can be
    /// ahead of it for the moment between a commit becoming visible in the
    /// storage and its invalidations being queued.
    pub fn published_tid(&self) -> Tid {
        Tid::from_u64(self.published.load(Ordering::SeqCst))
    }

    /// Start the invalidation queue (and the published tid) afresh at `last`.
    fn reset_invalidations(&self, last: Tid) {
        if let Ok(mut q) = self.invq.lock() {
            q.reset(last);
        }
        self.published.store(last.as_u64(), Ordering::SeqCst);
        self.published_changed.notify_waiters();
    }

    pub fn register(&self, conn: Arc<ConnHandle>) {
        if let Ok(mut conns) = self.conns.lock() {
            conns.push(conn);
        }
    }

    pub fn unregister(&self, id: ConnId) {
        if let Ok(mut conns) = self.conns.lock() {
            conns.retain(|c| c.id != id);
        }
    }

    fn connections(&self) -> Vec<Arc<ConnHandle>> {
        self.conns.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Record a commit and tell every other connection about it. Call with the
    /// visibility lock held exclusively, and send the returned [`Unsent`] once
    /// it is released: the invalidations are in place in every connection's
    /// output (their order against loads is fixed), the sending can wait.
    pub fn invalidate(&self, from: Option<ConnId>, tid: Tid, oids: Vec<Oid>) -> Unsent {
        let args = invalidate_args(tid, &oids);
        if let Ok(mut q) = self.invq.lock() {
            q.push(tid, oids);
        }
        // Encoded once per encoding, not once per connection.
        let mut frames: Vec<(Encoding, Bytes)> = Vec::with_capacity(1);
        let mut unsent = Vec::new();
        for conn in self.connections() {
            if Some(conn.id) == from {
                continue;
            }
            let encoding = conn.encoding();
            let frame = match frames.iter().find(|(e, _)| *e == encoding) {
                Some((_, frame)) => frame.clone(),
                None => match encode_callback("invalidateTransaction", args.clone(), encoding) {
                    Ok(frame) => {
                        frames.push((encoding, frame.clone()));
                        frame
                    }
                    Err(e) => {
                        warn!(conn = %conn.label(), "unencodable invalidation: {e}");
                        continue;
                    }
                },
            };
            if conn.send_callback_frame(frame) == Delivery::Buffered {
                unsent.push(conn);
            }
        }
        self.published.fetch_max(tid.as_u64(), Ordering::SeqCst);
        self.published_changed.notify_waiters();
        Unsent(unsent)
    }

    /// `info({'length','size'})` to every connection of this storage.
    pub fn broadcast_info(&self, length: u64, size: u64) {
        let args = info_args(length, size);
        for conn in self.connections() {
            conn.send_callback("info", args.clone());
        }
    }

    /// Forget the invalidation queue and make every client reconnect and verify
    /// its cache (ZEO's `invalidateCache`).
    pub async fn invalidate_cache(&self) {
        let last = self.storage.last_transaction().await.unwrap_or(Tid::ZERO);
        self.reset_invalidations(last);
        for conn in self.connections() {
            conn.close(CloseReason::Server("storage cache invalidated".into()));
        }
    }

    /// The `server_status` dict, keys in ZEO's order.
    pub async fn server_status(&self) -> Value {
        let stats = self.stats.lock().map(|s| s.clone()).ok();
        let connections = self.conns.lock().map(|c| c.len()).unwrap_or(0);
        let last = self.storage.last_transaction().await.unwrap_or(Tid::ZERO);
        let Some(s) = stats else {
            return Value::Dict(Vec::new());
        };
        let timeout_alive = if self.lock_has_timeout() {
            Value::Bool(true)
        } else {
            Value::from("stub")
        };
        Value::dict_from_pairs([
            ("connections", Value::from(connections)),
            ("loads", Value::from(self.loads.load(Ordering::Relaxed))),
            ("stores", Value::from(s.stores)),
            ("commits", Value::from(s.commits)),
            ("aborts", Value::from(s.aborts)),
            ("active_txns", Value::from(s.active_txns)),
            (
                "lock_time",
                self.lock
                    .lock_time()
                    .map(Value::Float)
                    .unwrap_or(Value::None),
            ),
            ("conflicts", Value::from(s.conflicts)),
            ("conflicts_resolved", Value::from(s.conflicts_resolved)),
            ("start", Value::from(s.start)),
            ("waiting", Value::from(self.lock.waiting())),
            ("timeout-thread-is-alive", timeout_alive),
            ("last-transaction", Value::from(hex::encode(last.0))),
        ])
    }

    fn lock_has_timeout(&self) -> bool {
        self.lock.has_timeout()
    }
}

/// State shared by the whole server.
pub(crate) struct ServerShared {
    pub options: ServerOptions,
    pub storages: Vec<Arc<ServedStorage>>,
    pub by_name: HashMap<String, Arc<ServedStorage>>,
    next_conn_id: AtomicU64,
    next_txn_id: AtomicU64,
    upload_counter: AtomicU64,
    connections: AtomicU64,
}

impl ServerShared {
    pub fn next_txn_id(&self) -> u64 {
        self.next_txn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh file name for a blob upload.
    pub fn blob_upload_path(&self, conn: ConnId) -> PathBuf {
        let n = self.upload_counter.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .options
            .blob_temp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        dir.join(format!(
            "zeoraid-upload-{}-{conn}-{n}.tmp",
            std::process::id()
        ))
    }

    /// `{storage: server_status}` as the JSON `ruok` answers, formatted like
    /// Python's `json.dumps`.
    pub async fn ruok_json(&self) -> String {
        let mut parts = Vec::new();
        for served in &self.storages {
            let status = served.server_status().await;
            parts.push(format!(
                "{}: {}",
                json_string(&served.name),
                python_json(&status)
            ));
        }
        format!("{{{}}}", parts.join(", "))
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// JSON text of a status value, with `json.dumps`'s default separators.
fn python_json(v: &Value) -> String {
    match v {
        Value::None => "null".into(),
        Value::Bool(true) => "true".into(),
        Value::Bool(false) => "false".into(),
        Value::Int(n) => n.to_string(),
        Value::BigInt(n) => n.to_string(),
        Value::Float(f) => zeoraid_wire::float_repr(*f),
        Value::Str(s) => json_string(s),
        Value::Bytes(b) => json_string(&String::from_utf8_lossy(b)),
        Value::Tuple(items) | Value::List(items) => {
            format!(
                "[{}]",
                items.iter().map(python_json).collect::<Vec<_>>().join(", ")
            )
        }
        Value::Dict(d) => format!(
            "{{{}}}",
            d.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => json_string(s),
                        other => json_string(&python_json(other)),
                    };
                    format!("{key}: {}", python_json(v))
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => json_string(other.type_name()),
    }
}

/// A ZEO server for a set of named storages.
#[derive(Clone)]
pub struct ZeoServer {
    shared: Arc<ServerShared>,
}

fn ctime_now() -> String {
    chrono::Local::now()
        .format("%a %b %e %H:%M:%S %Y")
        .to_string()
}

impl ZeoServer {
    /// Serve `storages` (name → storage, e.g. `"1"`) with `options`.
    pub fn new(options: ServerOptions, storages: Vec<(String, Arc<dyn Storage>)>) -> Self {
        Self::with_blob_dirs(options, storages, HashMap::new())
    }

    /// Like [`ZeoServer::new`], with the shared blob directory of some storages
    /// (clients configured with `shared_blob_dir` write their blobs there and send
    /// `storeBlobShared`). The directory must use ZODB's bushy layout.
    pub fn with_blob_dirs(
        options: ServerOptions,
        storages: Vec<(String, Arc<dyn Storage>)>,
        shared_blob_dirs: HashMap<String, PathBuf>,
    ) -> Self {
        let start = ctime_now();
        let served: Vec<Arc<ServedStorage>> = storages
            .into_iter()
            .map(|(name, storage)| {
                Arc::new(ServedStorage {
                    lock: CommitLock::new(name.clone(), options.transaction_timeout),
                    invq: Mutex::new(InvalidationQueue::new(
                        options.invalidation_queue_size.max(1),
                        Tid::ZERO,
                    )),
                    conns: Mutex::new(Vec::new()),
                    visibility: Arc::new(RwLock::new(())),
                    loads: AtomicU64::new(0),
                    published: AtomicU64::new(0),
                    published_changed: Notify::new(),
                    publication: Default::default(),
                    stats: Mutex::new(Stats {
                        stores: 0,
                        commits: 0,
                        aborts: 0,
                        active_txns: 0,
                        conflicts: 0,
                        conflicts_resolved: 0,
                        start: start.clone(),
                    }),
                    shared_blob_dir: shared_blob_dirs.get(&name).cloned(),
                    name,
                    storage,
                })
            })
            .collect();
        let by_name = served.iter().map(|s| (s.name.clone(), s.clone())).collect();
        ZeoServer {
            shared: Arc::new(ServerShared {
                options,
                storages: served,
                by_name,
                next_conn_id: AtomicU64::new(1),
                next_txn_id: AtomicU64::new(1),
                upload_counter: AtomicU64::new(0),
                connections: AtomicU64::new(0),
            }),
        }
    }

    /// The names of the served storages, in order.
    pub fn storage_names(&self) -> Vec<String> {
        self.shared
            .storages
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// Bind the listening socket (TCP port 0 picks a free port; see
    /// [`BoundServer::local_addr`]).
    pub async fn bind(self, address: &Address) -> Result<BoundServer, ServerError> {
        let listener = match address {
            Address::Tcp(a) => {
                let l =
                    TcpListener::bind(a.as_str())
                        .await
                        .map_err(|source| ServerError::Bind {
                            address: a.clone(),
                            source,
                        })?;
                Listener::Tcp(l)
            }
            Address::Unix(p) => {
                if p.exists() {
                    // A stale socket from an earlier run (ZEO removes it too).
                    let _ = std::fs::remove_file(p);
                }
                let l = UnixListener::bind(p).map_err(|source| ServerError::Bind {
                    address: p.display().to_string(),
                    source,
                })?;
                Listener::Unix(l, p.clone())
            }
        };
        let tls = match &self.shared.options.tls {
            Some(t) => Some(crate::tls::acceptor(t)?),
            None => None,
        };
        if let Some(dir) = &self.shared.options.blob_temp_dir {
            std::fs::create_dir_all(dir)?;
        }
        for served in &self.shared.storages {
            let last = served.storage.last_transaction().await.unwrap_or(Tid::ZERO);
            served.reset_invalidations(last);
        }
        let local = listener.local_addr();
        info!(
            "listening on {local} ({}) with storages: {}",
            if self.shared.options.read_only {
                "RO"
            } else {
                "RW"
            },
            self.storage_names().join(", ")
        );
        Ok(BoundServer {
            server: self,
            listener,
            tls,
            local,
        })
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    fn local_addr(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            Listener::Unix(_, p) => p.display().to_string(),
        }
    }
}

/// A server bound to its address, ready to run.
pub struct BoundServer {
    server: ZeoServer,
    listener: Listener,
    tls: Option<tokio_rustls_acceptor::Acceptor>,
    local: String,
}

mod tokio_rustls_acceptor {
    pub use crate::tls::Acceptor;
}

impl BoundServer {
    /// The address actually bound (`127.0.0.1:PORT`, or the socket path).
    pub fn local_addr(&self) -> &str {
        &self.local
    }

    /// Accept and serve clients until `shutdown` completes; then stop accepting,
    /// let voted transactions finish (up to the grace period), close every
    /// connection and close the storages.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let BoundServer {
            server,
            listener,
            tls,
            local,
        } = self;
        let shared = server.shared.clone();
        let (notify_tx, _) = broadcast::channel::<()>(1);
        let mut tasks = JoinSet::new();
        let listeners = spawn_invalidation_listeners(&shared, &notify_tx);
        tokio::pin!(shutdown);
        loop {
            let accepted: std::io::Result<(Box<dyn Stream>, String)> = tokio::select! {
                () = &mut shutdown => break,
                Some(res) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = res {
                        if e.is_panic() {
                            error!("connection task panicked: {e}");
                        }
                    }
                    continue;
                }
                a = accept(&listener) => a,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let active = shared.connections.load(Ordering::SeqCst);
            if let Some(max) = shared.options.max_connections {
                if active >= max as u64 {
                    warn!(%peer, "refusing connection: {active} connections open (max {max})");
                    drop(stream);
                    continue;
                }
            }
            let shutdown = Shutdown::new(notify_tx.subscribe());
            let shared = shared.clone();
            let tls = tls.clone();
            tasks.spawn(async move {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                match tls {
                    None => handle_connection(shared.clone(), stream, peer, shutdown).await,
                    Some(acceptor) => {
                        let timeout = shared.options.handshake_timeout;
                        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls_stream)) => {
                                handle_connection(shared.clone(), tls_stream, peer, shutdown).await
                            }
                            Ok(Err(e)) => warn!(%peer, "TLS handshake failed: {e}"),
                            Err(_) => warn!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
                shared.connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
        info!("shutting down: no longer accepting on {local}");
        listener_cleanup(listener);
        let _ = notify_tx.send(());
        let grace = shared.options.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            warn!("connections still open after {:?}; closing them", grace);
            tasks.shutdown().await;
        }
        for l in listeners {
            l.abort();
        }
        for served in &shared.storages {
            if let Err(e) = served.storage.close().await {
                warn!(storage = %served.name, "closing storage failed: {e}");
            }
        }
        info!("server stopped");
        Ok(())
    }
}

fn listener_cleanup(listener: Listener) {
    if let Listener::Unix(l, path) = listener {
        drop(l);
        let _ = std::fs::remove_file(path);
    }
}

/// A byte stream a connection can run over (TCP, Unix socket, TLS).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

async fn accept(listener: &Listener) -> std::io::Result<(Box<dyn Stream>, String)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, addr) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Box::new(s), addr.to_string()))
        }
        Listener::Unix(l, path) => {
            let (s, _) = l.accept().await?;
            Ok((Box::new(s), path.display().to_string()))
        }
    }
}

/// Commits that reach a storage by another path become invalidations here too.
fn spawn_invalidation_listeners(
    shared: &Arc<ServerShared>,
    _notify: &broadcast::Sender<()>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for served in &shared.storages {
        let Some(mut rx) = served.storage.invalidations() else {
            continue;
        };
        let served = served.clone();
        handles.push(tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(inv) => {
                        let guard = served.visibility.write().await;
                        let unsent = served.invalidate(None, inv.tid, inv.oids);
                        drop(guard);
                        unsent.send();
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(storage = %served.name, "missed {n} invalidations; invalidating client caches");
                        let _guard = served.visibility.write().await;
                        served.invalidate_cache().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }));
    }
    handles
}

async fn handle_connection<S>(
    shared: Arc<ServerShared>,
    stream: S,
    peer: String,
    mut shutdown: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let (rd, wr) = tokio::io::split(stream);
    let (conn, writer) = spawn_writer(id, peer.clone(), wr, shared.options.output_limits);
    debug!(%peer, conn = id, "connection accepted");
    conn.send_raw(if shared.options.msgpack { b"M5" } else { b"Z5" });
    let mut reader = FrameReader::new(rd, shared.options.max_frame_size)
        .with_stall_timeout(shared.options.handshake_timeout);

    let first = tokio::select! {
        r = tokio::time::timeout(shared.options.handshake_timeout, reader.read_frame()) => r,
        _ = shutdown.recv() => Ok(Ok(None)),
    };
    let reason = match first {
        Err(_) => {
            warn!(%peer, "no handshake within {:?}; closing", shared.options.handshake_timeout);
            CloseReason::Protocol("handshake timeout".into())
        }
        Ok(Err(e)) => {
            warn!(%peer, "bad handshake frame: {e}");
            CloseReason::Protocol(e.to_string())
        }
        Ok(Ok(None)) => CloseReason::Eof,
        Ok(Ok(Some(frame))) => match parse_handshake(&frame) {
            Handshake::Ruok => {
                let json = shared.ruok_json().await;
                conn.send_raw(json.as_bytes());
                debug!(%peer, "answered ruok");
                CloseReason::Server("ruok answered".into())
            }
            Handshake::Bad(payload) => {
                error!(%peer, "bad handshake {}", short_repr(&payload));
                CloseReason::Protocol("bad handshake".into())
            }
            Handshake::Zeo5(encoding) => {
                conn.set_encoding(encoding);
                info!(%peer, "received handshake {:?}", String::from_utf8_lossy(&frame));
                let mut session = Session::new(shared.clone(), conn.clone());
                let reason = session.run(&mut reader, &mut shutdown).await;
                session.cleanup().await;
                reason
            }
        },
    };
    match &reason {
        CloseReason::Eof => info!(conn = %conn.label(), "disconnected"),
        CloseReason::Server(r) if r == "ruok answered" => {}
        other => info!(conn = %conn.label(), "closing connection: {other}"),
    }
    conn.finish_output();
    drop(reader);
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        debug!(conn = %conn.label(), "writer did not finish; dropping the socket");
        writer.abort();
    }
}
