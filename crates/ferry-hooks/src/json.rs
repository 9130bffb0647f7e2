//! Typed access to a parsed JSON document that turns every absence or type mismatch
//! into a [`HookError`] naming the document and the field's path.

use serde_json::{Map, Value};

use crate::error::{HookError, quote};

/// Parses `body` as one JSON value; `what` names the document in errors.
pub(crate) fn parse(body: &[u8], what: &'static str) -> Result<Value, HookError> {
    serde_json::from_slice(body).map_err(|e| json_error(&e, what))
}

/// Parses a JSON document held in a string (an SNS `Message`).
pub(crate) fn parse_str(text: &str, what: &'static str) -> Result<Value, HookError> {
    serde_json::from_str(text).map_err(|e| json_error(&e, what))
}

fn json_error(e: &serde_json::Error, what: &'static str) -> HookError {
    if e.is_eof() {
        HookError::TruncatedJson {
            what,
            line: e.line(),
            column: e.column(),
        }
    } else {
        // serde_json's Display appends " at line L column C"; keep only the description.
        let full = e.to_string();
        let detail = match full.rfind(" at line ") {
            Some(at) => full[..at].to_string(),
            None => full,
        };
        HookError::InvalidJson {
            what,
            detail,
            line: e.line(),
            column: e.column(),
        }
    }
}

/// "a string", "an array", … for error messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object inside a document, with the path that leads to it.
#[derive(Clone)]
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    what: &'static str,
    path: String,
}

impl<'a> Obj<'a> {
    /// The document's root, which must be an object.
    pub(crate) fn root(value: &'a Value, what: &'static str) -> Result<Self, HookError> {
        match value {
            Value::Object(map) => Ok(Obj {
                map,
                what,
                path: String::new(),
            }),
            other => Err(HookError::NotAnObject {
                what,
                found: kind(other),
            }),
        }
    }

    /// The path of `key` inside this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Whether `key` is present (even as null).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The value of `key`, `None` when absent or null.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn missing(&self, key: &str, expected: &'static str) -> HookError {
        HookError::MissingField {
            what: self.what,
            field: self.path_of(key),
            expected,
        }
    }

    pub(crate) fn wrong_type(&self, key: &str, found: &Value, expected: &'static str) -> HookError {
        HookError::WrongType {
            what: self.what,
            field: self.path_of(key),
            found: kind(found),
            expected,
        }
    }

    pub(crate) fn invalid(&self, key: &str, value: &str, expected: &'static str) -> HookError {
        HookError::InvalidValue {
            what: self.what,
            field: self.path_of(key),
            value: quote(value),
            expected,
        }
    }

    /// A required string.
    pub(crate) fn req_str(&self, key: &str, expected: &'static str) -> Result<&'a str, HookError> {
        self.opt_str(key, expected)?
            .ok_or_else(|| self.missing(key, expected))
    }

    /// An optional string (absent or null: `None`).
    pub(crate) fn opt_str(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<Option<&'a str>, HookError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, other, expected)),
        }
    }

    /// An optional boolean (absent or null: `None`).
    pub(crate) fn opt_bool(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<Option<bool>, HookError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(key, other, expected)),
        }
    }

    /// A required non-negative integer.
    pub(crate) fn req_u64(&self, key: &str, expected: &'static str) -> Result<u64, HookError> {
        match self.get(key) {
            None => Err(self.missing(key, expected)),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) => Ok(v),
                None => Err(self.invalid(key, &n.to_string(), expected)),
            },
            Some(other) => Err(self.wrong_type(key, other, expected)),
        }
    }

    /// A required object.
    pub(crate) fn req_obj(&self, key: &str, expected: &'static str) -> Result<Obj<'a>, HookError> {
        self.opt_obj(key, expected)?
            .ok_or_else(|| self.missing(key, expected))
    }

    /// An optional object (absent or null: `None`).
    pub(crate) fn opt_obj(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<Option<Obj<'a>>, HookError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                map,
                what: self.what,
                path: self.path_of(key),
            })),
            Some(other) => Err(self.wrong_type(key, other, expected)),
        }
    }

    /// A required array, as objects: each element must be an object.
    pub(crate) fn req_objects(
        &self,
        key: &str,
        expected: &'static str,
        element: &'static str,
    ) -> Result<Vec<Obj<'a>>, HookError> {
        let items = match self.get(key) {
            None => return Err(self.missing(key, expected)),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(self.wrong_type(key, other, expected)),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = format!("{}[{i}]", self.path_of(key));
                match item {
                    Value::Object(map) => Ok(Obj {
                        map,
                        what: self.what,
                        path,
                    }),
                    other => Err(HookError::WrongType {
                        what: self.what,
                        field: path,
                        found: kind(other),
                        expected: element,
                    }),
                }
            })
            .collect()
    }

    /// An optional object of string values (absent or null: empty). Every value must be
    /// a string.
    pub(crate) fn string_map(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<Vec<(&'a str, &'a str)>, HookError> {
        let Some(obj) = self.opt_obj(key, expected)? else {
            return Ok(Vec::new());
        };
        obj.map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.as_str(), s.as_str())),
                other => Err(obj.wrong_type(k, other, "a string")),
            })
            .collect()
    }

    /// The raw map, for lenient reads of informational fields.
    pub(crate) fn map(&self) -> &'a Map<String, Value> {
        self.map
    }
}
