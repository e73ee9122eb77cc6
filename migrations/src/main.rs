//! `nlds-migration`: apply or roll back the nlds-rs schema, e.g. `nlds-migration up -u URL`.

#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli(nlds_migration::Migrator).await;
}
