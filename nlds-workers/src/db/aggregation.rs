//! `aggregation`: a tar file on the cold store (see `nlds_migration::m20261125_000003_create_cold`).

use sea_orm::entity::prelude::*;

/// Leased to an archive-put worker, not yet stored.
pub const WRITING: &str = "writing";
/// Written and verified; its members have cold locations.
pub const STORED: &str = "stored";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "aggregation")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub transaction_id: String,
    pub holding_id: i64,
    pub backend: String,
    pub state: String,
    pub size: i64,
    pub members: i64,
    pub adler32: Option<i64>,
    pub crc32c: Option<i64>,
    pub blake3: Option<String>,
    pub created: DateTimeUtc,
    pub lease_until: Option<DateTimeUtc>,
    pub stored: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
