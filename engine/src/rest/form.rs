//! Reading a JSON body (or query/path values) field by field, collecting every refusal into
//! Discord's nested `errors` object instead of stopping at the first one.
//!
//! The shape is `{"field": {"nested": {"_errors": [{"code", "message"}]}}}`; array elements are
//! keyed by their index as a string (`{"embeds": {"0": {"title": {...}}}}`), and an error about
//! the whole body sits under a top-level `_errors`. A field that is absent or `null` is "not
//! given"; [`Patch`] tells the two apart where Discord does (nullable fields of PATCH bodies).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use serde_json::{Map, Value};

use super::error::{ApiError, field_error};
use super::limits::{ERROR_ECHO_CHARS_MAX, FORM_ERRORS_MAX, SNOWFLAKE_DIGITS_MAX, SNOWFLAKE_MAX};

/// A field of a PATCH body: left alone, reset with `null`, or set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// The field was absent: keep the current value.
    #[default]
    Unchanged,
    /// The field was `null`: reset it to its default (no topic, no nick, ...).
    Clear,
    /// The field was given.
    Set(T),
}

impl<T> Patch<T> {
    /// Whether the field was absent.
    pub fn is_unchanged(&self) -> bool {
        matches!(self, Patch::Unchanged)
    }

    /// The value after applying the patch to `current`.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Patch::Unchanged => current,
            Patch::Clear => None,
            Patch::Set(v) => Some(v),
        }
    }
}

/// Parses a snowflake written as decimal digits (at most 19, at most `i64::MAX`).
pub fn parse_snowflake_str(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > SNOWFLAKE_DIGITS_MAX || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|v| *v <= SNOWFLAKE_MAX)
}

/// Parses a snowflake given as a JSON string or integer (clients send both).
pub fn snowflake_from_value(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => parse_snowflake_str(s),
        Value::Number(n) => n.as_u64().filter(|v| *v <= SNOWFLAKE_MAX),
        _ => None,
    }
}

/// Parses the request body as JSON; an empty body is `{}` (several routes take an optional body,
/// and clients send none for them).
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.trim_ascii().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body).map_err(|_| ApiError::invalid_json())
}

/// Parses `body` as a JSON object and runs `read` on it; any refusal recorded makes it a 50035.
pub(crate) fn with_object<T>(
    body: &[u8],
    read: impl FnOnce(&mut FormErrors, &Obj<'_>) -> T,
) -> Result<T, ApiError> {
    let v = parse_json(body)?;
    let mut errs = FormErrors::default();
    let out = Obj::root(&v, &mut errs).map(|o| read(&mut errs, &o));
    errs.into_result()?;
    // `root` records an error whenever it gives `None`, so this is always `Some` here.
    out.ok_or_else(ApiError::invalid_json)
}

/// The refused value as echoed in a message, shortened.
fn echo(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    s.chars().take(ERROR_ECHO_CHARS_MAX).collect()
}

/// Whether a field is there.
pub(crate) enum Field<'v> {
    /// Not in the object.
    Absent,
    /// Present and `null`.
    Null,
    /// Present with a value.
    Present(&'v Value),
}

/// A JSON object being read, with its path from the body root (for error placement).
pub(crate) struct Obj<'v> {
    map: &'v Map<String, Value>,
    prefix: Vec<String>,
}

impl<'v> Obj<'v> {
    /// The root object, or an error at the top of the `errors` tree.
    pub(crate) fn root(v: &'v Value, errs: &mut FormErrors) -> Option<Obj<'v>> {
        match v {
            Value::Object(map) => Some(Obj {
                map,
                prefix: Vec::new(),
            }),
            _ => {
                errs.add_path(
                    Vec::new(),
                    "DICT_TYPE_CONVERT",
                    "Only objects may be used here.".to_owned(),
                );
                None
            }
        }
    }

    /// The field `key`.
    pub(crate) fn field(&self, key: &str) -> Field<'v> {
        match self.map.get(key) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(v) => Field::Present(v),
        }
    }

    /// The path of `key` (and of element `index` of it).
    pub(crate) fn path(&self, key: &str, index: Option<usize>) -> Vec<String> {
        let mut p = self.prefix.clone();
        p.push(key.to_owned());
        if let Some(i) = index {
            p.push(i.to_string());
        }
        p
    }

    /// The object at `key` (element `index` of it when given), or a type error.
    pub(crate) fn nested(
        &self,
        key: &str,
        index: Option<usize>,
        v: &'v Value,
        errs: &mut FormErrors,
    ) -> Option<Obj<'v>> {
        match v {
            Value::Object(map) => Some(Obj {
                map,
                prefix: self.path(key, index),
            }),
            _ => {
                errs.add_path(
                    self.path(key, index),
                    "DICT_TYPE_CONVERT",
                    "Only objects may be used here.".to_owned(),
                );
                None
            }
        }
    }
}

/// The body as an array of `min..=max` elements (position updates), or an error at the top.
pub(crate) fn root_array<'v>(
    v: &'v Value,
    errs: &mut FormErrors,
    min: usize,
    max: usize,
) -> Option<&'v [Value]> {
    let Some(items) = v.as_array() else {
        errs.add_path(
            Vec::new(),
            "LIST_TYPE_CONVERT",
            "Only arrays may be used here.".to_owned(),
        );
        return None;
    };
    if items.len() < min || items.len() > max {
        errs.add_path(
            Vec::new(),
            "BASE_TYPE_BAD_LENGTH",
            format!("Must be between {min} and {max} in length."),
        );
        return None;
    }
    Some(items.as_slice())
}

/// Element `index` of a root array as an object, its errors keyed by the index.
pub(crate) fn root_element<'v>(
    index: usize,
    v: &'v Value,
    errs: &mut FormErrors,
) -> Option<Obj<'v>> {
    match v {
        Value::Object(map) => Some(Obj {
            map,
            prefix: vec![index.to_string()],
        }),
        _ => {
            errs.add_path(
                vec![index.to_string()],
                "DICT_TYPE_CONVERT",
                "Only objects may be used here.".to_owned(),
            );
            None
        }
    }
}

/// Collected refusals, as Discord's nested `errors` object.
#[derive(Debug, Default)]
pub struct FormErrors {
    root: Map<String, Value>,
    count: usize,
}

impl FormErrors {
    /// How many refusals were recorded (including those past the listing cap).
    pub fn count(&self) -> usize {
        self.count
    }

    /// `Ok` if nothing was refused, else the 50035 answer.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.count == 0 {
            Ok(())
        } else {
            Err(ApiError::invalid_form_body(Value::Object(self.root)))
        }
    }

    /// Records a refusal at `path` (empty: the body as a whole).
    pub fn add_path(&mut self, path: Vec<String>, code: &str, message: String) {
        self.count += 1;
        if self.count > FORM_ERRORS_MAX {
            return;
        }
        let mut node = &mut self.root;
        for key in path {
            let entry = node.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(next) = entry else {
                return;
            };
            node = next;
        }
        let list = node
            .entry("_errors".to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = list {
            items.push(field_error(code, message));
        }
    }

    /// Records a refusal at a path given as string slices (path and query parameters).
    pub fn add(&mut self, path: &[&str], code: &str, message: String) {
        self.add_path(
            path.iter().map(|s| (*s).to_owned()).collect(),
            code,
            message,
        );
    }

    /// Records `NUMBER_TYPE_COERCE` for a value that is not a snowflake.
    pub fn not_snowflake(&mut self, path: &[&str], value: &str) {
        let shown: String = value.chars().take(ERROR_ECHO_CHARS_MAX).collect();
        self.add(
            path,
            "NUMBER_TYPE_COERCE",
            format!("Value \"{shown}\" is not snowflake."),
        );
    }

    fn at(&mut self, o: &Obj<'_>, key: &str, index: Option<usize>, code: &str, msg: String) {
        self.add_path(o.path(key, index), code, msg);
    }

    /// `BASE_TYPE_REQUIRED` for `key`.
    pub(crate) fn required(&mut self, o: &Obj<'_>, key: &str) {
        self.at(
            o,
            key,
            None,
            "BASE_TYPE_REQUIRED",
            "This field is required.".to_owned(),
        );
    }

    /// Records a length refusal (`len` outside `min..=max`) for `key`: a pure upper bound is
    /// `BASE_TYPE_MAX_LENGTH`, a range `BASE_TYPE_BAD_LENGTH`.
    fn length(&mut self, o: &Obj<'_>, key: &str, min: usize, max: usize) {
        let (code, msg) = if min == 0 {
            (
                "BASE_TYPE_MAX_LENGTH",
                format!("Must be {max} or fewer in length."),
            )
        } else {
            (
                "BASE_TYPE_BAD_LENGTH",
                format!("Must be between {min} and {max} in length."),
            )
        };
        self.at(o, key, None, code, msg);
    }

    /// Reads an optional field: absent and `null` give `None`.
    pub(crate) fn opt<'v, T>(
        &mut self,
        o: &Obj<'v>,
        key: &str,
        conv: impl FnOnce(&mut Self, &Obj<'v>, &str, &'v Value) -> Option<T>,
    ) -> Option<T> {
        match o.field(key) {
            Field::Absent | Field::Null => None,
            Field::Present(v) => conv(self, o, key, v),
        }
    }

    /// Reads a required field: absent and `null` are `BASE_TYPE_REQUIRED`.
    pub(crate) fn req<'v, T>(
        &mut self,
        o: &Obj<'v>,
        key: &str,
        conv: impl FnOnce(&mut Self, &Obj<'v>, &str, &'v Value) -> Option<T>,
    ) -> Option<T> {
        match o.field(key) {
            Field::Absent | Field::Null => {
                self.required(o, key);
                None
            }
            Field::Present(v) => conv(self, o, key, v),
        }
    }

    /// Reads a nullable PATCH field.
    pub(crate) fn patch<'v, T>(
        &mut self,
        o: &Obj<'v>,
        key: &str,
        conv: impl FnOnce(&mut Self, &Obj<'v>, &str, &'v Value) -> Option<T>,
    ) -> Patch<T> {
        match o.field(key) {
            Field::Absent => Patch::Unchanged,
            Field::Null => Patch::Clear,
            Field::Present(v) => conv(self, o, key, v).map_or(Patch::Unchanged, Patch::Set),
        }
    }

    /// A string of `min..=max` characters (Unicode scalar values, not bytes).
    pub(crate) fn string(
        &mut self,
        o: &Obj<'_>,
        key: &str,
        v: &Value,
        min: usize,
        max: usize,
    ) -> Option<String> {
        let Some(s) = v.as_str() else {
            self.at(
                o,
                key,
                None,
                "STRING_TYPE_COERCE",
                format!("Value \"{}\" is not a string.", echo(v)),
            );
            return None;
        };
        // Stop counting past the limit: a 1 MiB string costs no more than a 2 KiB one.
        let len = s.chars().take(max.saturating_add(1)).count();
        if len < min || len > max {
            self.length(o, key, min, max);
            return None;
        }
        Some(s.to_owned())
    }

    /// A non-negative integer in `min..=max`; numeric strings and integral floats are accepted,
    /// as Discord coerces them.
    pub(crate) fn int(
        &mut self,
        o: &Obj<'_>,
        key: &str,
        v: &Value,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        self.int_at(o, key, None, v, min, max)
    }

    fn int_at(
        &mut self,
        o: &Obj<'_>,
        key: &str,
        index: Option<usize>,
        v: &Value,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let n = match v {
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Some(Ok(u)),
                (None, Some(_), _) => Some(Err(())),
                (None, None, Some(f)) if f.fract() == 0.0 && f < 0.0 => Some(Err(())),
                (None, None, Some(f)) if f.fract() == 0.0 && f <= u64::MAX as f64 => {
                    Some(Ok(f as u64))
                }
                _ => None,
            },
            Value::String(s) => {
                let t = s.trim();
                if let Some(neg) = t.strip_prefix('-') {
                    neg.parse::<u64>().ok().map(|_| Err(()))
                } else {
                    t.parse::<u64>().ok().map(Ok)
                }
            }
            _ => None,
        };
        match n {
            None => {
                self.at(
                    o,
                    key,
                    index,
                    "NUMBER_TYPE_COERCE",
                    format!("Value \"{}\" is not int.", echo(v)),
                );
                None
            }
            Some(Err(())) => {
                self.at(
                    o,
                    key,
                    index,
                    "NUMBER_TYPE_MIN",
                    format!("int value should be greater than or equal to {min}."),
                );
                None
            }
            Some(Ok(n)) if n < min => {
                self.at(
                    o,
                    key,
                    index,
                    "NUMBER_TYPE_MIN",
                    format!("int value should be greater than or equal to {min}."),
                );
                None
            }
            Some(Ok(n)) if n > max => {
                self.at(
                    o,
                    key,
                    index,
                    "NUMBER_TYPE_MAX",
                    format!("int value should be less than or equal to {max}."),
                );
                None
            }
            Some(Ok(n)) => Some(n),
        }
    }

    /// An integer from a fixed set.
    pub(crate) fn choice(
        &mut self,
        o: &Obj<'_>,
        key: &str,
        v: &Value,
        allowed: &[u64],
    ) -> Option<u64> {
        let n = self.int(o, key, v, 0, u64::MAX)?;
        if allowed.contains(&n) {
            return Some(n);
        }
        let list: Vec<String> = allowed.iter().map(u64::to_string).collect();
        self.at(
            o,
            key,
            None,
            "BASE_TYPE_CHOICES",
            format!("Value must be one of ({}).", list.join(", ")),
        );
        None
    }

    /// `true` or `false`.
    pub(crate) fn boolean(&mut self, o: &Obj<'_>, key: &str, v: &Value) -> Option<bool> {
        if let Some(b) = v.as_bool() {
            return Some(b);
        }
        self.at(
            o,
            key,
            None,
            "BOOLEAN_TYPE_COERCE",
            format!("Value \"{}\" is not boolean.", echo(v)),
        );
        None
    }

    /// A snowflake as a string or an integer.
    pub(crate) fn snowflake(&mut self, o: &Obj<'_>, key: &str, v: &Value) -> Option<u64> {
        self.snowflake_at(o, key, None, v)
    }

    fn snowflake_at(
        &mut self,
        o: &Obj<'_>,
        key: &str,
        index: Option<usize>,
        v: &Value,
    ) -> Option<u64> {
        let id = snowflake_from_value(v);
        if id.is_none() {
            self.at(
                o,
                key,
                index,
                "NUMBER_TYPE_COERCE",
                format!("Value \"{}\" is not snowflake.", echo(v)),
            );
        }
        id
    }

    /// A permission bit set: a decimal string (as Discord sends them) or an integer.
    pub(crate) fn permissions(&mut self, o: &Obj<'_>, key: &str, v: &Value) -> Option<u64> {
        let bits = match v {
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse::<u64>().ok()
            }
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        if bits.is_none() {
            self.at(
                o,
                key,
                None,
                "NUMBER_TYPE_COERCE",
                format!("Value \"{}\" is not a permission integer.", echo(v)),
            );
        }
        bits
    }

    /// An array of `min..=max` elements.
    pub(crate) fn array<'v>(
        &mut self,
        o: &Obj<'_>,
        key: &str,
        v: &'v Value,
        min: usize,
        max: usize,
    ) -> Option<&'v [Value]> {
        let Some(items) = v.as_array() else {
            self.at(
                o,
                key,
                None,
                "LIST_TYPE_CONVERT",
                "Only arrays may be used here.".to_owned(),
            );
            return None;
        };
        if items.len() < min || items.len() > max {
            self.length(o, key, min, max);
            return None;
        }
        Some(items.as_slice())
    }

    /// An array of at most `max` snowflakes (strings or integers), each checked.
    pub(crate) fn snowflakes(
        &mut self,
        o: &Obj<'_>,
        key: &str,
        v: &Value,
        min: usize,
        max: usize,
    ) -> Option<Vec<u64>> {
        let items = self.array(o, key, v, min, max)?;
        let before = self.count;
        let ids: Vec<u64> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.snowflake_at(o, key, Some(i), item))
            .collect();
        (self.count == before).then_some(ids)
    }

    /// An array of strings from a fixed set.
    pub(crate) fn string_choices(
        &mut self,
        o: &Obj<'_>,
        key: &str,
        v: &Value,
        allowed: &[&str],
    ) -> Option<Vec<String>> {
        let items = self.array(o, key, v, 0, allowed.len())?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) if allowed.contains(&s) => {
                    if !out.iter().any(|o: &String| o == s) {
                        out.push(s.to_owned());
                    }
                }
                _ => {
                    self.at(
                        o,
                        key,
                        Some(i),
                        "BASE_TYPE_CHOICES",
                        format!("Value must be one of ({}).", allowed.join(", ")),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snowflake_parsing_bounds() {
        assert_eq!(parse_snowflake_str("0"), Some(0));
        assert_eq!(
            parse_snowflake_str("9223372036854775807"),
            Some(SNOWFLAKE_MAX)
        );
        assert_eq!(parse_snowflake_str("9223372036854775808"), None);
        assert_eq!(parse_snowflake_str("18446744073709551616"), None);
        assert_eq!(parse_snowflake_str("+1"), None);
        assert_eq!(parse_snowflake_str(""), None);
        assert_eq!(snowflake_from_value(&json!(42)), Some(42));
        assert_eq!(snowflake_from_value(&json!("42")), Some(42));
        assert_eq!(snowflake_from_value(&json!(-1)), None);
        assert_eq!(snowflake_from_value(&json!(1.5)), None);
    }

    #[test]
    fn errors_nest_by_path_and_are_capped() {
        let mut e = FormErrors::default();
        e.add(&["embeds", "0", "title"], "X", "m".to_owned());
        e.add(&["embeds", "0", "title"], "Y", "n".to_owned());
        e.add(&[], "Z", "top".to_owned());
        let err = e.into_result().unwrap_err();
        let errors = err.errors.unwrap();
        assert_eq!(errors["embeds"]["0"]["title"]["_errors"][1]["code"], "Y");
        assert_eq!(errors["_errors"][0]["message"], "top");

        let mut e = FormErrors::default();
        for i in 0..(FORM_ERRORS_MAX * 3) {
            e.add(&[&i.to_string()], "X", String::new());
        }
        let errors = e.into_result().unwrap_err().errors.unwrap();
        assert_eq!(errors.as_object().unwrap().len(), FORM_ERRORS_MAX);
    }

    #[test]
    fn patch_applies() {
        assert_eq!(Patch::Unchanged.apply(Some(1)), Some(1));
        assert_eq!(Patch::<u8>::Clear.apply(Some(1)), None);
        assert_eq!(Patch::Set(2).apply(Some(1)), Some(2));
    }
}
