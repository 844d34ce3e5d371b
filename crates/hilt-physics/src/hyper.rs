//! A model's configuration as flat `key = value` text: what DescribeDevice
//! publishes and what a twin is keyed to. Derived from the serde form so
//! a new config field can never be left out.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

pub(crate) fn flatten<T: Serialize>(cfg: &T) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let value = serde_json::to_value(cfg).expect("configs serialise to JSON");
    walk("", &value, &mut out);
    out
}

fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v, out);
            }
        }
        Value::Array(items) => {
            let text: Vec<String> = items.iter().map(scalar).collect();
            out.insert(prefix.to_string(), text.join(","));
        }
        other => {
            out.insert(prefix.to_string(), scalar(other));
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nested_fields_get_dotted_keys_and_lists_commas() {
        #[derive(serde::Serialize)]
        struct Inner {
            n: u32,
        }
        #[derive(serde::Serialize)]
        struct Outer {
            inner: Inner,
            band: [f64; 2],
            name: &'static str,
        }
        let h = super::flatten(&Outer {
            inner: Inner { n: 3 },
            band: [1.5, 2.0],
            name: "superpose",
        });
        assert_eq!(h["inner.n"], "3");
        assert_eq!(h["band"], "1.5,2.0");
        assert_eq!(h["name"], "superpose");
    }
}
