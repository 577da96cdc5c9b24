//! The one integration test binary of `report`: it pins `docs/report-schema.json` to the
//! JSON that [`report::render_json`] writes, with a small structural validator of our own
//! (no JSON Schema crate: the subset we use is small and a strict walker fails louder), and
//! checks that every format renders the shared fixtures. (The workspace calls this crate
//! `report`; its own crate name is `tokenpace_report`.)

#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test loudly on any error"
)]

use std::collections::BTreeSet;

use serde_json::Value;
use tokenpace_report::{Format, RunReport, render_json};

#[path = "../src/fixture.rs"]
mod fixture;

const SCHEMA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/report-schema.json");

fn schema() -> Value {
    let text = std::fs::read_to_string(SCHEMA_PATH).expect("docs/report-schema.json is readable");
    serde_json::from_str(&text).expect("docs/report-schema.json is JSON")
}

/// Keywords the validator understands; a schema using any other fails, so the committed
/// schema can never rely on a rule this test silently skips.
const KEYWORDS: [&str; 14] = [
    "$schema",
    "$id",
    "$defs",
    "$ref",
    "title",
    "description",
    "type",
    "const",
    "minimum",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
];

/// Walks `value` against `schema`, pushing one message per violation; `refs` collects the
/// `$defs` entries used, so a test can check the fixture reaches all of them.
struct Validator<'a> {
    root: &'a Value,
    errors: Vec<String>,
    refs: BTreeSet<String>,
}

impl<'a> Validator<'a> {
    fn new(root: &'a Value) -> Self {
        Validator {
            root,
            errors: Vec::new(),
            refs: BTreeSet::new(),
        }
    }

    fn check(&mut self, schema: &'a Value, value: &Value, path: &str) {
        let Some(s) = schema.as_object() else {
            self.errors.push(format!("{path}: schema is not an object"));
            return;
        };
        for key in s.keys() {
            if !KEYWORDS.contains(&key.as_str()) {
                self.errors
                    .push(format!("{path}: unsupported schema keyword {key:?}"));
            }
        }
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix("#/$defs/").unwrap_or(r);
            match self.root["$defs"].get(name) {
                Some(target) => {
                    self.refs.insert(name.to_string());
                    self.check(target, value, path);
                }
                None => self.errors.push(format!("{path}: dangling $ref {r}")),
            }
        }
        if let Some(branches) = s.get("anyOf").and_then(Value::as_array) {
            let mut why = Vec::new();
            let mut ok = false;
            for b in branches {
                let mut sub = Validator::new(self.root);
                sub.check(b, value, path);
                if sub.errors.is_empty() {
                    ok = true;
                    self.refs.extend(sub.refs);
                    break;
                }
                why.extend(sub.errors);
            }
            if !ok {
                self.errors.push(format!("{path}: matches no anyOf branch"));
                self.errors.extend(why);
            }
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !types.iter().any(|t| type_matches(t, value)) {
                self.errors
                    .push(format!("{path}: expected {types:?}, got {value}"));
                return;
            }
        }
        if let Some(c) = s.get("const")
            && c != value
        {
            self.errors
                .push(format!("{path}: expected const {c}, got {value}"));
        }
        if let (Some(min), Some(v)) = (s.get("minimum").and_then(Value::as_f64), value.as_f64())
            && v < min
        {
            self.errors.push(format!("{path}: {v} below minimum {min}"));
        }
        if let Some(obj) = value.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties");
            for (key, v) in obj {
                let child = format!("{path}.{key}");
                match (props.and_then(|p| p.get(key)), additional) {
                    (Some(ps), _) => self.check(ps, v, &child),
                    (None, Some(Value::Bool(false))) => {
                        self.errors.push(format!("{child}: key not in the schema"));
                    }
                    (None, Some(extra)) if extra.is_object() => self.check(extra, v, &child),
                    (None, _) if props.is_some() => {
                        self.errors.push(format!("{child}: key not in the schema"));
                    }
                    (None, _) => {}
                }
            }
            for key in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = key.as_str().unwrap_or_default();
                if !obj.contains_key(key) {
                    self.errors
                        .push(format!("{path}: required key {key:?} missing"));
                }
            }
        }
        if let (Some(items), Some(arr)) = (s.get("items"), value.as_array()) {
            for (i, v) in arr.iter().enumerate() {
                self.check(items, v, &format!("{path}[{i}]"));
            }
        }
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_u64() || v.is_i64(),
        _ => false,
    }
}

fn validate(value: &Value) -> (Vec<String>, BTreeSet<String>) {
    let schema = schema();
    let mut v = Validator::new(&schema);
    v.check(&schema, value, "$");
    (v.errors, v.refs)
}

fn json_of(report: &RunReport) -> Value {
    serde_json::from_str(&render_json(report)).expect("render_json writes JSON")
}

/// Every `null`, empty array and empty object in `v`, by path.
fn empties(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Null => out.push(path.to_string()),
        Value::Array(a) if a.is_empty() => out.push(path.to_string()),
        Value::Object(o) if o.is_empty() => out.push(path.to_string()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| empties(x, &format!("{path}[{i}]"), out)),
        Value::Object(o) => o
            .iter()
            .for_each(|(k, x)| empties(x, &format!("{path}.{k}"), out)),
        _ => {}
    }
}

#[test]
fn full_report_matches_the_committed_schema() {
    let json = json_of(&fixture::full());
    // The fixture must really be full, or the schema's non-null branches go untested.
    let mut empty = Vec::new();
    empties(&json, "$", &mut empty);
    assert!(
        empty.is_empty(),
        "fixture has null/empty values at {empty:?}"
    );

    let (errors, refs) = validate(&json);
    assert!(
        errors.is_empty(),
        "schema violations:\n{}",
        errors.join("\n")
    );
    let defs: BTreeSet<String> = schema()["$defs"]
        .as_object()
        .expect("$defs is an object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        refs, defs,
        "every $defs entry is reached by the full report"
    );
}

#[test]
fn sparse_report_matches_the_committed_schema() {
    let json = json_of(&fixture::sparse());
    assert_eq!(json["schema_version"], 1);
    assert!(json["speedup"].is_null() && json["series"][0]["cost"].is_null());
    let (errors, _) = validate(&json);
    assert!(
        errors.is_empty(),
        "schema violations:\n{}",
        errors.join("\n")
    );
}

#[test]
fn schema_objects_are_closed_and_fully_required() {
    // serde writes every field (None as null), so each fixed-key object must require all
    // of its properties and forbid others: that is what makes the schema pin RunReport.
    fn walk(v: &Value, path: &str) {
        if let Some(o) = v.as_object() {
            if let Some(props) = o.get("properties").and_then(Value::as_object) {
                let mut required: Vec<&str> = o["required"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{path}: properties without required"))
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                required.sort_unstable();
                let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
                keys.sort_unstable();
                assert_eq!(required, keys, "{path}: required != properties");
                assert_eq!(
                    o.get("additionalProperties"),
                    Some(&Value::Bool(false)),
                    "{path}"
                );
                for (k, p) in props {
                    assert!(
                        p.get("description").and_then(Value::as_str).is_some(),
                        "{path}.{k} has no description"
                    );
                }
            }
            for (k, x) in o {
                walk(x, &format!("{path}/{k}"));
            }
        } else if let Some(a) = v.as_array() {
            a.iter().for_each(|x| walk(x, path));
        }
    }
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(
        s["properties"]["schema_version"]["const"],
        bench::report::SCHEMA_VERSION
    );
    walk(&s, "#");
}

#[test]
fn validator_catches_drift() {
    let good = json_of(&fixture::full());
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        validate(&v).0
    };
    let unknown = mutate(&|v| {
        v["series"][0]["tokens"]["brand_new"] = Value::from(1);
    });
    assert!(
        unknown
            .iter()
            .any(|e| e.contains("tokens.brand_new: key not in")),
        "{unknown:?}"
    );
    let missing = mutate(&|v| {
        v["series"][0]["cost"]
            .as_object_mut()
            .unwrap()
            .remove("total_usd");
    });
    assert!(
        missing.iter().any(|e| e.contains("\"total_usd\" missing")),
        "{missing:?}"
    );
    let null = mutate(&|v| v["series"][0]["wall_s"] = Value::Null);
    assert!(!null.is_empty());
    let nullable = mutate(&|v| v["series"][0]["tpot_token_weighted_ms"] = Value::Null);
    assert!(nullable.is_empty(), "{nullable:?}");
    let bad_summary = mutate(&|v| v["series"][0]["latency_ms"]["ttft_ms"]["n"] = Value::from(1.5));
    assert!(!bad_summary.is_empty());
    let bad_map = mutate(&|v| {
        v["series"][0]["requests"]["failed_by_class"]["timeout"] = Value::from("x");
    });
    assert!(!bad_map.is_empty());
    let version = mutate(&|v| v["schema_version"] = Value::from(2));
    assert!(version.iter().any(|e| e.contains("const")), "{version:?}");
}

#[test]
fn every_format_renders_both_fixtures() {
    for report in [fixture::full(), fixture::sparse()] {
        for format in Format::ALL {
            let out = format.render(&report);
            assert!(!out.is_empty(), "{format:?}");
            assert!(
                out.contains("gpt") || out.contains("sim-mini"),
                "{format:?}"
            );
        }
        let (errors, _) = validate(&json_of(&report));
        assert!(errors.is_empty(), "{errors:?}");
    }
    let text = Format::Text.render(&fixture::full());
    assert!(text.contains("models are SIMULATED (tokenpace sim)"));
    assert!(
        !Format::Text
            .render(&fixture::sparse())
            .contains("SIMULATED")
    );
}
