use slipway_types::metrics::{MetricBucket, ProcessUsage};
use time::{Duration, OffsetDateTime};

use crate::{Backend, app, on_both, store_on};

fn minute(at: OffsetDateTime, ok: u64, memory_bytes: u64) -> MetricBucket {
    let mut bucket = MetricBucket::empty(at, 60);
    bucket.requests = [0, ok, 0, 1, 0];
    bucket.response_bytes = ok * 100;
    bucket.latency.record(1_500);
    bucket.processes = vec![ProcessUsage {
        dyno: "web.1".to_owned(),
        cpu_percent: 12.5,
        memory_bytes,
        memory_limit_bytes: Some(512 << 20),
    }];
    bucket.restarts = 1;
    bucket
}

async fn buckets_merge_into_what_is_stored_and_read_back_oldest_first(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let shop = app(&store, "shop").await;
    let blog = app(&store, "blog").await;
    let start = OffsetDateTime::from_unix_timestamp(1_700_000_040).expect("a time");
    let later = start + Duration::minutes(1);

    store
        .add_metric_buckets(&[
            (shop.id, minute(later, 5, 100)),
            (blog.id, minute(start, 1, 10)),
        ])
        .await
        .unwrap();
    store
        .add_metric_buckets(&[
            (shop.id, minute(start, 3, 50)),
            (shop.id, minute(later, 2, 300)),
        ])
        .await
        .unwrap();

    let shop_buckets = store
        .metric_buckets(Some(shop.id), 60, start)
        .await
        .unwrap();
    let got: Vec<(OffsetDateTime, [u64; 5], u64, u64, u32)> = shop_buckets
        .iter()
        .map(|(id, b)| {
            assert_eq!(*id, shop.id);
            (
                b.at,
                b.requests,
                b.latency.count(),
                b.processes[0].memory_bytes,
                b.restarts,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (start, [0, 3, 0, 1, 0], 1, 50, 1),
            (later, [0, 7, 0, 2, 0], 2, 300, 2),
        ]
    );
    assert_eq!(shop_buckets[1].1.response_bytes, 700);
    assert_eq!(
        store
            .metric_buckets(Some(shop.id), 60, later)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .metric_buckets(Some(shop.id), 3600, start)
            .await
            .unwrap()
            .is_empty()
    );
    let every_app = store.metric_buckets(None, 60, start).await.unwrap();
    assert_eq!(every_app.len(), 3);

    assert_eq!(store.prune_metric_buckets(60, later).await.unwrap(), 2);
    let left = store.metric_buckets(None, 60, start).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1.at, later);
}

async fn buckets_of_a_deleted_app_go_with_it_and_are_not_written(backend: Backend) {
    let (store, _db) = store_on(backend).await;
    let shop = app(&store, "shop").await;
    let blog = app(&store, "blog").await;
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_040).expect("a time");
    store
        .add_metric_buckets(&[(shop.id, minute(at, 1, 1))])
        .await
        .unwrap();
    store.delete_app(shop.id).await.unwrap();
    assert!(store.metric_buckets(None, 60, at).await.unwrap().is_empty());
    store
        .add_metric_buckets(&[(shop.id, minute(at, 1, 1)), (blog.id, minute(at, 4, 1))])
        .await
        .unwrap();
    let left = store.metric_buckets(None, 60, at).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].0, left[0].1.requests[1]), (blog.id, 4));
}

on_both!(
    buckets_merge_into_what_is_stored_and_read_back_oldest_first,
    buckets_of_a_deleted_app_go_with_it_and_are_not_written,
);
