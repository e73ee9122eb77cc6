//! nlds-rs storage adapters, apart from the worker roles that use them.
//!
//! | module | holds |
//! |---|---|
//! | [`s3`] | the warm tier's S3 clients (one per tenancy), its object layout, S3 failure classes |
//! | [`ranged`] | reading an S3 object as a stream of ranged GETs |
//! | [`cold`] | the cold-store interface and its back-ends: [`cold::dir`], [`cold::xrootd`], [`cold::glacier`] |
//! | [`cold::aggregate`] | the tar aggregate that packs many files into one cold object |
//!
//! Their settings (`[workers.object_store]`, `[workers.cold]`) are defined in `nlds-settings`.

pub mod cold;
pub mod ranged;
pub mod s3;
