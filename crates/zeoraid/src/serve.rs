//! `zeoraid serve`: load the configuration, open the storages and run the ZEO
//! server until SIGTERM or SIGINT (then stop accepting, let voted transactions
//! finish, close connections and storages).
//!
//! Storages: `<filestorage>` (embedded `Data.fs`), `<zeoclient>` (a proxy to a
//! remote ZEO server) and `<raidstorage>` over backends of both kinds. With
//! `admin-address` set, the management HTTP API runs beside the ZEO server.
//!
//! `reload` (admin API) re-reads the configuration file: backends added to a
//! `<raidstorage>` are opened and join degraded (`added by controller`), removed
//! ones are closed and forgotten, a changed `recovery-rate` applies at once.
//! Everything else (the `<zeo>` section, the set of storages, a backend's kind or
//! settings, a RAID's other options) is not changed live: such a reload, one
//! that does not parse, or one that would leave a RAID without an optimal backend
//! is refused and changes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use zeoraid_filestorage::{AsyncFileStorage, Options as FsOptions};
use zeoraid_storage::Storage;
use zeoraid_zeo_client::{
    ConnectionState, ServerAddress, TlsOptions as ClientTls, ZeoClient, ZeoClientOptions,
};
use zeoraid_zeo_server::{Address, ManagementHook, ServerOptions, TlsOptions, ZeoServer};

use zeoraid_raid as raid_options;
use zeoraid_raid::{BackendSpec, RaidOptions, RaidStorage};

use crate::admin::model::ManagementError;
use crate::admin::zeo_port::ZeoPortManagement;
use crate::admin::{self, RaidManagement};
use crate::config::{
    self, BackendKind, ClusterMode, Config, FailMode, FileStorageConfig, RaidConfig, ReadPolicy,
    SocketAddress, StorageKind, ZeoClientConfig,
};

/// The environment variable tokio takes its worker thread count from.
const WORKER_THREADS_VAR: &str = "TOKIO_WORKER_THREADS";

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    print!("{}", config::render_plan(&config));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    match config.zeo.worker_threads {
        Some(threads) => {
            builder.worker_threads(threads);
        }
        // Without the key tokio reads this variable itself, and panics on a
        // value that is not a positive number.
        None => {
            if let Some(value) = std::env::var_os(WORKER_THREADS_VAR) {
                let threads = value
                    .to_str()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .with_context(|| {
                        format!("{WORKER_THREADS_VAR} must be a positive number, not {value:?}")
                    })?;
                builder.worker_threads(threads);
            }
        }
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

fn address(addr: &SocketAddress) -> Address {
    match addr {
        SocketAddress::Inet { host, port } => {
            let host = if host.is_empty() {
                "0.0.0.0"
            } else {
                host.as_str()
            };
            if host.contains(':') {
                Address::Tcp(format!("[{host}]:{port}"))
            } else {
                Address::Tcp(format!("{host}:{port}"))
            }
        }
        SocketAddress::Unix(path) => Address::Unix(path.clone()),
    }
}

/// The `<zeo>` section as server options.
fn server_options(config: &Config) -> anyhow::Result<ServerOptions> {
    let zeo = &config.zeo;
    let mut options = ServerOptions {
        read_only: zeo.read_only,
        invalidation_queue_size: usize::try_from(zeo.invalidation_queue_size).unwrap_or(usize::MAX),
        invalidation_age: zeo.invalidation_age,
        transaction_timeout: zeo.transaction_timeout,
        msgpack: zeo.msgpack,
        ..ServerOptions::default()
    };
    if let Some(ssl) = &zeo.ssl {
        if ssl.password_function.is_some() {
            bail!(
                "{}: password-function is not supported: use an unencrypted key file",
                ssl.pos
            );
        }
        let authenticate = match ssl.authenticate.as_deref() {
            None => bail!(
                "{}: <ssl> in <zeo> needs 'authenticate' (client certificates are required)",
                ssl.pos
            ),
            Some("DYNAMIC") | Some("-") | Some("SIGNED") => bail!(
                "{}: authenticate {:?} is not supported: give a CA file or directory",
                ssl.pos,
                ssl.authenticate.as_deref().unwrap_or_default()
            ),
            Some(path) => PathBuf::from(path),
        };
        options.tls = Some(TlsOptions {
            certificate: ssl.certificate.clone(),
            key: ssl.key.clone().unwrap_or_else(|| ssl.certificate.clone()),
            authenticate,
        });
    }
    Ok(options)
}

/// Open every storage of the configuration. Also returns the shared blob
/// directories (storage name → directory) and points the server's blob upload
/// directory next to the blobs, so storages can hard-link uploads instead of
/// copying them.
/// The storages as the management API sees them come back too.
struct OpenedStorages {
    served: Vec<(String, Arc<dyn Storage>)>,
    /// The RAID storages by name (for `reload`).
    raids: HashMap<String, Arc<RaidStorage>>,
    shared_blob_dirs: HashMap<String, PathBuf>,
    management: RaidManagement,
}

async fn open_storages(
    config: &Config,
    options: &mut ServerOptions,
) -> anyhow::Result<OpenedStorages> {
    let mut storages: Vec<(String, Arc<dyn Storage>)> = Vec::new();
    let mut shared_blob_dirs = HashMap::new();
    let mut management = RaidManagement::new();
    let mut raids = HashMap::new();
    for sc in &config.storages {
        let storage: Arc<dyn Storage> = match &sc.kind {
            StorageKind::File(fs) => {
                if let Some(dir) = &fs.blob_dir {
                    shared_blob_dirs.insert(sc.name.clone(), dir.clone());
                    upload_next_to(options, dir.join("tmp"));
                }
                let storage: Arc<dyn Storage> = Arc::new(open_filestorage(&sc.name, fs).await?);
                management.add_plain(
                    sc.name.clone(),
                    admin::StorageKind::Filestorage,
                    storage.clone(),
                );
                storage
            }
            StorageKind::Raid(raid) => {
                if let Some(dir) = &raid.blob_dir {
                    if raid.shared_blob_dir {
                        shared_blob_dirs.insert(sc.name.clone(), dir.clone());
                    }
                    upload_next_to(options, dir.join("tmp"));
                }
                let storage = Arc::new(open_raid(&sc.name, raid, options).await?);
                management.add_raid(sc.name.clone(), storage.clone());
                raids.insert(sc.name.clone(), storage.clone());
                storage
            }
            StorageKind::ZeoClient(zc) => {
                // A blob directory shared with its server is shared with our
                // clients too: they may store into it (`storeBlobShared`).
                if let (Some(dir), true) = (&zc.blob_dir, zc.shared_blob_dir) {
                    shared_blob_dirs.insert(sc.name.clone(), dir.clone());
                }
                // A plain proxy: waits for its server as configured (`wait`).
                let storage: Arc<dyn Storage> =
                    Arc::new(open_zeoclient(&sc.name, zc, zc.wait).await?);
                management.add_plain(
                    sc.name.clone(),
                    admin::StorageKind::Zeoclient,
                    storage.clone(),
                );
                storage
            }
        };
        storages.push((sc.name.clone(), storage));
    }
    if storages.is_empty() {
        bail!("no storage to serve");
    }
    Ok(OpenedStorages {
        served: storages,
        raids,
        shared_blob_dirs,
        management,
    })
}

/// Blob uploads go to the first blob directory configured (the server has one
/// upload directory).
fn upload_next_to(options: &mut ServerOptions, dir: PathBuf) {
    if options.blob_temp_dir.is_none() {
        options.blob_temp_dir = Some(dir);
    }
}

/// The engine options a `<filestorage>` section asks for.
fn filestorage_options(fs: &FileStorageConfig) -> FsOptions {
    FsOptions {
        read_only: fs.read_only,
        create: fs.create,
        blob_dir: fs.blob_dir.clone(),
        pack_gc: fs.pack_gc,
        pack_keep_old: fs.pack_keep_old,
        quota: fs.quota,
        vote_fsync: fs.vote_fsync,
    }
}

async fn open_filestorage(name: &str, fs: &FileStorageConfig) -> anyhow::Result<AsyncFileStorage> {
    let opts = filestorage_options(fs);
    if !fs.read_only {
        // Unlike runzeo, create the directory the file lives in.
        if let Some(parent) = fs.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("storage {name:?}: cannot create {}", parent.display()))?;
        }
    }
    let storage = AsyncFileStorage::open(fs.path.clone(), opts)
        .await
        .with_context(|| format!("storage {name:?}: cannot open {}", fs.path.display()))?;
    tracing::info!(storage = %name, path = %fs.path.display(), "opened FileStorage");
    Ok(storage)
}

/// A `<zeoclient>`: a remote ZEO server (`wait` overrides the section's own).
async fn open_zeoclient(name: &str, zc: &ZeoClientConfig, wait: bool) -> anyhow::Result<ZeoClient> {
    let servers = zc
        .servers
        .iter()
        .map(|addr| match addr {
            SocketAddress::Inet { host, port } => ServerAddress::tcp(host.clone(), *port),
            SocketAddress::Unix(path) => ServerAddress::unix(path.clone()),
        })
        .collect();
    let tls = match &zc.ssl {
        None => None,
        Some(ssl) => {
            if ssl.password_function.is_some() {
                bail!(
                    "{}: password-function is not supported: use an unencrypted key file",
                    ssl.pos
                );
            }
            Some(ClientTls {
                certificate: Some(ssl.certificate.clone()),
                key: ssl.key.clone(),
                authenticate: ssl.authenticate.as_ref().map(PathBuf::from),
                check_hostname: ssl.check_hostname.unwrap_or(true),
                server_hostname: ssl.server_hostname.clone(),
            })
        }
    };
    let options = ZeoClientOptions::from_values(
        servers,
        zc.storage.clone(),
        zc.read_only,
        wait,
        zc.wait_timeout,
        zc.blob_dir.clone(),
        zc.shared_blob_dir,
        zc.timeout,
        zc.connect_timeout,
        tls,
    )
    .blob_cache_size(Some(zc.blob_cache_size), zc.blob_cache_size_check)
    .cache_size(zc.cache_size);
    let client = ZeoClient::connect(options)
        .await
        .with_context(|| format!("storage {name:?}: cannot connect"))?;
    tracing::info!(storage = %name, connected = client.is_connected(), "opened ZEO client");
    Ok(client)
}

/// Waits until `client` is no longer making its first connection attempt (it
/// connected, or the attempt failed), at most `limit`.
async fn first_attempt(client: &ZeoClient, limit: std::time::Duration) {
    let mut state = client.watch_connection();
    let _ = tokio::time::timeout(
        limit,
        state.wait_for(|s| !matches!(s, ConnectionState::Connecting)),
    )
    .await;
}

/// Blobs stored on some backends only would be lost when a read fails over.
fn check_blob_dirs(name: &str, raid: &RaidConfig) -> anyhow::Result<()> {
    let with_blobs = raid
        .backends
        .iter()
        .filter(|b| match &b.kind {
            BackendKind::File(fs) => fs.blob_dir.is_some(),
            // A ZEO backend stores and loads blobs through its blob cache.
            BackendKind::ZeoClient(zc) => zc.blob_dir.is_some(),
        })
        .count();
    if with_blobs != 0 && with_blobs != raid.backends.len() {
        bail!(
            "storage {name:?}: either every backend of a <raidstorage> has a blob-dir or none has"
        );
    }
    Ok(())
}

/// A `<raidstorage>`: open its backends, then derive the RAID's state from them.
async fn open_raid(
    name: &str,
    raid: &RaidConfig,
    options: &mut ServerOptions,
) -> anyhow::Result<RaidStorage> {
    check_blob_dirs(name, raid)?;
    let mut backends: Vec<BackendSpec> = Vec::new();
    let mut connecting: Vec<(Arc<ZeoClient>, std::time::Duration)> = Vec::new();
    for backend in &raid.backends {
        let label = format!("{name}/{}", backend.name);
        match &backend.kind {
            BackendKind::File(fs) => {
                if let Some(dir) = &fs.blob_dir {
                    upload_next_to(options, dir.join("tmp"));
                }
                let storage = open_filestorage(&label, fs).await?;
                backends.push((backend.name.clone(), Arc::new(storage), None));
            }
            BackendKind::ZeoClient(zc) => {
                // Never wait for a connection: an unreachable backend starts
                // degraded and must not hold up the RAID.
                let storage = Arc::new(open_zeoclient(&label, zc, false).await?);
                connecting.push((storage.clone(), zc.connect_timeout));
                backends.push((backend.name.clone(), storage, Some(zc.timeout)));
            }
        }
    }
    // But let each finish the connection attempt it is making (at most its
    // connect-timeout; the attempts run concurrently, a refused one ends at
    // once): the RAID derives the backends' states right away, and a reachable
    // backend still connecting would start degraded.
    for (client, limit) in connecting {
        first_attempt(&client, limit).await;
    }
    let raid_options = RaidOptions {
        state_file: Some(raid.state_file.clone()),
        read_policy: match raid.read_policy {
            ReadPolicy::RoundRobin => raid_options::ReadPolicy::RoundRobin,
            ReadPolicy::LeastOutstanding => raid_options::ReadPolicy::LeastOutstanding,
            ReadPolicy::Vote => raid_options::ReadPolicy::Vote,
        },
        fail_mode: match raid.fail_mode {
            FailMode::Close => raid_options::FailMode::Close,
            FailMode::ReadOnly => raid_options::FailMode::ReadOnly,
        },
        backend_timeout: raid.timeout,
        read_only: raid.read_only,
        cluster_mode: match raid.cluster_mode {
            ClusterMode::Single => raid_options::ClusterMode::Single,
            ClusterMode::Coop => raid_options::ClusterMode::Coop,
        },
        recovery_rate: raid.recovery_rate,
    };
    let storage = RaidStorage::open(backends, raid_options)
        .await
        .with_context(|| format!("storage {name:?}: cannot open the RAID"))?;
    tracing::info!(storage = %name, status = ?storage.status(), "opened RAID");
    Ok(storage)
}

/// Installs the SIGTERM/SIGINT handlers now (before the server listens, so a
/// signal right after startup is a graceful stop, not the default death) and
/// returns the future that completes on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let mut options = server_options(&config)?;
    let opened = open_storages(&config, &mut options).await?;
    // One management for the admin API and the ZEO port's `raid_*` methods.
    let mut management = opened.management;
    let reloader = Arc::new(Reloader {
        current: tokio::sync::Mutex::new(config.clone()),
        raids: opened.raids,
    });
    management.set_reloader(Arc::new(move || {
        let reloader = Arc::clone(&reloader);
        Box::pin(async move { reloader.reload().await })
    }));
    let management = Arc::new(management);
    if config.management_methods() {
        tracing::info!(
            "management methods (raid_status, raid_disable, …) enabled on the ZEO port \
             for every registered client"
        );
        options.management = Some(ManagementHook::new(Arc::new(ZeoPortManagement(
            Arc::clone(&management),
        ))));
    }
    let server = ZeoServer::with_blob_dirs(options, opened.served, opened.shared_blob_dirs);
    let signal = shutdown_signal();
    let bound = server.bind(&address(&config.zeo.address)).await?;

    // One signal stops both the ZEO server and the admin API.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin = match &config.zeo.admin_address {
        Some(addr) => {
            let listener = admin::bind_admin(addr).await?;
            Some(tokio::spawn(admin::serve_admin(
                listener,
                management,
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });

    let pid_file = config.zeo.pid_filename.clone();
    if let Some(path) = &pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
    }
    let result = bound.run(stopped(stop_rx)).await;
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    if let Some(admin) = admin {
        match admin.await {
            Ok(Err(err)) => tracing::warn!("admin API stopped with an error: {err}"),
            Err(err) => tracing::warn!("admin API task failed: {err}"),
            Ok(Ok(())) => {}
        }
    }
    result?;
    Ok(())
}

/// One RAID's part of a reload.
#[derive(Debug, Default, PartialEq)]
struct RaidChange {
    storage: String,
    added: Vec<crate::config::BackendConfig>,
    removed: Vec<String>,
    recovery_rate: Option<Option<u64>>,
}

impl RaidChange {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.recovery_rate.is_none()
    }
}

/// The `<zeo>` section without its positions (moving lines changes nothing).
fn zeo_without_positions(config: &Config) -> crate::config::ZeoConfig {
    let mut zeo = config.zeo.clone();
    zeo.pos = crate::config::Position::new(Arc::new(PathBuf::new()), 0);
    if let Some(ssl) = &mut zeo.ssl {
        ssl.pos = zeo.pos.clone();
    }
    zeo
}

/// What reloading `new` over `old` changes, or why it is refused.
fn plan_reload(old: &Config, new: &Config) -> Result<Vec<RaidChange>, String> {
    const LIVE: &str = "not supported while running (restart the server for it)";
    if old.zeo.address != new.zeo.address {
        return Err(format!(
            "the <zeo> address changed ({} -> {}): {LIVE}",
            old.zeo.address, new.zeo.address
        ));
    }
    if zeo_without_positions(old) != zeo_without_positions(new) {
        return Err(format!("the <zeo> section changed: {LIVE}"));
    }
    let names = |c: &Config| {
        c.storages
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    if names(old) != names(new) {
        return Err(format!(
            "the set of storages changed ({} -> {}): {LIVE}",
            names(old).join(", "),
            names(new).join(", ")
        ));
    }
    let mut changes = Vec::new();
    for (o, n) in old.storages.iter().zip(&new.storages) {
        let name = &o.name;
        match (&o.kind, &n.kind) {
            (StorageKind::Raid(a), StorageKind::Raid(b)) => {
                let options = |r: &RaidConfig| {
                    (
                        r.read_only,
                        r.cluster_mode,
                        r.fail_mode,
                        r.blob_dir.clone(),
                        r.shared_blob_dir,
                        r.read_policy,
                        r.timeout,
                    )
                };
                if options(a) != options(b) {
                    return Err(format!(
                        "the options of <raidstorage {name}> changed (only recovery-rate and \
                         the backends can change while running): {LIVE}"
                    ));
                }
                check_blob_dirs(name, b).map_err(|e| e.to_string())?;
                let mut change = RaidChange {
                    storage: name.clone(),
                    ..RaidChange::default()
                };
                for ob in &a.backends {
                    match b.backends.iter().find(|nb| nb.name == ob.name) {
                        None => change.removed.push(ob.name.clone()),
                        Some(nb) if nb.kind != ob.kind => {
                            return Err(format!(
                                "backend {:?} of storage {name:?} changed (its kind or \
                                 settings): {LIVE}; remove it (reload), then add it again",
                                ob.name
                            ))
                        }
                        Some(_) => {}
                    }
                }
                for nb in &b.backends {
                    if !a.backends.iter().any(|ob| ob.name == nb.name) {
                        change.added.push(nb.clone());
                    }
                }
                if a.recovery_rate != b.recovery_rate {
                    change.recovery_rate = Some(b.recovery_rate);
                }
                if !change.is_empty() {
                    changes.push(change);
                }
            }
            (StorageKind::File(a), StorageKind::File(b)) if a == b => {}
            (StorageKind::ZeoClient(a), StorageKind::ZeoClient(b)) if a == b => {}
            _ => return Err(format!("storage {name:?} changed: {LIVE}")),
        }
    }
    Ok(changes)
}

/// Opens a backend added by a reload (a ZEO client does not wait for its
/// server: it joins degraded anyway).
async fn open_added(
    storage: &str,
    backend: &crate::config::BackendConfig,
) -> anyhow::Result<(Arc<dyn Storage>, Option<std::time::Duration>)> {
    let label = format!("{storage}/{}", backend.name);
    Ok(match &backend.kind {
        BackendKind::File(fs) => (Arc::new(open_filestorage(&label, fs).await?), None),
        BackendKind::ZeoClient(zc) => {
            let client = Arc::new(open_zeoclient(&label, zc, false).await?);
            first_attempt(&client, zc.connect_timeout).await;
            (client, Some(zc.timeout))
        }
    })
}

/// `reload`: the configuration file as last applied, and the RAIDs it opened.
struct Reloader {
    current: tokio::sync::Mutex<Config>,
    raids: HashMap<String, Arc<RaidStorage>>,
}

impl Reloader {
    async fn reload(&self) -> Result<String, ManagementError> {
        let refused = |why: String| {
            ManagementError::Refused(format!("reload refused: {why}; nothing changed"))
        };
        // One reload at a time.
        let mut current = self.current.lock().await;
        let new = config::load(&current.file)
            .map_err(|e| refused(format!("the configuration does not load: {e}")))?;
        for warning in &new.warnings {
            tracing::warn!("{warning}");
        }
        let changes = plan_reload(&current, &new).map_err(refused)?;
        if changes.is_empty() {
            *current = new;
            return Ok("reloaded: nothing changed".into());
        }
        // Check everything before changing anything.
        for change in &changes {
            let Some(raid) = self.raids.get(&change.storage) else {
                return Err(refused(format!(
                    "storage {:?} is not a RAID",
                    change.storage
                )));
            };
            let details = raid.details();
            let optimal_left = details
                .iter()
                .filter(|d| d.state.is_optimal() && !change.removed.contains(&d.name))
                .count();
            if optimal_left == 0 {
                return Err(refused(format!(
                    "storage {:?} would have no optimal backend left",
                    change.storage
                )));
            }
            for d in &details {
                if change.removed.contains(&d.name)
                    && matches!(d.state, raid_options::BackendState::Recovering { .. })
                {
                    return Err(refused(format!(
                        "backend {:?} of storage {:?} is being recovered",
                        d.name, change.storage
                    )));
                }
            }
        }
        let mut opened = Vec::new();
        for change in &changes {
            for backend in &change.added {
                match open_added(&change.storage, backend).await {
                    Ok((storage, timeout)) => opened.push((
                        change.storage.clone(),
                        backend.name.clone(),
                        storage,
                        timeout,
                    )),
                    Err(e) => {
                        for (_, _, storage, _) in &opened {
                            let _ = storage.close().await;
                        }
                        return Err(refused(format!(
                            "cannot open backend {:?} of storage {:?}: {e:#}",
                            backend.name, change.storage
                        )));
                    }
                }
            }
        }
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for change in &changes {
            let Some(raid) = self.raids.get(&change.storage) else {
                continue;
            };
            for name in &change.removed {
                match raid.remove_backend(name).await {
                    Ok(()) => done.push(format!("storage {}: removed {name}", change.storage)),
                    Err(e) => failed.push(format!("storage {}: {e}", change.storage)),
                }
            }
            if let Some(rate) = change.recovery_rate {
                raid.set_recovery_rate(rate);
                done.push(format!(
                    "storage {}: recovery-rate {}",
                    change.storage,
                    rate.map_or("unlimited".to_string(), |r| format!("{r} bytes/s"))
                ));
            }
        }
        for (storage, name, backend, timeout) in opened {
            let Some(raid) = self.raids.get(&storage) else {
                continue;
            };
            match raid.add_backend(&name, backend.clone(), timeout).await {
                Ok(()) => done.push(format!(
                    "storage {storage}: added {name} (degraded: added by controller; recover it)"
                )),
                Err(e) => {
                    let _ = backend.close().await;
                    failed.push(format!("storage {storage}: cannot add {name}: {e}"));
                }
            }
        }
        *current = new;
        let summary = format!("reloaded: {}", done.join("; "));
        tracing::info!(%summary, "configuration reloaded");
        if failed.is_empty() {
            Ok(summary)
        } else {
            Err(ManagementError::Failed(format!(
                "{summary}; but: {}",
                failed.join("; ")
            )))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod reload_tests {
    use super::*;

    fn config(zeo: &str, backends: &str, rate: &str) -> Config {
        let text = format!(
            "<zeo>\n  address {zeo}\n</zeo>\n<raidstorage 1>\n{rate}{backends}</raidstorage>\n"
        );
        config::load_str(&text, Path::new("/tmp/zeoraid-test.conf")).unwrap()
    }

    fn fs(name: &str, path: &str) -> String {
        format!("  <filestorage {name}>\n    path {path}\n  </filestorage>\n")
    }

    #[test]
    fn reload_plans() {
        let old = config("127.0.0.1:8100", &(fs("a", "a.fs") + &fs("b", "b.fs")), "");
        assert_eq!(plan_reload(&old, &old).unwrap(), vec![]);
        let added = config(
            "127.0.0.1:8100",
            &(fs("a", "a.fs") + &fs("b", "b.fs") + &fs("c", "c.fs")),
            "  recovery-rate 1MB\n",
        );
        let plan = plan_reload(&old, &added).unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].added[0].name, "c");
        assert_eq!(plan[0].recovery_rate, Some(Some(1 << 20)));
        let removed = config("127.0.0.1:8100", &fs("a", "a.fs"), "");
        assert_eq!(plan_reload(&old, &removed).unwrap()[0].removed, ["b"]);
        let err = plan_reload(&old, &config("127.0.0.1:8101", &fs("a", "a.fs"), "")).unwrap_err();
        assert!(err.contains("address changed"), "{err}");
        let err = plan_reload(
            &old,
            &config(
                "127.0.0.1:8100",
                &(fs("a", "a.fs") + &fs("b", "other.fs")),
                "",
            ),
        )
        .unwrap_err();
        assert!(
            err.contains("backend \"b\" of storage \"1\" changed"),
            "{err}"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod filestorage_option_tests {
    use super::*;

    /// `vote-fsync` goes from the configuration text to the opened engine, for a
    /// plain `<filestorage>` and for a RAID's backends alike.
    #[test]
    fn vote_fsync_reaches_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let text = format!(
            "<zeo>\n  address 127.0.0.1:8100\n</zeo>\n\
             <filestorage plain>\n  path {d}/plain.fs\n  vote-fsync off\n</filestorage>\n\
             <raidstorage r>\n\
             <filestorage a>\n  path {d}/a.fs\n  vote-fsync off\n</filestorage>\n\
             <filestorage b>\n  path {d}/b.fs\n</filestorage>\n</raidstorage>\n"
        );
        let config = config::load_str(&text, Path::new("/tmp/zeoraid-test.conf")).unwrap();
        let mut sections: Vec<(String, FileStorageConfig)> = Vec::new();
        for sc in &config.storages {
            match &sc.kind {
                StorageKind::File(fs) => sections.push((sc.name.clone(), fs.clone())),
                StorageKind::Raid(raid) => {
                    for b in &raid.backends {
                        if let BackendKind::File(fs) = &b.kind {
                            sections.push((b.name.clone(), fs.clone()));
                        }
                    }
                }
                other => panic!("unexpected storage {other:?}"),
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let seen: Vec<(String, bool)> = runtime.block_on(async {
            let mut seen = Vec::new();
            for (name, fs) in &sections {
                let storage = open_filestorage(name, fs).await.unwrap();
                seen.push((name.clone(), storage.engine().options().vote_fsync));
                storage.engine().close().unwrap();
            }
            seen
        });
        assert_eq!(
            seen,
            [
                ("plain".to_string(), false),
                ("a".to_string(), false),
                ("b".to_string(), true)
            ]
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod blob_dir_tests {
    use super::*;

    fn raid(backends: &str) -> RaidConfig {
        let text = format!(
            "<zeo>\n  address 127.0.0.1:8100\n</zeo>\n<raidstorage r>\n{backends}</raidstorage>\n"
        );
        let config = crate::config::load_str(&text, Path::new("zeoraid.conf")).unwrap();
        match &config.storages[0].kind {
            StorageKind::Raid(raid) => raid.clone(),
            other => panic!("not a RAID: {other:?}"),
        }
    }

    /// Embedded and ZEO backends may be mixed with blobs when every one has a
    /// blob-dir; one without is refused.
    #[test]
    fn every_backend_or_none_has_a_blob_dir() {
        let fs = "<filestorage a>\n path a.fs\n blob-dir a-blobs\n</filestorage>\n";
        let zc = "<zeoclient b>\n server 127.0.0.1:9\n blob-dir b-cache\n</zeoclient>\n";
        let zc_plain = "<zeoclient b>\n server 127.0.0.1:9\n</zeoclient>\n";
        assert!(check_blob_dirs("r", &raid(&format!("{fs}{zc}"))).is_ok());
        let e = check_blob_dirs("r", &raid(&format!("{fs}{zc_plain}"))).unwrap_err();
        assert!(e.to_string().contains("blob-dir"), "{e}");
    }
}
