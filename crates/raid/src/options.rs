//! How a RAID is configured: the read policy, the fail mode, timeouts and the
//! backends it mirrors onto. The binary's `<raidstorage>` section is mapped onto
//! these types.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zeoraid_storage::Storage;

/// The per-backend call timeout when neither the options nor the backend set one.
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(60);

/// One backend as the RAID is given it: its name (unique, used in logs, status and
/// `disable`), the storage, and an optional timeout overriding
/// [`RaidOptions::backend_timeout`].
pub type BackendSpec = (String, Arc<dyn Storage>, Option<Duration>);

/// Which optimal backend serves a read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadPolicy {
    /// Each read goes to the next optimal backend in turn.
    #[default]
    RoundRobin,
    /// Each read goes to the optimal backend with the fewest calls in flight
    /// (ties: the first in configuration order).
    LeastOutstanding,
    /// Read voting (gocept.zeoraid's reads in `cluster-mode coop`): the object
    /// reads (`load_before`, `load_serial`, `history`, `record_iternext`,
    /// `load_blob`) go to every optimal backend concurrently; the answers are
    /// compared with the rule of the votes (most backends, ties to the first in
    /// configuration order) and every backend that answered otherwise is degraded.
    /// Costs one call per backend per read. The other reads (`info`, `undo_log`,
    /// `iterator`) go to one backend in turn.
    Vote,
}

/// What the RAID does once no backend is optimal any more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailMode {
    /// Every further call fails (gocept.zeoraid's default).
    #[default]
    Close,
    /// Writes are refused with `ReadOnly`; reads go on from the backends that were
    /// optimal last, as long as one of them can answer.
    ReadOnly,
}

/// gocept.zeoraid's `cluster-mode`: whether this RAID expects to be the only one
/// writing to its backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterMode {
    /// One RAID owns its backends (zeoraid's default). The RAID fails when no
    /// backend is optimal.
    #[default]
    Single,
    /// Several RAID servers (with identical configurations) share the backends
    /// (gocept.zeoraid's default). As there: the RAID fails (per `fail-mode`) as
    /// soon as no more than half of the configured backends are optimal, so two
    /// RAIDs that each still work share an optimal backend. Beyond gocept: tids
    /// start after every optimal backend's last transaction (asked before each
    /// commit, as other RAIDs commit too), votes go to the backends one after the
    /// other in configuration order (every RAID takes the backends' commit locks
    /// in the same order, so two RAIDs never deadlock), and the oids handed out
    /// are ones every optimal backend handed to this RAID. Reads are voted when
    /// the read policy is [`ReadPolicy::Vote`] (the binary's default in coop).
    Coop,
}

/// The RAID's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaidOptions {
    pub read_policy: ReadPolicy,
    pub fail_mode: FailMode,
    /// How long one call to one backend may take before the backend is degraded
    /// (default 60s). A backend's own timeout in its [`BackendSpec`] overrides it.
    /// `pack` is exempt (it may legitimately run for a long time).
    pub backend_timeout: Duration,
    /// Refuse every write with `ReadOnly`.
    pub read_only: bool,
    pub cluster_mode: ClusterMode,
    /// `recovery-rate`: the most bytes per second a recovery copies (`None`: as
    /// fast as the backends go).
    pub recovery_rate: Option<u64>,
    /// Where to record which backends hold every acknowledged commit
    /// (`optimal_record.rs`). Without it, a RAID restarted with backends
    /// unreachable refuses writes until they answer or are disabled.
    pub state_file: Option<PathBuf>,
}

impl Default for RaidOptions {
    fn default() -> Self {
        RaidOptions {
            read_policy: ReadPolicy::default(),
            fail_mode: FailMode::default(),
            backend_timeout: DEFAULT_BACKEND_TIMEOUT,
            read_only: false,
            cluster_mode: ClusterMode::default(),
            recovery_rate: None,
            state_file: None,
        }
    }
}
