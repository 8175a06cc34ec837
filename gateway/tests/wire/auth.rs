//! §1.3 Error object (connect-failure details) and §2.5 Gateway-side connect pipeline: a wrong
//! or missing shared secret (token or password) is refused with its `details.code` and the
//! reference's auth details, then closed 1008 "unauthorized…".

use serde_json::json;

use crate::support::*;
use crate::{detail, message};

#[tokio::test]
async fn wrong_or_missing_token_is_refused_with_the_reference_details() {
    let gw = Gateway::start(&[]);
    let steps = [
        "retry_with_device_token",
        "update_auth_configuration",
        "update_auth_credentials",
        "wait_then_retry",
        "review_auth_configuration",
    ];
    for (token, want) in [
        (Some("wrong"), "AUTH_TOKEN_MISMATCH"),
        (None, "AUTH_TOKEN_MISSING"),
    ] {
        let (mut c, res) = Connect {
            token: token.map(Into::into),
            ..Default::default()
        }
        .run(&gw)
        .await;
        assert_eq!(res["ok"], false);
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
        assert!(message(&res).starts_with("unauthorized"), "{res}");
        let d = &res["error"]["details"];
        assert_eq!(d["code"], want, "{res}");
        assert!(d["authReason"].is_string(), "authReason: {res}");
        assert!(
            d["canRetryWithDeviceToken"].is_boolean(),
            "canRetryWithDeviceToken: {res}"
        );
        assert!(
            d["recommendedNextStep"]
                .as_str()
                .is_some_and(|s| steps.contains(&s)),
            "recommendedNextStep: {res}"
        );
        let (code, reason) = c.closed().await;
        assert_eq!(code, 1008);
        assert!(reason.starts_with("unauthorized"), "{reason}");
    }
    // A device proof does not make up for a wrong shared token.
    let (mut c, res) = Connect {
        token: Some("wrong".into()),
        key: Some(new_key()),
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(detail(&res), "AUTH_TOKEN_MISMATCH", "{res}");
    assert_eq!(c.closed().await.0, 1008);
}

#[tokio::test]
async fn wrong_or_missing_password_is_refused_with_its_code() {
    let pw = Gateway::start(&["--auth", "password", "--password", "hunter2"]);
    let (_, res) = Connect {
        token: None,
        ..Default::default()
    }
    .run(&pw)
    .await;
    assert_eq!(detail(&res), "AUTH_PASSWORD_MISSING");
    for (password, ok) in [("hunter3", false), ("hunter2", true)] {
        let mut c = pw.open().await;
        let nonce = c.challenge().await;
        let mut p = Connect {
            token: None,
            ..Default::default()
        }
        .params(&nonce);
        p["auth"] = json!({ "password": password });
        let res = c.connect(p).await;
        if ok {
            assert_eq!(res["ok"], true, "{res}");
        } else {
            assert_eq!(detail(&res), "AUTH_PASSWORD_MISMATCH", "{res}");
        }
    }
}
