//! The store conformance suite: every case runs against the embedded SQLite
//! store and against a real PostgreSQL, and must pass on both.

mod common;

use std::sync::Arc;
use voxbridge_control::model::{Actor, CallChange, CallFilter, NewCall, PageReq};
use voxbridge_control::state::{CallStatus, Direction, HangupBy, HangupReason};
use voxbridge_control::store::{NewCustomer, SegmentTime, Store};
use voxbridge_control::time::Millis;
use voxbridge_control::ControlError;

both_stores!(
    customers_and_audit,
    access_keys,
    call_lifecycle_writes_one_event_per_change,
    refused_transitions_write_nothing,
    tenants_never_see_each_other,
    list_calls_filters_and_pages,
    transcripts,
    recordings_once_each_and_retention,
    who_answered_is_kept_on_the_call_once,
    concurrent_writers,
    concurrent_hangups_apply_once,
    outbox_marks_sent,
);

fn admin() -> Actor {
    Actor { id: "admin".into() }
}

fn new_call(id: &str, customer: &str, at: i64) -> NewCall {
    NewCall {
        id: id.into(),
        customer_id: customer.into(),
        status: CallStatus::Ringing,
        direction: Direction::Incoming,
        source: "+15550100".into(),
        destination: "+15550199".into(),
        route: "default".into(),
        ingress: "rtp".into(),
        at: Millis(at),
    }
}

fn change(to: CallStatus, at: i64) -> CallChange {
    CallChange {
        to,
        at: Millis(at),
        hangup: (to == CallStatus::Hangup)
            .then(|| (HangupBy::Remote, HangupReason::Normal, "caller_hangup".into())),
        sip: (to == CallStatus::Hangup).then(|| {
            voxbridge_contract::events::SipCause::new(None, "Q.850;cause=16;text=\"Normal call clearing\"")
        }),
    }
}

async fn customer(s: &Store, id: &str) {
    s.create_customer(
        &admin(),
        NewCustomer {
            id: Some(id.into()),
            name: format!("Customer {id}"),
            email: None,
        },
    )
    .await
    .expect("create customer");
}

async fn events(s: &Store) -> Vec<(String, String)> {
    s.outbox_pending(1000)
        .await
        .expect("outbox")
        .into_iter()
        .map(|r| (r.event.event_type, r.event.resource.id))
        .collect()
}

fn page(limit: u32) -> PageReq {
    PageReq::new(Some(limit), None).expect("page")
}

/// A recording's life, each step once however often its event comes:
/// started, paused, resumed, finished (`failed` after a full disk); the
/// retention sweep deletes its file and marks it `deleted`, and leaves a
/// newer one.
async fn recordings_once_each_and_retention(s: Store) {
    use voxbridge_control::store::recordings::RecordingEnded;
    customer(&s, "a").await;
    s.create_call(&new_call("c1", "a", 10_000)).await.expect("create");
    let dir = std::env::temp_dir().join(format!("vb-retention-{}", voxbridge_control::store::new_id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let before = events(&s).await.len();
    for (id, at) in [("r-old", 20_000), ("r-new", 90_000)] {
        let file = format!("{id}.wav");
        std::fs::write(dir.join(&file), b"RIFF").expect("file");
        let (r, added) = s
            .start_recording_once(id, "c1", &file, 16000, Millis(at))
            .await
            .expect("start");
        assert!(added);
        assert_eq!((r.status.as_str(), r.rate), ("recording", 16000));
        let (_, again) = s
            .start_recording_once(id, "c1", &file, 16000, Millis(at))
            .await
            .expect("again");
        assert!(!again, "once");
    }
    assert!(s.pause_recording("r-old", true).await.expect("pause"));
    assert!(!s.pause_recording("r-old", true).await.expect("pause again"));
    assert!(s.pause_recording("r-old", false).await.expect("resume"));
    let ended = |reason| RecordingEnded {
        duration_ms: 1000,
        bytes: 64_044,
        reason,
        at: Millis(30_000),
    };
    assert!(s
        .finish_recording_once("r-old", ended("disk_full"))
        .await
        .expect("finish"));
    assert!(!s
        .finish_recording_once("r-old", ended("stopped"))
        .await
        .expect("again"));
    assert!(s
        .finish_recording_once("r-new", ended("call_ended"))
        .await
        .expect("finish"));
    let (old, _) = s.get_recording("a", "r-old").await.expect("get");
    assert_eq!(
        (old.status.as_str(), old.end_reason.as_deref(), old.bytes),
        ("failed", Some("disk_full"), Some(64_044))
    );
    assert!(s.running_recording("a", "c1").await.expect("running").is_none());
    let kinds: Vec<String> = events(&s).await[before..]
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "recording_started",
            "recording_started",
            "recording_paused",
            "recording_resumed",
            "recording_finished",
            "recording_finished"
        ]
    );
    // Older than the cut: gone; the newer one stays.
    let n = voxbridge_control::retention::sweep(&s, &dir, Millis(50_000))
        .await
        .expect("sweep");
    assert_eq!(n, 1);
    assert!(!dir.join("r-old.wav").exists() && dir.join("r-new.wav").exists());
    assert_eq!(
        s.get_recording("a", "r-old").await.expect("get").0.status,
        "deleted"
    );
    assert_eq!(
        s.get_recording("a", "r-new").await.expect("get").0.status,
        "completed"
    );
    assert_eq!(
        voxbridge_control::retention::sweep(&s, &dir, Millis(50_000))
            .await
            .expect("again"),
        0
    );
    assert_eq!(
        events(&s).await.last().map(|(k, _)| k.as_str()),
        Some("recording_deleted")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn customers_and_audit(s: Store) {
    customer(&s, "acme").await;
    let dup = s
        .create_customer(
            &admin(),
            NewCustomer {
                id: Some("acme".into()),
                name: "x".into(),
                email: None,
            },
        )
        .await;
    assert!(matches!(dup, Err(ControlError::Conflict(_))), "{dup:?}");
    let bad = s
        .create_customer(
            &admin(),
            NewCustomer {
                id: Some("no spaces".into()),
                name: "x".into(),
                email: None,
            },
        )
        .await;
    assert!(matches!(bad, Err(ControlError::Invalid(_))), "{bad:?}");
    assert_eq!(s.get_customer("acme").await.expect("get").name, "Customer acme");
    s.delete_customer(&admin(), "acme").await.expect("delete");
    assert!(matches!(
        s.get_customer("acme").await,
        Err(ControlError::NotFound)
    ));
    assert!(matches!(
        s.delete_customer(&admin(), "acme").await,
        Err(ControlError::NotFound)
    ));
    let audit = s.list_audit("acme", page(10)).await.expect("audit");
    let actions: Vec<_> = audit.items.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["customer.delete", "customer.create"]);
    assert_eq!(audit.items[0].before["name"], "Customer acme");
    assert!(audit.items[0].after.is_null());
    assert_eq!(audit.items[0].actor, "admin");
    let ev = events(&s).await;
    assert_eq!(
        ev,
        [
            ("customer_created".into(), "acme".into()),
            ("customer_deleted".into(), "acme".into())
        ]
    );
}

async fn access_keys(s: Store) {
    customer(&s, "a").await;
    customer(&s, "b").await;
    let (key, secret) = s.create_access_key(&admin(), "a", "ci", None).await.expect("key");
    assert!(secret.starts_with(&key.prefix));
    let found = s
        .authenticate_key(&secret)
        .await
        .expect("auth")
        .expect("known key");
    assert_eq!(found.customer_id, "a");
    assert!(s.authenticate_key("vbk_wrong").await.expect("auth").is_none());
    let (_, expired) = s
        .create_access_key(&admin(), "a", "old", Some(Millis(Millis::now().0 - 1)))
        .await
        .expect("key");
    assert!(s.authenticate_key(&expired).await.expect("auth").is_none());
    assert!(matches!(
        s.create_access_key(&admin(), "nobody", "x", None).await,
        Err(ControlError::NotFound)
    ));
    assert!(matches!(
        s.delete_access_key(&admin(), "b", &key.id).await,
        Err(ControlError::NotFound)
    ));
    assert_eq!(s.list_access_keys("a").await.expect("list").len(), 2);
    assert!(s.list_access_keys("b").await.expect("list").is_empty());
    s.delete_access_key(&admin(), "a", &key.id).await.expect("delete");
    assert!(s.authenticate_key(&secret).await.expect("auth").is_none());
}

async fn call_lifecycle_writes_one_event_per_change(s: Store) {
    let (c, created) = s.create_call(&new_call("c1", "a", 1_000)).await.expect("create");
    assert!(created);
    assert_eq!(c.status, CallStatus::Ringing);
    assert_eq!(c.tm_ringing, Some(Millis(1_000)));
    let (_, again) = s.create_call(&new_call("c1", "a", 1_000)).await.expect("replay");
    assert!(!again, "a replayed create must not write");
    let t = s
        .transition_call(None, "c1", &change(CallStatus::Progressing, 1_500), None)
        .await
        .expect("answer");
    assert!(t.applied);
    assert_eq!(t.call.tm_progressing, Some(Millis(1_500)));
    let replay = s
        .transition_call(None, "c1", &change(CallStatus::Progressing, 1_600), None)
        .await
        .expect("replay");
    assert!(!replay.applied);
    assert_eq!(
        replay.call.tm_progressing,
        Some(Millis(1_500)),
        "a replay changes nothing"
    );
    let t = s
        .transition_call(None, "c1", &change(CallStatus::Hangup, 61_000), None)
        .await
        .expect("hangup");
    assert_eq!(t.call.duration_ms, Some(60_000));
    assert_eq!(t.call.hangup_by, Some(HangupBy::Remote));
    assert_eq!(t.call.hangup_reason, Some(HangupReason::Normal));
    assert_eq!(t.call.hangup_cause.as_deref(), Some("caller_hangup"));
    // The SIP cause is kept as sent (a BYE has no status code).
    assert_eq!(t.call.hangup_sip_code, None);
    assert_eq!(
        t.call.hangup_sip_reason.as_deref(),
        Some("Q.850;cause=16;text=\"Normal call clearing\"")
    );
    assert_eq!(s.get_call("a", "c1").await.expect("get"), t.call);
    let ev = events(&s).await;
    let types: Vec<_> = ev.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(types, ["call_created", "call_progressing", "call_hungup"]);
    let last = s.outbox_pending(10).await.expect("outbox").pop().expect("event");
    assert_eq!(last.event.customer_id, "a");
    assert_eq!(last.event.resource.kind, "call");
    assert_eq!(last.event.resource.fields["status"], "hangup");
    assert_eq!(last.event.resource.fields["duration_ms"], 60_000);
    assert_eq!(
        last.event.resource.fields["hangup_sip_reason"], "Q.850;cause=16;text=\"Normal call clearing\"",
        "the hangup event carries the SIP cause"
    );
}

async fn who_answered_is_kept_on_the_call_once(s: Store) {
    s.create_call(&new_call("c1", "a", 1_000)).await.expect("create");
    assert_eq!(s.get_call("a", "c1").await.expect("get").answered_by, None);
    let signal = || voxbridge_control::store::CallSignal {
        event_type: "call_answered_by",
        resource_type: "call_amd",
        fields: serde_json::Map::from_iter([("answered_by".to_owned(), "machine".into())]),
    };
    assert!(s
        .record_answered_by("e-amd", "c1", "machine", "long_greeting", signal())
        .await
        .expect("record"));
    assert!(
        !s.record_answered_by("e-amd", "c1", "machine", "long_greeting", signal())
            .await
            .expect("replay"),
        "a redelivered event writes nothing"
    );
    let c = s.get_call("a", "c1").await.expect("get");
    assert_eq!(
        (c.answered_by.as_deref(), c.amd_cause.as_deref()),
        (Some("machine"), Some("long_greeting"))
    );
    let ev = events(&s).await;
    assert_eq!(
        ev.iter().filter(|e| e.0 == "call_answered_by").count(),
        1,
        "{ev:?}"
    );
    let last = s.outbox_pending(10).await.expect("outbox").pop().expect("event");
    assert_eq!(
        (
            last.event.resource.kind.as_str(),
            last.event.resource.fields["call_id"].as_str()
        ),
        ("call_amd", Some("c1"))
    );
    assert!(matches!(
        s.record_answered_by("e-2", "ghost", "human", "human", signal())
            .await,
        Err(ControlError::NotFound)
    ));
}

async fn refused_transitions_write_nothing(s: Store) {
    s.create_call(&new_call("c1", "a", 0)).await.expect("create");
    let skip = s
        .transition_call(None, "c1", &change(CallStatus::Terminating, 1), None)
        .await;
    assert!(
        matches!(
            skip,
            Err(ControlError::Transition {
                from: "ringing",
                to: "terminating",
                ..
            })
        ),
        "{skip:?}"
    );
    s.transition_call(None, "c1", &change(CallStatus::Hangup, 2), None)
        .await
        .expect("hangup");
    let back = s
        .transition_call(None, "c1", &change(CallStatus::Progressing, 3), None)
        .await;
    assert!(matches!(back, Err(ControlError::Transition { .. })), "{back:?}");
    assert_eq!(events(&s).await.len(), 2, "refused changes must not write events");
    assert_eq!(
        s.get_call("a", "c1").await.expect("get").status,
        CallStatus::Hangup
    );
    assert!(matches!(
        s.transition_call(None, "nope", &change(CallStatus::Hangup, 3), None)
            .await,
        Err(ControlError::NotFound)
    ));
}

async fn tenants_never_see_each_other(s: Store) {
    s.create_call(&new_call("mine", "a", 0)).await.expect("create");
    s.create_call(&new_call("theirs", "b", 0)).await.expect("create");
    assert!(matches!(
        s.get_call("a", "theirs").await,
        Err(ControlError::NotFound)
    ));
    let list = s
        .list_calls("a", &CallFilter::default(), page(50))
        .await
        .expect("list");
    assert_eq!(
        list.items.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["mine"]
    );
    let hang = s
        .transition_call(
            Some("a"),
            "theirs",
            &change(CallStatus::Canceling, 1),
            Some(&admin()),
        )
        .await;
    assert!(matches!(hang, Err(ControlError::NotFound)), "{hang:?}");
    assert_eq!(
        s.get_call("b", "theirs").await.expect("get").status,
        CallStatus::Ringing
    );
    s.add_transcript("theirs", "in", "secret", Millis(5))
        .await
        .expect("transcript");
    assert!(s
        .list_transcribes("a", None, page(10))
        .await
        .expect("list")
        .items
        .is_empty());
    assert!(s
        .list_transcripts("a", None, page(10))
        .await
        .expect("list")
        .items
        .is_empty());
    let tb = s.list_transcripts("b", None, page(10)).await.expect("list");
    assert!(matches!(
        s.get_transcript("a", &tb.items[0].id).await,
        Err(ControlError::NotFound)
    ));
    assert!(matches!(
        s.get_transcribe("a", &tb.items[0].transcribe_id).await,
        Err(ControlError::NotFound)
    ));
    assert!(s.list_audit("a", page(10)).await.expect("audit").items.is_empty());
}

async fn list_calls_filters_and_pages(s: Store) {
    for i in 0..25 {
        s.create_call(&new_call(&format!("c{i:02}"), "a", i * 1000))
            .await
            .expect("create");
    }
    for i in (0..25).step_by(5) {
        s.transition_call(
            None,
            &format!("c{i:02}"),
            &change(CallStatus::Hangup, 99_000),
            None,
        )
        .await
        .expect("hangup");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let req = PageReq::new(Some(10), cursor.as_deref()).expect("page");
        let p = s
            .list_calls("a", &CallFilter::default(), req)
            .await
            .expect("list");
        seen.extend(p.items.into_iter().map(|c| c.id));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let want: Vec<_> = (0..25).rev().map(|i| format!("c{i:02}")).collect();
    assert_eq!(seen, want, "pages cover every call once, newest first");
    let hung = CallFilter {
        status: Some(CallStatus::Hangup),
        ..Default::default()
    };
    let p = s.list_calls("a", &hung, page(100)).await.expect("list");
    assert_eq!(p.items.len(), 5);
    let window = CallFilter {
        since: Some(Millis(10_000)),
        until: Some(Millis(12_000)),
        ..Default::default()
    };
    let p = s.list_calls("a", &window, page(100)).await.expect("list");
    assert_eq!(
        p.items.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["c11", "c10"]
    );
    assert!(PageReq::new(Some(0), None).is_err());
    assert!(PageReq::new(Some(10), Some("abc")).is_err());
}

async fn transcripts(s: Store) {
    assert!(matches!(
        s.add_transcript("nope", "in", "hi", Millis(0)).await,
        Err(ControlError::NotFound)
    ));
    s.create_call(&new_call("c1", "a", 10_000)).await.expect("create");
    let t1 = s
        .add_transcript("c1", "in", "hello", Millis(12_500))
        .await
        .expect("add");
    let t2 = s
        .add_transcript("c1", "out", "hi there", Millis(13_000))
        .await
        .expect("add");
    assert_eq!(t1.transcribe_id, t2.transcribe_id, "one transcribe per call");
    assert_eq!(t1.tm_transcript, 2_500);
    let tbs = s.list_transcribes("a", Some("c1"), page(10)).await.expect("list");
    assert_eq!(tbs.items.len(), 1);
    assert_eq!(
        s.get_transcribe("a", &t1.transcribe_id)
            .await
            .expect("get")
            .call_id,
        "c1"
    );
    let ts = s
        .list_transcripts("a", Some(&t1.transcribe_id), page(10))
        .await
        .expect("list");
    assert_eq!(
        ts.items.iter().map(|t| t.message.as_str()).collect::<Vec<_>>(),
        ["hi there", "hello"]
    );
    assert_eq!(s.get_transcript("a", &t2.id).await.expect("get"), t2);
    // A redelivered media event (same id) adds nothing and emits nothing.
    let (t3, added) = s
        .add_transcript_once("ev-1", "c1", "in", "once", SegmentTime::Arrived(Millis(14_000)))
        .await
        .expect("add");
    assert!(added);
    let (again, added) = s
        .add_transcript_once("ev-1", "c1", "in", "once", SegmentTime::Arrived(Millis(14_000)))
        .await
        .expect("add again");
    assert!(!added);
    assert_eq!(again, t3);
    // A recognizer's segment keeps its own place in the call, whenever it arrives.
    let (t4, _) = s
        .add_transcript_once("ev-2", "c1", "out", "placed", SegmentTime::InCall(1_240))
        .await
        .expect("add");
    assert_eq!(
        t4.tm_transcript, 1_240,
        "not answered: since the call was created"
    );
    // Once the call is answered, times count from the answer.
    s.transition_call(None, "c1", &change(CallStatus::Progressing, 11_000), None)
        .await
        .expect("answer");
    let (t5, _) = s
        .add_transcript_once("ev-3", "c1", "in", "after", SegmentTime::Arrived(Millis(12_500)))
        .await
        .expect("add");
    assert_eq!(t5.tm_transcript, 1_500);
    let (t6, _) = s
        .add_recognized_once("ev-4", "c1", "tr-1", "in", "heard", 1_240)
        .await
        .expect("add");
    assert_eq!(
        t6.tm_transcript, 240,
        "1,240 ms after creation is 240 after the answer"
    );
    let (t7, _) = s
        .add_recognized_once("ev-5", "c1", "tr-1", "in", "early", 300)
        .await
        .expect("add");
    assert_eq!(t7.tm_transcript, 0, "before the answer: 0");
    assert_eq!(t6.transcribe_id, "tr-1");
    let types: Vec<_> = events(&s).await.into_iter().map(|e| e.0).collect();
    assert_eq!(
        types,
        [
            "call_created",
            "transcript_created",
            "transcript_created",
            "transcript_created",
            "transcript_created",
            "call_progressing",
            "transcript_created",
            "transcript_created",
            "transcript_created"
        ]
    );
}

async fn concurrent_writers(s: Store) {
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let id = format!("w{w}-{i}");
                s.create_call(&new_call(&id, "a", 0)).await.expect("create");
                s.transition_call(None, &id, &change(CallStatus::Progressing, 1), None)
                    .await
                    .expect("answer");
                s.transition_call(None, &id, &change(CallStatus::Hangup, 2), None)
                    .await
                    .expect("hangup");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let all = s
        .list_calls("a", &CallFilter::default(), page(100))
        .await
        .expect("list");
    assert_eq!(all.items.len(), 100);
    assert!(all.items.iter().all(|c| c.status == CallStatus::Hangup));
    assert_eq!(s.outbox_backlog().await.expect("backlog"), 600);
    // Per call, events are in commit order.
    let rows = s.outbox_pending(1000).await.expect("outbox");
    let mut last: std::collections::HashMap<String, usize> = Default::default();
    let rank = |t: &str| {
        ["call_created", "call_progressing", "call_hungup"]
            .iter()
            .position(|x| *x == t)
    };
    for r in rows {
        let k = rank(&r.event.event_type).expect("known event");
        let prev = last.insert(r.event.resource.id.clone(), k);
        assert_eq!(
            prev.map(|p| p + 1).unwrap_or(0),
            k,
            "order of {}",
            r.event.resource.id
        );
    }
}

async fn concurrent_hangups_apply_once(s: Store) {
    s.create_call(&new_call("c1", "a", 0)).await.expect("create");
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.transition_call(
                Some("a"),
                "c1",
                &change(CallStatus::Hangup, 100 + i),
                Some(&admin()),
            )
            .await
            .expect("hangup or replay")
            .applied
        }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += usize::from(t.await.expect("task"));
    }
    assert_eq!(applied, 1, "exactly one of the racing hangups applies");
    let types: Vec<_> = events(&s).await.into_iter().map(|e| e.0).collect();
    assert_eq!(types, ["call_created", "call_hungup"]);
    assert_eq!(s.list_audit("a", page(10)).await.expect("audit").items.len(), 1);
}

async fn outbox_marks_sent(s: Store) {
    for i in 0..5 {
        s.create_call(&new_call(&format!("c{i}"), "a", 0))
            .await
            .expect("create");
    }
    let rows = s.outbox_pending(3).await.expect("pending");
    assert_eq!(rows.len(), 3);
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    s.outbox_mark_sent(&rows.iter().map(|r| r.seq).collect::<Vec<_>>())
        .await
        .expect("mark");
    assert_eq!(s.outbox_backlog().await.expect("backlog"), 2);
    let rest = s.outbox_pending(10).await.expect("pending");
    assert_eq!(
        rest.iter()
            .map(|r| r.event.resource.id.as_str())
            .collect::<Vec<_>>(),
        ["c3", "c4"]
    );
}
