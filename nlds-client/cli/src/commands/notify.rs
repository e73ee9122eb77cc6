//! `nlds notify set|show|clear`: your notification channels (an e-mail address, a webhook) and
//! when they are used; `nlds admin notifications`: every notification in a state (dead letters
//! by default), for operators (docs/NOTIFY.md).

use clap::{Args, Subcommand, ValueEnum};
use nlds_client::client::Client;
use nlds_core::notify::{Delivery, NotificationSummary, NotifyOn, NotifySettings, SetNotify};

use crate::ctx::{Ctx, Failure, Io, print, print_json};
use crate::exit;
use crate::plan::Plan;

/// `nlds notify ...`
#[derive(Debug, Clone, Subcommand)]
pub enum NotifyCommand {
    /// Set where you are notified when your transactions end, and when: `--email ADDR`,
    /// `--webhook URL` (https, or http to loopback), `--on failure|always`. A channel not given
    /// is kept; an empty value ("") removes it. A new webhook (or `--rotate-secret`) prints its
    /// signing secret.
    Set(SetArgs),
    /// Your channels, when they are used, and notifications that could not be delivered.
    Show(ShowArgs),
    /// Remove your channels.
    Clear,
}

#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// The e-mail address to notify ("" removes it).
    #[arg(long, value_name = "ADDR")]
    pub email: Option<String>,
    /// The webhook URL to POST to ("" removes it).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// When: only when a transaction fails (the default), or whenever one ends.
    #[arg(long, value_enum, value_name = "WHEN")]
    pub on: Option<On>,
    /// Make a new signing secret for your webhook (the old one stops working at once).
    #[arg(long)]
    pub rotate_secret: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// Also print the webhook's signing secret.
    #[arg(long)]
    pub secret: bool,
}

/// `nlds admin notifications`
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Which: dead (the default: every try failed), pending or sent.
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// At most this many, newest first (default 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// `--on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum On {
    Failure,
    Always,
}

/// A notify command, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub enum NotifyPlan {
    Set(SetNotify),
    Show {
        secret: bool,
    },
    Clear,
    /// `nlds admin notifications`.
    List {
        state: Option<Delivery>,
        limit: Option<u64>,
    },
}

/// The request of `nlds admin notifications`; a state that is not one is a usage error.
pub fn prepare_admin(a: &AdminArgs) -> Result<Plan, Failure> {
    let state = a
        .state
        .as_deref()
        .map(|s| {
            s.parse::<Delivery>()
                .map_err(|_| Failure::usage(format!("--state {s}: one of dead, pending, sent")))
        })
        .transpose()?;
    Ok(Plan::Notify(NotifyPlan::List {
        state,
        limit: a.limit,
    }))
}

/// The request of `nlds notify ...`.
pub fn prepare(c: &NotifyCommand) -> Result<Plan, Failure> {
    Ok(Plan::Notify(match c {
        NotifyCommand::Set(a) => {
            if a.email.is_none() && a.webhook.is_none() && a.on.is_none() && !a.rotate_secret {
                return Err(Failure::usage(
                    "give at least one of --email, --webhook, --on or --rotate-secret",
                ));
            }
            NotifyPlan::Set(SetNotify {
                email: a.email.clone(),
                webhook: a.webhook.clone(),
                on: a.on.map(|o| match o {
                    On::Failure => NotifyOn::Failure,
                    On::Always => NotifyOn::Always,
                }),
                rotate_secret: a.rotate_secret,
            })
        }
        NotifyCommand::Show(a) => NotifyPlan::Show { secret: a.secret },
        NotifyCommand::Clear => NotifyPlan::Clear,
    }))
}

/// Sends a notify request and shows the answer.
pub async fn execute(
    plan: NotifyPlan,
    client: &Client,
    ctx: &Ctx,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let settings = match &plan {
        NotifyPlan::Set(change) => client.notify_set(change).await?,
        NotifyPlan::Show { secret } => client.notify_show(*secret).await?,
        NotifyPlan::Clear => client.notify_clear().await?,
        NotifyPlan::List { state, limit } => {
            let list = client.admin_notifications(*state, *limit).await?;
            if ctx.json {
                print_json(io, &list)?;
            } else {
                print(io, &list_view(&list));
            }
            return Ok(exit::OK);
        }
    };
    if ctx.json {
        print_json(io, &settings)?;
    } else {
        print(io, &view(&settings));
    }
    Ok(exit::OK)
}

/// One line per notification.
pub fn list_view(list: &[NotificationSummary]) -> String {
    if list.is_empty() {
        return "no notification in that state\n".to_owned();
    }
    let mut o = String::new();
    for n in list {
        o.push_str(&format!(
            "{} {} {} {} -> {} after {} tries: {}\n",
            n.updated.format("%Y-%m-%d %H:%M:%S"),
            n.state,
            n.subject,
            n.channel,
            n.target,
            n.attempts,
            n.last_error.as_deref().unwrap_or("-")
        ));
    }
    o
}

/// The channels, the secret if answered, and the dead letters.
pub fn view(s: &NotifySettings) -> String {
    let mut o = String::new();
    if s.email.is_none() && s.webhook.is_none() {
        o.push_str("no notification channels set (`nlds notify set --email ADDR`)\n");
    } else {
        o.push_str(&format!("on:      {}\n", s.on));
        o.push_str(&format!("email:   {}\n", s.email.as_deref().unwrap_or("-")));
        o.push_str(&format!(
            "webhook: {}\n",
            s.webhook.as_deref().unwrap_or("-")
        ));
    }
    if let Some(secret) = &s.webhook_secret {
        o.push_str(&format!(
            "webhook signing secret: {secret}\n  (verify X-NLDS-Signature with it; `nlds notify \
             show --secret` shows it again)\n"
        ));
    } else if s.webhook_secret_legacy {
        o.push_str(
            "webhook signing secret: the one shown when you set this webhook (kept from an \
             earlier version, never shown again); `nlds notify set --rotate-secret` makes a new \
             one that `nlds notify show --secret` can show\n",
        );
    }
    if !s.dead_letters.is_empty() {
        o.push_str("not delivered:\n");
        for d in &s.dead_letters {
            o.push_str(&format!(
                "  {} {} {} after {} tries: {}\n",
                d.updated.format("%Y-%m-%d %H:%M:%S"),
                d.channel,
                d.subject,
                d.attempts,
                d.last_error.as_deref().unwrap_or("-")
            ));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_shows_channels_and_secret() {
        let s = NotifySettings {
            email: Some("a@b.org".into()),
            webhook: Some("https://h.example.org/x".into()),
            on: NotifyOn::Always,
            webhook_secret: Some("s3cr3t".into()),
            ..Default::default()
        };
        let v = view(&s);
        assert!(v.contains("on:      always"), "{v}");
        assert!(v.contains("email:   a@b.org"), "{v}");
        assert!(v.contains("webhook signing secret: s3cr3t"), "{v}");
        assert!(view(&NotifySettings::default()).contains("no notification channels"));
        let legacy = NotifySettings {
            webhook: Some("https://h.example.org/x".into()),
            webhook_secret_legacy: true,
            ..Default::default()
        };
        assert!(
            view(&legacy).contains("--rotate-secret"),
            "{}",
            view(&legacy)
        );
    }
}
