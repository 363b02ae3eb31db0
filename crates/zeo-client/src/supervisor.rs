//! The supervisor task: keeps one registered connection up. It tries the server
//! addresses in order, installs the first that registers, waits for it to die,
//! and tries again after an exponential backoff (`reconnect_min`, doubled per
//! failed round, capped at `reconnect_max`, reset by a successful connection).
//! After a reconnect it asks `getInvalidations(last seen tid)` so that commits
//! made by others while disconnected still reach the invalidation stream.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{debug, info, warn};
use zeoraid_storage::{Oid, Tid};
use zeoraid_wire::Value;

use crate::client::{ConnectionState, Shared};
use crate::connection::{self, Established};
use crate::convert::{items, oid_of, tid_of};
use crate::error::ClientError;
use crate::rpc::Session;

/// Resolves when the client shuts down.
async fn shutdown(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn set_state(shared: &Shared, state: ConnectionState) {
    if !*shared.shutdown_tx.borrow() {
        shared.state_tx.send_replace(state);
    }
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut stop = shared.shutdown_tx.subscribe();
    let options = &shared.options;
    let mut backoff = options.reconnect_min;
    let mut ever_connected = false;
    let mut attempt: u64 = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        set_state(&shared, ConnectionState::Connecting);
        attempt += 1;
        let mut last_error = None;
        let mut established = None;
        for address in &options.servers {
            let generation = shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
            debug!(server = %address, attempt, "connecting to ZEO server");
            let result = tokio::select! {
                _ = shutdown(&mut stop) => break,
                r = connection::establish(
                    address,
                    options,
                    shared.tls.as_ref(),
                    shared.callbacks.clone(),
                    generation,
                ) => r,
            };
            match result {
                Ok(e) => {
                    established = Some(e);
                    break;
                }
                Err(e) => {
                    warn!(server = %address, attempt, "ZEO connection attempt failed: {e}");
                    last_error = Some(e);
                }
            }
        }
        if *stop.borrow() {
            if let Some(e) = established {
                e.session.close("client closed");
            }
            break;
        }
        if let Some(established) = established {
            backoff = options.reconnect_min;
            attempt = 0;
            let session = install(&shared, established, ever_connected).await;
            ever_connected = true;
            let reason = tokio::select! {
                _ = shutdown(&mut stop) => {
                    session.close("client closed");
                    break;
                }
                reason = session.closed() => reason,
            };
            if let Ok(mut current) = shared.current.write() {
                if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &session)) {
                    *current = None;
                }
            }
            warn!(server = %session.address, "disconnected from ZEO server: {reason}");
            set_state(&shared, ConnectionState::Disconnected { reason });
        } else {
            let reason = last_error
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no server address".into());
            set_state(&shared, ConnectionState::Disconnected { reason });
        }
        debug!(delay = ?backoff, "reconnecting after a delay");
        tokio::select! {
            _ = shutdown(&mut stop) => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(options.reconnect_max.max(options.reconnect_min));
    }
    shared.state_tx.send_replace(ConnectionState::Closed);
    if let Ok(mut current) = shared.current.write() {
        if let Some(session) = current.take() {
            session.close("client closed");
        }
    }
    debug!("ZEO client supervisor stopped");
}

/// Makes a fresh connection the current one.
async fn install(shared: &Shared, established: Established, reconnect: bool) -> Arc<Session> {
    let Established {
        session,
        last_tid,
        info,
    } = established;
    let callbacks = &shared.callbacks;
    // What the cache held may have changed on the server meanwhile (ZEO would
    // verify it with `getInvalidations`): start empty, and take only this
    // session's replies from now on.
    callbacks.object_cache.reset(session.generation, last_tid);
    callbacks.update_info(&info);
    let seen = callbacks.last_tid();
    if reconnect && last_tid > seen && !seen.is_zero() {
        catch_up(shared, &session, seen).await;
    }
    // The server's word, also when it is lower than what was seen before: a
    // restarted Python FileStorage that was killed between vote and finish
    // reported the cut-off transaction's tid until this restart. Keeping the
    // higher tid would refuse explicit tids (restores) the server now takes.
    if let Ok(mut last) = callbacks.last_tid.lock() {
        *last = last_tid;
    }
    if let Ok(mut current) = shared.current.write() {
        *current = Some(session.clone());
    }
    set_state(
        shared,
        ConnectionState::Connected {
            address: session.address.clone(),
            generation: session.generation,
            encoding: session.encoding,
        },
    );
    if reconnect {
        info!(server = %session.address, "reconnected to ZEO server");
    }
    session
}

/// Broadcasts what changed on the server since `seen` (one invalidation with the
/// latest tid), as ZEO's cache verification does.
async fn catch_up(shared: &Shared, session: &Session, seen: Tid) {
    let reply = session
        .call(
            "getInvalidations",
            Value::Tuple(vec![Value::from(seen.0)]),
            shared.options.timeout,
        )
        .await;
    let parsed = reply.and_then(|v| {
        if v.is_none() {
            return Ok(None);
        }
        match items(&v, "getInvalidations")? {
            [tid, oids] => {
                let tid = tid_of(tid, "getInvalidations tid")?;
                let oids = items(oids, "getInvalidations oids")?
                    .iter()
                    .map(|o| oid_of(o, "getInvalidations oid"))
                    .collect::<Result<Vec<Oid>, ClientError>>()?;
                Ok(Some((tid, oids)))
            }
            _ => Err(ClientError::Protocol("getInvalidations: bad reply".into())),
        }
    });
    match parsed {
        Ok(Some((tid, oids))) if tid > seen && !oids.is_empty() => {
            info!(?tid, count = oids.len(), "invalidations missed while disconnected");
            shared.callbacks.invalidate(tid, oids);
        }
        Ok(Some(_)) => debug!(?seen, "nothing missed while disconnected"),
        Ok(None) => warn!(
            ?seen,
            "the server cannot list the changes made while disconnected (invalidation queue too short)"
        ),
        Err(e) => warn!("getInvalidations after reconnect failed: {e}"),
    }
}
