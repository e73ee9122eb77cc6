//! `aggregation`: a tar file on the cold store (see `nlds_migration::m20261125_000003_create_cold`).

use sea_orm::entity::prelude::*;

/// Where an aggregation is in its life (stored as its snake_case name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::Display, strum::EnumString, DeriveValueType)]
#[strum(serialize_all = "snake_case")]
#[sea_orm(value_type = "String", from_str = "nlds_core::db::parse")]
pub enum State {
    /// Leased to an archive-put worker, not yet stored.
    Writing,
    /// Written and verified; its members have cold locations.
    Stored,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "aggregation")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub transaction_id: String,
    pub holding_id: i64,
    pub backend: String,
    pub state: State,
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
