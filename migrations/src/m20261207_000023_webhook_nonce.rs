//! `notify_pref.webhook_nonce`: the per-user, non-secret input from which the API server and the
//! delivery task derive a webhook's signing secret (`HMAC-SHA256` under `[notify]
//! webhook_key_file`, docs/NOTIFY.md), so that no secret is stored or crosses the bus. A new URL
//! or `--rotate-secret` sets a new one and clears `webhook_secret`, which only still holds the
//! secrets made by earlier versions, honoured until their owner rotates (owned by the monitor
//! role).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum NotifyPref {
    Table,
    WebhookNonce,
}

#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait's lifetimes cannot be written out in the trait's signature"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(NotifyPref::Table)
                    .add_column(ColumnDef::new(NotifyPref::WebhookNonce).text().null())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(NotifyPref::Table)
                    .drop_column(NotifyPref::WebhookNonce)
                    .take(),
            )
            .await
    }
}
