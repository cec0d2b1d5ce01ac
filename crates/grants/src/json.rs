//! A JSON tree that borrows its strings from the record's text.
//!
//! Normalising a record reads a few dozen of its fields. Parsing it into `serde_json::Value`
//! allocated every key and every string and built a sorted map per object; this tree keeps each
//! object's members as written, in one vector, and copies a string only when it holds escapes.
//!
//! It accepts and rejects exactly the texts `serde_json::Value` does, with the same errors
//! (the same parser reads every string and number: invalid UTF-8, lone surrogates and numbers
//! out of `f64` range are rejected wherever they are), and reads the same value for every key:
//! the last of duplicate keys wins, a key looked up without regard to case finds the one a
//! sorted map would list first, and no key is special (serde_json's `raw_value` feature, which
//! gives one a meaning in `Value`, is off). Property tests in this module hold it to that.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// One JSON value of a record.
#[derive(Debug, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// An object's members in the order written, duplicates included.
#[derive(Debug, PartialEq)]
pub(crate) struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Json<'a> {
    /// Parses one JSON text, borrowing its unescaped strings.
    pub(crate) fn parse(text: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(text)
    }

    /// [`Json::parse`] for text already known to be UTF-8.
    pub(crate) fn parse_str(text: &'a str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    pub(crate) fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(map) => Some(map),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A member of an object; `None` for a missing key or a value that is not an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.as_object()?.get(key)
    }

    /// The same value as a `serde_json::Value` (for the rare value shown as JSON text).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::Str(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.to_string(), v.to_value())).collect())
            }
        }
    }
}

impl<'a> Object<'a> {
    /// The value of `key`; the last one when the key is repeated.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Looks a key up exactly, then case-insensitively (`ARN` vs `arn`, `AWSAccountId` vs
    /// `aWSAccountId`). Of several keys differing only in case, the smallest (byte order) wins.
    pub(crate) fn get_ci(&self, key: &str) -> Option<&Json<'a>> {
        self.get(key).or_else(|| {
            // `min_by` keeps the first of equal keys; reading backwards makes it the last.
            self.0
                .iter()
                .rev()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .min_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, v)| v)
        })
    }

    /// Members in the order written, duplicates included (later ones overwrite when collected
    /// into a map).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }

    /// A string with escapes, unescaped into the parser's scratch buffer.
    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s.to_string())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members = Vec::new();
        // A key is read as any string is (borrowed unless escaped); the parser allows no other.
        while let Some(key) = map.next_key()? {
            let Json::Str(key) = key else {
                return Err(de::Error::custom("object key is not a string"));
            };
            members.push((key, map.next_value()?));
        }
        Ok(Json::Object(Object(members)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads every key of `value` through [`Object::get`] and [`Object::get_ci`] and checks
    /// each against what `serde_json::Value` finds.
    fn same_lookups(tree: &Json, value: &Value) {
        match (tree, value) {
            (Json::Object(map), Value::Object(expected)) => {
                for (key, _) in map.iter() {
                    for probe in [key.to_string(), key.to_ascii_lowercase(), key.to_ascii_uppercase()] {
                        let by_value = expected.get(&probe).or_else(|| {
                            expected.iter().find(|(k, _)| k.eq_ignore_ascii_case(&probe)).map(|(_, v)| v)
                        });
                        assert_eq!(
                            map.get_ci(&probe).map(Json::to_value).as_ref(),
                            by_value,
                            "get_ci {probe:?}"
                        );
                        assert_eq!(
                            map.get(&probe).map(Json::to_value).as_ref(),
                            expected.get(&probe),
                            "get {probe:?}"
                        );
                    }
                }
                for (key, v) in map.iter() {
                    if map.get(key) == Some(v) {
                        same_lookups(v, &expected[key]);
                    }
                }
            }
            (Json::Array(items), Value::Array(expected)) => {
                assert_eq!(items.len(), expected.len());
                items.iter().zip(expected).for_each(|(t, v)| same_lookups(t, v));
            }
            _ => assert_eq!(&tree.to_value(), value),
        }
    }

    /// Same verdict, same error message, same value and same lookups as `Value`, from bytes
    /// and from text.
    fn agrees_with_value(text: &str) {
        let value = serde_json::from_str::<Value>(text);
        for tree in [Json::parse(text.as_bytes()), Json::parse_str(text)] {
            match (&value, &tree) {
                (Ok(value), Ok(tree)) => {
                    assert_eq!(&tree.to_value(), value, "{text}");
                    same_lookups(tree, value);
                }
                (Err(v), Err(t)) => assert_eq!(v.to_string(), t.to_string(), "{text}"),
                _ => panic!("{text}: Value {value:?}, tree {tree:?}"),
            }
        }
    }

    #[test]
    fn hostile_texts_are_judged_as_value_judges_them() {
        for text in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\ud800\udc00"}"#,
            r#"{"\udc00":1}"#,
            r#"{"a":1e400}"#,
            r#"{"a":-1e400}"#,
            r#"{"a":1e-400}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":1,"a":"two"}"#,
            r#"{"Arn":1,"ARN":2,"arn":3,"aRN":4}"#,
            r#"{"ARN":"x","Arn":"y","ARN":"z"}"#,
            r#"{"a":"tab	in string"}"#,
            r#"{"a":"\u0041\n\"q\""}"#,
            r#"{"a":[1,2,]}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"[{"a":{}}]"#,
            r#""text""#,
            "",
            "nul",
            r#"{"a":01}"#,
            r#"{"a":.5}"#,
            r#"{"a":-0.0}"#,
            r#"{"a":1.5e3,"b":-7,"c":true,"d":null}"#,
            " { \"a\" : [ 1 , { } ] } \n",
            "{\"a\":\"ctl\u{1}\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"cut"#,
            r#"{"a":"#,
            r#"{"a" 1}"#,
            r#"{1:2}"#,
        ] {
            agrees_with_value(text);
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        agrees_with_value(&deep);
        let at_limit = format!("{}{}", "[".repeat(127), "]".repeat(127));
        agrees_with_value(&at_limit);
        let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(130), "}".repeat(130));
        agrees_with_value(&deep_objects);
        let bad_utf8 = b"{\"a\":\"\xff\"}";
        let (value, tree) = (serde_json::from_slice::<Value>(bad_utf8), Json::parse(bad_utf8));
        assert_eq!(value.map_err(|e| e.to_string()), tree.map(|t| t.to_value()).map_err(|e| e.to_string()));
    }

    /// serde_json's `raw_value` feature gives this first key a meaning in `Value`; for records
    /// it must be a key like any other (the feature is off in the workspace).
    const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

    #[test]
    fn no_key_is_special() {
        for text in [
            format!(r#"{{"{RAW_VALUE_TOKEN}":"[1]"}}"#),
            format!(r#"{{"{RAW_VALUE_TOKEN}":1,"a":2}}"#),
            format!(r#"{{"e":{{"{RAW_VALUE_TOKEN}":"\"s\""}}}}"#),
        ] {
            agrees_with_value(&text);
            let tree = Json::parse_str(&text).unwrap();
            assert!(tree.to_value().to_string().contains("RawValue"), "{text}");
        }
    }

    #[test]
    fn unescaped_strings_and_keys_are_borrowed() {
        let text = r#"{"eventName":"Decrypt","esc":"a\nb"}"#;
        let Json::Object(map) = Json::parse_str(text).unwrap() else { panic!("not an object") };
        assert!(map.0.iter().all(|(k, _)| matches!(k, Cow::Borrowed(_))));
        assert!(matches!(map.get("eventName"), Some(Json::Str(Cow::Borrowed("Decrypt")))));
        assert!(matches!(map.get("esc"), Some(Json::Str(Cow::Owned(_)))));
    }

    /// Pieces of JSON text, some invalid, combined at random.
    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("1e400".to_string()),
            Just("-0".to_string()),
            Just("18446744073709551615".to_string()),
            Just("18446744073709551616".to_string()),
            Just("1.25".to_string()),
            Just(r#""\ud83d""#.to_string()),
            Just(r#""\ud83d\ude00""#.to_string()),
            Just(r#""a\"b""#.to_string()),
            Just("01".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "[a-zA-Z]{0,3}".prop_map(|s| format!("\"{s}\"")),
            // Printable ASCII and tab: bad escapes, early quotes, a control character.
            "[ -~\t]{0,4}".prop_map(|s| format!("\"{s}\"")),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("arn".to_string()),
            Just("ARN".to_string()),
            Just("Arn".to_string()),
            Just("type".to_string()),
            Just(r"k\u0065y".to_string()),
            Just(r"\udfff".to_string()),
            Just(RAW_VALUE_TOKEN.to_string()),
            "[a-cA-C]{1,2}",
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        scalar().prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((key(), inner), 0..6).prop_map(|members| {
                    let body: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_tree_reads_what_value_reads(text in text()) {
            agrees_with_value(&text);
        }
    }
}
