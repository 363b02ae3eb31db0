//! `GET /`: a small status page for people. Rendered on the server from the
//! snapshot, self-contained (inline CSS, no script, no external asset) and
//! reloaded by the browser every [`REFRESH_SECONDS`] seconds.

use std::fmt::Write;

use super::model::{parse_tid, BackendSnapshot, BackendState, ServerSnapshot, StorageSnapshot};

/// How often the page reloads itself.
pub const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em;color:#1f2328;background:#fff}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em}\
table{border-collapse:collapse;width:100%;max-width:72em}\
th,td{text-align:left;padding:.35em .8em;border-bottom:1px solid #d0d7de;vertical-align:top}\
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}\
code{font-size:.95em}small{color:#59636e}\
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;color:#fff;font-weight:600}\
.optimal{background:#1a7f37}.degraded{background:#cf222e}\
.recovering{background:#9a6700}.failed{background:#82071e}\
progress{width:10em;vertical-align:middle}\
footer{margin-top:2em;color:#59636e;font-size:.9em}";

/// Renders the page.
pub fn render(snapshot: &ServerSnapshot) -> String {
    let status = snapshot.status().as_str();
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>zeoraid: {status}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>zeoraid <span id=\"server-status\" class=\"badge {status}\">{status}</span></h1>\n"
    );
    if snapshot.storages.is_empty() {
        out.push_str("<p>No storage is served.</p>\n");
    }
    for storage in &snapshot.storages {
        render_storage(&mut out, storage);
    }
    let _ = write!(
        out,
        "<footer>zeoraid {} &middot; reloads every {REFRESH_SECONDS} seconds &middot; \
         <a href=\"/details\">details (JSON)</a> &middot; <a href=\"/metrics\">metrics</a>\
         </footer>\n</body>\n</html>\n",
        escape(&snapshot.version)
    );
    out
}

fn render_storage(out: &mut String, storage: &StorageSnapshot) {
    let name = escape(&storage.name);
    let status = storage.status.as_str();
    let _ = write!(
        out,
        "<section class=\"storage\" data-storage=\"{name}\">\n\
         <h2>Storage {name} <small>{kind}</small> \
         <span class=\"badge {status}\">{status}</span></h2>\n\
         <table>\n<thead><tr><th>Backend</th><th>State</th><th>Reason / progress</th>\
         <th>Last transaction</th><th>Commits</th><th>Loads</th><th>Errors</th></tr></thead>\n\
         <tbody>\n",
        kind = storage.kind.as_str(),
    );
    for backend in &storage.backends {
        render_backend(out, backend);
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn render_backend(out: &mut String, b: &BackendSnapshot) {
    let name = escape(&b.name);
    let word = b.state.word();
    let detail = match &b.state {
        BackendState::Optimal => String::new(),
        BackendState::Degraded { reason } => escape(reason),
        BackendState::Recovering { progress } => {
            let bar = match progress.fraction() {
                Some(f) => format!("<progress max=\"1\" value=\"{f:.3}\"></progress> "),
                None => "<progress></progress> ".into(),
            };
            format!("{bar}{}", escape(&progress.to_string()))
        }
    };
    let last = match b.last_tid.as_deref() {
        Some(hex) => match parse_tid(hex) {
            Some(tid) if !tid.is_zero() => {
                format!("<code>{}</code><br><small>{tid} UTC</small>", escape(hex))
            }
            Some(_) => "<small>no transaction yet</small>".into(),
            None => format!("<code>{}</code>", escape(hex)),
        },
        None => "&ndash;".into(),
    };
    let counter = |pick: fn(&super::model::BackendCounters) -> u64| match &b.counters {
        Some(c) => pick(c).to_string(),
        None => "&ndash;".into(),
    };
    let _ = writeln!(
        out,
        "<tr class=\"backend\" data-backend=\"{name}\" data-state=\"{word}\">\
         <td>{name}</td><td><span class=\"badge {word}\">{word}</span></td>\
         <td class=\"detail\">{detail}</td><td>{last}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        counter(|c| c.commits),
        counter(|c| c.loads),
        counter(|c| c.errors),
    );
}

/// Text escaped for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::admin::model::{RaidStatus, RecoveryProgress, StorageKind};

    #[test]
    fn shows_every_backend_with_its_state() {
        let snapshot = ServerSnapshot {
            version: "0.1.0".into(),
            storages: vec![StorageSnapshot {
                name: "1".into(),
                kind: StorageKind::Raid,
                status: RaidStatus::Degraded,
                backends: vec![
                    BackendSnapshot {
                        name: "a".into(),
                        state: BackendState::Optimal,
                        last_tid: Some("03d2a1b2c3d4e5f6".into()),
                        counters: None,
                    },
                    BackendSnapshot {
                        name: "b<script>".into(),
                        state: BackendState::Degraded {
                            reason: "vote failed: <I/O> & more".into(),
                        },
                        last_tid: None,
                        counters: None,
                    },
                    BackendSnapshot {
                        name: "c".into(),
                        state: BackendState::Recovering {
                            progress: RecoveryProgress {
                                transactions: 1,
                                transactions_total: Some(4),
                                ..RecoveryProgress::default()
                            },
                        },
                        last_tid: Some("0000000000000000".into()),
                        counters: None,
                    },
                ],
            }],
        };
        let html = render(&snapshot);
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("id=\"server-status\" class=\"badge degraded\">degraded<"));
        assert!(html.contains("data-backend=\"a\" data-state=\"optimal\""));
        assert!(html.contains("data-backend=\"b&lt;script&gt;\" data-state=\"degraded\""));
        assert!(html.contains("vote failed: &lt;I/O&gt; &amp; more"));
        assert!(html.contains("<progress max=\"1\" value=\"0.250\">"));
        assert!(html.contains("no transaction yet"));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
