//! The `<Dial>` of a provider's call-flow document, for the
//! provider-compatible transfers: TwiML sent inline (Twilio's `Twiml`) or a
//! document the bot serves at a URL (Twilio's `Url`, Plivo's `aleg_url`),
//! fetched the way webhooks are delivered: http or https only, no
//! credentials in the URL, no redirects, never to a loopback, private or
//! otherwise internal address unless `[control.webhooks] allow` covers it
//! (the guarded resolver checks every address a name resolves to), within
//! [`FETCH_TIMEOUT`] and [`MAX_DOCUMENT`].

use super::error::ApiError;
use crate::webhooks::ssrf::{check_url, Allow, Refused};
use axum::http::StatusCode;
use std::sync::Arc;
use std::time::Duration;

/// How long a document's server may take to answer in full.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest document read.
pub const MAX_DOCUMENT: usize = 64 * 1024;

/// How the document is asked for (Twilio's `Method`, Plivo's
/// `aleg_method`; both default to POST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchMethod {
    /// The call's parameters in the query.
    Get,
    /// The call's parameters as a form.
    Post,
}

impl FetchMethod {
    /// `GET` or `POST` (any case), or POST when not given.
    pub fn parse(field: &str, method: Option<&str>) -> Result<Self, ApiError> {
        match method.map(str::to_ascii_uppercase).as_deref() {
            None | Some("POST") => Ok(FetchMethod::Post),
            Some("GET") => Ok(FetchMethod::Get),
            Some(_) => Err(ApiError::bad_request(format!("{field} must be GET or POST"))),
        }
    }
}

/// The number or SIP URI a TwiML or Plivo XML document's `<Dial>` dials:
/// its text, or the text of the `<Number>`, `<Sip>` or `<User>` inside it.
pub fn dial_target(document: &str) -> Option<String> {
    let open = document.find("<Dial")?;
    let rest = &document[open..];
    let inner = rest.get(rest.find('>')? + 1..rest.find("</Dial>")?)?;
    // Drop the nested elements' tags, keep their text.
    let mut text = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let target = text.trim();
    (!target.is_empty()).then(|| target.to_owned())
}

/// Fetches the document at `url` (named `field` in errors) with the call's
/// `params`, and returns what its `<Dial>` dials.
pub async fn fetch_dial_target(
    allow: &Arc<Allow>,
    field: &str,
    url: &str,
    method: FetchMethod,
    params: &[(&str, &str)],
) -> Result<String, ApiError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| ApiError::bad_request(format!("{field}: not a URL: {e}")))?;
    check_url(&parsed, allow).map_err(|e| match e {
        Refused::Malformed(m) => ApiError::bad_request(format!("{field}: {m}")),
        Refused::Internal(m) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_destination",
            format!("{field}: {m}"),
        ),
    })?;
    let unavailable = |why: String| ApiError::new(StatusCode::BAD_GATEWAY, "document_unavailable", why);
    let client = crate::webhooks::worker::client(allow.clone())
        .map_err(|e| unavailable(format!("{field}: no HTTP client: {e}")))?;
    let request = match method {
        FetchMethod::Get => client.get(parsed).query(params),
        FetchMethod::Post => client.post(parsed).form(params),
    };
    let fetch = async {
        let mut response = request
            .send()
            .await
            .map_err(|e| unavailable(format!("{field}: {url} did not answer: {e}")))?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "{field}: {url} answered {}",
                response.status()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(format!("{field}: reading {url}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(unavailable(format!(
                    "{field}: the document at {url} is larger than {} KiB",
                    MAX_DOCUMENT / 1024
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(FETCH_TIMEOUT, fetch).await.map_err(|_| {
        unavailable(format!(
            "{field}: {url} did not answer within {} s",
            FETCH_TIMEOUT.as_secs()
        ))
    })??;
    dial_target(&String::from_utf8_lossy(&body)).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{field}: the document at {url} has no <Dial> (voxbridge carries out <Dial> to a number or SIP URI and nothing else)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dial_target_is_the_text_inside_dial() {
        let cases = [
            ("<Response><Dial>+15550123</Dial></Response>", Some("+15550123")),
            (
                "<Response><Dial timeout=\"20\"><Number>+15550123</Number></Dial></Response>",
                Some("+15550123"),
            ),
            (
                "<Response><Dial><Sip>sip:desk@pbx</Sip></Dial></Response>",
                Some("sip:desk@pbx"),
            ),
            (
                "<Response><Dial><User>sip:agent@phone.plivo.com</User></Dial></Response>",
                Some("sip:agent@phone.plivo.com"),
            ),
            ("<Response><Say>hi</Say></Response>", None),
            ("<Response><Dial></Dial></Response>", None),
            ("<Dial>", None),
            ("</Dial><Dial>", None),
            ("<Dial</Dial>>", None),
        ];
        for (doc, want) in cases {
            assert_eq!(dial_target(doc).as_deref(), want, "{doc}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_document_gives_a_target_or_none(doc in ".{0,200}") {
            let _ = dial_target(&doc);
        }

        #[test]
        fn a_dial_around_a_target_gives_it_back(target in "[+0-9a-z:@.]{1,40}", attrs in "( timeout=\"[0-9]{1,3}\")?") {
            let doc = format!("<Response><Dial{attrs}><Number>{target}</Number></Dial></Response>");
            proptest::prop_assert_eq!(dial_target(&doc), Some(target));
        }
    }

    #[test]
    fn methods_default_to_post() {
        assert_eq!(FetchMethod::parse("Method", None), Ok(FetchMethod::Post));
        assert_eq!(FetchMethod::parse("Method", Some("get")), Ok(FetchMethod::Get));
        assert!(FetchMethod::parse("Method", Some("PUT")).is_err());
    }
}
