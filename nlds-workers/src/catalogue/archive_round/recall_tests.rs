use super::*;
use crate::db::{recall, testing};
use nlds_bus::Handler;
use nlds_core::message::HoldingFilter;

fn starts(out: &Outcome) -> usize {
    out.publish
        .iter()
        .filter(|(k, _)| *k == RoutingKey::new(Worker::ArchiveGet, Action::Start))
        .count()
}

/// Concurrent gets share one recall; a recall nobody took up is sent again by the next round
/// (and only until archive-get reports it).
#[tokio::test]
async fn recalls_are_shared_and_resent_until_taken_up() {
    let db = testing::memory().await;
    let cat = Catalogue::new(db.clone(), 1000, 1 << 30);
    let (h, files) = crate::db::testing::holding_with(&db, "r", &[5, 6]).await;
    let round = Envelope::new(
        Uuid::new_v4(),
        "nlds",
        "nlds",
        ApiAction::ArchivePut,
        "a",
        Payload::ArchiveNext,
    );
    let out = cat
        .handle(
            RoutingKey::new(Worker::CatalogArchiveNext, Action::Start),
            round.clone(),
        )
        .await
        .unwrap();
    let (job_key, job) = out.publish[0].clone();
    assert_eq!(job_key, RoutingKey::new(Worker::ArchivePut, Action::Start));
    let Payload::ArchiveAggregate {
        aggregation_id,
        name,
        ..
    } = &job.payload
    else {
        panic!()
    };
    let size = aggregation::Entity::find_by_id(*aggregation_id)
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .size;
    cat.handle(
        RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
        job.reply(Payload::ArchiveStored {
            aggregation_id: *aggregation_id,
            name: name.clone(),
            sums: AggregateSums {
                size: to_u64(size),
                adler32: 1,
                crc32c: 2,
                blake3: "b".into(),
            },
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        cat.evict(&evict_request(h), h).await.unwrap().len(),
        files.len()
    );

    let get = |tid: Uuid| {
        Envelope::new(
            tid,
            "alice",
            "climate",
            ApiAction::Get,
            "g",
            Payload::GetRequest {
                filter: HoldingFilter {
                    holding_id: Some(h),
                    ..Default::default()
                },
                paths: vec!["/r/f0".into()],
                regex: false,
                target: Some("/t".into()),
                overwrite: false,
            },
        )
    };
    let key = RoutingKey::new(Worker::CatalogGet, Action::Start);
    let first = cat.handle(key, get(Uuid::new_v4())).await.unwrap();
    let second = cat.handle(key, get(Uuid::new_v4())).await.unwrap();
    assert_eq!(
        (starts(&first), starts(&second)),
        (1, 0),
        "one recall for both gets"
    );

    // Nobody took it up (say the first start was lost): the next round sends it again.
    let age = |mins: i64| {
        let db = db.clone();
        async move {
            recall::Entity::update_many()
                .col_expr(
                    recall::Column::Created,
                    sea_orm::sea_query::Expr::value(Utc::now() - chrono::Duration::minutes(mins)),
                )
                .exec(&db)
                .await
                .unwrap();
        }
    };
    let next = RoutingKey::new(Worker::CatalogArchiveNext, Action::Start);
    assert_eq!(
        starts(&cat.handle(next, round.clone()).await.unwrap()),
        0,
        "too recent"
    );
    age(10).await;
    assert_eq!(starts(&cat.handle(next, round.clone()).await.unwrap()), 1);
    assert_eq!(
        starts(&cat.handle(next, round.clone()).await.unwrap()),
        0,
        "sent once per staleness"
    );
    // archive-get takes it up: never sent again.
    cat.handle(
        RoutingKey::new(Worker::CatalogArchiveUpdate, Action::Start),
        job.reply(Payload::RecallProgress {
            aggregation_id: *aggregation_id,
            state: nlds_core::State::ArchivePreparing,
        }),
    )
    .await
    .unwrap();
    age(10).await;
    assert_eq!(starts(&cat.handle(next, round).await.unwrap()), 0);
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
