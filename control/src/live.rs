//! Live subscriptions, sans-IO: the topics a WebSocket client subscribes to
//! (`customer_id:<customer>:<resource type>:<resource id or *>`), what it
//! may subscribe to, and the protocol's messages. `api/ws.rs` wraps a
//! [`LiveSession`] around a socket and the event bus.
//!
//! Client → server (text frames, JSON):
//! `{"type":"subscribe","topics":[...]}`, `{"type":"unsubscribe","topics":[...]}`.
//! Server → client: `{"type":"subscribed","topics":[...]}`,
//! `{"type":"unsubscribed","topics":[...]}`,
//! `{"type":"error","code":"...","message":"..."}` (the connection stays
//! open), and each matching event as its envelope (which has no `type`
//! field, so the two never mix up).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use voxbridge_proto::envelope::EventEnvelope;

/// Most topics one connection may hold.
pub const MAX_TOPICS: usize = 100;
/// Longest topic accepted, bytes.
pub const MAX_TOPIC_LEN: usize = 512;

/// One subscription topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Topic {
    /// The tenant.
    pub customer_id: String,
    /// Resource type (`call`, `transcript`, ...).
    pub resource: String,
    /// One resource, or every one of the type (`*`).
    pub id: Option<String>,
}

impl Topic {
    /// Parses `customer_id:<customer>:<resource>:<id or *>`. The resource id
    /// is everything after the third `:`; the other parts are non-empty and
    /// contain no `:`.
    pub fn parse(s: &str) -> Result<Topic, String> {
        if s.len() > MAX_TOPIC_LEN {
            return Err(format!("topic longer than {MAX_TOPIC_LEN} bytes"));
        }
        let mut parts = s.splitn(4, ':');
        let (Some("customer_id"), Some(customer), Some(resource), Some(id)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "topic {s:?} is not customer_id:<customer>:<resource>:<id or *>"
            ));
        };
        if customer.is_empty() || resource.is_empty() || id.is_empty() || resource == "*" {
            return Err(format!(
                "topic {s:?} has an empty or wildcard customer or resource part"
            ));
        }
        Ok(Topic {
            customer_id: customer.to_owned(),
            resource: resource.to_owned(),
            id: (id != "*").then(|| id.to_owned()),
        })
    }

    /// Whether `event` belongs to this topic.
    pub fn matches(&self, event: &EventEnvelope) -> bool {
        event.customer_id == self.customer_id
            && event.resource.kind == self.resource
            && self.id.as_ref().is_none_or(|id| *id == event.resource.id)
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "customer_id:{}:{}:{}",
            self.customer_id,
            self.resource,
            self.id.as_deref().unwrap_or("*")
        )
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMsg {
    Subscribe { topics: Vec<String> },
    Unsubscribe { topics: Vec<String> },
}

/// What the server sends besides events.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Topics now held (the ones just added).
    Subscribed {
        /// Topics, normalised.
        topics: Vec<String>,
    },
    /// Topics dropped.
    Unsubscribed {
        /// Topics, normalised.
        topics: Vec<String>,
    },
    /// A refused message; nothing changed.
    Error {
        /// `invalid_message`, `invalid_topic`, `forbidden_topic` or `too_many_topics`.
        code: &'static str,
        /// Why.
        message: String,
    },
}

impl ServerMsg {
    /// JSON text.
    pub fn to_json(&self) -> String {
        // Strings and lists of strings always serialise.
        serde_json::to_string(self).unwrap_or_default()
    }

    fn error(code: &'static str, message: impl Into<String>) -> Self {
        ServerMsg::Error {
            code,
            message: message.into(),
        }
    }
}

/// One client's subscriptions and rights.
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// The tenant whose topics it may hold; `None` with `admin` = any.
    customer_id: Option<String>,
    admin: bool,
    /// The access key the client authenticated with, if any.
    key_id: Option<String>,
    topics: BTreeMap<String, Topic>,
}

impl LiveSession {
    /// A session for a caller of `customer_id` (admins may subscribe to any
    /// customer's topics).
    pub fn new(customer_id: Option<String>, admin: bool) -> Self {
        LiveSession {
            customer_id,
            admin,
            key_id: None,
            topics: BTreeMap::new(),
        }
    }

    /// The session of a client that authenticated with access key `key_id`.
    pub fn with_key(mut self, key_id: Option<String>) -> Self {
        self.key_id = key_id;
        self
    }

    /// Why `event` ends this session, if it revokes the credential the
    /// client authenticated with: its customer was deleted, or its access
    /// key was. Checked for every event on the bus, before any topic
    /// filter, so a revocation reaches every instance's sockets as fast as
    /// the event itself.
    pub fn revoked_by(&self, event: &EventEnvelope) -> Option<&'static str> {
        match event.event_type.as_str() {
            "customer_deleted" if self.customer_id.as_deref() == Some(event.customer_id.as_str()) => {
                Some("credential revoked: customer deleted")
            }
            "access_key_deleted" if self.key_id.as_deref() == Some(event.resource.id.as_str()) => {
                Some("credential revoked: access key deleted")
            }
            _ => None,
        }
    }

    /// Topics held.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    /// Handles one text message from the client; returns the reply. A
    /// subscribe is all or nothing: one bad or foreign topic refuses it.
    pub fn on_text(&mut self, text: &str) -> ServerMsg {
        let msg: ClientMsg = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => return ServerMsg::error("invalid_message", e.to_string()),
        };
        match msg {
            ClientMsg::Subscribe { topics } => {
                let mut parsed = Vec::with_capacity(topics.len());
                for t in &topics {
                    let topic = match Topic::parse(t) {
                        Ok(t) => t,
                        Err(e) => return ServerMsg::error("invalid_topic", e),
                    };
                    let own = self.customer_id.as_deref() == Some(topic.customer_id.as_str());
                    if !own && !self.admin {
                        return ServerMsg::error(
                            "forbidden_topic",
                            format!("{t}: only your own customer's topics"),
                        );
                    }
                    parsed.push(topic);
                }
                let new = parsed
                    .iter()
                    .filter(|t| !self.topics.contains_key(&t.to_string()))
                    .count();
                if self.topics.len() + new > MAX_TOPICS {
                    return ServerMsg::error(
                        "too_many_topics",
                        format!("at most {MAX_TOPICS} topics per connection"),
                    );
                }
                let names = parsed.iter().map(Topic::to_string).collect();
                for t in parsed {
                    self.topics.insert(t.to_string(), t);
                }
                ServerMsg::Subscribed { topics: names }
            }
            ClientMsg::Unsubscribe { topics } => {
                let mut names = Vec::with_capacity(topics.len());
                for t in &topics {
                    match Topic::parse(t) {
                        Ok(topic) => {
                            let name = topic.to_string();
                            self.topics.remove(&name);
                            names.push(name);
                        }
                        Err(e) => return ServerMsg::error("invalid_topic", e),
                    }
                }
                ServerMsg::Unsubscribed { topics: names }
            }
        }
    }

    /// Whether `event` goes to this client.
    pub fn wants(&self, event: &EventEnvelope) -> bool {
        self.topics.values().any(|t| t.matches(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use voxbridge_proto::envelope::Resource;

    fn event(customer: &str, kind: &str, id: &str) -> EventEnvelope {
        EventEnvelope {
            event_id: "e".into(),
            event_type: format!("{kind}_created"),
            timestamp: "2026-11-24T00:00:00Z".into(),
            customer_id: customer.into(),
            resource: Resource {
                id: id.into(),
                kind: kind.into(),
                fields: serde_json::Map::new(),
            },
        }
    }

    #[test]
    fn wildcard_matching_table() {
        let table = [
            ("customer_id:123:call:*", ("123", "call", "abc-456"), true),
            ("customer_id:123:call:*", ("456", "call", "abc-123"), false),
            ("customer_id:123:conference:*", ("123", "call", "abc-456"), false),
            ("customer_id:123:call:abc-456", ("123", "call", "abc-456"), true),
            ("customer_id:123:call:abc-456", ("123", "call", "abc-4567"), false),
            ("customer_id:123:call:abc", ("1234", "call", "abc"), false),
            ("customer_id:123:transcript:*", ("123", "transcript", "t-1"), true),
            ("customer_id:123:call:a:b", ("123", "call", "a:b"), true),
        ];
        for (topic, (c, k, id), want) in table {
            let t = Topic::parse(topic).expect("valid topic");
            assert_eq!(t.matches(&event(c, k, id)), want, "{topic} vs {c}/{k}/{id}");
            assert_eq!(t.to_string(), topic);
        }
    }

    #[test]
    fn bad_topics_are_refused() {
        for bad in [
            "",
            "customer_id:123:call",
            "customer:123:call:*",
            "customer_id::call:*",
            "customer_id:123::*",
            "customer_id:123:call:",
            "customer_id:123:*:*",
        ] {
            assert!(Topic::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Topic::parse(&format!("customer_id:1:call:{}", "x".repeat(600))).is_err());
    }

    #[test]
    fn a_client_may_only_hold_its_own_customers_topics() {
        let mut s = LiveSession::new(Some("123".into()), false);
        let reply = s.on_text(r#"{"type":"subscribe","topics":["customer_id:123:call:*"]}"#);
        assert_eq!(
            reply,
            ServerMsg::Subscribed {
                topics: vec!["customer_id:123:call:*".into()]
            }
        );
        let reply = s.on_text(
            r#"{"type":"subscribe","topics":["customer_id:123:transcript:*","customer_id:456:call:*"]}"#,
        );
        assert!(matches!(
            reply,
            ServerMsg::Error {
                code: "forbidden_topic",
                ..
            }
        ));
        assert_eq!(s.topics().count(), 1, "all or nothing");
        assert!(s.wants(&event("123", "call", "x")));
        assert!(!s.wants(&event("456", "call", "x")));
        assert!(!s.wants(&event("123", "transcript", "x")));

        let mut admin = LiveSession::new(None, true);
        assert!(matches!(
            admin.on_text(r#"{"type":"subscribe","topics":["customer_id:456:call:*"]}"#),
            ServerMsg::Subscribed { .. }
        ));
        let mut nobody = LiveSession::new(None, false);
        assert!(matches!(
            nobody.on_text(r#"{"type":"subscribe","topics":["customer_id:456:call:*"]}"#),
            ServerMsg::Error {
                code: "forbidden_topic",
                ..
            }
        ));
    }

    #[test]
    fn unsubscribe_garbage_and_limits() {
        let mut s = LiveSession::new(Some("1".into()), false);
        s.on_text(r#"{"type":"subscribe","topics":["customer_id:1:call:*","customer_id:1:call:a"]}"#);
        assert_eq!(
            s.on_text(r#"{"type":"unsubscribe","topics":["customer_id:1:call:*"]}"#),
            ServerMsg::Unsubscribed {
                topics: vec!["customer_id:1:call:*".into()]
            }
        );
        assert!(!s.wants(&event("1", "call", "b")));
        assert!(s.wants(&event("1", "call", "a")));
        for bad in [
            "not json",
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","topics":["x"]}"#,
            r#"{"type":"shout","topics":[]}"#,
            r#"{"type":"subscribe","topics":[],"extra":1}"#,
        ] {
            assert!(matches!(s.on_text(bad), ServerMsg::Error { .. }), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_TOPICS)
            .map(|i| format!("customer_id:1:call:c{i}"))
            .collect();
        let msg = serde_json::json!({"type": "subscribe", "topics": many}).to_string();
        assert!(matches!(
            s.on_text(&msg),
            ServerMsg::Error {
                code: "too_many_topics",
                ..
            }
        ));
    }

    proptest! {
        #[test]
        fn any_text_gets_a_reply_and_never_a_panic(text in ".{0,200}") {
            let mut s = LiveSession::new(Some("1".into()), false);
            let _ = s.on_text(&text).to_json();
        }

        #[test]
        fn a_parsed_topic_prints_back_to_itself(c in "[a-z0-9-]{1,12}", k in "[a-z_]{1,10}", id in "[a-z0-9:*-]{1,20}") {
            let text = format!("customer_id:{c}:{k}:{id}");
            let t = Topic::parse(&text).expect("valid");
            prop_assert_eq!(t.to_string(), text);
        }
    }
}
