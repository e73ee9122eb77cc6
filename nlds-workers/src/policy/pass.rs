//! One pass: record it, scan and evaluate every live file, tally the decisions, and (unless it
//! is a dry run) plan the actions within the caps, fairly across groups, carry them out in
//! chunks with the circuit breaker watching, then the watermark evictions, and finish the record.

use std::collections::{BTreeMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use nlds_core::policy::{GroupTally, PassKind, PassOutcome, PassReport, RuleTally, Tally};
use nlds_policy::Action as RuleAction;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use super::scan::{self, ScanRow, Tags, facts_of};
use super::watermark::{self, Candidate as WmCandidate};
use super::{PolicyRunner, RunnerError, actions, lease};
use crate::db::policy_pass;

/// Example paths kept per rule and per group.
const EXAMPLES: usize = 5;
/// Files per catalogue request (and between two looks at the circuit breaker).
pub const CHUNK: usize = 500;

/// The word for a rule's action in reports.
pub fn action_name(a: &RuleAction) -> &'static str {
    match a {
        RuleAction::Archive => "archive",
        RuleAction::Evict => "evict",
        RuleAction::Pin { .. } => "pin",
        RuleAction::None => "none",
    }
}

/// What a pass moves: archive or evict one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Move {
    Archive,
    Evict,
}

/// A file a pass may move.
#[derive(Debug, Clone)]
pub struct Planned {
    pub id: i64,
    pub size: u64,
    pub what: Move,
}

/// The per-rule and per-group tallies, kept in the pass row's `summary`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub rules: Vec<RuleTally>,
    pub groups: Vec<GroupTally>,
}

fn add(t: &mut Tally, size: u64, path: &str) {
    t.files += 1;
    t.bytes += size;
    if t.examples.len() < EXAMPLES {
        t.examples.push(path.to_owned());
    }
}

/// Tallies in order: rules by position, groups by name and action.
#[derive(Default)]
pub struct Tallies {
    rules: BTreeMap<(usize, String, &'static str), Tally>,
    groups: BTreeMap<(String, &'static str), Tally>,
}

impl Tallies {
    pub fn count(&mut self, rule: (usize, &str), action: &'static str, row: &ScanRow) {
        add(
            self.rules
                .entry((rule.0, rule.1.to_owned(), action))
                .or_default(),
            row.size(),
            &row.path,
        );
        self.count_group(action, row);
    }

    pub fn count_group(&mut self, action: &'static str, row: &ScanRow) {
        add(
            self.groups.entry((row.group.clone(), action)).or_default(),
            row.size(),
            &row.path,
        );
    }

    /// Watermark evictions are tallied under the rule `watermark:<tenancy>`.
    pub fn count_watermark(&mut self, tenancy: &str, c: &WmCandidate) {
        let t = self
            .rules
            .entry((usize::MAX, format!("watermark:{tenancy}"), "evict"))
            .or_default();
        add(t, c.size, &c.path);
        add(
            self.groups.entry((c.group.clone(), "evict")).or_default(),
            c.size,
            &c.path,
        );
    }

    pub fn summary(&self) -> Summary {
        Summary {
            rules: self
                .rules
                .iter()
                .map(|((_, name, action), t)| RuleTally {
                    rule: name.clone(),
                    action: (*action).to_owned(),
                    tally: t.clone(),
                })
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|((g, action), t)| GroupTally {
                    group: g.clone(),
                    action: (*action).to_owned(),
                    tally: t.clone(),
                })
                .collect(),
        }
    }
}

/// Takes candidates from `groups` round-robin (one per group in turn, groups in name order)
/// while they fit `max_files` and `max_bytes` (0: no limit). Returns the plan and whether a cap
/// left candidates out.
pub fn fair_plan(
    groups: BTreeMap<String, VecDeque<Planned>>,
    max_files: u64,
    max_bytes: u64,
) -> (Vec<Planned>, bool) {
    let mut queues: Vec<VecDeque<Planned>> =
        groups.into_values().filter(|q| !q.is_empty()).collect();
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut plan = Vec::new();
    let mut capped = false;
    while !queues.is_empty() {
        let mut next = Vec::with_capacity(queues.len());
        for mut q in queues {
            let Some(c) = q.pop_front() else { continue };
            if max_files > 0 && files >= max_files {
                capped = true;
                continue;
            }
            if max_bytes > 0 && bytes + c.size > max_bytes {
                // This group's next file does not fit: it waits for the next pass.
                capped = true;
                continue;
            }
            files += 1;
            bytes += c.size;
            plan.push(c);
            if !q.is_empty() {
                next.push(q);
            }
        }
        queues = next;
    }
    (plan, capped)
}

/// The breaker's verdict after some actions: `Some(why)` when it opens.
pub fn breaker_trips(
    attempted: u64,
    failed: u64,
    min: u64,
    rate: f64,
    what: &str,
    first: Option<&str>,
) -> Option<String> {
    (attempted > 0 && attempted >= min && failed as f64 / attempted as f64 > rate).then(|| {
        format!(
            "{failed} of {attempted} {what} actions failed: {}",
            first.unwrap_or("(no reason recorded)")
        )
    })
}

/// The counts a pass accumulates while it runs.
#[derive(Default)]
struct Counts {
    evaluated: u64,
    archived_files: u64,
    archived_bytes: u64,
    evicted_files: u64,
    evicted_bytes: u64,
    errors: u64,
    attempted: u64,
    first_error: Option<String>,
}

impl Counts {
    fn fail(&mut self, files: u64, why: String) {
        self.errors += files;
        tracing::warn!(files, "policy action failed: {why}");
        self.first_error.get_or_insert(why);
    }
}

/// Runs one pass of `kind` (see [`PolicyRunner::pass`]).
pub async fn run(r: &PolicyRunner, kind: PassKind) -> Result<PassReport, RunnerError> {
    let _one = r.running.lock().await;
    let dry = kind == PassKind::DryRun;
    if !dry {
        lease::acquire(&r.db, &r.holder, r.cfg.lease_secs).await?;
        if let Some((reason, since)) = lease::breaker(&r.db).await? {
            match kind {
                // Only a scheduled or manual pass closes an open breaker (docs/POLICY-RUNNER.md).
                PassKind::Scheduled | PassKind::Manual => {
                    tracing::info!(%reason, "the policy's circuit breaker closes: a new pass starts");
                    lease::close_breaker(&r.db).await?;
                }
                _ => {
                    lease::release(&r.db, &r.holder).await?;
                    return Err(RunnerError::BreakerOpen { reason, since });
                }
            }
        }
    }
    let started = Utc::now();
    let row = policy_pass::ActiveModel {
        kind: Set(kind.to_string()),
        started: Set(started),
        ended: Set(None),
        outcome: Set(PassOutcome::Running.to_string()),
        evaluated: Set(0),
        archived_files: Set(0),
        archived_bytes: Set(0),
        evicted_files: Set(0),
        evicted_bytes: Set(0),
        errors: Set(0),
        breaker: Set(None),
        summary: Set("{}".into()),
        ..Default::default()
    }
    .insert(&r.db)
    .await;
    let row = match row {
        Ok(row) => row,
        Err(e) => {
            if !dry {
                let _ = lease::release(&r.db, &r.holder).await;
            }
            return Err(e.into());
        }
    };
    let mut counts = Counts::default();
    let mut tallies = Tallies::default();
    let ended = body(r, kind, started, &mut counts, &mut tallies).await;
    let (outcome, breaker) = match ended {
        Ok((outcome, breaker)) => (outcome, breaker),
        Err(e) => (PassOutcome::Failed, Some(format!("the pass failed: {e}"))),
    };
    if outcome == PassOutcome::BreakerOpen
        && let Some(why) = &breaker
    {
        lease::open_breaker(&r.db, why).await?;
    }
    let summary = tallies.summary();
    let mut done: policy_pass::ActiveModel = row.into();
    done.ended = Set(Some(Utc::now()));
    done.outcome = Set(outcome.to_string());
    done.evaluated = Set(counts.evaluated as i64);
    done.archived_files = Set(counts.archived_files as i64);
    done.archived_bytes = Set(counts.archived_bytes as i64);
    done.evicted_files = Set(counts.evicted_files as i64);
    done.evicted_bytes = Set(counts.evicted_bytes as i64);
    done.errors = Set(counts.errors as i64);
    done.breaker = Set(breaker);
    done.summary = Set(serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into()));
    // The end and the operators' notifications of it in one database transaction.
    let txn = r.db.begin().await?;
    let done = done.update(&txn).await?;
    if !dry {
        crate::notify::decide::policy_pass_ended(&txn, &r.operators, &done).await?;
    }
    txn.commit().await?;
    if !dry {
        // Passes that may act (not dry runs): nlds_policy_passes_total{outcome}.
        nlds_metrics::record::policy_pass(&outcome.to_string());
        lease::release(&r.db, &r.holder).await?;
    }
    Ok(report(done)?)
}

/// Renews the lease every third of its length; `Err` when it was lost.
struct Renewer {
    last: tokio::time::Instant,
    every: std::time::Duration,
}

impl Renewer {
    fn new(lease_secs: u64) -> Self {
        Self {
            last: tokio::time::Instant::now(),
            every: std::time::Duration::from_secs((lease_secs / 3).max(1)),
        }
    }

    async fn tick(&mut self, r: &PolicyRunner, dry: bool) -> Result<(), String> {
        if dry || self.last.elapsed() < self.every {
            return Ok(());
        }
        self.last = tokio::time::Instant::now();
        match lease::renew(&r.db, &r.holder, r.cfg.lease_secs).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "runner {} lost the policy lease (it expired and another runner took it)",
                r.holder
            )),
            Err(e) => Err(format!("renewing the policy lease: {e}")),
        }
    }
}

type Ended = Result<(PassOutcome, Option<String>), String>;

async fn body(
    r: &PolicyRunner,
    kind: PassKind,
    now: DateTime<Utc>,
    counts: &mut Counts,
    tallies: &mut Tallies,
) -> Ended {
    let dry = kind == PassKind::DryRun;
    let policy = r.current();
    let rules_act = kind != PassKind::Watermark;
    let watched: HashSet<String> = r.cfg.watermarks.keys().cloned().collect();
    let mut renew = Renewer::new(r.cfg.lease_secs);
    let mut tags = Tags::default();
    let mut groups: BTreeMap<String, VecDeque<Planned>> = BTreeMap::new();
    let mut wm = watermark::Candidates::default();
    // A group's queue never needs more than the file cap: round-robin takes at most that many.
    let per_group = if r.cfg.max_files > 0 {
        r.cfg.max_files as usize
    } else {
        usize::MAX
    };
    let mut after = 0i64;
    loop {
        let rows = scan::page(&r.db, after, scan::PAGE, now)
            .await
            .map_err(|e| format!("scanning the catalogue after file id {after}: {e}"))?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        tags.load(&r.db, &rows)
            .await
            .map_err(|e| format!("loading holding tags: {e}"))?;
        for row in &rows {
            counts.evaluated += 1;
            let t = tags.of(row.holding_id);
            let facts = facts_of(row, &t);
            #[cfg(test)]
            let decision = match &r.decider {
                Some(decide) => decide(&facts, now),
                None => policy.evaluate(&facts, now),
            };
            #[cfg(not(test))]
            let decision = policy.evaluate(&facts, now);
            let may_evict = row.has_warm && row.cold_verified && !row.pinned && !row.awaited;
            let mut watermark_ok = true;
            if let Some(d) = &decision {
                let action = action_name(&d.action);
                let planned = match d.action {
                    RuleAction::Archive => (row.has_warm && !row.has_cold && !row.in_aggregation)
                        .then_some(Move::Archive),
                    RuleAction::Evict => may_evict.then_some(Move::Evict),
                    RuleAction::Pin { .. } | RuleAction::None => {
                        watermark_ok = false;
                        None
                    }
                };
                match (planned, &d.action) {
                    (Some(what), _) if rules_act => {
                        tallies.count((d.rule, &d.name), action, row);
                        let q = groups.entry(row.group.clone()).or_default();
                        if q.len() < per_group {
                            q.push_back(Planned {
                                id: row.id,
                                size: row.size(),
                                what,
                            });
                        }
                    }
                    (None, RuleAction::Pin { .. } | RuleAction::None) if rules_act => {
                        tallies.count((d.rule, &d.name), action, row);
                    }
                    _ => {}
                }
            }
            if watermark_ok && may_evict && watched.contains(watermark::tenancy_name(row)) {
                wm.push(row);
            }
        }
        renew.tick(r, dry).await?;
        if (rows.len() as u64) < scan::PAGE {
            break;
        }
    }

    let (plan, capped) = fair_plan(groups, r.cfg.max_files, r.cfg.max_bytes);
    let mut moved_files = 0u64;
    let mut moved_bytes = 0u64;
    let mut evicted: HashSet<i64> = HashSet::new();
    if !dry && !plan.is_empty() {
        let (archive, evict): (Vec<Planned>, Vec<Planned>) =
            plan.into_iter().partition(|p| p.what == Move::Archive);
        for chunk in evict.chunks(CHUNK) {
            let ids: Vec<i64> = chunk.iter().map(|p| p.id).collect();
            counts.attempted += ids.len() as u64;
            match actions::evict(r, &ids).await {
                Ok((files, bytes)) => {
                    counts.evicted_files += files;
                    counts.evicted_bytes += bytes;
                    evicted.extend(ids);
                }
                Err(why) => counts.fail(ids.len() as u64, why),
            }
            if let Some(why) = trips(r, counts, "evict") {
                return Ok((PassOutcome::BreakerOpen, Some(why)));
            }
            renew.tick(r, dry).await?;
        }
        for chunk in archive.chunks(CHUNK) {
            let files: Vec<(i64, u64)> = chunk.iter().map(|p| (p.id, p.size)).collect();
            counts.attempted += files.len() as u64;
            match actions::archive(r, &files).await {
                Ok(started) => {
                    let ended = actions::wait_stored(r, started).await?;
                    counts.archived_files += ended.stored_files;
                    counts.archived_bytes += ended.stored_bytes;
                    for (s, why) in ended.failed {
                        counts.fail(s.files, why);
                    }
                    for s in ended.pending {
                        counts.fail(
                            s.files,
                            format!(
                                "aggregate {} was not stored within {}s (archive_wait_secs); \
                                 it may still be",
                                s.name, r.cfg.archive_wait_secs
                            ),
                        );
                    }
                }
                Err(why) => counts.fail(files.len() as u64, why),
            }
            if let Some(why) = trips(r, counts, "archive") {
                return Ok((PassOutcome::BreakerOpen, Some(why)));
            }
            renew.tick(r, dry).await?;
        }
        moved_files = counts.archived_files + counts.evicted_files;
        moved_bytes = counts.archived_bytes + counts.evicted_bytes;
    }

    // The watermarks, after what the rules evicted.
    let mut wm_capped = false;
    if !r.cfg.watermarks.is_empty() {
        let usage = watermark::usage(&r.db)
            .await
            .map_err(|e| format!("reading warm-tier usage: {e}"))?;
        let left_files = (r.cfg.max_files > 0).then(|| r.cfg.max_files.saturating_sub(moved_files));
        let left_bytes = (r.cfg.max_bytes > 0).then(|| r.cfg.max_bytes.saturating_sub(moved_bytes));
        let chosen = wm.choose(&r.cfg.watermarks, &usage, &evicted, left_files, left_bytes);
        wm_capped = chosen.capped;
        for (tenancy, c) in &chosen.files {
            tallies.count_watermark(tenancy, c);
        }
        if !dry {
            let ids: Vec<i64> = chosen.files.iter().map(|(_, c)| c.id).collect();
            for chunk in ids.chunks(CHUNK) {
                counts.attempted += chunk.len() as u64;
                match actions::evict(r, chunk).await {
                    Ok((files, bytes)) => {
                        counts.evicted_files += files;
                        counts.evicted_bytes += bytes;
                    }
                    Err(why) => counts.fail(chunk.len() as u64, why),
                }
                if let Some(why) = trips(r, counts, "evict") {
                    return Ok((PassOutcome::BreakerOpen, Some(why)));
                }
                renew.tick(r, dry).await?;
            }
        }
    }
    let outcome = if capped || wm_capped {
        PassOutcome::Capped
    } else {
        PassOutcome::Completed
    };
    Ok((outcome, None))
}

fn trips(r: &PolicyRunner, c: &Counts, what: &str) -> Option<String> {
    breaker_trips(
        c.attempted,
        c.errors,
        r.cfg.breaker_min_actions,
        r.cfg.breaker_error_rate,
        what,
        c.first_error.as_deref(),
    )
}

/// A pass row as its report; a stored kind, outcome or summary that does not parse is an error
/// naming it.
pub fn report(p: policy_pass::Model) -> Result<PassReport, DbErr> {
    let bad = |column: &str, value: &str, e: &dyn std::fmt::Display| {
        DbErr::Type(format!(
            "policy_pass {}: {column} {value:?} is not valid: {e}",
            p.id
        ))
    };
    let summary: Summary = if p.summary == "{}" {
        Summary::default()
    } else {
        serde_json::from_str(&p.summary).map_err(|e| bad("summary", &p.summary, &e))?
    };
    Ok(PassReport {
        id: p.id,
        kind: p.kind.parse().map_err(|e| bad("kind", &p.kind, &e))?,
        started: p.started,
        ended: p.ended,
        outcome: p
            .outcome
            .parse()
            .map_err(|e| bad("outcome", &p.outcome, &e))?,
        evaluated: p.evaluated.max(0) as u64,
        archived_files: p.archived_files.max(0) as u64,
        archived_bytes: p.archived_bytes.max(0) as u64,
        evicted_files: p.evicted_files.max(0) as u64,
        evicted_bytes: p.evicted_bytes.max(0) as u64,
        errors: p.errors.max(0) as u64,
        breaker: p.breaker,
        rules: summary.rules,
        groups: summary.groups,
    })
}

/// The `last` most recent passes, newest first.
pub async fn recent<C: ConnectionTrait>(db: &C, last: usize) -> Result<Vec<PassReport>, DbErr> {
    policy_pass::Entity::find()
        .order_by_desc(policy_pass::Column::Id)
        .limit(last as u64)
        .all(db)
        .await?
        .into_iter()
        .map(report)
        .collect()
}
