//! Checks of the request body that name the offending field, before anything is sent.
//!
//! Only what the gateway itself relies on or what would otherwise cost an upstream call
//! to learn: the body is an object, `model` is a string, the messages or prompt are there
//! with the right JSON type, and the common sampling fields have the right types. Anything
//! deeper is the upstream's to judge (its error passes through).

use dispatch::error::json_type;
use dispatch::{DispatchError, Kind};
use serde_json::Value;

fn expect(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Result<(), DispatchError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if ok(v) => Ok(()),
        Some(v) => Err(DispatchError::invalid(
            field,
            format!("'{field}' must be {what}, not {}", json_type(v)),
        )),
    }
}

fn required(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    what: &str,
) -> Result<(), DispatchError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(DispatchError::invalid(
            field,
            format!("'{field}' is required ({what})"),
        )),
        Some(_) => Ok(()),
    }
}

/// Validates a parsed body for `kind`.
pub fn body(kind: Kind, body: &Value) -> Result<(), DispatchError> {
    let Some(obj) = body.as_object() else {
        return Err(DispatchError::invalid(
            "body",
            format!(
                "the request body must be a JSON object, not {}",
                json_type(body)
            ),
        ));
    };
    required(obj, "model", "a string naming the model")?;
    expect(obj, "model", "a string", Value::is_string)?;
    expect(obj, "stream", "a boolean", Value::is_boolean)?;
    expect(obj, "temperature", "a number", Value::is_number)?;
    expect(obj, "top_p", "a number", Value::is_number)?;
    expect(obj, "max_tokens", "an integer", |v| v.is_u64())?;
    match kind {
        Kind::Chat => {
            required(obj, "messages", "an array of messages")?;
            expect(obj, "messages", "an array of messages", Value::is_array)?;
            expect(obj, "max_completion_tokens", "an integer", |v| v.is_u64())?;
            expect(obj, "n", "an integer", |v| v.is_u64())?;
            expect(obj, "seed", "an integer", |v| v.is_i64() || v.is_u64())?;
            expect(obj, "stream_options", "an object", Value::is_object)?;
        }
        Kind::Completions => {
            required(obj, "prompt", "a string or an array")?;
            expect(obj, "prompt", "a string or an array", |v| {
                v.is_string() || v.is_array()
            })?;
            expect(obj, "n", "an integer", |v| v.is_u64())?;
            expect(obj, "stream_options", "an object", Value::is_object)?;
        }
        Kind::Messages => {
            required(obj, "messages", "an array of messages")?;
            expect(obj, "messages", "an array of messages", Value::is_array)?;
            required(
                obj,
                "max_tokens",
                "an integer: the Messages API needs an output cap",
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_field() {
        let e = body(Kind::Chat, &json!({"model": "m"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = body(Kind::Chat, &json!({"model": "m", "messages": "hi"})).unwrap_err();
        assert!(e.message.contains("'messages' must be an array"), "{e}");
        let e = body(Kind::Chat, &json!({"model": 3, "messages": []})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = body(
            Kind::Chat,
            &json!({"model": "m", "messages": [], "temperature": "hot"}),
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("'temperature' must be a number, not a string"),
            "{e}"
        );
        let e = body(Kind::Messages, &json!({"model": "m", "messages": []})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        let e = body(Kind::Completions, &json!({"model": "m"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
        assert!(body(Kind::Chat, &json!([])).is_err());
        body(
            Kind::Chat,
            &json!({"model": "m", "messages": [], "stream": true}),
        )
        .unwrap();
    }
}
