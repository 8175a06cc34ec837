//! What a JSON text would cost decoded into a tree, counted without decoding it. A
//! `serde_json::Value` takes 32 bytes or more per value, so 20 MB of `[0,0,…]` (10 M values)
//! is ~400 MB as a tree: whoever decodes a peer's text into a tree first checks
//! [`json_values`] against a bound. Core (no allocation, `no_std`).

/// An upper bound on the values in `text` (scalars, arrays, objects and object keys),
/// counting stops at `stop_at`. Bytes inside strings count nothing, however long the string:
/// a 5 MB base64 photo is one value. Not a validator: malformed text gets a number too.
pub fn json_values(text: &str, stop_at: usize) -> usize {
    let mut n = usize::from(!text.trim_start().is_empty());
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            // Each separator starts one more value (a key is counted by the `,`/`{` before it,
            // its value by the `:`); an opening bracket may start one more (its first element).
            b',' | b':' | b'[' | b'{' => {
                n += 1;
                if n >= stop_at {
                    return n;
                }
            }
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_structure_not_string_bytes() {
        assert_eq!(json_values("", 100), 0);
        assert_eq!(json_values("0", 100), 1);
        assert!(json_values("[0,0,0]", 100) >= 4);
        assert!(json_values(r#"{"a":1,"b":[1,2]}"#, 100) >= 6);
        let photo = format!(r#"{{"base64":"{}"}}"#, "A,[{:".repeat(100_000));
        assert!(
            json_values(&photo, 100) <= 3,
            "string content is not structure"
        );
        let escaped = r#"["a\"],[,,,", 1]"#;
        assert!(
            json_values(escaped, 100) <= 4,
            "an escaped quote does not end the string"
        );
    }

    #[test]
    fn stops_counting_at_the_bound() {
        let zeros = "[0".to_owned() + &",0".repeat(1_000_000) + "]";
        assert_eq!(json_values(&zeros, 65_536), 65_536);
    }
}
