//! `--diverge-after N` makes an instance drift from a correct copy after N writes, so that
//! lockstep's divergence detection has something real to detect.

#[path = "support/http.rs"]
mod support;

use lockstep_demo::{Faults, Implementation};
use support::{send, start, start_with};

#[tokio::test]
async fn deposits_drift_after_the_configured_number_of_writes() {
    let faulty = Faults {
        diverge_after: Some(2),
        ..Faults::default()
    };
    let (good_dir, bad_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (implementation, good_data, bad_data) in [
        (Implementation::Memory, None, None),
        (
            Implementation::Sqlite,
            Some(good_dir.path()),
            Some(bad_dir.path()),
        ),
    ] {
        let correct = start(implementation, good_data).await;
        let drifting = start_with(implementation, bad_data, faulty).await;
        let client = reqwest::Client::new();

        let steps = [
            ("POST", "/accounts", Some(r#"{"owner":"ada"}"#)),
            ("POST", "/accounts/1/deposit", Some(r#"{"amount":10}"#)),
            ("POST", "/accounts/1/deposit", Some(r#"{"amount":10}"#)),
            ("GET", "/accounts/1", None),
        ];
        let mut pairs = Vec::new();
        for (method, path, body) in steps {
            let good = send(&client, &correct.url(), method, path, body).await;
            let bad = send(&client, &drifting.url(), method, path, body).await;
            pairs.push((good, bad));
        }

        // Two writes in, the copies still agree...
        assert_eq!(pairs[0].0, pairs[0].1, "{implementation:?}");
        assert_eq!(pairs[1].0, pairs[1].1, "{implementation:?}");
        // ...then the third write and the state it leaves behind differ.
        assert_eq!(pairs[2].0.text(), r#"{"id":1,"owner":"ada","balance":20}"#);
        assert_eq!(pairs[2].1.text(), r#"{"id":1,"owner":"ada","balance":21}"#);
        assert_ne!(pairs[3].0, pairs[3].1, "{implementation:?}");
    }
}
