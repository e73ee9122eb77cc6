//! How fast `Policy::decide` and `Policy::evaluate` are: three rules (the classic site plus an
//! exception) over a million synthetic files, single-threaded.
//!
//!     cargo run --release -p nlds-policy --example timing [FILES]
//!
//! A measurement to report, not a test (BENCHMARKS.md has the figures).

use std::hint::black_box;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use figment::Figment;
use figment::providers::{Format as _, Toml};
use nlds_policy::{FileFacts, Policy};
use nlds_settings::PolicyConfig;

const RULES: &str = r#"
[[rule]]
name = "never-tape-b"
action = "none"
group = "gws-b"
[[rule]]
name = "archive-old"
action = "archive"
age = "30d"
[[rule]]
name = "evict-idle"
action = "evict"
idle = "90d"
"#;

/// The same with globs and tags to look at on every file.
const GLOB_RULES: &str = r#"
[[rule]]
name = "keep-hot"
action = "pin"
until = "2030-01-01T00:00:00Z"
label = "*-hot"
[[rule]]
name = "archive-nc"
action = "archive"
age = "30d"
any = [ { path = "/gws/p3/**/*.nc" }, { tag = "project=y" } ]
[[rule]]
name = "evict-idle"
action = "evict"
idle = "90d"
path = "*.nc"
"#;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();

    // Synthetic files: ages and idleness spread over a year, a third archived, three groups.
    let paths: Vec<String> = (0..n)
        .map(|i| format!("/gws/p{}/d{}/f{i}.nc", i % 7, i % 101))
        .collect();
    let groups = ["gws-a", "gws-b", "gws-c"];
    let tags = vec![("project".to_owned(), "x".to_owned())];
    let facts: Vec<FileFacts<'_>> = (0..n)
        .map(|i| {
            let ingested = now - Duration::hours((i * 7919 % (365 * 24)) as i64);
            FileFacts {
                path: &paths[i],
                size: (i as u64 * 4099) % (1 << 30),
                ingested,
                last_access: (i % 4 != 0).then(|| ingested + Duration::hours((i % 1000) as i64)),
                label: "run",
                user: "alice",
                group: groups[i % 3],
                tenancy: None,
                tags: &tags,
                warm: true,
                cold: i % 3 == 0,
            }
        })
        .collect();

    for (rules_name, rules) in [("plain", RULES), ("globs", GLOB_RULES)] {
        println!("{rules_name} rules:");
        let cfg: PolicyConfig = Figment::from(Toml::string(rules)).extract().unwrap();
        let policy = Policy::load(&cfg).unwrap();
        for (what, by_name) in [("decide", false), ("evaluate", true)] {
            let started = Instant::now();
            let mut moved = 0usize;
            for f in &facts {
                let hit = if by_name {
                    policy
                        .evaluate(black_box(f), now)
                        .is_some_and(|d| d.action.moves())
                } else {
                    policy
                        .decide(black_box(f), now)
                        .is_some_and(|v| v.action.moves())
                };
                moved += usize::from(hit);
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{what}: {n} files, 3 rules: {secs:.3} s, {:.2} M evaluations/s ({moved} to move)",
                n as f64 / secs / 1e6
            );
        }
        let started = Instant::now();
        let eligible = facts
            .iter()
            .filter(|f| policy.watermark_eligible(black_box(f), now))
            .count();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "watermark_eligible: {n} files: {secs:.3} s, {:.2} M/s ({eligible} eligible)",
            n as f64 / secs / 1e6
        );
    }
}
