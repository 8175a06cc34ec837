//! §3.1 Device pairing during connect (loopback: silent) and §3.3 Device token lifecycle: a
//! paired device gets a device token, usable in `auth.token` or `auth.deviceToken` and only
//! with its own key; rotating or revoking it closes the device's sockets 4001 and retires it.

use pincer_protocol::identity::DeviceKeyPair;
use serde_json::{json, Value};

use crate::support::*;
use crate::{detail, device_block};

#[tokio::test]
async fn loopback_devices_are_paired_silently_and_get_a_device_token() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    let (_, res) = Connect {
        key: Some(key.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    let auth = &res["payload"]["auth"];
    assert_eq!(auth["role"], "operator");
    let token = auth["deviceToken"]
        .as_str()
        .expect("deviceToken")
        .to_owned();
    assert_eq!(token.len(), 43);
    // The device token alone lets the same key back in...
    let (_, res) = Connect {
        key: Some(key),
        token: Some(token.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["method"], "device-token");
    // ...but not another key.
    let (_, res) = Connect {
        key: Some(new_key()),
        token: Some(token),
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false);
}

#[tokio::test]
async fn device_tokens_work_in_either_auth_field_and_stay_bound_to_their_key() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    let (_, res) = Connect {
        client_id: "cli",
        mode: "cli",
        key: Some(key.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["role"], "operator");
    let token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .expect("cli device gets a device token")
        .to_owned();
    assert_eq!(token.len(), 43);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "not base64url: {token}"
    );

    // `auth.deviceToken` alone; the signed token field is then the device token (§2.4).
    let connect_with = |k: &DeviceKeyPair, auth: Value, signed: &str, nonce: &str| {
        let kid = k.public_key().device_id().to_hex();
        let at = now_ms();
        let payload =
            format!("v3|{kid}|cli|cli|operator|operator.read|{at}|{signed}|{nonce}|linux|");
        json!({
            "minProtocol": 3, "maxProtocol": 4,
            "client": { "id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli" },
            "role": "operator", "scopes": ["operator.read"],
            "auth": auth,
            "device": device_block(k, &payload, at, nonce),
        })
    };
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let res = c
        .connect(connect_with(
            &key,
            json!({ "deviceToken": token }),
            &token,
            &nonce,
        ))
        .await;
    assert_eq!(res["ok"], true, "auth.deviceToken refused: {res}");
    assert_eq!(c.call("s", "status", json!({})).await["ok"], true);

    // Another key with the same device token: refused, socket closed as unauthorized.
    let other = new_key();
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let res = c
        .connect(connect_with(
            &other,
            json!({ "deviceToken": token }),
            &token,
            &nonce,
        ))
        .await;
    assert_eq!(
        res["ok"], false,
        "a device token worked for another key: {res}"
    );
    let (code, reason) = c.closed().await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("unauthorized"), "{reason}");

    // The right key with a made-up device token: AUTH_DEVICE_TOKEN_MISMATCH.
    let fake = "A".repeat(43);
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let res = c
        .connect(connect_with(
            &key,
            json!({ "deviceToken": fake }),
            &fake,
            &nonce,
        ))
        .await;
    assert_eq!(detail(&res), "AUTH_DEVICE_TOKEN_MISMATCH", "{res}");
    assert_eq!(c.closed().await.0, 1008);
}

#[tokio::test]
async fn rotating_or_revoking_a_token_closes_the_device_sockets_and_retires_the_old_token() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    let device_id = key.public_key().device_id().to_hex().as_str().to_owned();
    let (_, res) = Connect {
        key: Some(key.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    let old = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let (mut live, res) = Connect {
        key: Some(key.clone()),
        token: Some(old.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true);
    let (mut admin, _) = Connect {
        key: Some(new_key()),
        scopes: vec!["operator.admin"],
        ..Default::default()
    }
    .run(&gw)
    .await;

    let r = admin
        .call(
            "rot",
            "device.token.rotate",
            json!({ "deviceId": device_id, "role": "operator" }),
        )
        .await;
    let new = r["payload"]["token"]
        .as_str()
        .expect("rotated token")
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(live.closed().await, (4001, "device removed".into()));
    let (_, res) = Connect {
        key: Some(key.clone()),
        token: Some(old),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false, "the old token still works after rotation");
    let (mut live, res) = Connect {
        key: Some(key.clone()),
        token: Some(new.clone()),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true, "{res}");

    let r = admin
        .call(
            "rev",
            "device.token.revoke",
            json!({ "deviceId": device_id, "role": "operator" }),
        )
        .await;
    assert!(r["payload"]["revokedAtMs"].is_u64(), "{r}");
    assert_eq!(live.closed().await.0, 4001);
    let (_, res) = Connect {
        key: Some(key),
        token: Some(new),
        scopes: vec!["operator.read"],
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false, "a revoked token still works");
}
