//! §1.5 Protocol version negotiation: any range meeting {3, 4} is accepted at the highest
//! common version; any other is refused `PROTOCOL_MISMATCH` and closed 1002, before the shared
//! secret is looked at.

use crate::support::*;
use crate::{detail, message};

#[tokio::test]
async fn protocol_range_is_negotiated_to_the_highest_common_version() {
    let gw = Gateway::start(&[]);
    for (min, max, want) in [(3, 3, 3), (4, 4, 4), (3, 4, 4), (1, 9, 4)] {
        let (_, res) = Connect {
            min,
            max,
            ..Default::default()
        }
        .run(&gw)
        .await;
        assert_eq!(res["payload"]["protocol"], want, "{min}..{max}: {res}");
    }
}

#[tokio::test]
async fn a_range_outside_the_window_is_refused_1002_before_the_shared_secret() {
    let gw = Gateway::start(&[]);
    // Above the window with the right token, above it with a wrong one, below it.
    for (min, max, token) in [(5, 6, TOKEN), (5, 6, "not-the-token"), (1, 2, TOKEN)] {
        let what = format!("{min}..{max} token {token}");
        let (mut c, res) = Connect {
            min,
            max,
            token: Some(token.into()),
            ..Default::default()
        }
        .run(&gw)
        .await;
        assert_eq!(res["ok"], false, "{what}: {res}");
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{what}: {res}");
        assert_eq!(message(&res), "protocol mismatch", "{what}: {res}");
        assert_eq!(detail(&res), "PROTOCOL_MISMATCH", "{what}: {res}");
        let d = &res["error"]["details"];
        assert_eq!(d["expectedProtocol"], 4, "{what}: {res}");
        assert_eq!(d["clientMinProtocol"], min, "{what}: {res}");
        assert_eq!(d["clientMaxProtocol"], max, "{what}: {res}");
        assert_eq!(
            c.closed().await,
            (1002, "protocol mismatch".into()),
            "{what}"
        );
    }
}
