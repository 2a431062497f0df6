//! Helpers shared by the integration tests: start in-process instances, send requests and
//! capture the parts of a response that replicas must agree on.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use lockstep_demo::{Faults, Ids, Implementation, RunningDemo};
use reqwest::Method;

/// A response reduced to what lockstep compares: status, headers but `date`, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Starts an in-process instance of `implementation` on 127.0.0.1:0.
pub async fn start(implementation: Implementation, data: Option<&Path>) -> RunningDemo {
    start_with(implementation, data, Faults::default()).await
}

pub async fn start_with(
    implementation: Implementation,
    data: Option<&Path>,
    faults: Faults,
) -> RunningDemo {
    let store = lockstep_demo::open_store(implementation, data).expect("store opens");
    lockstep_demo::spawn(lockstep_demo::app_with(store, faults))
        .await
        .expect("demo binds")
}

/// Starts an in-process instance of `implementation` whose ids are random.
pub async fn start_random(implementation: Implementation, data: Option<&Path>) -> RunningDemo {
    let store =
        lockstep_demo::open_store_with(implementation, data, Ids::Random).expect("store opens");
    lockstep_demo::spawn(lockstep_demo::app(store))
        .await
        .expect("demo binds")
}

/// Sends one request and captures the reply.
pub async fn send(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Reply {
    let method = Method::from_bytes(method.as_bytes()).expect("valid method");
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("request is answered");
    let status = response.status().as_u16();
    let mut headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str() != "date")
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    headers.sort();
    let body = response.bytes().await.expect("body is read").to_vec();
    Reply {
        status,
        headers,
        body,
    }
}
