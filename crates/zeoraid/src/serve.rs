//! `zeoraid serve`: load the configuration, open the storages and run the ZEO
//! server until SIGTERM or SIGINT (then stop accepting, let voted transactions
//! finish, close connections and storages).
//!
//! Served today: `<filestorage>` sections (embedded `Data.fs`). `<zeoclient>` and
//! `<raidstorage>` are refused with a clear error until those layers exist.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use zeoraid_filestorage::{AsyncFileStorage, Options as FsOptions};
use zeoraid_storage::Storage;
use zeoraid_zeo_server::{Address, ServerOptions, TlsOptions, ZeoServer};

use crate::config::{self, Config, SocketAddress, StorageKind};

/// Exit status when the configuration is valid but names storages that cannot be
/// served yet.
const EXIT_NOT_IMPLEMENTED: u8 = 1;

/// `<zeo>` keys and sections the configuration layer still calls unsupported but
/// the server honours; their warnings would be wrong.
fn honoured(message: &str) -> bool {
    message.contains("'msgpack' in <zeo")
        || message.contains("'invalidation-age' in <zeo")
        || message.contains("<ssl> in <zeo")
}

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path)?;
    for warning in &config.warnings {
        if !honoured(&warning.message) {
            tracing::warn!("{warning}");
        }
    }
    print!("{}", config::render_plan(&config));
    if let Some(sc) = config
        .storages
        .iter()
        .find(|sc| !matches!(sc.kind, StorageKind::File(_)))
    {
        // No fake serving: say plainly what cannot run yet.
        let what = match sc.kind {
            StorageKind::Raid(_) => "<raidstorage>",
            _ => "<zeoclient>",
        };
        eprintln!(
            "zeoraid: error: serving is not implemented yet for {what} storages (storage {:?})",
            sc.name
        );
        return Ok(ExitCode::from(EXIT_NOT_IMPLEMENTED));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

fn parse_bool(key: &str, raw: &str) -> anyhow::Result<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        other => bail!("{key}: not a boolean: {other:?}"),
    }
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
        transaction_timeout: zeo.transaction_timeout,
        ..ServerOptions::default()
    };
    for (key, raw) in &zeo.unsupported {
        match key.as_str() {
            "msgpack" => options.msgpack = parse_bool(key, raw)?,
            "invalidation-age" => {
                let secs: f64 = raw
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("invalidation-age: not a number: {raw:?}"))?;
                if secs > 0.0 && secs.is_finite() {
                    options.invalidation_age = Some(Duration::from_secs_f64(secs));
                }
            }
            _ => {}
        }
    }
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

/// Open every storage of the configuration.
async fn open_storages(
    config: &Config,
    options: &mut ServerOptions,
) -> anyhow::Result<(Vec<(String, Arc<dyn Storage>)>, HashMap<String, PathBuf>)> {
    let mut storages: Vec<(String, Arc<dyn Storage>)> = Vec::new();
    let mut blob_dirs = HashMap::new();
    for sc in &config.storages {
        match &sc.kind {
            StorageKind::File(fs) => {
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
                        std::fs::create_dir_all(parent).with_context(|| {
                            format!("storage {:?}: cannot create {}", sc.name, parent.display())
                        })?;
                    }
                }
                let storage = AsyncFileStorage::open(fs.path.clone(), opts)
                    .await
                    .with_context(|| {
                        format!("storage {:?}: cannot open {}", sc.name, fs.path.display())
                    })?;
                if let Some(dir) = &fs.blob_dir {
                    blob_dirs.insert(sc.name.clone(), dir.clone());
                    // Uploads land next to the blobs, so the storage can link them.
                    if options.blob_temp_dir.is_none() {
                        options.blob_temp_dir = Some(dir.join("tmp"));
                    }
                }
                tracing::info!(storage = %sc.name, path = %fs.path.display(), "opened FileStorage");
                storages.push((sc.name.clone(), Arc::new(storage)));
            }
            StorageKind::ZeoClient(_) => bail!(
                "{}: storage {:?}: <zeoclient> storages cannot be served yet",
                sc.pos,
                sc.name
            ),
            StorageKind::Raid(_) => bail!(
                "{}: storage {:?}: <raidstorage> cannot be served yet",
                sc.pos,
                sc.name
            ),
        }
    }
    if storages.is_empty() {
        bail!("no storage to serve");
    }
    Ok((storages, blob_dirs))
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
    let (storages, blob_dirs) = open_storages(&config, &mut options).await?;
    let server = ZeoServer::with_blob_dirs(options, storages, blob_dirs);
    let bound = server.bind(&address(&config.zeo.address)).await?;
    let pid_file = config.zeo.pid_filename.clone();
    if let Some(path) = &pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
    }
    let result = bound.run(shutdown_signal()).await;
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    result?;
    Ok(())
}
