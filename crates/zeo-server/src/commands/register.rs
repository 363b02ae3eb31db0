//! `register(storage_name, read_only)`: pick the storage this connection serves,
//! answer its last transaction id.

use tracing::info;
use zeoraid_wire::Value;

use super::Args;
use crate::error::ZeoError;
use crate::session::{Outcome, Session};

pub(crate) async fn register(
    session: &mut Session,
    msgid: &Value,
    oneway: bool,
    a: Args,
) -> Outcome {
    if session.served.is_some() {
        return Outcome::Error(ZeoError::value_error("duplicate register() call"));
    }
    let name = match a.get(0) {
        Ok(Value::Str(s)) => s.clone(),
        Ok(other) => format!("{other:?}"),
        Err(e) => return Outcome::Error(e),
    };
    let read_only = match a.get(1) {
        Ok(v) => v.is_truthy(),
        Err(e) => return Outcome::Error(e),
    };
    let Some(served) = session.server.by_name.get(&name).cloned() else {
        info!(conn = %session.label(), "unknown storage_id: {name}");
        return Outcome::Error(ZeoError::value_error(format!("unknown storage: {name}")));
    };
    let storage_read_only = match served.storage.info().await {
        Ok(info) => info.read_only,
        Err(e) => return Outcome::Error(e.into()),
    };
    if !read_only && (session.read_only || storage_read_only) {
        return Outcome::Error(ZeoError::read_only());
    }
    // Registered and answered under the visibility lock, with the last tid whose
    // invalidations were queued: every later commit's invalidation reaches this
    // connection, and no commit is announced before its invalidation.
    let _guard = served.visibility.clone().read_owned().await;
    if let Err(e) = served.storage.last_transaction().await {
        return Outcome::Error(e.into());
    }
    let last = served.published_tid();
    session.read_only = session.read_only || read_only;
    served.register(session.conn.clone());
    info!(conn = %session.label(), storage = %name, read_only = session.read_only, "registered");
    session.served = Some(served);
    if !oneway {
        session.conn.send_reply(msgid, Value::from(last.0));
    }
    Outcome::Replied
}
