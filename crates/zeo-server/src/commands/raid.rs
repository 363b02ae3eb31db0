//! gocept.zeoraid's management methods (`raid_status`, `raid_details`,
//! `raid_disable`, `raid_recover`, `raid_reload`, `raid_verify`), answered by
//! the [`crate::management::ZeoManagement`] hook for the storage the client
//! registered for. Without the hook they are not registered methods at all
//! (the session closes the connection before reaching here).

use tracing::info;
use zeoraid_wire::Value;

use super::Args;
use crate::error::ZeoError;
use crate::session::Session;

fn runtime_error(message: String) -> ZeoError {
    ZeoError::new(
        "builtins.RuntimeError",
        Value::Tuple(vec![Value::Str(message)]),
    )
}

pub(crate) async fn call(session: &mut Session, name: &str, a: Args) -> Result<Value, ZeoError> {
    let served = session.served()?;
    let Some(hook) = session.server.options.management.clone() else {
        return Err(ZeoError::attribute_error(format!(
            "'ZEOStorage' object has no attribute '{name}'"
        )));
    };
    let m = hook.0;
    let storage = served.name.as_str();
    let result = match name {
        "raid_status" => m.raid_status(storage).await.map(Value::Str),
        "raid_details" => m.raid_details(storage).await.map(|details| {
            Value::Dict(
                details
                    .into_iter()
                    .map(|(k, v)| (Value::Str(k), Value::Str(v)))
                    .collect(),
            )
        }),
        "raid_disable" | "raid_recover" => {
            let backend = a.str(0)?.to_owned();
            info!(conn = %session.label(), storage, backend, "{name} requested over the ZEO port");
            if name == "raid_disable" {
                m.raid_disable(storage, &backend).await.map(Value::Str)
            } else {
                m.raid_recover(storage, &backend).await.map(Value::Str)
            }
        }
        "raid_reload" => {
            info!(conn = %session.label(), storage, "raid_reload requested over the ZEO port");
            m.raid_reload(storage).await.map(Value::Str)
        }
        "raid_verify" => m.raid_verify(storage).await.map(Value::Str),
        other => {
            return Err(ZeoError::attribute_error(format!(
                "'ZEOStorage' object has no attribute '{other}'"
            )))
        }
    };
    result.map_err(runtime_error)
}
