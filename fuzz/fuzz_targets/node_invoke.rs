//! What a node decodes from whatever it dialled: `node.invoke.request` and `node.invoke.cancel`
//! payloads, and the hello-ok / challenge a gateway answers with.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pincer_protocol::connect::{ChallengePayload, HelloOk};
use pincer_protocol::methods::{NodeInvokeCancel, NodeInvokeRequest};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<NodeInvokeRequest>(data);
    let _ = serde_json::from_slice::<NodeInvokeCancel>(data);
    let _ = serde_json::from_slice::<HelloOk>(data);
    let _ = serde_json::from_slice::<ChallengePayload>(data);
});
