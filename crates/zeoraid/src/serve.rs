//! `zeoraid serve`: load the configuration, open the storages and run the ZEO
//! server until SIGTERM or SIGINT (then stop accepting, let voted transactions
//! finish, close connections and storages).
//!
//! Storages: `<filestorage>` (embedded `Data.fs`), `<zeoclient>` (a proxy to a
//! remote ZEO server) and `<raidstorage>` over backends of both kinds. With
//! `admin-address` set, the management HTTP API runs beside the ZEO server.

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
use zeoraid_zeo_server::{Address, ServerOptions, TlsOptions, ZeoServer};

use zeoraid_raid as raid_options;
use zeoraid_raid::{BackendSpec, RaidOptions, RaidStorage};

use crate::admin::{self, RaidManagement};
use crate::config::{
    self, BackendKind, ClusterMode, Config, FailMode, FileStorageConfig, RaidConfig, ReadPolicy,
    SocketAddress, StorageKind, ZeoClientConfig,
};

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    print!("{}", config::render_plan(&config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
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
                storage
            }
            StorageKind::ZeoClient(zc) => {
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

async fn open_filestorage(name: &str, fs: &FileStorageConfig) -> anyhow::Result<AsyncFileStorage> {
    let opts = FsOptions {
        read_only: fs.read_only,
        create: fs.create,
        blob_dir: fs.blob_dir.clone(),
        pack_gc: fs.pack_gc,
        pack_keep_old: fs.pack_keep_old,
        quota: fs.quota,
        ..FsOptions::default()
    };
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
    );
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

/// A `<raidstorage>`: open its backends, then derive the RAID's state from them.
async fn open_raid(
    name: &str,
    raid: &RaidConfig,
    options: &mut ServerOptions,
) -> anyhow::Result<RaidStorage> {
    let with_blobs = raid
        .backends
        .iter()
        .filter(|b| matches!(&b.kind, BackendKind::File(fs) if fs.blob_dir.is_some()))
        .count();
    if with_blobs != 0 && with_blobs != raid.backends.len() {
        // Blobs stored on some backends only would be lost when a read fails over.
        bail!(
            "storage {name:?}: either every backend of a <raidstorage> has a blob-dir or none has"
        );
    }
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
                // Never wait: an unreachable backend starts degraded and must not
                // hold up the RAID.
                let storage = Arc::new(open_zeoclient(&label, zc, false).await?);
                connecting.push((storage.clone(), zc.connect_timeout));
                backends.push((backend.name.clone(), storage, Some(zc.timeout)));
            }
        }
    }
    // But let each finish the connection attempt it is making (at most its
    // connect-timeout; a refused one ends at once): the RAID derives the
    // backends' states right away, and a reachable backend still connecting
    // would start degraded.
    for (client, limit) in connecting {
        first_attempt(&client, limit).await;
    }
    let raid_options = RaidOptions {
        read_policy: match raid.read_policy {
            ReadPolicy::RoundRobin => raid_options::ReadPolicy::RoundRobin,
            ReadPolicy::LeastOutstanding => raid_options::ReadPolicy::LeastOutstanding,
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
    };
    let storage = RaidStorage::open(backends, raid_options)
        .await
        .with_context(|| format!("storage {name:?}: cannot open the RAID"))?;
    tracing::info!(storage = %name, status = ?storage.status(), "opened RAID");
    Ok(storage)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
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

async fn serve(config: Config) -> anyhow::Result<()> {
    let mut options = server_options(&config)?;
    let opened = open_storages(&config, &mut options).await?;
    let server = ZeoServer::with_blob_dirs(options, opened.served, opened.shared_blob_dirs);
    let bound = server.bind(&address(&config.zeo.address)).await?;

    // One signal stops both the ZEO server and the admin API.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin = match &config.zeo.admin_address {
        Some(addr) => {
            let listener = admin::bind_admin(addr).await?;
            let management = Arc::new(opened.management);
            Some(tokio::spawn(admin::serve_admin(
                listener,
                management,
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    tokio::spawn(async move {
        shutdown_signal().await;
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
