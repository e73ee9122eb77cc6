//! Tests of delete, undelete, purge and the last-copy guard.

use super::*;
use crate::catalogue::guard::{Removal, guard_removals};
use crate::db::testing;
use crate::db::testing::holding_with;
use crate::db::{aggregation, aggregation_member, location};
use nlds_bus::Handler;
use nlds_core::api::FilePage;
use nlds_core::api::Tier;
use nlds_core::api::{ApiAction, PurgeResponse};
use nlds_core::message::{ObjectRef, RpcReply};
use nlds_core::{AccessRole, FileRecord};
use sea_orm::{ActiveValue::Set, DatabaseConnection};
use uuid::Uuid;

const G: &str = "climate";

fn env_as(user: &str, group: &str, role: AccessRole, payload: Payload) -> Envelope {
    Envelope::new(Uuid::new_v4(), user, group, ApiAction::Del, "j", payload).with_role(role)
}

async fn rpc(cat: &Catalogue, action: Action, e: Envelope) -> RpcReply {
    let out = cat
        .handle(RoutingKey::new(Worker::Catalog, action), e)
        .await
        .unwrap();
    match out.reply.expect("an RPC replies").payload {
        Payload::Reply(r) => r,
        other => panic!("not a reply: {other:?}"),
    }
}

fn holding(id: i64) -> HoldingFilter {
    HoldingFilter {
        holding_id: Some(id),
        ..Default::default()
    }
}

async fn delete_as(
    cat: &Catalogue,
    user: &str,
    role: AccessRole,
    filter: HoldingFilter,
    paths: &[&str],
    dry_run: bool,
) -> std::result::Result<DeletePlan, ApiError> {
    let p = Payload::Delete {
        filter,
        paths: paths.iter().map(|s| s.to_string()).collect(),
        regex: false,
        dry_run,
    };
    match rpc(cat, Action::Del, env_as(user, G, role, p)).await {
        RpcReply::Deleted(plan) => Ok(plan),
        RpcReply::Error(e) => Err(e),
        other => panic!("{other:?}"),
    }
}

async fn undelete_as(
    cat: &Catalogue,
    user: &str,
    filter: HoldingFilter,
    paths: &[&str],
) -> DeletePlan {
    let p = Payload::Undelete {
        filter,
        paths: paths.iter().map(|s| s.to_string()).collect(),
        regex: false,
        dry_run: false,
    };
    match rpc(cat, Action::Undelete, env_as(user, G, AccessRole::User, p)).await {
        RpcReply::Deleted(plan) => plan,
        other => panic!("{other:?}"),
    }
}

async fn visible(cat: &Catalogue, user: &str) -> Vec<String> {
    let p = Payload::FindFiles {
        filter: HoldingFilter {
            groupall: true,
            ..Default::default()
        },
        path: None,
        path_regex: false,
        files_only: false,
        named_must_exist: false,
    };
    match rpc(cat, Action::Find, env_as(user, G, AccessRole::User, p)).await {
        RpcReply::Files(FilePage { files, .. }) => {
            let mut v: Vec<String> = files.into_iter().map(|f| f.path).collect();
            v.sort();
            v
        }
        other => panic!("{other:?}"),
    }
}

async fn purge(cat: &Catalogue, holding_id: Option<i64>) -> (PurgeResponse, Vec<FileRecord>) {
    let e = env_as("root", G, AccessRole::Admin, Payload::Purge { holding_id });
    match rpc(cat, Action::Purge, e).await {
        RpcReply::Purged {
            summary, objects, ..
        } => (summary, objects),
        other => panic!("{other:?}"),
    }
}

/// Records an aggregation of `files` in `state`; a stored one gives them cold locations.
async fn archived(
    db: &DatabaseConnection,
    h: i64,
    files: &[i64],
    state: aggregation::State,
) -> String {
    let name = format!("h{h:06}/{}.tar", Uuid::new_v4().simple());
    let a = aggregation::Entity::insert(aggregation::ActiveModel {
        name: Set(name.clone()),
        transaction_id: Set(Uuid::new_v4().to_string()),
        holding_id: Set(h),
        backend: Set("dir".into()),
        state: Set(state),
        size: Set(10240),
        members: Set(files.len() as i64),
        created: Set(Utc::now()),
        ..Default::default()
    })
    .exec(db)
    .await
    .unwrap()
    .last_insert_id;
    for (i, f) in files.iter().enumerate() {
        aggregation_member::Entity::insert(aggregation_member::ActiveModel {
            aggregation_id: Set(a),
            file_id: Set(*f),
            position: Set(i as i64),
            data_offset: Set(512 * (i as i64 + 1)),
            ..Default::default()
        })
        .exec(db)
        .await
        .unwrap();
        if state == aggregation::State::Stored {
            cold_location(db, *f, &name).await;
        }
    }
    name
}

async fn cold_location(db: &DatabaseConnection, f: i64, name: &str) {
    location::Entity::insert(super::super::location_row(f, Tier::Cold, "dir", name))
        .exec(db)
        .await
        .unwrap();
}

async fn warm_of(db: &DatabaseConnection, f: i64) -> Option<String> {
    location::Entity::find()
        .filter(location::Column::FileId.eq(f))
        .filter(location::Column::Tier.eq(Tier::Warm))
        .one(db)
        .await
        .unwrap()
        .map(|l| l.key)
}

async fn soft_delete_visibility_and_undelete(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (h, _) = holding_with(&db, "run", &[10, 20, 30]).await;
    assert_eq!(
        visible(&cat, "alice").await,
        ["/run/f0", "/run/f1", "/run/f2"]
    );

    // A dry run lists what would go and changes nothing.
    let plan = delete_as(
        &cat,
        "alice",
        AccessRole::User,
        holding(h),
        &["/run/f1", "/nope"],
        true,
    )
    .await
    .unwrap();
    assert!(plan.dry_run);
    assert_eq!(plan.files_total, 1);
    assert_eq!(plan.files[0].path, "/run/f1");
    assert_eq!(plan.failed.len(), 1);
    assert_eq!(plan.failed[0].code, ErrorCode::NotFound);
    assert_eq!(visible(&cat, "alice").await.len(), 3);

    let plan = delete_as(
        &cat,
        "alice",
        AccessRole::User,
        holding(h),
        &["/run/f1"],
        false,
    )
    .await
    .unwrap();
    assert_eq!((plan.files_total, plan.bytes_total), (1, 20));
    assert!(plan.undelete_until.is_some_and(|t| t > Utc::now()));
    assert_eq!(visible(&cat, "alice").await, ["/run/f0", "/run/f2"]);
    // Gone from get resolution and from the holding's counts too.
    let plan_get = Payload::PlanGet {
        filter: holding(h),
        paths: vec!["/run/f1".into()],
        regex: false,
    };
    match rpc(
        &cat,
        Action::Plan,
        env_as("alice", G, AccessRole::User, plan_get),
    )
    .await
    {
        RpcReply::Plan { files, missing } => {
            assert!(files.is_empty());
            assert_eq!(missing[0].path, "/run/f1");
        }
        other => panic!("{other:?}"),
    }
    let list = Payload::ListHoldings { filter: holding(h) };
    match rpc(
        &cat,
        Action::List,
        env_as("alice", G, AccessRole::User, list),
    )
    .await
    {
        RpcReply::Holdings(p) => assert_eq!((p.holdings[0].files, p.holdings[0].bytes), (2, 40)),
        other => panic!("{other:?}"),
    }
    // The path can be put again at once (the uniqueness holds among live files only) ...
    let again = file::Entity::find()
        .filter(file::Column::Path.eq("/run/f1"))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let mut copy: file::ActiveModel = again.clone().into();
    copy.id = sea_orm::ActiveValue::NotSet;
    copy.deleted_at = Set(None);
    copy.deleted_by = Set(None);
    copy.delete_transaction = Set(None);
    let newer = file::Entity::insert(copy)
        .exec(&db)
        .await
        .unwrap()
        .last_insert_id;
    // ... and then undeleting the old one is a conflict naming it.
    let plan = undelete_as(&cat, "alice", holding(h), &["/run/f1"]).await;
    assert_eq!(plan.files_total, 0);
    assert_eq!(
        plan.failed[0].code,
        ErrorCode::Conflict,
        "{:?}",
        plan.failed
    );
    assert!(
        plan.failed[0].reason.contains("/run/f1"),
        "{:?}",
        plan.failed
    );
    file::Entity::delete_by_id(newer).exec(&db).await.unwrap();
    let plan = undelete_as(&cat, "alice", holding(h), &["/run/f1"]).await;
    assert_eq!(plan.files_total, 1, "{:?}", plan.failed);
    assert_eq!(visible(&cat, "alice").await.len(), 3);

    // A whole holding: gone from list, its label free; undelete brings both back.
    let plan = delete_as(&cat, "alice", AccessRole::User, holding(h), &[], false)
        .await
        .unwrap();
    assert_eq!((plan.holdings.len(), plan.files_total), (1, 3));
    assert!(visible(&cat, "alice").await.is_empty());
    let setup = Payload::SetupHolding {
        label: None,
        holding_id: Some(h),
        tags: Default::default(),
        paths: Vec::new(),
        size_hint: None,
    };
    match rpc(
        &cat,
        Action::Setup,
        env_as("alice", G, AccessRole::User, setup),
    )
    .await
    {
        RpcReply::Error(e) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("a deleted holding takes no more files: {other:?}"),
    }
    let plan = undelete_as(&cat, "alice", holding(h), &[]).await;
    assert_eq!(
        (plan.holdings.len(), plan.files_total),
        (1, 3),
        "{:?}",
        plan.failed
    );
    assert_eq!(visible(&cat, "alice").await.len(), 3);
}

async fn roles_decide_who_deletes(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (h, _) = holding_with(&db, "alice-run", &[1, 2]).await;
    // bob, a plain user of the same group, is refused, with the holding named.
    let e = delete_as(&cat, "bob", AccessRole::User, holding(h), &[], false)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(
        e.message.contains(&format!("holding {h}")) && e.message.contains("alice"),
        "{e}"
    );
    // Through the group's view, each file is a failure with its reason.
    let groupall = HoldingFilter {
        groupall: true,
        ..Default::default()
    };
    let plan = delete_as(
        &cat,
        "bob",
        AccessRole::User,
        groupall.clone(),
        &["/alice-run"],
        false,
    )
    .await
    .unwrap();
    assert_eq!(plan.files_total, 0);
    assert_eq!(plan.failed.len(), 2);
    assert!(
        plan.failed
            .iter()
            .all(|f| f.code == ErrorCode::Forbidden && f.reason.contains(&format!("holding {h}")))
    );
    assert_eq!(visible(&cat, "alice").await.len(), 2);
    // A manager of the group may.
    let plan = delete_as(
        &cat,
        "carol",
        AccessRole::Manager,
        groupall,
        &["/alice-run/f0"],
        false,
    )
    .await
    .unwrap();
    assert_eq!(plan.files_total, 1);
    // A deputy of another group may not; an operator may, from anywhere.
    let other = Payload::Delete {
        filter: holding(h),
        paths: vec![],
        regex: false,
        dry_run: false,
    };
    let missing = Payload::Delete {
        filter: holding(h + 1000),
        paths: vec![],
        regex: false,
        dry_run: false,
    };
    let missing = rpc(
        &cat,
        Action::Del,
        env_as("dave", "ocean", AccessRole::Deputy, missing),
    )
    .await;
    match rpc(
        &cat,
        Action::Del,
        env_as("dave", "ocean", AccessRole::Deputy, other.clone()),
    )
    .await
    {
        RpcReply::Error(e) => {
            assert_eq!(e.code, ErrorCode::NotFound, "{e}");
            // The same answer as an id that does not exist: nothing of alice's holding.
            assert_eq!(RpcReply::Error(e.clone()), missing);
            assert!(
                !e.message.contains("alice") && !e.message.contains(G),
                "{e}"
            );
        }
        r => panic!("{r:?}"),
    }
    match rpc(
        &cat,
        Action::Del,
        env_as("root", "ops", AccessRole::Admin, other),
    )
    .await
    {
        RpcReply::Deleted(p) => assert_eq!((p.holdings.len(), p.files_total), (1, 1)),
        r => panic!("{r:?}"),
    }
    // Purging is for operators only.
    let e = env_as(
        "alice",
        G,
        AccessRole::Manager,
        Payload::Purge { holding_id: None },
    );
    match rpc(&cat, Action::Purge, e).await {
        RpcReply::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden),
        r => panic!("{r:?}"),
    }
}

async fn purge_removes_copies_and_dead_aggregates(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (h, ids) = holding_with(&db, "arch", &[5, 6]).await;
    let name = archived(&db, h, &ids, aggregation::State::Stored).await;
    let keys = [
        warm_of(&db, ids[0]).await.unwrap(),
        warm_of(&db, ids[1]).await.unwrap(),
    ];

    // Within the retention period the sweep takes nothing.
    delete_as(
        &cat,
        "alice",
        AccessRole::User,
        holding(h),
        &["/arch/f0"],
        false,
    )
    .await
    .unwrap();
    cat.purge_expired().await.unwrap();
    assert!(
        removals(&db).await.is_empty(),
        "nothing is past its retention"
    );

    // Purged now: the warm object goes, the row stays while the aggregate has a live member.
    let (s, objects) = purge(&cat, Some(h)).await;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].object.as_ref().unwrap().key, keys[0]);
    assert_eq!(
        (s.files, s.deferred, s.aggregates.len()),
        (0, 1, 0),
        "{s:?}"
    );
    assert!(warm_of(&db, ids[0]).await.is_none());
    assert!(warm_of(&db, ids[1]).await.is_some());

    // The last member goes too: the aggregate is removed, and every row with it.
    delete_as(
        &cat,
        "alice",
        AccessRole::User,
        holding(h),
        &["/arch/f1"],
        false,
    )
    .await
    .unwrap();
    let (s, objects) = purge(&cat, None).await;
    assert_eq!(s.aggregates, std::slice::from_ref(&name), "{s:?}");
    assert_eq!((s.files, s.objects, objects.len()), (2, 1, 1), "{s:?}");
    assert!(
        aggregation::Entity::find()
            .one(&db)
            .await
            .unwrap()
            .is_none()
    );
    assert!(file::Entity::find().one(&db).await.unwrap().is_none());
    // The live (empty) holding stays; a deleted one goes.
    assert!(
        holding::Entity::find_by_id(h)
            .one(&db)
            .await
            .unwrap()
            .is_some()
    );
    delete_as(&cat, "alice", AccessRole::User, holding(h), &[], false)
        .await
        .unwrap();
    assert_eq!(purge(&cat, None).await.0.holdings, 1);
    assert!(
        holding::Entity::find_by_id(h)
            .one(&db)
            .await
            .unwrap()
            .is_none()
    );

    // The sweep sends the removals once the retention is over.
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30).with_delete(DeleteConfig {
        retention_secs: 0,
        ..Default::default()
    });
    let (h, ids) = holding_with(&db, "sweep", &[3]).await;
    let name = archived(&db, h, &ids, aggregation::State::Stored).await;
    delete_as(&cat, "alice", AccessRole::User, holding(h), &[], false)
        .await
        .unwrap();
    // Past the retention, nothing can be undeleted.
    let plan = undelete_as(&cat, "alice", holding(h), &[]).await;
    assert_eq!(plan.files_total, 0);
    assert!(
        plan.failed[0].reason.contains("being purged"),
        "{:?}",
        plan.failed
    );
    removals(&db).await;
    let out = cat.purge_expired().await.unwrap();
    assert!(
        out.publish.is_empty(),
        "the removals are staged, not in the outcome"
    );
    let staged = removals(&db).await;
    let keys: Vec<String> = staged.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(
        keys,
        ["nlds-api.transfer-del.start", "nlds-api.archive-put.del"]
    );
    match &staged[1].1.payload {
        Payload::ArchiveRemove { name: n, .. } => assert_eq!(n, &name),
        other => panic!("{other:?}"),
    }
    assert!(
        holding::Entity::find_by_id(h)
            .one(&db)
            .await
            .unwrap()
            .is_none()
    );
}

/// Every way a background action could remove the last verified copy of a live file is refused.
async fn the_last_verified_copy_is_never_removed(db: DatabaseConnection) {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    // Eviction with a cold copy in an aggregate still being written: refused.
    let (h, ids) = holding_with(&db, "writing", &[1]).await;
    let name = archived(&db, h, &ids, aggregation::State::Writing).await;
    cold_location(&db, ids[0], &name).await;
    assert!(cat.evict(&evict_request(h), h).await.unwrap().is_empty());
    assert!(warm_of(&db, ids[0]).await.is_some());
    // ... with a cold location naming no aggregation at all: refused.
    let (h2, ids2) = holding_with(&db, "ghost", &[1]).await;
    cold_location(&db, ids2[0], "h999999/ghost.tar").await;
    assert!(cat.evict(&evict_request(h2), h2).await.unwrap().is_empty());
    assert!(warm_of(&db, ids2[0]).await.is_some());
    // ... with a stored aggregate: allowed.
    let (h3, ids3) = holding_with(&db, "stored", &[1]).await;
    archived(&db, h3, &ids3, aggregation::State::Stored).await;
    assert_eq!(cat.evict(&evict_request(h3), h3).await.unwrap().len(), 1);
    assert!(warm_of(&db, ids3[0]).await.is_none());
    // Evicting again cannot take the cold copy: it is not a warm one, and the guard refuses
    // removing the aggregate of a live file.
    let agg = aggregation::Entity::find()
        .filter(aggregation::Column::HoldingId.eq(h3))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let v = guard_removals(
        &db,
        vec![Removal::Aggregate {
            aggregation_id: agg.id,
            name: agg.name.clone(),
        }],
    )
    .await
    .unwrap();
    assert!(v.allowed.is_empty());
    assert!(v.refused[0].1.contains("/stored/f0"), "{:?}", v.refused);

    // Removing a warm object and the only other copy in one go: both refused.
    let (h4, ids4) = holding_with(&db, "both", &[1]).await;
    let n4 = archived(&db, h4, &ids4, aggregation::State::Stored).await;
    let a4 = aggregation::Entity::find()
        .filter(aggregation::Column::Name.eq(n4.as_str()))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let warm = Removal::Warm {
        bucket: "nlds".into(),
        key: warm_of(&db, ids4[0]).await.unwrap(),
    };
    let cold = Removal::Aggregate {
        aggregation_id: a4.id,
        name: n4,
    };
    let v = guard_removals(&db, vec![warm.clone(), cold.clone()])
        .await
        .unwrap();
    assert_eq!(v.refused.len(), 2);
    // Either one alone is fine.
    assert_eq!(
        guard_removals(&db, vec![warm]).await.unwrap().allowed.len(),
        1
    );
    assert_eq!(
        guard_removals(&db, vec![cold]).await.unwrap().allowed.len(),
        1
    );

    // Cleaning up after a failed put: an object that a live file elsewhere still references is
    // not deleted.
    let (h5, ids5) = holding_with(&db, "shared", &[1]).await;
    let shared_key = warm_of(&db, ids5[0]).await.unwrap();
    let (h6, _) = holding_with(&db, "target", &[1]).await;
    let t2 = Uuid::new_v4();
    let mut rec = record(
        &file::Entity::find()
            .filter(file::Column::HoldingId.eq(h6))
            .one(&db)
            .await
            .unwrap()
            .unwrap(),
    );
    rec.object = Some(ObjectRef {
        bucket: "nlds".into(),
        key: shared_key.clone(),
        tenancy: None,
    });
    let put = Envelope::new(
        t2,
        "alice",
        G,
        ApiAction::Put,
        "j",
        Payload::Files {
            context: Vec::new(),
            holding_id: Some(h6),
            files: vec![rec],
            target: None,
            overwrite: false,
            failed: Vec::new(),
        },
    );
    let out = cat
        .handle(RoutingKey::new(Worker::CatalogPut, Action::Start), put)
        .await
        .unwrap();
    assert!(
        out.publish
            .iter()
            .all(|(k, _)| k.worker != Worker::TransferDel),
        "the object of {h5}'s live file must not be deleted: {:?}",
        out.publish
    );

    // Purging a deleted file whose object a live file shares keeps the object.
    let (h7, ids7) = holding_with(&db, "twin", &[1]).await;
    location::Entity::update_many()
        .col_expr(location::Column::Key, Expr::value(shared_key.clone()))
        .filter(location::Column::FileId.eq(ids7[0]))
        .exec(&db)
        .await
        .unwrap();
    delete_as(&cat, "alice", AccessRole::User, holding(h7), &[], false)
        .await
        .unwrap();
    let (s, objects) = purge(&cat, Some(h7)).await;
    assert!(objects.is_empty(), "{objects:?}");
    assert_eq!((s.files, s.deferred, s.refused.len()), (0, 1, 1), "{s:?}");
    assert!(s.refused[0].contains("/shared/f0"), "{s:?}");
    assert_eq!(warm_of(&db, ids5[0]).await, Some(shared_key));
}

#[tokio::test]
async fn soft_delete_visibility_and_undelete_sqlite() {
    soft_delete_visibility_and_undelete(testing::memory().await).await;
}

#[tokio::test]
async fn roles_decide_who_deletes_sqlite() {
    roles_decide_who_deletes(testing::memory().await).await;
}

#[tokio::test]
async fn purge_removes_copies_and_dead_aggregates_sqlite() {
    purge_removes_copies_and_dead_aggregates(testing::memory().await).await;
}

#[tokio::test]
async fn the_last_verified_copy_is_never_removed_sqlite() {
    the_last_verified_copy_is_never_removed(testing::memory().await).await;
}

/// The same on PostgreSQL (partial unique indexes, ON CONFLICT ... WHERE), a database each.
#[tokio::test]
async fn delete_postgres() {
    for (n, purpose) in [
        "delete_visibility",
        "delete_roles",
        "delete_purge",
        "delete_guard",
    ]
    .into_iter()
    .enumerate()
    {
        let Some(pg) = testing::postgres(purpose).await else {
            return;
        };
        match n {
            0 => soft_delete_visibility_and_undelete(pg.db.clone()).await,
            1 => roles_decide_who_deletes(pg.db.clone()).await,
            2 => purge_removes_copies_and_dead_aggregates(pg.db.clone()).await,
            _ => the_last_verified_copy_is_never_removed(pg.db.clone()).await,
        }
        pg.drop_now().await;
    }
}

/// The `catalog.evict` request of an operator for holding `h`.
fn evict_request(h: i64) -> Envelope {
    Envelope::new(
        uuid::Uuid::new_v4(),
        "nlds",
        "nlds",
        nlds_core::api::ApiAction::Get,
        "rpc",
        Payload::Evict { holding_id: h },
    )
}

/// The removals staged in the outbox since the last call (and takes every staged message out).
async fn removals(db: &DatabaseConnection) -> Vec<(RoutingKey, Envelope)> {
    crate::outbox::take(db)
        .await
        .into_iter()
        .filter(|(k, _)| matches!(k.worker, Worker::TransferDel | Worker::ArchivePut))
        .collect()
}
