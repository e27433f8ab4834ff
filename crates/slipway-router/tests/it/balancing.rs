use http::StatusCode;

use crate::support::{HOST, TestRouter, Upstream};

#[tokio::test]
async fn idle_backends_share_the_requests() {
    let one = Upstream::start("web.1").await;
    let two = Upstream::start("web.2").await;
    let router = TestRouter::start().await;
    router.route(vec![one.backend(), two.backend()]);

    let mut to_one = 0;
    for _ in 0..10 {
        if router.get(HOST, "/").await.dyno() == "web.1" {
            to_one += 1;
        }
    }
    assert!((3..=7).contains(&to_one), "web.1 got {to_one} of 10");
}

#[tokio::test]
async fn the_backend_with_fewer_outstanding_requests_wins() {
    let one = Upstream::start("web.1").await;
    let two = Upstream::start("web.2").await;
    let router = TestRouter::start().await;
    router.route(vec![one.backend(), two.backend()]);

    let slow = tokio::spawn({
        let addr = router.addr;
        async move {
            let req = http::Request::get("/slow")
                .header("host", HOST)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .expect("request");
            crate::support::send(addr, req).await
        }
    });
    let mut busy = None;
    for _ in 0..500 {
        busy = [&one, &two]
            .into_iter()
            .find(|upstream| router.router.in_flight(upstream.addr) == 1);
        if busy.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let busy = busy.expect("the slow request reached a backend");
    let idle = if busy.dyno == "web.1" { &two } else { &one };

    for _ in 0..4 {
        assert_eq!(router.get(HOST, "/").await.dyno(), idle.dyno);
    }

    busy.release();
    let reply = slow.await.expect("slow request task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "slow done");
    router.wait_in_flight(busy.addr, 0).await;
    router.wait_in_flight(idle.addr, 0).await;
}
