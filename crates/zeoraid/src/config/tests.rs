//! Tests of the typed configuration: good files, defaults, and every error path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    load_str(text, Path::new("zeoraid.conf"))
}

fn ok(text: &str) -> Config {
    load(text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

const ZEO: &str = "<zeo>\n  address 8100\n</zeo>\n";

fn inet(host: &str, port: u16) -> SocketAddress {
    SocketAddress::Inet {
        host: host.into(),
        port,
    }
}

fn file_of(storage: &StorageConfig) -> &FileStorageConfig {
    match &storage.kind {
        StorageKind::File(fs) => fs,
        other => panic!("not a filestorage: {other:?}"),
    }
}

fn raid_of(storage: &StorageConfig) -> &RaidConfig {
    match &storage.kind {
        StorageKind::Raid(r) => r,
        other => panic!("not a raidstorage: {other:?}"),
    }
}

fn client_of(kind: &BackendKind) -> &ZeoClientConfig {
    match kind {
        BackendKind::ZeoClient(zc) => zc,
        other => panic!("not a zeoclient: {other:?}"),
    }
}

#[test]
fn single_filestorage_with_defaults() {
    let config = ok(&format!(
        "{ZEO}<filestorage>\n  path Data.fs\n</filestorage>\n"
    ));
    assert_eq!(config.zeo.address, inet("", 8100));
    assert_eq!(config.zeo.admin_address, None);
    assert!(!config.zeo.read_only);
    assert_eq!(config.zeo.invalidation_queue_size, 100);
    assert_eq!(config.zeo.transaction_timeout, None);
    assert!(!config.zeo.client_conflict_resolution);
    assert_eq!(config.storages.len(), 1);
    assert_eq!(config.storages[0].name, "1");
    let fs = file_of(&config.storages[0]);
    assert_eq!(fs.path, PathBuf::from("Data.fs"));
    assert_eq!(fs.blob_dir, None);
    assert!(!fs.create && !fs.read_only && fs.pack_gc && fs.pack_keep_old);
    assert!(fs.vote_fsync, "vote-fsync defaults to on");
    assert_eq!(fs.quota, None);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn every_zeo_key() {
    let config = ok(
        "<zeo>\n address 127.0.0.1:8100\n admin-address :8180\n read-only on\n \
         invalidation-queue-size 500\n invalidation-age 3600.5\n transaction-timeout 5m\n \
         pid-filename /run/zeo.pid\n client-conflict-resolution true\n msgpack yes\n</zeo>\n\
         <filestorage 1>\n path x.fs\n</filestorage>\n",
    );
    let zeo = &config.zeo;
    assert_eq!(zeo.address, inet("127.0.0.1", 8100));
    assert_eq!(zeo.admin_address, Some(inet("", 8180)));
    assert!(zeo.read_only && zeo.client_conflict_resolution);
    assert_eq!(zeo.invalidation_queue_size, 500);
    assert_eq!(zeo.transaction_timeout, Some(Duration::from_secs(300)));
    assert_eq!(zeo.pid_filename, Some(PathBuf::from("/run/zeo.pid")));
    assert_eq!(zeo.invalidation_age, Some(Duration::from_secs_f64(3600.5)));
    assert!(zeo.msgpack);
    assert!(zeo.unsupported.is_empty());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn every_filestorage_key() {
    let config = ok(&format!(
        "{ZEO}<filestorage main>\n path var/Data.fs\n blob-dir var/blobs\n create yes\n \
         read-only no\n quota 1GB\n pack-gc off\n pack-keep-old false\n vote-fsync off\n \
         packer x.y\n</filestorage>\n"
    ));
    let fs = file_of(&config.storages[0]);
    assert_eq!(config.storages[0].name, "main");
    assert_eq!(fs.blob_dir, Some(PathBuf::from("var/blobs")));
    assert!(fs.create && !fs.read_only && !fs.pack_gc && !fs.pack_keep_old);
    assert!(!fs.vote_fsync);
    assert_eq!(fs.quota, Some(1 << 30));
    assert_eq!(fs.unsupported, [("packer".to_string(), "x.y".to_string())]);
    assert_eq!(config.warnings.len(), 1);
}

#[test]
fn empty_blob_dir_means_none() {
    let config = ok(&format!(
        "{ZEO}<filestorage>\n path x\n blob-dir\n</filestorage>\n"
    ));
    assert_eq!(file_of(&config.storages[0]).blob_dir, None);
}

#[test]
fn vote_fsync_in_filestorage_and_raid_backends() {
    let config = ok(&format!(
        "{ZEO}<filestorage plain>\n path p.fs\n vote-fsync yes\n</filestorage>\n\
         <raidstorage r>\n\
         <filestorage a>\n  path a.fs\n  vote-fsync off\n</filestorage>\n\
         <filestorage b>\n  path b.fs\n</filestorage>\n</raidstorage>\n"
    ));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(file_of(&config.storages[0]).vote_fsync);
    let raid = raid_of(&config.storages[1]);
    let flags: Vec<bool> = raid
        .backends
        .iter()
        .map(|b| match &b.kind {
            BackendKind::File(fs) => fs.vote_fsync,
            other => panic!("not a filestorage: {other:?}"),
        })
        .collect();
    assert_eq!(flags, [false, true]);
    let e = err(&format!(
        "{ZEO}<filestorage>\n path x\n vote-fsync sometimes\n</filestorage>\n"
    ));
    assert!(
        e.contains("zeoraid.conf:6") && e.contains("vote-fsync"),
        "{e}"
    );
}

#[test]
fn raid_with_backends_defaults_and_inherited_timeout() {
    let config = ok(&format!(
        "%import gocept.zeoraid\n{ZEO}<raidstorage 1>\n timeout 20s\n\
         <zeoclient a>\n  server 10.0.0.1:8100\n  server 10.0.0.2:8100\n  server 8102\n</zeoclient>\n\
         <zeoclient b>\n  server /tmp/zeo.sock\n  storage main\n  timeout 5\n  connect-timeout 2s\n  \
         wait off\n  wait-timeout 1m\n  blob-dir blobs\n  shared-blob-dir yes\n  read-only true\n</zeoclient>\n\
         <filestorage c>\n  path c.fs\n</filestorage>\n</raidstorage>\n"
    ));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let raid = raid_of(&config.storages[0]);
    assert_eq!(raid.cluster_mode, ClusterMode::Single);
    assert!(
        raid.state_file
            .to_string_lossy()
            .ends_with("zeoraid.conf.1.state"),
        "{:?}",
        raid.state_file
    );
    assert_eq!(raid.fail_mode, FailMode::Close);
    assert_eq!(raid.read_policy, ReadPolicy::RoundRobin);
    assert!(!raid.read_only && !raid.shared_blob_dir);
    assert_eq!(raid.recovery_rate, None);
    let names: Vec<_> = raid.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);

    let a = client_of(&raid.backends[0].kind);
    assert_eq!(
        a.servers,
        [
            inet("10.0.0.1", 8100),
            inet("10.0.0.2", 8100),
            inet("127.0.0.1", 8102)
        ]
    );
    assert_eq!(a.storage, "1");
    assert_eq!(a.timeout, Duration::from_secs(20));
    assert_eq!(a.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert!(a.wait && !a.read_only && !a.shared_blob_dir);
    assert_eq!(a.wait_timeout, Duration::from_secs(30));

    let b = client_of(&raid.backends[1].kind);
    assert_eq!(b.servers, [SocketAddress::Unix("/tmp/zeo.sock".into())]);
    assert_eq!(b.storage, "main");
    assert_eq!(b.timeout, Duration::from_secs(5));
    assert_eq!(b.connect_timeout, Duration::from_secs(2));
    assert!(!b.wait && b.read_only && b.shared_blob_dir);
    assert_eq!(b.wait_timeout, Duration::from_secs(60));
    assert_eq!(b.blob_dir, Some(PathBuf::from("blobs")));
}

#[test]
fn raid_keys() {
    let config = ok(&format!(
        "{ZEO}<raidstorage 1>\n read-only yes\n cluster-mode COOP\n fail-mode read-only\n \
         blob-dir /b\n shared-blob-dir on\n read-policy least-outstanding\n recovery-rate 10MB\n\
         <filestorage a>\n path a.fs\n</filestorage>\n</raidstorage>\n"
    ));
    let raid = raid_of(&config.storages[0]);
    assert!(raid.read_only && raid.shared_blob_dir);
    assert_eq!(raid.cluster_mode, ClusterMode::Coop);
    assert_eq!(raid.fail_mode, FailMode::ReadOnly);
    assert_eq!(raid.read_policy, ReadPolicy::LeastOutstanding);
    assert_eq!(raid.recovery_rate, Some(10 << 20));
    assert_eq!(raid.timeout, DEFAULT_CALL_TIMEOUT);
}

#[test]
fn coop_votes_reads_unless_a_read_policy_is_written() {
    let with = |keys: &str| {
        let config = ok(&format!(
            "{ZEO}<raidstorage 1>\n{keys}<filestorage a>\n path a.fs\n</filestorage>\n</raidstorage>\n"
        ));
        let raid = raid_of(&config.storages[0]);
        (raid.cluster_mode, raid.read_policy)
    };
    assert_eq!(with(""), (ClusterMode::Single, ReadPolicy::RoundRobin));
    assert_eq!(
        with(" cluster-mode coop\n"),
        (ClusterMode::Coop, ReadPolicy::Vote)
    );
    assert_eq!(
        with(" cluster-mode coop\n read-policy round-robin\n"),
        (ClusterMode::Coop, ReadPolicy::RoundRobin)
    );
    assert_eq!(
        with(" read-policy vote\n"),
        (ClusterMode::Single, ReadPolicy::Vote)
    );
}

#[test]
fn zeoclient_at_top_level_and_clientstorage_alias() {
    let config = ok(&format!(
        "{ZEO}<zeoclient 1>\n server remote:8100\n cache-path c.zec\n</zeoclient>\n\
         <clientstorage 2>\n server remote:8100\n storage 2\n</clientstorage>\n"
    ));
    let StorageKind::ZeoClient(zc) = &config.storages[0].kind else {
        panic!()
    };
    assert_eq!(zc.timeout, DEFAULT_CALL_TIMEOUT);
    assert_eq!(
        zc.unsupported,
        [("cache-path".to_string(), "c.zec".to_string())]
    );
    assert!(matches!(config.storages[1].kind, StorageKind::ZeoClient(_)));
    assert_eq!(config.warnings.len(), 1);
}

#[test]
fn case_insensitive_types_names_and_keys() {
    let config = ok("<ZEO>\n ADDRESS 8100\n Read-Only YES\n</Zeo>\n\
         <FileStorage Main>\n PATH Data.fs\n</FILESTORAGE>\n");
    assert!(config.zeo.read_only);
    assert_eq!(config.storages[0].name, "main");
    // Values keep their case.
    assert_eq!(file_of(&config.storages[0]).path, PathBuf::from("Data.fs"));
}

#[test]
fn defines_in_values() {
    let config = ok(
        "%define VAR /srv/zeo/var\n%define port 8100\n<zeo>\n address 127.0.0.1:$port\n</zeo>\n\
         <filestorage>\n path ${var}/Data.fs\n</filestorage>\n",
    );
    assert_eq!(config.zeo.address, inet("127.0.0.1", 8100));
    assert_eq!(
        file_of(&config.storages[0]).path,
        PathBuf::from("/srv/zeo/var/Data.fs")
    );
}

#[test]
fn imports_known_are_silent_others_warn() {
    let config = ok(&format!(
        "%import gocept.zeoraid\n%import ZEO\n%import ZODB\n%import zc.zlibstorage\n{ZEO}\
         <filestorage>\n path x\n</filestorage>\n"
    ));
    assert_eq!(config.imports.len(), 4);
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].starts_with("zeoraid.conf:4: %import zc.zlibstorage is ignored"));
}

#[test]
fn logging_sections_are_kept_leniently() {
    let config = ok(&format!(
        "{ZEO}<filestorage>\n path x\n</filestorage>\n<eventlog>\n level INFO\n <logfile>\n  \
         path zeo.log\n  format %(message)s\n </logfile>\n</eventlog>\n<logger zodb>\n level debug\n</logger>\n\
         <runner>\n program foo\n</runner>\n"
    ));
    assert_eq!(config.logging.len(), 2);
    assert_eq!(config.logging[0].level.as_deref(), Some("info"));
    assert_eq!(config.logging[1].section_type, "logger");
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 3);
    assert!(warnings[0]
        .starts_with("zeoraid.conf:7: <eventlog> is ignored with its handlers <logfile>"));
    assert!(warnings[2].starts_with("zeoraid.conf:17: <runner>"));
}

#[test]
fn ssl_sections_are_kept() {
    let config = ok("<zeo>\n address 8100\n <ssl>\n  certificate server.pem\n  key server.key\n  \
         authenticate SIGNED\n </ssl>\n</zeo>\n<zeoclient>\n server h:1\n <ssl>\n  certificate c.pem\n  \
         check-hostname false\n </ssl>\n</zeoclient>\n");
    let ssl = config.zeo.ssl.as_ref().unwrap();
    assert_eq!(ssl.certificate, PathBuf::from("server.pem"));
    assert_eq!(ssl.authenticate.as_deref(), Some("SIGNED"));
    assert_eq!(ssl.check_hostname, None);
    let StorageKind::ZeoClient(zc) = &config.storages[0].kind else {
        panic!()
    };
    assert_eq!(zc.ssl.as_ref().unwrap().check_hostname, Some(false));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn errors_name_file_and_line() {
    let fs = "<filestorage>\n path x\n</filestorage>\n";
    let cases: &[(String, &str)] = &[
        (
            format!("{ZEO}<filestorage>\n path x\n pth y\n</filestorage>\n"),
            "zeoraid.conf:6: unknown key 'pth' in <filestorage>",
        ),
        (
            format!("{ZEO}<filestorage>\n path x\n create maybe\n</filestorage>\n"),
            "zeoraid.conf:6: create: not a valid boolean value: 'maybe' (use true/false, yes/no, on/off)",
        ),
        (
            format!("{ZEO}<filestorage>\n path x\n quota 20XB\n</filestorage>\n"),
            "zeoraid.conf:6: quota: not a valid byte size (e.g. 4096, 512KB, 20MB, 1GB): '20XB'",
        ),
        (
            format!("<zeo>\n address 8100\n transaction-timeout soon\n</zeo>\n{fs}"),
            "zeoraid.conf:3: transaction-timeout: not a valid time interval (e.g. 30, 30s, 5m, 2h, 1d): 'soon'",
        ),
        (
            format!("<zeo>\n address localhost\n</zeo>\n{fs}"),
            "zeoraid.conf:2: address: address 'localhost' has no port (use host:port, :port or a socket path)",
        ),
        (
            format!("<zeo>\n address 8100\n address 8101\n</zeo>\n{fs}"),
            "zeoraid.conf:3: 'address' given twice in <zeo> (first at line 2); it takes one value",
        ),
        (
            format!("<zeo>\n read-only yes\n</zeo>\n{fs}"),
            "zeoraid.conf:1: <zeo> needs 'address' (missing required key)",
        ),
        (
            format!("{ZEO}\n<filestorage x>\n</filestorage>\n"),
            "zeoraid.conf:5: <filestorage x> needs 'path' (missing required key)",
        ),
        (
            format!("{ZEO}<zeoclient>\n storage 1\n</zeoclient>\n"),
            "zeoraid.conf:4: <zeoclient> needs 'server' (missing required key)",
        ),
        (
            format!("{ZEO}<raidstorage 1>\n</raidstorage>\n"),
            "zeoraid.conf:4: <raidstorage 1> has no backend: add <filestorage NAME> or <zeoclient NAME> sections",
        ),
        (
            format!("{ZEO}<raidstorage 1>\n<filestorage a>\n path a\n</filestorage>\n<filestorage A>\n path b\n</filestorage>\n</raidstorage>\n"),
            "zeoraid.conf:8: backend name 'a' is already used at line 5; names are case-insensitive",
        ),
        (
            format!("{ZEO}<raidstorage 1>\n<filestorage>\n path a\n</filestorage>\n</raidstorage>\n"),
            "zeoraid.conf:5: backend <filestorage> in <raidstorage 1> needs a name, e.g. <filestorage a>",
        ),
        (
            format!("{ZEO}<raidstorage 1>\n<raidstorage 2>\n</raidstorage>\n</raidstorage>\n"),
            "zeoraid.conf:5: unexpected section <raidstorage 2> inside <raidstorage 1>: \
             expected <filestorage>, <zeoclient>, <clientstorage>",
        ),
        (
            format!("{ZEO}<raidstorage 1>\n fail-mode explode\n</raidstorage>\n"),
            "zeoraid.conf:5: fail-mode: 'explode' is not one of: close, read-only",
        ),
        (
            format!("{ZEO}{fs}<filestorage 1>\n path y\n</filestorage>\n"),
            "zeoraid.conf:7: storage name '1' is already used at line 4 \
             (an unnamed storage section is named \"1\"); names are case-insensitive",
        ),
        (
            format!("{ZEO}{ZEO}{fs}"),
            "zeoraid.conf:4: a second <zeo> section (the first is at zeoraid.conf:1)",
        ),
        (
            format!("{ZEO}<mappingstorage>\n</mappingstorage>\n"),
            "zeoraid.conf:4: unknown section type <mappingstorage>: expected <zeo>, <filestorage>, \
             <zeoclient>, <raidstorage>, <eventlog> or <logger> \
             (other ZODB storage types are not supported by zeoraid)",
        ),
        (
            format!("address 8100\n{ZEO}{fs}"),
            "zeoraid.conf:1: key 'address' outside of any section (it belongs in <zeo> or a storage section)",
        ),
        (
            format!("<zeo>\n address 8100\n <ssl>\n  certificate c.pem\n </ssl>\n</zeo>\n{fs}"),
            "zeoraid.conf:3: <ssl> needs 'authenticate' (missing required key)",
        ),
        (
            format!("<zeo>\n address 8100\n <foo>\n </foo>\n</zeo>\n{fs}"),
            "zeoraid.conf:3: unexpected section <foo> inside <zeo>: expected <ssl>",
        ),
        (
            format!("<zeo>\n address 8100\n invalidation-queue-size -1\n</zeo>\n{fs}"),
            "zeoraid.conf:3: invalidation-queue-size: must not be negative: '-1'",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&err(text), expected, "config:\n{text}");
    }
}

#[test]
fn whole_file_errors() {
    assert_eq!(
        err("<filestorage>\n path x\n</filestorage>\n"),
        "zeoraid.conf: no <zeo> section (it needs at least 'address')"
    );
    assert_eq!(
        err(ZEO),
        "zeoraid.conf: no storage section: add one of <filestorage>, <zeoclient>, <raidstorage>"
    );
}

#[test]
fn plan_lists_storages_and_backends() {
    let config = ok(
        "<zeo>\n address 127.0.0.1:8100\n admin-address 8180\n</zeo>\n<raidstorage 1>\n\
         <filestorage a>\n path var/a/Data.fs\n blob-dir var/a/blobs\n</filestorage>\n\
         <zeoclient b>\n server 10.0.0.2:8100\n</zeoclient>\n</raidstorage>\n",
    );
    let plan = render_plan(&config);
    assert_eq!(
        plan,
        "configuration zeoraid.conf\n\
         ZEO address  127.0.0.1:8100\n\
         admin API    *:8180 (all interfaces)\n\
         storage '1': RAID-1 over 2 backends (read-policy round-robin, fail-mode close, cluster-mode single)\n\
         \x20 backend 'a': filestorage var/a/Data.fs (blobs var/a/blobs)\n\
         \x20 backend 'b': zeoclient 10.0.0.2:8100 storage '1' (timeout 60s, connect-timeout 10s)\n"
    );
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

#[test]
fn shipped_examples_load() {
    let raid = super::load(&example("zeoraid.conf")).unwrap();
    assert!(raid.warnings.is_empty(), "{:?}", raid.warnings);
    assert_eq!(raid.zeo.address, inet("127.0.0.1", 8100));
    assert_eq!(raid.zeo.admin_address, Some(inet("127.0.0.1", 8180)));
    let r = raid_of(&raid.storages[0]);
    assert!(r
        .backends
        .iter()
        .all(|b| matches!(b.kind, BackendKind::File(_))));
    assert_eq!(r.backends.len(), 2);

    let single = super::load(&example("zeo-single.conf")).unwrap();
    assert_eq!(single.storages[0].name, "1");
    assert!(matches!(single.storages[0].kind, StorageKind::File(_)));

    let gocept = super::load(&example("gocept-zeoraid.conf")).unwrap();
    let r = raid_of(&gocept.storages[0]);
    let servers: Vec<_> = r
        .backends
        .iter()
        .map(|b| client_of(&b.kind).servers[0].clone())
        .collect();
    assert_eq!(servers, [inet("127.0.0.1", 8101), inet("127.0.0.1", 8102)]);
}

#[test]
fn management_methods_default_on_only_for_gocept_configs() {
    let fs = "<filestorage>\n path x\n</filestorage>\n";
    assert!(!ok(&format!("{ZEO}{fs}")).management_methods());
    assert!(ok(&format!("%import gocept.zeoraid\n{ZEO}{fs}")).management_methods());
    let off = "<zeo>\n address 8100\n management-methods false\n</zeo>\n";
    let config = ok(&format!("%import gocept.zeoraid\n{off}{fs}"));
    assert_eq!(config.zeo.management_methods, Some(false));
    assert!(!config.management_methods());
    let on = "<zeo>\n address 8100\n management-methods on\n</zeo>\n";
    assert!(ok(&format!("{on}{fs}")).management_methods());
}

#[test]
fn zeoclient_blob_cache_size_and_check() {
    let config = ok(&format!(
        "{ZEO}<zeoclient 1>\n server 8100\n blob-dir c\n blob-cache-size 100MB\n \
         blob-cache-size-check 20\n</zeoclient>\n<zeoclient 2>\n server 8100\n</zeoclient>\n"
    ));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let StorageKind::ZeoClient(set) = &config.storages[0].kind else {
        panic!()
    };
    assert_eq!(
        (set.blob_cache_size, set.blob_cache_size_check),
        (100 << 20, 20)
    );
    let StorageKind::ZeoClient(default) = &config.storages[1].kind else {
        panic!()
    };
    assert_eq!(
        (default.blob_cache_size, default.blob_cache_size_check),
        (1 << 30, 10)
    );
    let e = err(&format!(
        "{ZEO}<zeoclient 1>\n server 8100\n blob-cache-size-check 100\n</zeoclient>\n"
    ));
    assert!(e.contains("blob-cache-size-check"), "{e}");
}

#[test]
fn zeoclient_object_cache_size() {
    let config = ok(&format!(
        "{ZEO}<zeoclient 1>\n server 8100\n cache-size 512KB\n</zeoclient>\n\
         <zeoclient 2>\n server 8100\n cache-size 0\n</zeoclient>\n\
         <zeoclient 3>\n server 8100\n</zeoclient>\n"
    ));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let sizes: Vec<u64> = config
        .storages
        .iter()
        .map(|s| match &s.kind {
            StorageKind::ZeoClient(zc) => zc.cache_size,
            other => panic!("not a zeoclient: {other:?}"),
        })
        .collect();
    assert_eq!(sizes, [512 << 10, 0, 20 << 20]);
    let e = err(&format!(
        "{ZEO}<zeoclient 1>\n server 8100\n cache-size 20M\n</zeoclient>\n"
    ));
    assert!(e.contains("cache-size"), "{e}");
}

#[test]
fn raid_state_file_can_be_set() {
    let config = ok(&format!(
        "{ZEO}<raidstorage main>\n state-file /var/lib/zeoraid/main.state\n\
         <filestorage a>\n  path a.fs\n</filestorage>\n</raidstorage>\n"
    ));
    let raid = raid_of(&config.storages[0]);
    assert_eq!(
        raid.state_file,
        std::path::PathBuf::from("/var/lib/zeoraid/main.state")
    );
}

#[test]
fn worker_threads_between_1_and_1024() {
    let fs = "<filestorage>\n  path Data.fs\n</filestorage>\n";
    assert_eq!(ok(&format!("{ZEO}{fs}")).zeo.worker_threads, None);
    let with = |n: &str| format!("<zeo>\n  address 8100\n  worker-threads {n}\n</zeo>\n{fs}");
    assert_eq!(ok(&with("1")).zeo.worker_threads, Some(1));
    assert!(render_plan(&ok(&with("3"))).contains("worker threads 3"));
    assert_eq!(
        err(&with("0")),
        "zeoraid.conf:3: worker-threads: 0 is not between 1 and 1024"
    );
    assert_eq!(
        err(&with("5000")),
        "zeoraid.conf:3: worker-threads: 5000 is not between 1 and 1024"
    );
    assert!(err(&with("two")).starts_with("zeoraid.conf:3: worker-threads:"));
}
