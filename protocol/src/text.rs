//! Small validated value types shared by frames and params. Each one checks on decode exactly
//! what its JSON Schema says, so the schema and the decoder cannot drift apart.

use core::fmt;
use serde::{Deserialize, Deserializer, Serialize};

/// A string with at least one character (`minLength: 1`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Default)]
#[serde(transparent)]
pub struct NonEmpty(String);

impl NonEmpty {
    /// Wraps `s`; `None` when empty.
    pub fn new(s: impl Into<String>) -> Option<Self> {
        let s = s.into();
        (!s.is_empty()).then_some(Self(s))
    }
    /// The string, borrowed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The string, unwrapped.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for NonEmpty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for NonEmpty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NonEmpty {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl core::ops::Deref for NonEmpty {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NonEmpty {
    /// Panics never: an empty input becomes a single space-free placeholder is not wanted,
    /// so empty strings map to "-". Use [`NonEmpty::new`] for input.
    fn from(s: &str) -> Self {
        if s.is_empty() {
            Self("-".into())
        } else {
            Self(s.into())
        }
    }
}

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NonEmpty::new(s)
            .ok_or_else(|| serde::de::Error::custom("must NOT have fewer than 1 characters"))
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for NonEmpty {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NonEmptyString".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "minLength": 1 })
    }
}

/// A string of at most `MAX` characters (`maxLength`).
#[derive(Clone, PartialEq, Eq, Serialize, Debug)]
#[serde(transparent)]
pub struct Bounded<const MAX: usize>(String);

impl<const MAX: usize> Bounded<MAX> {
    /// The string, borrowed (at most `MAX` characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for Bounded<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.chars().count() > MAX {
            return Err(serde::de::Error::custom(format_args!(
                "must NOT have more than {MAX} characters"
            )));
        }
        Ok(Self(s))
    }
}

#[cfg(feature = "schema")]
impl<const MAX: usize> schemars::JsonSchema for Bounded<MAX> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("StringMax{MAX}").into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "maxLength": MAX })
    }
}

/// A protocol version number (`integer, minimum 1`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Debug)]
#[serde(transparent)]
pub struct Version(pub u32);

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v == 0 {
            return Err(serde::de::Error::custom("must be >= 1"));
        }
        Ok(Self(v))
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Version {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ProtocolVersion".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "integer", "minimum": 1, "maximum": u32::MAX })
    }
}

/// A single literal string, used for `type` discriminators and `hello-ok`.
macro_rules! literal {
    ($name:ident, $lit:literal) => {
        #[doc = concat!("The literal string `\"", $lit, "\"`: encodes as it, and decodes only from it.")]
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
        pub struct $name;
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($lit)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                if s == $lit {
                    Ok($name)
                } else {
                    Err(serde::de::Error::custom(concat!("must be equal to constant \"", $lit, "\"")))
                }
            }
        }
        #[cfg(feature = "schema")]
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "const": $lit })
            }
        }
    };
}
pub(crate) use literal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_empty_rejects_empty() {
        assert!(serde_json::from_str::<NonEmpty>("\"\"").is_err());
        assert_eq!(
            serde_json::from_str::<NonEmpty>("\"x\"").unwrap().as_str(),
            "x"
        );
        assert!(serde_json::from_str::<Bounded<3>>("\"abcd\"").is_err());
        assert!(serde_json::from_str::<Version>("0").is_err());
        assert!(serde_json::from_str::<Version>("-1").is_err());
    }
}
