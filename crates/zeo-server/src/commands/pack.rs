//! `pack(t, wait=1)`: pack in the background (the connection keeps answering),
//! then broadcast `info({'length','size'})` to every client of the storage — the
//! caller included, before its reply. Allowed on read-only connections, as in ZEO.

use tracing::{info, warn};
use zeoraid_wire::Value;

use super::Args;
use crate::session::{Outcome, Session};

pub(crate) async fn pack(session: &mut Session, msgid: &Value, oneway: bool, a: Args) -> Outcome {
    let t = match a.float(0) {
        Ok(t) => t,
        Err(e) => return Outcome::Error(e),
    };
    let wait = match a.opt(1) {
        None => true,
        Some(v) => v.is_truthy(),
    };
    let served = match session.served() {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let conn = session.conn.clone();
    let msgid = msgid.clone();
    let label = session.label();
    tokio::spawn(async move {
        info!(conn = %label, "pack(time={t}) started...");
        let result = served.storage.pack(t).await;
        match &result {
            Ok(()) => {
                info!(conn = %label, "pack(time={t}) complete");
                match served.storage.info().await {
                    Ok(i) => served.broadcast_info(i.length, i.size),
                    Err(e) => warn!("no size info after pack: {e}"),
                }
            }
            Err(e) => warn!(conn = %label, "pack(time={t}) failed: {e}"),
        }
        if wait && !oneway {
            match result {
                Ok(()) => conn.send_reply(&msgid, Value::None),
                Err(e) => conn.send_error(&msgid, &e.into()),
            }
        }
    });
    if wait {
        Outcome::Delayed
    } else {
        Outcome::Reply(Value::None)
    }
}
