//! `server_status()`, `set_client_label(label)` (one-way, used in log lines) and
//! `ping()` (answered by the dispatcher).

use zeoraid_wire::Value;

use super::Args;
use crate::error::ZeoError;
use crate::session::Session;

pub(crate) async fn server_status(session: &mut Session) -> Result<Value, ZeoError> {
    let served = session.served()?;
    Ok(served.server_status().await)
}

pub(crate) fn set_client_label(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let label = match a.get(0)? {
        Value::Str(s) => s.clone(),
        other => format!("{other:?}"),
    };
    session.conn.set_label(&label);
    Ok(Value::None)
}
