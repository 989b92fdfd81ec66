//! Targets added in bulk: a JSON body (`{"targets": [...]}`) or CSV with a
//! header row (`destination` required, `timezone` optional, every other
//! column goes into the target's `vars`). Both are outside bytes: nothing
//! here panics, every refusal says which row and why (fuzzed by
//! `fuzz/fuzz_targets/campaign_targets.rs`).

use super::{window, NewTarget};
use serde::Deserialize;

/// Targets per request at most.
pub const MAX_TARGETS: usize = 10_000;

/// A checked target, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedTarget {
    /// Number or address.
    pub destination: String,
    /// IANA zone.
    pub timezone: String,
    /// An object.
    pub vars: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bulk {
    targets: Vec<NewTarget>,
}

/// Parses a JSON body; `default_tz` applies to targets without a zone.
pub fn from_json(body: &[u8], default_tz: &str) -> Result<Vec<CheckedTarget>, String> {
    let bulk: Bulk = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    check_count(bulk.targets.len())?;
    bulk.targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let vars = match t.vars {
                None | Some(serde_json::Value::Null) => serde_json::Map::new(),
                Some(serde_json::Value::Object(m)) => m,
                Some(_) => return Err(format!("targets[{i}].vars must be an object")),
            };
            check(t.destination, t.timezone, vars, default_tz).map_err(|e| format!("targets[{i}]: {e}"))
        })
        .collect()
}

/// Parses CSV with a header row.
pub fn from_csv(body: &[u8], default_tz: &str) -> Result<Vec<CheckedTarget>, String> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let headers = r.headers().map_err(|e| format!("CSV header: {e}"))?.clone();
    let dest_col = headers
        .iter()
        .position(|h| h == "destination")
        .ok_or("CSV header has no destination column")?;
    let tz_col = headers.iter().position(|h| h == "timezone");
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let row = i + 2; // 1-based, after the header
        let rec = rec.map_err(|e| format!("CSV row {row}: {e}"))?;
        if out.len() == MAX_TARGETS {
            return Err(format!("more than {MAX_TARGETS} targets"));
        }
        let mut vars = serde_json::Map::new();
        for (c, (h, v)) in headers.iter().zip(rec.iter()).enumerate() {
            if c != dest_col && Some(c) != tz_col && !h.is_empty() {
                vars.insert(h.to_owned(), serde_json::Value::String(v.to_owned()));
            }
        }
        let dest = rec.get(dest_col).unwrap_or_default().to_owned();
        let tz = tz_col
            .and_then(|c| rec.get(c))
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        out.push(check(dest, tz, vars, default_tz).map_err(|e| format!("CSV row {row}: {e}"))?);
    }
    check_count(out.len())?;
    Ok(out)
}

/// A destination: 1-64 characters, no blanks or control characters.
pub fn check_destination(d: &str) -> Result<(), String> {
    check_address("destination", d, 64)
}

/// A number or address named `what`: 1 to `max` characters without
/// blanks, control, bidirectional or invisible characters (what the API's
/// schemas for destinations and transfer targets say).
pub fn check_address(what: &str, d: &str, max: usize) -> Result<(), String> {
    if d.is_empty() || d.chars().count() > max {
        return Err(format!("{what} must be 1-{max} characters"));
    }
    if d.chars()
        .any(|c| c.is_whitespace() || crate::api::text::refused(c))
    {
        return Err(format!(
            "{what} has blanks, control, bidirectional or invisible characters"
        ));
    }
    Ok(())
}

fn check_count(n: usize) -> Result<(), String> {
    match n {
        0 => Err("no targets".into()),
        n if n > MAX_TARGETS => Err(format!("more than {MAX_TARGETS} targets")),
        _ => Ok(()),
    }
}

fn check(
    destination: String,
    timezone: Option<String>,
    vars: serde_json::Map<String, serde_json::Value>,
    default_tz: &str,
) -> Result<CheckedTarget, String> {
    check_destination(&destination)?;
    let timezone = timezone.unwrap_or_else(|| default_tz.to_owned());
    window::check_zone(&timezone)?;
    if serde_json::to_string(&vars).map_or(usize::MAX, |s| s.len()) > 4096 {
        return Err("vars larger than 4 KiB".into());
    }
    Ok(CheckedTarget {
        destination,
        timezone,
        vars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn csv_columns_become_destination_zone_and_vars() {
        let csv = b"destination,timezone,name\n+15550001,America/New_York,Ann\n+15550002,,Bob\n";
        let t = from_csv(csv, "UTC").expect("parses");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].timezone, "America/New_York");
        assert_eq!(t[1].timezone, "UTC");
        assert_eq!(t[1].vars["name"], "Bob");
    }

    #[test]
    fn refusals_name_the_row() {
        let e = from_csv(b"destination,timezone\n+1,Nowhere/Land\n", "UTC").expect_err("bad zone");
        assert!(e.contains("row 2") && e.contains("Nowhere"), "{e}");
        assert!(from_csv(b"number\n+1\n", "UTC")
            .expect_err("no column")
            .contains("destination"));
        let e =
            from_json(br#"{"targets":[{"destination":"+1"},{"destination":""}]}"#, "UTC").expect_err("empty");
        assert!(e.contains("targets[1]"), "{e}");
        assert!(from_json(br#"{"targets":[]}"#, "UTC").is_err());
        assert!(from_json(br#"{"targets":[{"destination":"+1","vars":[1]}]}"#, "UTC").is_err());
    }

    proptest! {
        /// Any bytes: a list or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = from_csv(&b, "UTC");
            let _ = from_json(&b, "UTC");
        }

        /// Destinations written as CSV come back as written.
        #[test]
        fn csv_round_trips(dests in proptest::collection::vec("[+0-9]{1,20}", 1..50)) {
            let mut body = String::from("destination\n");
            for d in &dests {
                body.push_str(d);
                body.push('\n');
            }
            let got = from_csv(body.as_bytes(), "UTC").expect("valid");
            prop_assert_eq!(got.into_iter().map(|t| t.destination).collect::<Vec<_>>(), dests);
        }
    }
}
