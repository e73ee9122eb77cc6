//! The policy benchmark's two halves (driven by `bench/policy.sh`; not part of CI):
//!
//! * `policy_bench gen TABLE --files N [--now RFC3339]` writes the synthetic catalogue's rows of
//!   TABLE as CSV on standard output, for `COPY TABLE FROM STDIN (FORMAT csv)`: N files in
//!   N / 1000 holdings (one transaction each), a warm copy of every file, a cold copy (in a
//!   stored aggregation) of 40% of them, a tag or two per holding, and varied sizes, ages, last
//!   accesses, users, groups and tenancies. Deterministic: the same N gives the same rows.
//! * `policy_bench pass --database-url URL [--runs 3]` times full dry-run passes (three rules:
//!   a `none` rule for one group, archive after 30 days, evict after 90 days idle) with the
//!   policy role's runner, and prints one line per run: `run=1 seconds=... evaluated=...
//!   files_per_s=...`, then the rule tallies of the last run.

use std::io::{BufWriter, Write};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

/// Files per holding.
const PER_HOLDING: u64 = 1000;
/// Users and groups the holdings belong to.
const USERS: u64 = 200;
const GROUPS: u64 = 20;

/// A cheap, well-mixed hash of `x` (splitmix64): the synthetic values come from it.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S+00").to_string()
}

struct Gen {
    files: u64,
    holdings: u64,
    now: DateTime<Utc>,
}

impl Gen {
    fn holding_of(&self, file: u64) -> u64 {
        (file - 1) / PER_HOLDING + 1
    }

    /// Holdings were put between 0 and 400 days ago.
    fn ingest(&self, h: u64) -> DateTime<Utc> {
        self.now - Duration::minutes((mix(h) % (400 * 24 * 60)) as i64)
    }

    /// 40% of files have a cold copy (in their holding's stored aggregation).
    fn cold(&self, file: u64) -> bool {
        mix(file ^ 0xc01d) % 5 < 2
    }

    /// Every tenth holding's warm copies are in tenancy `tenant-b`.
    fn tenancy(&self, h: u64) -> Option<&'static str> {
        (h % 10 == 3).then_some("tenant-b")
    }

    fn size(&self, file: u64) -> u64 {
        // 1 KiB .. 4 GiB, log-distributed.
        let r = mix(file ^ 0x51e);
        let exp = 10 + r % 23;
        (1u64 << exp) + (r >> 40) % (1u64 << exp)
    }

    fn write(&self, table: &str, out: &mut dyn Write) -> std::io::Result<()> {
        match table {
            "holding" => {
                for h in 1..=self.holdings {
                    let hot = if h % 50 == 0 { "-hot" } else { "" };
                    writeln!(
                        out,
                        "{h},run{h}{hot},user{},group{},{}",
                        h % USERS,
                        h % GROUPS,
                        ts(self.ingest(h))
                    )?;
                }
            }
            "tag" => {
                let mut id = 0;
                for h in 1..=self.holdings {
                    id += 1;
                    writeln!(out, "{id},{h},project,p{}", h % 10)?;
                    if h % 7 == 0 {
                        id += 1;
                        writeln!(out, "{id},{h},keep,yes")?;
                    }
                }
            }
            "transaction" => {
                for h in 1..=self.holdings {
                    writeln!(
                        out,
                        "{h},00000000-0000-4000-8000-{h:012},{h},{}",
                        ts(self.ingest(h))
                    )?;
                }
            }
            "file" => {
                for f in 1..=self.files {
                    let h = self.holding_of(f);
                    let r = mix(f);
                    // 60% never read; the rest read 0 to 200 days ago (not before ingest).
                    let (last, count) = if r % 10 < 6 {
                        (String::new(), 0)
                    } else {
                        let t = (self.now - Duration::minutes(((r >> 8) % (200 * 24 * 60)) as i64))
                            .max(self.ingest(h));
                        (ts(t), 1 + (r >> 32) % 20)
                    };
                    writeln!(
                        out,
                        "{f},{h},{h},/gws/project{}/run{h}/d{}/f{f}.nc,file,{},1000,1000,33188,0,{last},{count}",
                        h % 10,
                        (f % PER_HOLDING) / 100,
                        self.size(f),
                    )?;
                }
            }
            "location" => {
                // Warm copies: ids 1..=files; cold copies after them.
                for f in 1..=self.files {
                    let h = self.holding_of(f);
                    writeln!(
                        out,
                        "{f},{f},warm,nlds,run{h}/f{f},{},{}",
                        ts(self.ingest(h)),
                        self.tenancy(h).unwrap_or("")
                    )?;
                }
                let mut id = self.files;
                for f in (1..=self.files).filter(|&f| self.cold(f)) {
                    id += 1;
                    let h = self.holding_of(f);
                    writeln!(
                        out,
                        "{id},{f},cold,tape,agg-{h},{},",
                        ts(self.ingest(h) + Duration::hours(1))
                    )?;
                }
            }
            "aggregation" => {
                for h in 1..=self.holdings {
                    let first = (h - 1) * PER_HOLDING + 1;
                    let last = (h * PER_HOLDING).min(self.files);
                    let (n, bytes) = (first..=last)
                        .filter(|&f| self.cold(f))
                        .fold((0u64, 0u64), |(n, b), f| (n + 1, b + self.size(f)));
                    let t = ts(self.ingest(h) + Duration::hours(1));
                    writeln!(
                        out,
                        "{h},agg-{h},00000000-0000-4000-9000-{h:012},{h},dir,stored,{bytes},{n},,,,{t},,{t}"
                    )?;
                }
            }
            "aggregation_member" => {
                let mut id = 0;
                let mut pos: (u64, u64) = (0, 0);
                for f in (1..=self.files).filter(|&f| self.cold(f)) {
                    let h = self.holding_of(f);
                    if pos.0 != h {
                        pos = (h, 0);
                    }
                    id += 1;
                    writeln!(out, "{id},{h},{f},{},{}", pos.1, pos.1 * 512)?;
                    pos.1 += 1;
                }
            }
            other => {
                return Err(std::io::Error::other(format!(
                    "unknown table {other:?}: holding, tag, transaction, file, location, aggregation or aggregation_member"
                )));
            }
        }
        Ok(())
    }
}

/// The value after `--name`, if given.
fn opt(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The benchmark's three rules.
fn rules() -> nlds_settings::PolicyConfig {
    let toml = r#"
enabled = true
[[rule]]
name = "group7-stays"
action = "none"
group = "group7"
[[rule]]
name = "archive-after-30d"
action = "archive"
age = "30d"
[[rule]]
name = "evict-idle-90d"
action = "evict"
idle = "90d"
"#;
    toml::from_str(toml).expect("the benchmark's rules parse")
}

async fn pass(args: &[String]) -> anyhow::Result<()> {
    use nlds_core::policy::PassKind;
    let url = opt(args, "--database-url")
        .or_else(|| std::env::var("NLDS_DATABASE_URL").ok())
        .ok_or_else(|| anyhow::anyhow!("give --database-url postgres://..."))?;
    let runs: usize = opt(args, "--runs").map_or(Ok(3), |r| r.parse())?;
    let cfg = rules();
    let policy = nlds_policy::Policy::load(&cfg).map_err(|e| {
        anyhow::anyhow!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let db = nlds_workers::db::connect(&url).await?;
    let bus: std::sync::Arc<dyn nlds_bus::Bus> =
        std::sync::Arc::new(nlds_bus::memory::MemoryBus::new());
    let runner = nlds_workers::policy::PolicyRunner::new(db, bus, cfg, policy);
    let mut last = None;
    for run in 1..=runs {
        let start = Instant::now();
        let r = runner.pass(PassKind::DryRun).await?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "run={run} seconds={secs:.2} evaluated={} files_per_s={:.0}",
            r.evaluated,
            r.evaluated as f64 / secs
        );
        last = Some(r);
    }
    if let Some(r) = last {
        for t in &r.rules {
            println!(
                "rule={} action={} files={} bytes={}",
                t.rule, t.action, t.tally.files, t.tally.bytes
            );
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen") => {
            let table = args
                .get(1)
                .ok_or_else(|| anyhow::anyhow!("gen TABLE --files N"))?;
            let files: u64 = opt(&args, "--files").map_or(Ok(10_000_000), |n| n.parse())?;
            let now = match opt(&args, "--now") {
                Some(t) => DateTime::parse_from_rfc3339(&t)?.with_timezone(&Utc),
                None => Utc::now(),
            };
            let g = Gen {
                files,
                holdings: files.div_ceil(PER_HOLDING),
                now,
            };
            let stdout = std::io::stdout();
            let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
            g.write(table, &mut out)?;
            out.flush()?;
            Ok(())
        }
        Some("pass") => pass(&args[1..]).await,
        _ => anyhow::bail!("usage: policy_bench gen TABLE --files N | pass --database-url URL"),
    }
}
