//! Reloading the policy's rules without a restart: `policy.reload` (`nlds admin policy reload`),
//! SIGHUP, and how a reload reaches every policy process.
//!
//! A reload reads the process's settings again from where they came from (the settings file, the
//! environment and the `--set` flags: [`Settings::reread`]) and loads their `[policy]` rules (the
//! `[[policy.rule]]` tables, or the file `[policy] file` names) with
//! [`nlds_policy::Policy::load`]: all or nothing. Invalid rules are refused whole, every error is
//! reported (rule, key, problem) and the rules in use stay. Only the rules change: the other
//! `[policy]` keys (enabled, interval, caps, watermarks) take effect at the next start.
//!
//! **Every process follows.** In distributed mode several processes may run the policy role (one
//! holds the runner's lease), and an RPC or a SIGHUP reaches only one of them. So a process that
//! reloaded successfully records the time in the `policy_lease` row named [`RELOAD_ROW`]
//! (`holder`: who reloaded, `until`: when); every policy process looks at that row every
//! [`FOLLOW_EVERY`] and, when it is newer than the last reload it saw, reloads from its own
//! settings too (logging the outcome). The runner holding the lease thus uses the new rules
//! within a few seconds, whichever process was asked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nlds_core::policy::ReloadReport;
use nlds_settings::Settings;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use tokio_util::sync::CancellationToken;

use super::PolicyRunner;
use super::pass::action_name;
use crate::db::policy_lease;

/// The `policy_lease` row that records the latest successful reload.
pub const RELOAD_ROW: &str = "policy-reload";
/// How often a policy process looks for a reload made elsewhere.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(3);

/// Reloads for one process: its settings' origin and the last reload it has seen.
pub struct Reloader {
    settings: Settings,
    /// The latest reload this process's rules reflect: at first, its start (it read its
    /// settings then, after any earlier reload).
    seen: Mutex<DateTime<Utc>>,
}

impl Reloader {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            seen: Mutex::new(Utc::now()),
        }
    }

    /// Reads the rules again and uses them if they are valid; records a successful reload for
    /// the other policy processes. `why` names the trigger in the log.
    pub async fn reload(&self, r: &PolicyRunner, why: &str) -> ReloadReport {
        let report = reload_here(r, &self.settings);
        log(&report, why);
        if report.loaded {
            match announce(&r.db, r.holder()).await {
                Ok(at) => self.saw(at),
                Err(e) => tracing::warn!(
                    "policy reloaded here, but the other policy processes were not told (they \
                     keep their rules until reloaded): cannot record the reload: {e}"
                ),
            }
        }
        report
    }

    fn saw(&self, at: DateTime<Utc>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen < at {
            *seen = at;
        }
    }

    /// Reloads if another process recorded a reload since the last one seen here.
    pub async fn follow_once(&self, r: &PolicyRunner) -> Result<(), DbErr> {
        let Some(row) = policy_lease::Entity::find_by_id(RELOAD_ROW.to_owned())
            .one(&r.db)
            .await?
        else {
            return Ok(());
        };
        let seen = *self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if row.until > seen {
            self.saw(row.until);
            // A reload this process made is in use already.
            if row.holder != r.holder() {
                let report = reload_here(r, &self.settings);
                log(&report, &format!("a reload by {}", row.holder));
            }
        }
        Ok(())
    }
}

/// Reads the settings again and replaces the runner's rules if they are valid.
pub fn reload_here(r: &PolicyRunner, settings: &Settings) -> ReloadReport {
    let rules_in_use = |r: &PolicyRunner| -> Vec<(String, String)> {
        r.current()
            .rules()
            .into_iter()
            .map(|(n, a)| (n, action_name(&a).to_owned()))
            .collect()
    };
    let fresh = match settings.reread() {
        Ok(s) => s,
        Err(e) => {
            return ReloadReport {
                loaded: false,
                rules: rules_in_use(r),
                errors: vec![format!("cannot read the settings again: {e}")],
            };
        }
    };
    match nlds_policy::Policy::load(&fresh.policy) {
        Ok(policy) => {
            r.replace(policy);
            ReloadReport {
                loaded: true,
                rules: rules_in_use(r),
                errors: Vec::new(),
            }
        }
        Err(errors) => ReloadReport {
            loaded: false,
            rules: rules_in_use(r),
            errors: errors.iter().map(|e| e.to_string()).collect(),
        },
    }
}

fn log(report: &ReloadReport, why: &str) {
    let names: Vec<&str> = report.rules.iter().map(|(n, _)| n.as_str()).collect();
    if report.loaded {
        tracing::info!(trigger = why, rules = ?names, "policy reloaded");
    } else {
        tracing::warn!(
            trigger = why,
            rules_kept = ?names,
            "policy reload refused, the rules in use stay: {}",
            report.errors.join("; ")
        );
    }
}

/// Records a successful reload (now, by `holder`) in the [`RELOAD_ROW`] row.
async fn announce<C: ConnectionTrait>(db: &C, holder: &str) -> Result<DateTime<Utc>, DbErr> {
    let now = Utc::now();
    policy_lease::Entity::insert(policy_lease::ActiveModel {
        name: Set(RELOAD_ROW.into()),
        holder: Set(holder.into()),
        until: Set(now),
        breaker_reason: Set(None),
        breaker_since: Set(None),
    })
    .on_conflict(
        OnConflict::column(policy_lease::Column::Name)
            .update_columns([policy_lease::Column::Holder, policy_lease::Column::Until])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(now)
}

/// Until `stop`: reloads on SIGHUP (Unix), and follows reloads made by other processes.
pub async fn follow(runner: Arc<PolicyRunner>, reloader: Arc<Reloader>, stop: CancellationToken) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "cannot listen for SIGHUP (reload with `nlds admin policy reload`): {e}"
            );
            None
        }
    };
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = hangup => {
                reloader.reload(&runner, "SIGHUP").await;
            }
            _ = tick.tick() => {
                if let Err(e) = reloader.follow_once(&runner).await {
                    tracing::debug!("cannot look for policy reloads: {e}");
                }
            }
        }
    }
}
