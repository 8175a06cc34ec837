//! The committed JSON Schemas under `protocol/schema/` must equal what the Rust types generate.
//! Run with `PINCER_BLESS=1` to rewrite them after changing a type.
#![cfg(feature = "schema")]

use std::path::PathBuf;

#[test]
fn committed_schemas_match_the_types() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema");
    let bless = std::env::var_os("PINCER_BLESS").is_some();
    let mut stale = Vec::new();
    let generated = pincer_protocol::schema::all();
    for (rel, schema) in &generated {
        let path = root.join(rel);
        let text = serde_json::to_string_pretty(schema).unwrap() + "\n";
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(rel.clone());
        }
    }
    // No schema files beyond the generated ones.
    let mut extra = Vec::new();
    for dir in ["frames", "events", "methods"] {
        for entry in std::fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let rel = format!("{dir}/{}", entry.file_name().to_string_lossy());
            if !generated.iter().any(|(r, _)| *r == rel) {
                if bless {
                    std::fs::remove_file(entry.path()).unwrap();
                } else {
                    extra.push(rel);
                }
            }
        }
    }
    assert!(stale.is_empty(), "stale schemas (run PINCER_BLESS=1 cargo test -p pincer-protocol --features schema): {stale:?}");
    assert!(extra.is_empty(), "schemas without a type: {extra:?}");
}

#[test]
fn every_typed_method_has_a_params_schema() {
    let all = pincer_protocol::schema::all();
    for m in pincer_protocol::decode::typed_methods() {
        let want = format!("methods/{m}.params.json");
        assert!(all.iter().any(|(r, _)| *r == want), "no schema for {m}");
    }
}
