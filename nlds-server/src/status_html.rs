//! The HTML of `GET /status`: built here from [`SystemStatus`], every value escaped, no script.
//! Each role's row carries `data-role`, `data-health` and `data-drained`, each backend's `data-component`,
//! so tools (and the tests) can read the page without parsing its text.

use std::fmt::Write;

use nlds_core::quota::human_bytes;
use nlds_core::system_status::{Health, SystemStatus};

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

fn word(h: Health) -> &'static str {
    match h {
        Health::Up => "up",
        Health::Down => "down",
        Health::Unknown => "unknown",
    }
}

fn cell(h: Health) -> String {
    format!("<td class=\"{}\">{}</td>", h.colour(), word(h))
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}\
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left;vertical-align:top}\
.green{background:#cfc;color:#060}.red{background:#fcc;color:#900;font-weight:bold}.grey{background:#eee;color:#555}\
small{color:#555}";

/// The page.
pub fn render(st: &SystemStatus) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\"><title>NLDS status</title>\
         <style>{STYLE}</style></head><body>\n<h1>NLDS status: <span id=\"overall\" class=\"{}\">{}</span></h1>\n\
         <p><small>at {} UTC; a role is down when none of its processes sent a heartbeat for {} s</small></p>\n",
        st.overall.colour(),
        word(st.overall),
        escape(&st.generated.format("%Y-%m-%d %H:%M:%S").to_string()),
        st.heartbeat_timeout_secs
    );
    h.push_str("<h2>Roles</h2>\n<table id=\"roles\"><tr><th>role</th><th>status</th>");
    if st.detailed {
        h.push_str(
            "<th>processes (host, pid, started, last heartbeat)</th><th>queued</th>\
             <th>consumers</th><th>dead letters</th>",
        );
    }
    h.push_str("</tr>\n");
    for r in &st.roles {
        // A drained role is up but takes no work: said in its status cell and its row.
        let status = if r.drained {
            format!(
                "<td class=\"{}\">{}, drained</td>",
                r.health.colour(),
                word(r.health)
            )
        } else {
            cell(r.health)
        };
        let _ = write!(
            h,
            "<tr data-drained=\"{}\" data-role=\"{}\" data-health=\"{}\"><td>{}</td>{}",
            r.drained,
            escape(&r.role),
            word(r.health),
            escape(&r.role),
            status
        );
        if st.detailed {
            let procs = r
                .processes
                .iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{} pid {}, since {}, seen {}",
                        escape(&p.host),
                        p.pid,
                        escape(&p.started.format("%Y-%m-%d %H:%M:%S").to_string()),
                        escape(&p.last_seen.format("%H:%M:%S").to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>");
            let num = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
            let _ = write!(
                h,
                "<td>{procs}</td><td>{}</td><td>{}</td><td>{}</td>",
                num(r.queue_depth),
                num(r.consumers.map(u64::from)),
                num(r.dead_letters)
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str(
        "</table>\n<h2>Backends</h2>\n<table id=\"components\"><tr><th>backend</th><th>status</th>",
    );
    if st.detailed {
        h.push_str("<th>detail</th>");
    }
    h.push_str("</tr>\n");
    for c in &st.components {
        let _ = write!(
            h,
            "<tr data-component=\"{}\" data-health=\"{}\"><td>{}</td>{}",
            escape(&c.name),
            word(c.health),
            escape(&c.name.replace('_', " ")),
            cell(c.health)
        );
        if let Some(d) = &c.detail {
            let _ = write!(h, "<td>{}</td>", escape(d));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    if !st.detailed {
        h.push_str(
            "<p><small>Operators see processes, queues, failures, tier usage and the policy \
             with their token (GET /api/v2/status or this page with an Authorization header).</small></p>\n",
        );
    }
    if let Some(f) = &st.recent_failures {
        let _ = write!(
            h,
            "<h2>Failed transactions, last 24 hours: {}</h2>\n<table id=\"failures\">\
             <tr><th>transaction</th><th>user</th><th>action</th><th>created</th><th>failed files</th></tr>\n",
            f.total
        );
        for t in &f.transactions {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                t.transaction_id,
                escape(&t.user),
                escape(&t.api_action),
                escape(&t.created.format("%Y-%m-%d %H:%M:%S").to_string()),
                t.files_failed
            );
        }
        h.push_str("</table>\n");
    }
    if let Some(u) = &st.tier_usage {
        let _ = write!(
            h,
            "<h2>Tier usage</h2>\n<table id=\"tiers\"><tr><th>tier</th><th>files</th><th>bytes</th></tr>\n\
             <tr><td>warm (object store)</td><td>{}</td><td>{}</td></tr>\n\
             <tr><td>cold (tape)</td><td>{}</td><td>{}</td></tr>\n\
             <tr><td>all live files</td><td>{}</td><td>{}</td></tr>\n</table>\n",
            u.warm.files,
            human_bytes(u.warm.bytes),
            u.cold.files,
            human_bytes(u.cold.bytes),
            u.all.files,
            human_bytes(u.all.bytes)
        );
    }
    if let Some(p) = &st.policy {
        let _ = write!(
            h,
            "<h2>Policy</h2>\n<table id=\"policy\"><tr><td>enabled</td><td>{}</td></tr>\n",
            p.enabled
        );
        if let Some(b) = &p.breaker {
            let _ = writeln!(
                h,
                "<tr><td>circuit breaker</td><td class=\"red\">open: {}</td></tr>",
                escape(b)
            );
        }
        if let Some(n) = p.next_pass {
            let _ = writeln!(
                h,
                "<tr><td>next pass</td><td>{}</td></tr>",
                escape(&n.format("%Y-%m-%d %H:%M:%S").to_string())
            );
        }
        if let Some(l) = &p.last_pass {
            let _ = writeln!(
                h,
                "<tr><td>last pass</td><td>{}, archived {}, evicted {}</td></tr>",
                escape(&l.outcome),
                human_bytes(l.archived_bytes),
                human_bytes(l.evicted_bytes)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use nlds_core::system_status::{ComponentStatus, ProcessStatus, RoleStatus};

    fn status(detailed: bool) -> SystemStatus {
        SystemStatus {
            generated: chrono::Utc::now(),
            overall: Health::Down,
            heartbeat_timeout_secs: 30,
            roles: vec![
                RoleStatus {
                    role: "indexer".into(),
                    health: Health::Up,
                    drained: true,
                    processes: detailed.then(|| {
                        vec![ProcessStatus {
                            instance: uuid::Uuid::nil(),
                            host: "<script>alert(1)</script>".into(),
                            pid: 7,
                            started: chrono::Utc::now(),
                            last_seen: chrono::Utc::now(),
                        }]
                    }),
                    queue_depth: detailed.then_some(3),
                    consumers: detailed.then_some(1),
                    dead_letters: detailed.then_some(0),
                },
                RoleStatus {
                    role: "router".into(),
                    health: Health::Down,
                    drained: false,
                    processes: None,
                    queue_depth: None,
                    consumers: None,
                    dead_letters: None,
                },
            ],
            components: vec![ComponentStatus {
                name: "object_store".into(),
                health: Health::Down,
                detail: detailed.then(|| "bucket \"x\" & <y>".into()),
            }],
            detailed,
            recent_failures: None,
            tier_usage: None,
            policy: None,
        }
    }

    #[test]
    fn the_page_escapes_what_it_shows_and_marks_each_role() {
        let page = render(&status(true));
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; pid 7"));
        assert!(page.contains("bucket &quot;x&quot; &amp; &lt;y&gt;"));
        assert!(page.contains(
            "<tr data-drained=\"false\" data-role=\"router\" data-health=\"down\"><td>router</td><td class=\"red\">down</td>"
        ));
        assert!(page.contains(
            "<tr data-drained=\"true\" data-role=\"indexer\" data-health=\"up\"><td>indexer</td><td class=\"green\">up, drained</td>"
        ));
    }

    #[test]
    fn anonymous_pages_have_no_detail_columns() {
        let page = render(&status(false));
        assert!(!page.contains("processes (host"), "{page}");
        assert!(!page.contains("<th>detail</th>"));
        assert!(page.contains("Operators see processes"));
    }
}
