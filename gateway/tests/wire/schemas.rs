//! The committed JSON Schemas (`protocol/schema/`, generated from pincer-protocol's types)
//! loaded as validators, for the tests that check what the gateway sends against them
//! (`shapes`, `cli`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn schema_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/schema")
}

pub struct Validators(HashMap<String, jsonschema::Validator>);

impl Validators {
    pub fn load() -> Validators {
        let mut m = HashMap::new();
        for dir in ["frames", "methods", "events"] {
            for entry in std::fs::read_dir(schema_root().join(dir)).expect("schema dir") {
                let path = entry.expect("entry").path();
                let schema: Value =
                    serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
                let name = format!(
                    "{dir}/{}",
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
                let v =
                    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
                m.insert(name, v);
            }
        }
        Validators(m)
    }

    /// Errors of `v` against schema `name`, when that schema exists.
    pub fn check(&self, name: &str, v: &Value, what: &str, problems: &mut Vec<String>) {
        if let Some(s) = self.0.get(name) {
            for e in s.iter_errors(v) {
                problems.push(format!("{what}: {name}: {e} at {}", e.instance_path));
            }
        }
    }
}
