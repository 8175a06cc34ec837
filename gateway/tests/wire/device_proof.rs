//! §2.3 Device identity and §2.4 Signed payload: the `device` block is verified (id = key
//! fingerprint, signature over the exact payload string, this socket's nonce, `signedAt`
//! within ±120 s); each failure has its `details.code`, `details.reason` (§1.3) and close
//! reason (§1.7). Nodes always need one (§2.7).

use pincer_protocol::identity::PayloadVersion;
use serde_json::{json, Value};

use crate::support::*;
use crate::{detail, device_block, message};

/// Sends `connect` with `p` on `c` and checks the refusal: `details.code`, `details.reason`
/// (§1.3) and the close reason (§1.7).
async fn refused(c: &mut Client, p: Value, code: &str, reason: &str, close: &str) {
    let res = c.connect(p).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
    assert_eq!(detail(&res), code, "{res}");
    assert_eq!(res["error"]["details"]["reason"], reason, "{res}");
    assert_eq!(c.closed().await, (1008, close.into()), "{code}");
}

#[tokio::test]
async fn device_proof_failures_are_refused_with_the_reference_codes_and_reasons() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    let base = || Connect {
        key: Some(key.clone()),
        ..Default::default()
    };

    // An id that is not the key's fingerprint.
    for id in ["0".repeat(64), "ab".repeat(32)] {
        let mut c = gw.open().await;
        let nonce = c.challenge().await;
        let mut p = base().params(&nonce);
        p["device"]["id"] = json!(id);
        refused(
            &mut c,
            p,
            "DEVICE_AUTH_DEVICE_ID_MISMATCH",
            "device-id-mismatch",
            "device identity mismatch",
        )
        .await;
    }

    // A nonce that is not this socket's challenge: a connect recorded on one socket replayed
    // on another, and a made-up one.
    let mut a = gw.open().await;
    let nonce_a = a.challenge().await;
    let recorded = base().params(&nonce_a);
    let mut b = gw.open().await;
    b.challenge().await;
    refused(
        &mut b,
        recorded,
        "DEVICE_AUTH_NONCE_MISMATCH",
        "device-nonce-mismatch",
        "device nonce mismatch",
    )
    .await;
    let mut c = gw.open().await;
    c.challenge().await;
    refused(
        &mut c,
        base().params("00000000-0000-4000-8000-000000000000"),
        "DEVICE_AUTH_NONCE_MISMATCH",
        "device-nonce-mismatch",
        "device nonce mismatch",
    )
    .await;

    // Ten minutes ago, and ten minutes in the future (as stale).
    for signed_at in [now_ms() - 600_000, now_ms() + 600_000] {
        let mut c = gw.open().await;
        let nonce = c.challenge().await;
        let p = Connect {
            signed_at: Some(signed_at),
            ..base()
        }
        .params(&nonce);
        refused(
            &mut c,
            p,
            "DEVICE_AUTH_SIGNATURE_EXPIRED",
            "device-signature-stale",
            "device signature expired",
        )
        .await;
    }

    // A signature by another key than the one presented, and one that is not even base64url.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = base().params(&nonce);
    let other = Connect {
        key: Some(new_key()),
        ..Default::default()
    }
    .params(&nonce);
    p["device"]["signature"] = other["device"]["signature"].clone();
    refused(
        &mut c,
        p,
        "DEVICE_AUTH_SIGNATURE_INVALID",
        "device-signature",
        "device signature invalid",
    )
    .await;
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = base().params(&nonce);
    p["device"]["signature"] = json!("not a signature!");
    refused(
        &mut c,
        p,
        "DEVICE_AUTH_SIGNATURE_INVALID",
        "device-signature",
        "device signature invalid",
    )
    .await;

    // A public key of the wrong length.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = base().params(&nonce);
    p["device"]["publicKey"] = json!("AAAA");
    refused(
        &mut c,
        p,
        "DEVICE_AUTH_PUBLIC_KEY_INVALID",
        "device-public-key",
        "device public key invalid",
    )
    .await;
}

#[tokio::test]
async fn v2_payloads_and_signatures_within_the_skew_are_accepted() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    // The v2 payload is still accepted.
    let (_, res) = Connect {
        key: Some(key.clone()),
        payload_version: PayloadVersion::V2,
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], true, "{res}");
    // Within the ±120 s skew is fine.
    let (_, res) = Connect {
        key: Some(key),
        signed_at: Some(now_ms() - 60_000),
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(
        res["ok"], true,
        "a 60 s old signature is within skew: {res}"
    );
}

#[tokio::test]
async fn signature_payload_is_byte_exact() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    let id = key.public_key().device_id().to_hex();
    // v3 with scopes in the order sent (not sorted), platform and deviceFamily lowercased
    // (ASCII only) in the payload while the params keep their case.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let at = now_ms();
    let scopes = ["operator.write", "operator.read"];
    let payload = format!(
        "v3|{id}|test|test|operator|operator.write,operator.read|{at}|{TOKEN}|{nonce}|linux|raspberry pi"
    );
    assert_eq!(payload.matches('|').count(), 10);
    let p = json!({
        "minProtocol": 3, "maxProtocol": 4,
        "client": { "id": "test", "version": "1.0.0", "platform": "Linux",
                    "deviceFamily": "Raspberry Pi", "mode": "test" },
        "role": "operator", "scopes": scopes,
        "auth": { "token": TOKEN },
        "device": device_block(&key, &payload, at, &nonce),
    });
    let res = c.connect(p.clone()).await;
    assert_eq!(res["ok"], true, "hand-built v3 payload refused: {res}");
    assert_eq!(
        res["payload"]["auth"]["scopes"],
        json!(scopes),
        "granted scopes: {res}"
    );

    // The same payload with the scopes sorted does not verify (the gateway must not sort).
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let at = now_ms();
    let sorted = format!(
        "v3|{id}|test|test|operator|operator.read,operator.write|{at}|{TOKEN}|{nonce}|linux|raspberry pi"
    );
    let mut p2 = p.clone();
    p2["device"] = device_block(&key, &sorted, at, &nonce);
    let res = c.connect(p2).await;
    assert_eq!(detail(&res), "DEVICE_AUTH_SIGNATURE_INVALID", "{res}");

    // v2: nine fields, no platform/deviceFamily.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let at = now_ms();
    let v2 =
        format!("v2|{id}|test|test|operator|operator.write,operator.read|{at}|{TOKEN}|{nonce}");
    let mut p3 = p.clone();
    p3["device"] = device_block(&key, &v2, at, &nonce);
    let res = c.connect(p3).await;
    assert_eq!(res["ok"], true, "hand-built v2 payload refused: {res}");

    // Role defaults to operator in the payload when the params leave it out.
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let at = now_ms();
    let no_role = format!("v3|{id}|test|test|operator||{at}|{TOKEN}|{nonce}|linux|raspberry pi");
    let mut p4 = p.clone();
    let params = p4.as_object_mut().expect("params object");
    params.remove("role");
    params.remove("scopes");
    p4["device"] = device_block(&key, &no_role, at, &nonce);
    let res = c.connect(p4).await;
    assert_eq!(res["ok"], true, "absent role must sign as operator: {res}");
    assert_eq!(res["payload"]["auth"]["role"], "operator");
}

#[tokio::test]
async fn nodes_without_a_device_identity_are_refused() {
    let gw = Gateway::start(&[]);
    let (mut c, res) = Connect {
        client_id: "node-host",
        mode: "node",
        role: "node",
        ..Default::default()
    }
    .run(&gw)
    .await;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["code"], "NOT_PAIRED", "{res}");
    assert_eq!(message(&res), "device identity required");
    assert_eq!(detail(&res), "DEVICE_IDENTITY_REQUIRED");
    assert_eq!(c.closed().await, (1008, "device identity required".into()));
}

#[tokio::test]
async fn a_pem_spki_public_key_is_accepted_and_stored_as_the_raw_key() {
    let gw = Gateway::start(&[]);
    let key = new_key();
    let pk = key.public_key();
    // SPKI DER of an Ed25519 key: the 12-byte algorithm header, then the raw key.
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(&pk.0);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        pincer_protocol::base64url::encode_standard(&der)
    );
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = Connect {
        client_id: "cli",
        mode: "cli",
        key: Some(key.clone()),
        ..Default::default()
    }
    .params(&nonce);
    p["device"]["publicKey"] = json!(pem);
    let res = c.connect(p).await;
    assert_eq!(res["ok"], true, "{res}");
    assert!(res["payload"]["auth"]["deviceToken"].is_string(), "{res}");
    let store = std::fs::read_to_string(gw.dir.join("devices/store.json")).expect("store.json");
    assert!(store.contains(pk.to_base64url().as_str()), "{store}");
    assert!(!store.contains("BEGIN"), "{store}");
    // A PEM block of another algorithm is still refused.
    der[8] = 0x71;
    let mut c = gw.open().await;
    let nonce = c.challenge().await;
    let mut p = Connect {
        key: Some(key.clone()),
        ..Default::default()
    }
    .params(&nonce);
    p["device"]["publicKey"] = json!(format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        pincer_protocol::base64url::encode_standard(&der)
    ));
    let res = c.connect(p).await;
    assert_eq!(detail(&res), "DEVICE_AUTH_PUBLIC_KEY_INVALID", "{res}");
}
