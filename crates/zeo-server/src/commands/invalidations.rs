//! `lastTransaction()` and `getInvalidations(tid)`: what changed since a client's
//! cache was last up to date — from the invalidation queue, or (with
//! `invalidation-age`) by iterating the storage, or `None` (drop the cache).

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tracing::info;
use zeoraid_storage::Tid;
use zeoraid_wire::Value;

use super::Args;
use crate::error::ZeoError;
use crate::invalidation::{log_answer, Lookup};
use crate::session::Session;

pub(crate) async fn last_transaction(session: &mut Session) -> Result<Value, ZeoError> {
    let served = session.served()?;
    // The storage must still answer (a closed storage is an error reply)…
    served.storage.last_transaction().await?;
    // …but the tid announced is the last one whose invalidations are queued.
    Ok(Value::from(served.published_tid().0))
}

pub(crate) async fn get_invalidations(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let tid = a.tid(0)?;
    let served = session.served()?;
    let lookup = served
        .invq
        .lock()
        .map(|q| q.lookup(tid))
        .unwrap_or(Lookup::Empty);
    let label = session.label();
    match lookup {
        Lookup::Found(latest, oids) => {
            log_answer(&label, oids.len(), latest);
            return Ok(answer(latest, oids));
        }
        Lookup::Empty => info!(conn = %label, "invq empty"),
        Lookup::TooOld => info!(conn = %label, "tid too old for invq {:x}", tid),
    }
    let Some(age) = session.server.options.invalidation_age else {
        return Ok(Value::None);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if age.as_secs_f64() <= now - tid.unix_time() {
        return Ok(Value::None);
    }
    let start = Tid::from_u64(tid.as_u64().saturating_add(1));
    // Up to the published tid: a commit the storage already shows is announced
    // by its own invalidation, which this client will still get.
    let stop = served.published_tid();
    if stop < start {
        return Ok(Value::None);
    }
    let mut stream = served.storage.iterator(Some(start), Some(stop)).await?;
    let mut oids = BTreeSet::new();
    let mut latest = None;
    while let Some(t) = stream.next().await {
        let t = t?;
        oids.extend(t.records.iter().map(|r| r.oid));
        latest = Some(t.tid);
    }
    match latest {
        Some(latest) => {
            log_answer(&label, oids.len(), latest);
            Ok(answer(latest, oids.into_iter().collect()))
        }
        None => Ok(Value::None),
    }
}

fn answer(latest: Tid, oids: Vec<zeoraid_storage::Oid>) -> Value {
    Value::Tuple(vec![
        Value::from(latest.0),
        Value::List(oids.into_iter().map(|o| Value::from(o.0)).collect()),
    ])
}
