//! Lists in the OpenAI style, shared by `GET /v1/files` and `GET /v1/batches`: the query
//! parameters (`limit`, `after`, `order`, `purpose`), each checked with an error that names
//! it, and the list object `{"object": "list", "data", "first_id", "last_id", "has_more"}`.

use std::collections::HashMap;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use dispatch::DispatchError;
use serde_json::{Value, json};

use crate::store::Order;

/// What a list request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery {
    pub(crate) limit: usize,
    pub(crate) after: Option<String>,
    pub(crate) order: Order,
    pub(crate) purpose: Option<String>,
}

/// The limits of one kind of list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) default_limit: usize,
    pub(crate) max_limit: usize,
    /// Whether `order` and `purpose` apply (files) or not (batches).
    pub(crate) filters: bool,
}

/// Reads the query of a list request.
pub(crate) fn parse(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    bounds: Bounds,
) -> Result<ListQuery, DispatchError> {
    let Query(q) = query.map_err(|e| DispatchError::invalid("query", e.body_text()))?;
    let limit = match q.get("limit") {
        None => bounds.default_limit,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=bounds.max_limit).contains(&n) => n,
            _ => {
                return Err(DispatchError::invalid(
                    "limit",
                    format!("limit '{v}' is not a number from 1 to {}", bounds.max_limit),
                ));
            }
        },
    };
    let after = q.get("after").filter(|a| !a.is_empty()).cloned();
    let (order, purpose) = if bounds.filters {
        let order = match q.get("order").map(String::as_str) {
            None | Some("desc") => Order::Desc,
            Some("asc") => Order::Asc,
            Some(other) => {
                return Err(DispatchError::invalid(
                    "order",
                    format!("order '{other}' is not 'asc' or 'desc'"),
                ));
            }
        };
        (order, q.get("purpose").filter(|p| !p.is_empty()).cloned())
    } else {
        (Order::Desc, None)
    };
    Ok(ListQuery {
        limit,
        after,
        order,
        purpose,
    })
}

/// The error for an `after` that is not an id in the list.
pub(crate) fn unknown_cursor(after: &str) -> DispatchError {
    DispatchError::invalid(
        "after",
        format!("after '{after}' is not an id in this list: pass the last_id of the previous page"),
    )
}

/// The list object of `data` (objects with an `id`).
pub(crate) fn object(data: Vec<Value>, has_more: bool) -> Value {
    let id = |v: Option<&Value>| v.and_then(|o| o.get("id")).cloned().unwrap_or(Value::Null);
    json!({
        "object": "list",
        "first_id": id(data.first()),
        "last_id": id(data.last()),
        "has_more": has_more,
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: Bounds = Bounds {
        default_limit: 10_000,
        max_limit: 10_000,
        filters: true,
    };
    const BATCHES: Bounds = Bounds {
        default_limit: 20,
        max_limit: 100,
        filters: false,
    };

    fn q(pairs: &[(&str, &str)]) -> Result<Query<HashMap<String, String>>, QueryRejection> {
        Ok(Query(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ))
    }

    #[test]
    fn defaults_and_bounds() {
        let l = parse(q(&[]), BATCHES).unwrap();
        assert_eq!((l.limit, l.order, l.after), (20, Order::Desc, None));
        let l = parse(q(&[("limit", "100"), ("after", "batch_1")]), BATCHES).unwrap();
        assert_eq!((l.limit, l.after.as_deref()), (100, Some("batch_1")));
        for bad in ["0", "101", "ten", "-1"] {
            let e = parse(q(&[("limit", bad)]), BATCHES).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("limit"), "{bad}");
        }
        let l = parse(q(&[("order", "asc"), ("purpose", "batch")]), FILES).unwrap();
        assert_eq!(
            (l.order, l.purpose.as_deref(), l.limit),
            (Order::Asc, Some("batch"), 10_000)
        );
        let e = parse(q(&[("order", "up")]), FILES).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("order"));
    }

    #[test]
    fn the_list_object_names_its_ends() {
        let o = object(vec![json!({"id": "a"}), json!({"id": "b"})], true);
        assert_eq!(o["first_id"], "a");
        assert_eq!(o["last_id"], "b");
        assert_eq!(o["has_more"], true);
        let o = object(Vec::new(), false);
        assert!(o["first_id"].is_null() && o["last_id"].is_null());
        assert_eq!(o["data"], json!([]));
    }
}
