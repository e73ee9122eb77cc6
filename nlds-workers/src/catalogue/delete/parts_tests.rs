//! Tests of a delete in chunks (`catalog.append` of `dellist` chunks, then `catalog.del` naming
//! them): exactly the listed paths go, each once; the transaction is recorded part by part and
//! ends as one delete; another user's chunks are not found; a bad later part deletes nothing.

use super::*;
use crate::db::request_paths;
use crate::db::testing::{self, holding_with};
use nlds_bus::Handler;
use nlds_core::api::ApiAction;
use nlds_core::message::RpcReply;
use nlds_core::{AccessRole, PathKind, State};
use sea_orm::{ActiveValue::Set, DatabaseConnection};
use uuid::Uuid;

fn env(user: &str, t: Uuid, payload: Payload) -> Envelope {
    Envelope::new(t, user, "climate", ApiAction::Dellist, "j", payload).with_role(AccessRole::User)
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

async fn append(cat: &Catalogue, user: &str, t: Uuid, part: u32, paths: &[&str]) {
    let p = Payload::AppendPaths {
        part,
        paths: paths.iter().map(|s| s.to_string()).collect(),
        max_total: 1000,
    };
    match rpc(cat, Action::Append, env(user, t, p)).await {
        RpcReply::Appended { .. } => {}
        other => panic!("{other:?}"),
    }
}

/// `catalog.del` of `user` naming `chunks` chunks of `t`, with `last` as its own paths.
async fn delete(
    cat: &Catalogue,
    user: &str,
    t: Uuid,
    chunks: u32,
    last: &[&str],
    versions: VersionSelect,
) -> std::result::Result<DeletePlan, nlds_core::error::ApiError> {
    let p = Payload::Delete {
        filter: HoldingFilter {
            versions,
            ..Default::default()
        },
        paths: last.iter().map(|s| s.to_string()).collect(),
        regex: false,
        dry_run: false,
    };
    match rpc(cat, Action::Del, env(user, t, p).with_chunks(chunks)).await {
        RpcReply::Deleted(plan) => Ok(plan),
        RpcReply::Error(e) => Err(e),
        other => panic!("{other:?}"),
    }
}

/// Live files: (path, version), sorted.
async fn live(db: &DatabaseConnection) -> Vec<(String, i32)> {
    let mut v: Vec<(String, i32)> = file::Entity::find()
        .filter(file::Column::DeletedAt.is_null())
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.version))
        .collect();
    v.sort();
    v
}

async fn chunks_of(db: &DatabaseConnection, t: Uuid) -> usize {
    request_paths::Entity::find()
        .filter(request_paths::Column::TransactionId.eq(t.to_string()))
        .all(db)
        .await
        .unwrap()
        .len()
}

/// `/run/f0` (10 bytes, and a version 2 of 50 bytes), `/run/f1` (20), `/run/f2` (30),
/// `/run/f3` (40); `/sub/f0` (1), `/sub/f1` (2): all alice's.
async fn fixture(db: &DatabaseConnection) -> Catalogue {
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (h, ids) = holding_with(db, "run", &[10, 20, 30, 40]).await;
    let f0 = file::Entity::find_by_id(ids[0])
        .one(db)
        .await
        .unwrap()
        .unwrap();
    file::Entity::insert(file::ActiveModel {
        holding_id: Set(h),
        transaction_id: Set(f0.transaction_id),
        path: Set("/run/f0".into()),
        kind: Set(PathKind::File),
        size: Set(50),
        uid: Set(1),
        gid: Set(1),
        mode: Set(0o644),
        mtime_ns: Set(1),
        version: Set(f0.version + 1),
        ..Default::default()
    })
    .exec(db)
    .await
    .unwrap();
    holding_with(db, "sub", &[1, 2]).await;
    cat
}

async fn parts_delete_exactly_the_listed_paths_once(db: DatabaseConnection) {
    let cat = fixture(&db).await;
    crate::outbox::take(&db).await;
    let t = Uuid::new_v4();
    // /run/f0 is listed in two parts: its newest version goes, once; the one before stays.
    append(&cat, "alice", t, 0, &["/run/f0", "/nope"]).await;
    append(&cat, "alice", t, 1, &["/sub", "/run/f0", "/run/f1"]).await;
    let plan = delete(&cat, "alice", t, 2, &["/run/f2"], VersionSelect::Newest)
        .await
        .unwrap();
    assert_eq!(
        (plan.files_total, plan.bytes_total),
        (5, 50 + 1 + 2 + 20 + 30)
    );
    assert_eq!(plan.failed.len(), 1, "{plan:?}");
    assert_eq!(
        (plan.failed[0].path.as_str(), plan.failed[0].code),
        ("/nope", ErrorCode::NotFound)
    );
    // The answer names the first file of each holding, never every file.
    assert_eq!(plan.files.len(), 2, "{plan:?}");
    assert_eq!(
        live(&db).await,
        [("/run/f0".to_owned(), 1), ("/run/f3".to_owned(), 1)]
    );
    assert_eq!(chunks_of(&db, t).await, 0, "the chunks go with the delete");

    // Recorded part by part (counts and failures), then ended as one delete.
    let staged = crate::outbox::take(&db).await;
    let updates: Vec<(Uuid, State, u64, usize)> = staged
        .iter()
        .filter_map(|(_, e)| match &e.payload {
            Payload::MonitorUpdate {
                state,
                files,
                failed,
                ..
            } => Some((e.sub_id, *state, *files, failed.len())),
            _ => None,
        })
        .collect();
    let sub = |k| nlds_core::workflow::part_sub(t, k);
    assert_eq!(
        updates,
        [
            (sub(0), State::Routing, 2, 1),
            (sub(1), State::Routing, 3, 0),
            (sub(2), State::Routing, 1, 0),
            (sub(0), State::Complete, 0, 0),
            (sub(1), State::Complete, 0, 0),
            (sub(2), State::Complete, 0, 0),
        ]
    );
    let inits: Vec<usize> = staged
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| *k == RoutingKey::new(Worker::MonitorPut, Action::Init))
        .map(|(i, _)| i)
        .collect();
    // Once, after every part's counts and before any end state.
    assert_eq!(inits, [3], "{staged:?}");
    assert!(staged.iter().all(|(_, e)| e.chunks == 0));

    // Retried (the answer was lost): the same counts, nothing deleted again, no chunks needed.
    let again = delete(&cat, "alice", t, 2, &["/run/f2"], VersionSelect::Newest)
        .await
        .unwrap();
    assert_eq!((again.files_total, again.bytes_total), (5, 103));
    assert_eq!(live(&db).await.len(), 2);
    assert!(crate::outbox::take(&db).await.is_empty());

    // Every version: every live version of a path listed in two parts goes, once.
    let t = Uuid::new_v4();
    append(&cat, "alice", t, 0, &["/run/f0"]).await;
    let all = delete(
        &cat,
        "alice",
        t,
        1,
        &["/run/f0", "/run/f3"],
        VersionSelect::All,
    )
    .await
    .unwrap();
    assert_eq!((all.files_total, all.bytes_total), (2, 10 + 40));
    assert!(live(&db).await.is_empty());
}

async fn chunks_of_others_are_not_found_and_bad_parts_delete_nothing(db: DatabaseConnection) {
    let cat = fixture(&db).await;
    let before = live(&db).await;
    crate::outbox::take(&db).await;
    let t = Uuid::new_v4();
    append(&cat, "alice", t, 0, &["/run/f0", "/run/f1"]).await;

    // Bob names alice's chunk: not found, saying nothing of whose it is.
    let e = delete(&cat, "bob", t, 1, &["/run/f2"], VersionSelect::Newest)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
    assert!(
        e.message.contains("0 of yours are stored") && !e.message.contains("alice"),
        "{e:?}"
    );
    // ... exactly as a transaction with no chunks at all.
    let other = Uuid::new_v4();
    let none = delete(&cat, "bob", other, 1, &["/run/f2"], VersionSelect::Newest)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.replace(&t.to_string(), "T")),
        (none.code, none.message.replace(&other.to_string(), "T"))
    );
    // Alice naming more chunks than she sent: not found either.
    let e = delete(&cat, "alice", t, 2, &[], VersionSelect::Newest)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
    assert!(e.message.contains("names 2 chunks"), "{e:?}");

    // A bad path in the last part: refused, and the parts before it are not deleted either.
    let e = delete(&cat, "alice", t, 1, &[" "], VersionSelect::Newest)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest, "{e:?}");
    assert_eq!(live(&db).await, before);
    assert!(
        crate::outbox::take(&db).await.is_empty(),
        "nothing recorded"
    );
    assert_eq!(chunks_of(&db, t).await, 1, "the chunks stay for a retry");

    // Then alice's own delete of her chunk does delete.
    let plan = delete(&cat, "alice", t, 1, &[], VersionSelect::Newest)
        .await
        .unwrap();
    assert_eq!(plan.files_total, 2);
    assert_eq!(live(&db).await.len(), before.len() - 2);
}

#[tokio::test]
async fn parts_delete_exactly_the_listed_paths_once_sqlite() {
    parts_delete_exactly_the_listed_paths_once(testing::memory().await).await;
}

#[tokio::test]
async fn chunks_of_others_are_not_found_and_bad_parts_delete_nothing_sqlite() {
    chunks_of_others_are_not_found_and_bad_parts_delete_nothing(testing::memory().await).await;
}

/// The same on PostgreSQL, a database each.
#[tokio::test]
async fn delete_in_parts_postgres() {
    for (n, purpose) in ["delete_parts", "delete_parts_refused"]
        .into_iter()
        .enumerate()
    {
        let Some(pg) = testing::postgres(purpose).await else {
            return;
        };
        match n {
            0 => parts_delete_exactly_the_listed_paths_once(pg.db.clone()).await,
            _ => chunks_of_others_are_not_found_and_bad_parts_delete_nothing(pg.db.clone()).await,
        }
        pg.drop_now().await;
    }
}
