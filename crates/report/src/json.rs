//! The JSON rendering: the [`RunReport`] exactly as serialized, pretty-printed, with
//! `schema_version` first. Its shape is documented by `docs/report-schema.json`, which
//! `tests/report.rs` pins, so a change to `bench::report` without a schema update fails CI.
//! This file adds no fields of its own: the JSON is the data, nothing more.

use bench::report::RunReport;

/// Renders a run as pretty JSON, ending with a newline.
///
/// Non-finite floats (a NaN speedup, say) are written as `null`, as `serde_json` does.
pub fn render_json(report: &RunReport) -> String {
    match serde_json::to_string_pretty(report) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        // Serializing plain structs with string-keyed maps cannot fail; should a future
        // field make it fail, the output stays valid JSON and says why instead of panicking.
        Err(e) => {
            let error =
                serde_json::json!({ "error": format!("rendering the report as JSON: {e}") });
            format!("{error}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn schema_version_first_and_round_trips() {
        let json = render_json(&fixture::full());
        assert!(json.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["schema_version"], 1);
        let first = v.as_object().unwrap().keys().next().unwrap();
        assert_eq!(first, "schema_version");
        assert_eq!(v["series"][1]["label"], fixture::AWKWARD_LABEL);
        assert_eq!(v["series"][0]["latency_ms"]["ttft_ms"]["p50"], 101.6);
    }

    #[test]
    fn options_are_null_not_missing() {
        let v: serde_json::Value = serde_json::from_str(&render_json(&fixture::sparse())).unwrap();
        assert!(v["speedup"].is_null());
        assert!(v.as_object().unwrap().contains_key("speedup"));
        assert!(v["series"][0]["latency_ms"].get("ttft_ms").is_none());
    }
}
