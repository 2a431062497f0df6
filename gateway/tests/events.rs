//! Clients and operators are told of topology changes: `Lockstep-Primary` on responses, the
//! Server-Sent Events streams on the data and admin listeners, and the webhook.

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use harness::*;

/// Reads an SSE stream until a frame with `event: {kind}` arrives; returns its data line.
async fn next_event(response: &mut reqwest::Response, kind: &str) -> serde_json::Value {
    let mut pending = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = pending.find("\n\n") {
            let frame: String = pending.drain(..end + 2).collect();
            if frame.lines().any(|l| l == format!("event: {kind}")) {
                let data = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .expect("a data line");
                return serde_json::from_str(data).unwrap();
            }
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event"))
            .unwrap()
            .expect("the stream stays open");
        pending.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switchover_is_announced_on_both_streams_and_to_the_webhook() {
    let (_mocks, backends) = start_mocks(2).await;
    let hook = MockServer::start().await;
    let gw = start_gateway(&format!(
        "[events]\nwebhook = \"{}/hook\"\n{}",
        hook.url, backends
    ));
    let c = client();

    let mut data_stream = c
        .get(format!("http://{}/_lockstep/events", gw.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(data_stream.headers()["content-type"], "text/event-stream");
    let mut admin_stream = c
        .get(format!("http://{}/events", gw.admin))
        .send()
        .await
        .unwrap();
    // Both streams start with the topology as it is.
    assert_eq!(next_event(&mut data_stream, "status").await["primary"], "a");
    assert_eq!(
        next_event(&mut admin_stream, "status").await["primary"],
        "a"
    );

    let r = post_json(&c, format!("http://{}/k/1", gw.gateway), "{}").await;
    assert_eq!(r.headers()["lockstep-primary"], "a");
    let promoted = c
        .post(format!("http://{}/backends/b/promote", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(promoted.status(), 200);
    let body: serde_json::Value = promoted.json().await.unwrap();
    assert_eq!(body["primary"], "b");
    assert!(body["pause_ms"].as_f64().is_some());

    for stream in [&mut data_stream, &mut admin_stream] {
        let e = next_event(stream, "primary-changed").await;
        assert_eq!(
            (e["backend"].as_str(), e["primary"].as_str()),
            (Some("b"), Some("b")),
            "{e}"
        );
        assert!(e["epoch"].as_u64().unwrap() >= 1);
    }
    let r = post_json(&c, format!("http://{}/k/2", gw.gateway), "{}").await;
    assert_eq!(
        r.headers()["lockstep-primary"],
        "b",
        "clients see the new primary on every response"
    );
    let read = c
        .get(format!("http://{}/k/2", gw.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(read.headers()["lockstep-primary"], "b", "reads moved too");

    hook.mock
        .wait_until("the webhook received primary-changed", |r| {
            r.iter().any(|x| {
                x.uri == "/hook" && String::from_utf8_lossy(&x.body).contains("\"primary-changed\"")
            })
        })
        .await;
    let posted = hook.mock.received();
    assert!(
        posted
            .iter()
            .all(|p| p.method == "POST" && p.header("content-type") == Some("application/json"))
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_api_requires_its_token_and_answers_json_errors() {
    let (_mocks, backends) = start_mocks(2).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let gw = start_gateway(&format!(
        "[admin]\ntoken_file = \"{}\"\n{}",
        token.display(),
        backends
    ));
    let c = client();
    let status = format!("http://{}/status", gw.admin);
    let denied = c.get(&status).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert!(denied.headers().contains_key("www-authenticate"));
    let v: serde_json::Value = denied.json().await.unwrap();
    assert_eq!(v["error"], "unauthorized");
    assert_eq!(
        c.get(&status)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(&status)
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let get_mutation = c
        .get(format!("http://{}/backends/b/promote", gw.admin))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(get_mutation.status(), 405, "mutations are POST only");
    let unknown = c
        .post(format!("http://{}/backends/zz/promote", gw.admin))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let v: serde_json::Value = unknown.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("zz"));
    gw.stop().await;
}
