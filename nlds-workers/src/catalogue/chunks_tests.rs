//! Tests of requests whose paths come in chunks (append, acceptance, expiry), on SQLite and
//! PostgreSQL.

use super::*;
use crate::db::{outbox, request_paths, submission, testing};
use nlds_core::api::ApiAction;
use nlds_core::workflow::{part_queued, part_sub};
use nlds_core::{ErrorCode, State};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};

const G: &str = "climate";

fn env(user: &str, t: Uuid, action: ApiAction, payload: Payload) -> Envelope {
    Envelope::new(t, user, G, action, "job", payload)
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

fn paths(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/data/{prefix}/{i}")).collect()
}

/// `catalog.append` of chunk `part` of `t` (a putlist of alice's unless `action` says otherwise).
async fn append(
    cat: &Catalogue,
    user: &str,
    t: Uuid,
    action: ApiAction,
    part: u32,
    paths: Vec<String>,
    max_total: u64,
) -> RpcReply {
    let p = Payload::AppendPaths {
        part,
        paths,
        max_total,
    };
    rpc(cat, Action::Append, env(user, t, action, p)).await
}

/// `catalog.setup` of a put into holding `big` naming `chunks` chunks.
async fn accept_put(cat: &Catalogue, t: Uuid, chunks: u32) -> RpcReply {
    let p = Payload::SetupHolding {
        label: Some("big".into()),
        holding_id: None,
        tags: Default::default(),
        paths: Vec::new(),
        size_hint: None,
    };
    let e = env("alice", t, ApiAction::Putlist, p).with_chunks(chunks);
    rpc(cat, Action::Setup, e).await
}

/// What the outbox holds, in order.
async fn staged(cat: &Catalogue) -> Vec<(String, Envelope)> {
    outbox::Entity::find()
        .order_by_asc(outbox::Column::Id)
        .all(&cat.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.routing_key, serde_json::from_str(&r.envelope).unwrap()))
        .collect()
}

/// A catalogue on `db` with an empty outbox (the scenarios share a database; no relay runs).
async fn fresh(db: sea_orm::DatabaseConnection) -> Catalogue {
    outbox::Entity::delete_many().exec(&db).await.unwrap();
    Catalogue::new(db, 1000, u64::MAX)
}

async fn chunks_of(cat: &Catalogue, t: Uuid) -> u64 {
    request_paths::Entity::find()
        .filter(request_paths::Column::TransactionId.eq(t.to_string()))
        .count(&cat.db)
        .await
        .unwrap()
}

fn refusal(r: RpcReply) -> ApiError {
    match r {
        RpcReply::Error(e) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Chunks are stored and replaced; the accepted put stages its record, the registration of its
/// later parts, then one submission per chunk (each a part with its own sub-record), and the
/// chunks are gone; the transaction's paths cannot change any more.
async fn put_in_chunks(db: sea_orm::DatabaseConnection) {
    let cat = fresh(db).await;
    let t = Uuid::new_v4();
    let first = append(&cat, "alice", t, ApiAction::Putlist, 0, paths("a", 2), 100).await;
    assert_eq!(first, RpcReply::Appended { parts: 1, paths: 2 });
    let second = append(&cat, "alice", t, ApiAction::Putlist, 1, paths("b", 2), 100).await;
    assert_eq!(second, RpcReply::Appended { parts: 2, paths: 4 });
    // Sending a chunk again replaces it.
    let again = append(&cat, "alice", t, ApiAction::Putlist, 1, paths("c", 3), 100).await;
    assert_eq!(again, RpcReply::Appended { parts: 2, paths: 5 });
    assert_eq!(chunks_of(&cat, t).await, 2);

    let RpcReply::Holding { id, .. } = accept_put(&cat, t, 2).await else {
        panic!("the put was not accepted");
    };
    assert_eq!(
        chunks_of(&cat, t).await,
        0,
        "the chunks went with the acceptance"
    );
    let out = staged(&cat).await;
    let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "nlds-api.monitor-put.init",
            "nlds-api.monitor-put.start",
            "nlds-api.route.putlist",
            "nlds-api.route.putlist",
        ]
    );
    let registered = &out[1].1;
    assert_eq!(registered.sub_id, part_sub(t, 1));
    assert!(matches!(
        registered.payload,
        Payload::MonitorUpdate { state, .. } if state == part_queued()
    ));
    assert_eq!(part_queued(), State::Routing);
    let submitted: Vec<(Uuid, Vec<String>)> = out[2..]
        .iter()
        .map(|(_, e)| match &e.payload {
            Payload::PutRequest { holding_id, paths } => {
                assert_eq!(*holding_id, id);
                assert_eq!(e.chunks, 0, "a part names no chunks");
                (e.sub_id, paths.clone())
            }
            other => panic!("not a put request: {other:?}"),
        })
        .collect();
    assert_eq!(
        submitted,
        [(t, paths("a", 2)), (part_sub(t, 1), paths("c", 3))]
    );

    // Accepting it again (a retried request) stages nothing more; no chunk can be added now.
    assert!(matches!(
        accept_put(&cat, t, 2).await,
        RpcReply::Holding { .. }
    ));
    assert_eq!(staged(&cat).await.len(), 4);
    let late = refusal(append(&cat, "alice", t, ApiAction::Putlist, 2, paths("d", 1), 100).await);
    assert_eq!(late.code, ErrorCode::Conflict);
    assert!(late.message.contains("already started"), "{}", late.message);
    assert_eq!(chunks_of(&cat, t).await, 0);
}

/// A request naming more chunks than are stored is refused and nothing is accepted: once the
/// missing chunk comes, the same request is accepted.
async fn missing_chunk(db: sea_orm::DatabaseConnection) {
    let cat = fresh(db).await;
    let t = Uuid::new_v4();
    append(&cat, "alice", t, ApiAction::Putlist, 0, paths("a", 2), 100).await;
    let e = refusal(accept_put(&cat, t, 2).await);
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.message
            .contains("names 2 chunks of paths but 1 of them are stored"),
        "{}",
        e.message
    );
    assert_eq!(staged(&cat).await.len(), 0);
    assert_eq!(
        submission::Entity::find()
            .filter(submission::Column::TransactionId.eq(t.to_string()))
            .count(&cat.db)
            .await
            .unwrap(),
        0,
        "the transaction id is not claimed"
    );
    append(&cat, "alice", t, ApiAction::Putlist, 1, paths("b", 1), 100).await;
    assert!(matches!(
        accept_put(&cat, t, 2).await,
        RpcReply::Holding { .. }
    ));
    assert_eq!(staged(&cat).await.len(), 4);
}

/// The cap on one request counts every chunk (a replaced one once); another user's chunks
/// under the same id, or a chunk of another action, are refused.
async fn cap_and_owner(db: sea_orm::DatabaseConnection) {
    let cat = fresh(db).await;
    let t = Uuid::new_v4();
    append(&cat, "alice", t, ApiAction::Putlist, 0, paths("a", 3), 5).await;
    // Replacing chunk 0 with as many paths fits; a second chunk past the cap does not.
    let replaced = append(&cat, "alice", t, ApiAction::Putlist, 0, paths("b", 3), 5).await;
    assert_eq!(replaced, RpcReply::Appended { parts: 1, paths: 3 });
    let e = refusal(append(&cat, "alice", t, ApiAction::Putlist, 1, paths("c", 3), 5).await);
    assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    assert!(
        e.message.contains("lists 6 paths; at most 5")
            && e.message.contains("[server] max_request_paths"),
        "{}",
        e.message
    );
    let e = refusal(append(&cat, "bob", t, ApiAction::Putlist, 1, paths("c", 1), 5).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    let e = refusal(append(&cat, "alice", t, ApiAction::Getlist, 1, paths("c", 1), 5).await);
    assert_eq!(e.code, ErrorCode::Conflict);
    let e = refusal(
        append(
            &cat,
            "alice",
            Uuid::new_v4(),
            ApiAction::Put,
            0,
            paths("c", 1),
            5,
        )
        .await,
    );
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert_eq!(
        chunks_of(&cat, t).await,
        1,
        "only alice's first chunk is stored"
    );
}

/// A get in chunks: one `route.getlist` per chunk, each a get of its own paths with the
/// request's holding filter and target.
async fn get_in_chunks(db: sea_orm::DatabaseConnection) {
    let cat = fresh(db).await;
    let t = Uuid::new_v4();
    for part in 0..3 {
        append(
            &cat,
            "alice",
            t,
            ApiAction::Getlist,
            part,
            paths(&format!("p{part}"), 2),
            100,
        )
        .await;
    }
    let filter = HoldingFilter {
        label: Some("big".into()),
        ..Default::default()
    };
    let p = Payload::GetRequest {
        filter: filter.clone(),
        paths: Vec::new(),
        regex: false,
        target: Some("/restore".into()),
        overwrite: true,
    };
    let e = env("alice", t, ApiAction::Getlist, p).with_chunks(3);
    assert_eq!(rpc(&cat, Action::Getlist, e).await, RpcReply::Submitted);
    let out = staged(&cat).await;
    let gets: Vec<&Envelope> = out
        .iter()
        .filter(|(k, _)| k == "nlds-api.route.getlist")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(gets.len(), 3);
    for (part, e) in gets.iter().enumerate() {
        assert_eq!(e.sub_id, part_sub(t, part as u32));
        let Payload::GetRequest {
            filter: f,
            paths: p,
            target,
            overwrite,
            ..
        } = &e.payload
        else {
            panic!("not a get: {:?}", e.payload);
        };
        assert_eq!(f.label, filter.label);
        assert_eq!(*p, paths(&format!("p{part}"), 2));
        assert_eq!(target.as_deref(), Some("/restore"));
        assert!(*overwrite);
    }
    assert_eq!(chunks_of(&cat, t).await, 0);
}

/// Chunks of a request that did not start within `unfinished_request_secs` of its newest chunk
/// are deleted; a request still being sent keeps all of its chunks.
async fn unfinished_requests_expire(db: sea_orm::DatabaseConnection) {
    let cat = fresh(db).await.with_unfinished_request_secs(3600);
    let (old, fresh) = (Uuid::new_v4(), Uuid::new_v4());
    for part in 0..2 {
        append(
            &cat,
            "alice",
            old,
            ApiAction::Putlist,
            part,
            paths("o", 1),
            100,
        )
        .await;
        append(
            &cat,
            "alice",
            fresh,
            ApiAction::Putlist,
            part,
            paths("f", 1),
            100,
        )
        .await;
    }
    // The old request's chunks were last touched two hours ago.
    request_paths::Entity::update_many()
        .col_expr(
            request_paths::Column::Created,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::hours(2)),
        )
        .filter(request_paths::Column::TransactionId.eq(old.to_string()))
        .exec(&cat.db)
        .await
        .unwrap();
    assert_eq!(cat.expire_chunks().await.unwrap(), 2);
    assert_eq!(chunks_of(&cat, old).await, 0);
    assert_eq!(chunks_of(&cat, fresh).await, 2);
    // Its put, when it finally comes, is refused: its chunks are gone.
    let e = refusal(accept_put(&cat, old, 2).await);
    assert!(e.message.contains("0 of them are stored"), "{}", e.message);
    // An append expires before it stores: a request whose chunks all lapsed starts afresh (its
    // put would name chunks that are gone, and be refused as above).
    request_paths::Entity::update_many()
        .col_expr(
            request_paths::Column::Created,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::hours(2)),
        )
        .filter(request_paths::Column::TransactionId.eq(fresh.to_string()))
        .exec(&cat.db)
        .await
        .unwrap();
    append(
        &cat,
        "alice",
        fresh,
        ApiAction::Putlist,
        2,
        paths("f", 1),
        100,
    )
    .await;
    assert_eq!(chunks_of(&cat, fresh).await, 1);
    // The archive round's upkeep expires too.
    let lapsed = Catalogue::new(cat.db.clone(), 1000, u64::MAX).with_unfinished_request_secs(0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    lapsed.archive_next().await.unwrap();
    assert_eq!(chunks_of(&cat, fresh).await, 0);
}

async fn all(db: sea_orm::DatabaseConnection) {
    put_in_chunks(db.clone()).await;
    missing_chunk(db.clone()).await;
    cap_and_owner(db.clone()).await;
    get_in_chunks(db.clone()).await;
    unfinished_requests_expire(db).await;
}

#[tokio::test]
async fn chunks_sqlite() {
    all(testing::memory().await).await;
}

/// The same on PostgreSQL (`NLDS_TEST_DATABASE_URL`; required under `CI`).
#[tokio::test]
async fn chunks_postgres() {
    let Some(pg) = testing::postgres("chunks").await else {
        return;
    };
    all(pg.db.clone()).await;
    pg.drop_now().await;
}
