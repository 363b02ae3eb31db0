//! gocept.zeoraid's controller over the ZEO port: `zeoraid [-S STORAGE]
//! [-H HOST] [-p PORT] status|details|recover NAME|disable NAME|reload` (and
//! `verify`) without `-C`. It registers read-only for STORAGE (default `1`) at
//! HOST:PORT (default 127.0.0.1:8100), as gocept.zeoraid's controller did, and
//! calls the server's `raid_*` methods (`management-methods` in `<zeo>`).
//!
//! Output and exit codes are the controller's: the status word, the `details`
//! table, the action's message; 0 optimal, 1 recovering, 2 degraded or failed,
//! and 2 with the message on stdout for every error ("Could not connect to ZEO
//! server at HOST:PORT", a refused action…), which is what Nagios shows.

use std::process::ExitCode;
use std::time::Duration;

use zeoraid_wire::exception::ErrorPayload;
use zeoraid_wire::Value;
use zeoraid_zeo_client::{ClientError, ServerAddress, ZeoClient, ZeoClientOptions};

use crate::admin::model::RaidStatus;
use crate::control::{nagios_code, NAGIOS_CRITICAL, NAGIOS_OK};

/// gocept.zeoraid's controller defaults.
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 8100;
pub const DEFAULT_STORAGE: &str = "1";

/// How long to wait for the connection and registration.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a status call may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an action may take (`disable` waits for a commit in progress).
const ACTION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `verify` may take.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How often `recover --wait` asks.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// One controller command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Status,
    Details,
    Disable(String),
    Recover { backend: String, wait: bool },
    Reload,
    Verify,
}

/// Where to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub storage: String,
}

/// Runs `action` against the server at `target`; prints as gocept.zeoraid's
/// controller and returns its exit code.
pub fn run(target: &Target, action: &Action) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(async {
        match execute(target, action).await {
            Ok(code) => code,
            Err(message) => {
                println!("{message}");
                NAGIOS_CRITICAL
            }
        }
    });
    Ok(ExitCode::from(code))
}

async fn execute(target: &Target, action: &Action) -> Result<u8, String> {
    let client = connect(target).await?;
    let result = match action {
        Action::Status => {
            let status = status(&client).await?;
            println!("{status}");
            Ok(code_of(&status))
        }
        Action::Details => {
            let details = call(&client, "raid_details", vec![], QUERY_TIMEOUT).await?;
            let status = status(&client).await?;
            print!(
                "{}",
                format_details(target, &status, &details_pairs(&details))
            );
            Ok(code_of(&status))
        }
        Action::Disable(backend) => {
            let reply = call(
                &client,
                "raid_disable",
                vec![Value::from(backend.as_str())],
                ACTION_TIMEOUT,
            )
            .await?;
            println!("{}", text(&reply));
            Ok(NAGIOS_OK)
        }
        Action::Recover { backend, wait } => {
            let reply = call(
                &client,
                "raid_recover",
                vec![Value::from(backend.as_str())],
                ACTION_TIMEOUT,
            )
            .await?;
            println!("{}", text(&reply));
            if !wait {
                return Ok(NAGIOS_OK);
            }
            loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                let status = status(&client).await?;
                if status != "recovering" {
                    println!("{status}");
                    return Ok(code_of(&status));
                }
            }
        }
        Action::Reload => {
            let reply = call(&client, "raid_reload", vec![], ACTION_TIMEOUT).await?;
            println!("{}", text(&reply));
            Ok(NAGIOS_OK)
        }
        Action::Verify => {
            let reply = call(&client, "raid_verify", vec![], VERIFY_TIMEOUT).await?;
            println!("{}", text(&reply));
            Ok(NAGIOS_OK)
        }
    };
    client.shutdown();
    result
}

async fn connect(target: &Target) -> Result<ZeoClient, String> {
    let mut options = ZeoClientOptions::new(ServerAddress::tcp(target.host.clone(), target.port))
        .storage(target.storage.clone())
        .read_only(true)
        .wait(true)
        .connect_timeout(CONNECT_TIMEOUT);
    options.wait_timeout = CONNECT_TIMEOUT;
    ZeoClient::connect(options).await.map_err(|_| {
        format!(
            "Could not connect to ZEO server at {}:{}",
            target.host, target.port
        )
    })
}

async fn status(client: &ZeoClient) -> Result<String, String> {
    let reply = call(client, "raid_status", vec![], QUERY_TIMEOUT).await?;
    Ok(text(&reply))
}

async fn call(
    client: &ZeoClient,
    name: &'static str,
    args: Vec<Value>,
    limit: Duration,
) -> Result<Value, String> {
    client
        .call_method(name, args, limit)
        .await
        .map_err(|e| match e {
            ClientError::Remote(payload) => remote_message(&payload),
            ClientError::Disconnected(_) | ClientError::NotConnected(_) => format!(
                "the server closed the connection on {name}: are management methods \
                 enabled (management-methods in <zeo>)?"
            ),
            other => other.to_string(),
        })
}

/// Python's `str(exception)`: the single argument, or the args.
fn remote_message(payload: &ErrorPayload) -> String {
    match payload {
        ErrorPayload::Builtin { args, .. } if args.len() == 1 => text(&args[0]),
        other => other.to_string(),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        Value::None => "None".to_owned(),
        other => format!("{other:?}"),
    }
}

fn code_of(status: &str) -> u8 {
    RaidStatus::ALL
        .iter()
        .find(|s| s.as_str() == status)
        .map(|s| nagios_code(*s))
        .unwrap_or(NAGIOS_CRITICAL)
}

fn details_pairs(details: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = match details {
        Value::Dict(items) => items.iter().map(|(k, v)| (text(k), text(v))).collect(),
        _ => Vec::new(),
    };
    pairs.sort();
    pairs
}

/// gocept.zeoraid's `details` table (column 25 wide, backends sorted).
pub fn format_details(target: &Target, status: &str, backends: &[(String, String)]) -> String {
    const COL: usize = 25;
    let rule = format!(" {}+-------------------\n", "-".repeat(COL));
    let mut out = String::new();
    let server = format!("{}:{}", target.host, target.port);
    out.push_str(&format!(" {server:<COL$}| Status\n"));
    out.push_str(&rule);
    let raid = format!("RAID {}", target.storage);
    out.push_str(&format!(" {raid:<COL$}| {status:<COL$}\n"));
    out.push_str(&rule);
    for (name, detail) in backends {
        out.push_str(&format!(" {name:<COL$}| {detail}\n"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn details_table_like_gocept() {
        let target = Target {
            host: "127.0.0.1".into(),
            port: 8100,
            storage: "1".into(),
        };
        let table = format_details(
            &target,
            "degraded",
            &[
                ("a".into(), "optimal".into()),
                ("b".into(), "failed: disabled by operator".into()),
            ],
        );
        assert_eq!(
            table,
            " 127.0.0.1:8100           | Status\n \
             -------------------------+-------------------\n \
             RAID 1                   | degraded                 \n \
             -------------------------+-------------------\n \
             a                        | optimal\n \
             b                        | failed: disabled by operator\n"
        );
    }

    #[test]
    fn status_codes() {
        assert_eq!(code_of("optimal"), 0);
        assert_eq!(code_of("recovering"), 1);
        assert_eq!(code_of("degraded"), 2);
        assert_eq!(code_of("failed"), 2);
        assert_eq!(code_of("???"), 2);
    }
}
