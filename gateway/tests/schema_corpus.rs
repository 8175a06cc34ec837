//! The gateway's inbound validation accepts and rejects exactly what the committed JSON Schemas
//! do. A corpus of frames — hand-written cases in `tests/corpus/` plus every frame recorded from
//! the real OpenClaw in `../shared/reference/captures/` — goes through both a JSON Schema
//! validator and the decoders the gateway and its clients use; the verdicts must agree.
//!
//! Known, deliberate gap: JSON Schema counts `3.0` as an integer, serde does not; the corpus
//! keeps to integers written as integers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pincer_protocol::decode::decode_request;
use pincer_protocol::frames::Frame;
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Schemas {
    validators: HashMap<String, jsonschema::Validator>,
}

impl Schemas {
    fn load() -> Schemas {
        let mut validators = HashMap::new();
        for dir in ["frames", "methods", "events"] {
            for entry in
                std::fs::read_dir(root().join("protocol/schema").join(dir)).expect("schema dir")
            {
                let path = entry.expect("entry").path();
                let schema: Value = serde_json::from_slice(&std::fs::read(&path).expect("read"))
                    .expect("schema JSON");
                let name = format!(
                    "{dir}/{}",
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
                let v =
                    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
                validators.insert(name, v);
            }
        }
        Schemas { validators }
    }

    fn valid(&self, name: &str, v: &Value) -> bool {
        self.validators
            .get(name)
            .unwrap_or_else(|| panic!("no schema {name}"))
            .is_valid(v)
    }

    /// What the schemas say about a frame: the frame schema, and for requests the params schema
    /// of the method when there is one (absent params count as `{}`).
    fn verdict(&self, frame: &Value) -> bool {
        match frame["type"].as_str() {
            Some("req") => {
                if !self.valid("frames/request.json", frame) {
                    return false;
                }
                let method = frame["method"].as_str().unwrap_or("");
                let params_schema = format!("methods/{method}.params.json");
                if !self.validators.contains_key(&params_schema) {
                    return true;
                }
                let params = match frame.get("params") {
                    None | Some(Value::Null) => json!({}),
                    Some(p) => p.clone(),
                };
                self.valid(&params_schema, &params)
            }
            Some("res") => self.valid("frames/response.json", frame),
            Some("event") => self.valid("frames/event.json", frame),
            _ => false,
        }
    }
}

/// What the Rust decoders say: requests through the gateway's inbound decoder, responses and
/// events through the client-side frame decoder.
fn decoder_verdict(frame: &Value) -> bool {
    let text = frame.to_string();
    match frame["type"].as_str() {
        Some("req") => decode_request(&text).is_ok(),
        _ => Frame::decode(&text).is_ok(),
    }
}

fn captured_frames() -> Vec<(String, Value)> {
    let dir = root().join("../shared/reference/captures");
    assert!(
        dir.is_dir(),
        "captures missing at {} (CI clones ../shared beside the repo)",
        dir.display()
    );
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("captures") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("read capture");
        let records: Vec<Value> = if name.ends_with(".jsonl") {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).expect("jsonl"))
                .collect()
        } else {
            serde_json::from_str(&text).expect("json")
        };
        for (i, r) in records.into_iter().enumerate() {
            if let Some(f) = r.get("frame") {
                out.push((format!("{name}#{i}"), f.clone()));
            }
        }
    }
    out
}

#[test]
fn schemas_and_decoders_agree_on_every_frame() {
    let schemas = Schemas::load();
    let corpus: Vec<Value> = serde_json::from_slice(
        &std::fs::read(root().join("tests/corpus/frames.json")).expect("corpus"),
    )
    .expect("corpus JSON");
    assert!(corpus.len() >= 40, "corpus too small");
    let mut disagreements = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for case in &corpus {
        let frame = &case["frame"];
        let note = case["note"].as_str().unwrap_or("");
        let expected = case["valid"].as_bool().expect("valid flag");
        let (s, d) = (schemas.verdict(frame), decoder_verdict(frame));
        if s != expected || d != expected {
            disagreements.push(format!(
                "{note}: expected {expected}, schema {s}, decoder {d}: {frame}"
            ));
        }
        if expected {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    let captured = captured_frames();
    assert!(
        captured.len() > 50,
        "too few captured frames: {}",
        captured.len()
    );
    let mut requests = 0;
    for (at, frame) in &captured {
        let (s, d) = (schemas.verdict(frame), decoder_verdict(frame));
        if s != d {
            disagreements.push(format!(
                "{at}: schema {s}, decoder {d}: {}",
                &frame.to_string()[..frame.to_string().len().min(300)]
            ));
        }
        // Everything the real OpenClaw sent or accepted is valid.
        if !s {
            disagreements.push(format!(
                "{at}: a real frame is rejected: {}",
                &frame.to_string()[..frame.to_string().len().min(300)]
            ));
        }
        if frame["type"] == "req" {
            requests += 1;
        }
    }
    eprintln!("{valid} valid + {invalid} invalid hand-written cases, {} captured frames ({requests} requests)", captured.len());
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

#[test]
fn every_advertised_method_has_committed_schemas() {
    for m in pincer_gateway::methods::all_methods() {
        for kind in ["params", "result"] {
            let p = root().join(format!("protocol/schema/methods/{m}.{kind}.json"));
            assert!(
                p.exists(),
                "{m} is advertised in hello-ok but has no {kind} schema ({})",
                p.display()
            );
        }
    }
}
