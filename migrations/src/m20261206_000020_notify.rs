//! Notifications (owned by the monitor role, docs/NOTIFY.md).
//!
//! `notify_pref`: each user's channels (an e-mail address, a webhook URL and its signing secret,
//! made by the server and never sent in a message) and when to use them (`failure` or `always`).
//!
//! `notification`: one row per notification and channel, written in the database transaction
//! that records what it is about (a transaction's final state), and delivered from here by the
//! monitor's delivery task: `pending` until it is `sent`, retried at `next_attempt_at` with
//! capped exponential back-off, `dead` (with the last error) after the last try. Unique per
//! subject, channel and target, so a redelivered update notifies nothing twice.
//!
//! `notify_alert`: the operator alerts that are open (one row per episode: a stalled
//! transaction, a dead-letter queue that is not empty, ...), so each is sent once per episode.
//!
//! `transaction_record.notify`: the request asked to be notified whatever the account says.

use sea_orm_migration::prelude::*;

use crate::columns::{id, index, text, timestamp};
use crate::m20261125_000002_create_monitor::TransactionRecord;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum NotifyPref {
    Table,
    User,
    Email,
    WebhookUrl,
    WebhookSecret,
    On,
    Updated,
}

#[derive(DeriveIden)]
enum Notification {
    Table,
    Subject,
    Channel,
    Target,
    User,
    Payload,
    State,
    Attempts,
    NextAttemptAt,
    LastError,
    Created,
    Updated,
}

#[derive(DeriveIden)]
enum NotifyAlert {
    Table,
    Key,
    Opened,
}

#[derive(DeriveIden)]
enum Record {
    Notify,
}

const UNIQUE: &str = "idx_notification_subject_channel_target";
const DUE: &str = "idx_notification_state_next_attempt_at";

fn text_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().null().take()
}

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait's lifetimes cannot be written out in the trait's signature"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(NotifyPref::Table)
                    .if_not_exists()
                    .col(text(NotifyPref::User).primary_key().take())
                    .col(text_null(NotifyPref::Email))
                    .col(text_null(NotifyPref::WebhookUrl))
                    .col(text_null(NotifyPref::WebhookSecret))
                    .col(text(NotifyPref::On))
                    .col(timestamp(NotifyPref::Updated))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Notification::Table)
                    .if_not_exists()
                    .col(id())
                    .col(text(Notification::Subject))
                    .col(text(Notification::Channel))
                    .col(text(Notification::Target))
                    .col(text_null(Notification::User))
                    .col(text(Notification::Payload))
                    .col(text(Notification::State))
                    .col(
                        ColumnDef::new(Notification::Attempts)
                            .integer()
                            .not_null()
                            .default(0)
                            .take(),
                    )
                    .col(timestamp(Notification::NextAttemptAt))
                    .col(text_null(Notification::LastError))
                    .col(timestamp(Notification::Created))
                    .col(timestamp(Notification::Updated))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                index(
                    UNIQUE,
                    Notification::Table,
                    vec![
                        Notification::Subject.into_iden(),
                        Notification::Channel.into_iden(),
                        Notification::Target.into_iden(),
                    ],
                    true,
                )
                .if_not_exists()
                .take(),
            )
            .await?;
        manager
            .create_index(
                index(
                    DUE,
                    Notification::Table,
                    vec![
                        Notification::State.into_iden(),
                        Notification::NextAttemptAt.into_iden(),
                    ],
                    false,
                )
                .if_not_exists()
                .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NotifyAlert::Table)
                    .if_not_exists()
                    .col(text(NotifyAlert::Key).primary_key().take())
                    .col(timestamp(NotifyAlert::Opened))
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(TransactionRecord::Table)
                    .add_column(
                        ColumnDef::new(Record::Notify)
                            .boolean()
                            .not_null()
                            .default(false)
                            .take(),
                    )
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TransactionRecord::Table)
                    .drop_column(Record::Notify)
                    .take(),
            )
            .await?;
        for table in [
            NotifyAlert::Table.into_iden(),
            Notification::Table.into_iden(),
            NotifyPref::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).take())
                .await?;
        }
        Ok(())
    }
}
