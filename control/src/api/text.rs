//! The content rule for every text the REST API takes, enforced in one
//! place ([`guard_uri`] for paths and query strings, [`check_json`] inside
//! [`super::error::ApiJson`] for bodies) and published in one place (the
//! OpenAPI document gets [`PATTERN`] and a `maxLength` on every string that
//! has none of its own, [`constrain_schema`]).
//!
//! Refused: control characters (C0 but tab, line feed and carriage return;
//! DEL; C1: a NUL once stalled every tenant's call events on PostgreSQL),
//! bidirectional formatting controls (U+202A-U+202E, U+2066-U+2069: they
//! make a destination display as another) and invisible characters
//! (U+200B-U+200D, U+2060, U+FEFF: a destination made of a zero-width space
//! looks empty). A string over [`MAX_TEXT`] characters is refused unless its
//! field documents a limit of its own (which its handler enforces).

use super::error::ApiError;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

/// Longest string accepted in a field without a limit of its own.
pub const MAX_TEXT: usize = 4096;

/// The rule as a JSON Schema (ECMA 262) pattern: no refused character.
pub const PATTERN: &str =
    "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]*$";

/// [`PATTERN`] that also needs one character that is not white space (for
/// fields documented "not only spaces").
pub const PATTERN_NOT_BLANK: &str = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]*[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF][^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]*$";

/// Whether the rule refuses `c`.
pub fn refused(c: char) -> bool {
    voxbridge_contract::text::is_forbidden_control(c)
        || matches!(c, '\u{200B}'..='\u{200D}' | '\u{202A}'..='\u{202E}' | '\u{2060}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// `Err` with the reason when `s` breaks the rule.
pub fn check(what: &str, s: &str) -> Result<(), String> {
    match s.chars().find(|c| refused(*c)) {
        Some(c) => Err(format!(
            "{what} contains U+{:04X}, which is not accepted (control, bidirectional or invisible character)",
            c as u32
        )),
        None => Ok(()),
    }
}

/// Fields whose value is free-form JSON passed through as it is (a
/// campaign target's or an outbound call's `vars`): stored and forwarded
/// as escaped JSON, never as raw text, so the rule does not look inside.
pub const FREE_FORM: &[&str] = &["vars"];

/// Checks every string (and object key) of a JSON body, but inside
/// [`FREE_FORM`] fields.
pub fn check_json(v: &Value) -> Result<(), ApiError> {
    fn walk(v: &Value, at: &mut String) -> Result<(), String> {
        match v {
            Value::String(s) => check(if at.is_empty() { "body" } else { at }, s),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = at.len();
                    at.push_str(&format!("[{i}]"));
                    walk(item, at)?;
                    at.truncate(len);
                }
                Ok(())
            }
            Value::Object(map) => {
                for (k, item) in map {
                    check("a field name", k)?;
                    if FREE_FORM.contains(&k.as_str()) {
                        continue;
                    }
                    let len = at.len();
                    if !at.is_empty() {
                        at.push('.');
                    }
                    at.push_str(k);
                    walk(item, at)?;
                    at.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(v, &mut String::new()).map_err(ApiError::invalid_text)
}

/// Middleware: the decoded path and query string obey the rule (an id
/// with `%00` is a 400, never a database error), and no path segment or
/// query value is longer than [`MAX_TEXT`].
pub async fn guard_uri(req: Request, next: Next) -> Result<Response, ApiError> {
    let uri = req.uri();
    let long = |what: &str, s: &str| {
        if s.chars().count() > MAX_TEXT {
            Err(ApiError::invalid_text(format!(
                "{what} is longer than {MAX_TEXT} characters"
            )))
        } else {
            Ok(())
        }
    };
    for segment in uri.path().split('/') {
        let segment = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        check("the path", &segment).map_err(ApiError::invalid_text)?;
        long("a path segment", &segment)?;
    }
    if let Some(q) = uri.query() {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            check("a query parameter name", &k).map_err(ApiError::invalid_text)?;
            check(&format!("query parameter {k}"), &v).map_err(ApiError::invalid_text)?;
            long(&format!("query parameter {k}"), &v)?;
        }
    }
    Ok(next.run(req).await)
}

/// Publishes the rule in an OpenAPI document (as JSON): every operation
/// documents the `400` it answers to a refused text, and
/// [`constrain_schema`] runs over the rest.
pub fn constrain_document(doc: &mut Value) {
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in item.values_mut().filter_map(Value::as_object_mut) {
                if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                    responses.entry("400").or_insert_with(|| {
                        serde_json::json!({
                            "description": "Refused input: a text breaks the content rule or is too long (`invalid_text`), or the request is malformed",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
                        })
                    });
                }
            }
        }
    }
    constrain_schema(doc);
}

/// Adds the rule to every string schema of an OpenAPI document (as JSON)
/// that has no pattern, enum or format of its own, with [`MAX_TEXT`] where
/// it has no `maxLength`; a `\S` pattern ("not only spaces") becomes
/// [`PATTERN_NOT_BLANK`]. A string with a pattern of its own keeps it (the
/// pattern bounds it). Free-form objects ([`FREE_FORM`]) are left as they are.
pub fn constrain_schema(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let is_string = match map.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            if is_string && !map.contains_key("enum") && !map.contains_key("format") {
                let bound = match map.get("pattern").and_then(Value::as_str) {
                    None => {
                        map.insert("pattern".into(), PATTERN.into());
                        true
                    }
                    Some("\\S") => {
                        map.insert("pattern".into(), PATTERN_NOT_BLANK.into());
                        true
                    }
                    Some(_) => false,
                };
                if bound {
                    map.entry("maxLength").or_insert(MAX_TEXT.into());
                }
            }
            for (k, item) in map.iter_mut() {
                if !FREE_FORM.contains(&k.as_str()) {
                    constrain_schema(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(constrain_schema),
        _ => {}
    }
}

/// Whether a string over [`MAX_TEXT`] characters appears in `v`.
pub fn too_long(v: &Value) -> bool {
    match v {
        Value::String(s) => s.chars().count() > MAX_TEXT,
        Value::Array(items) => items.iter().any(too_long),
        Value::Object(map) => map.values().any(too_long),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_refuses_nul_bidi_and_invisible_characters() {
        for bad in [
            "a\u{0}b",
            "\u{202E}0100",
            "\u{200B}",
            "x\u{FEFF}",
            "\u{1b}[2J",
            "\u{85}",
        ] {
            assert!(check("f", bad).is_err(), "{bad:?}");
        }
        for good in ["+15550100", "Zoë Ñandú", "line\nbreak\ttab", "عربي", "日本語"] {
            assert!(check("f", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn the_patterns_say_what_the_server_does() {
        // The JSON Schema dialect spells \uXXXX; Rust's regex wants \x{XXXX}.
        let rust = |p: &str| {
            let mut out = String::new();
            let mut rest = p;
            while let Some(i) = rest.find("\\u") {
                out.push_str(&rest[..i]);
                out.push_str(&format!("\\x{{{}}}", &rest[i + 2..i + 6]));
                rest = &rest[i + 6..];
            }
            out.push_str(rest);
            regex::Regex::new(&out).expect("pattern compiles")
        };
        let any = rust(PATTERN);
        let not_blank = rust(PATTERN_NOT_BLANK);
        for s in [
            "a\u{0}b",
            "\u{202E}0100",
            "\u{200B}",
            "ok",
            "   ",
            "",
            "line\nbreak",
            "\u{7f}",
        ] {
            assert_eq!(any.is_match(s), check("f", s).is_ok(), "{s:?}");
            assert_eq!(
                not_blank.is_match(s),
                check("f", s).is_ok() && !s.trim().is_empty(),
                "{s:?}"
            );
        }
    }
}
