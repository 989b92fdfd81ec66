//! Rules: text is validated where it enters control, the same on SQLite and
//! PostgreSQL; an event the store refuses for what it carries is parked
//! (dead-letter table, a metric, an event, admin endpoints to inspect and
//! retry) and never blocks the events behind it; readiness reports a
//! pipeline that is stuck.

mod common;

use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use voxbridge_contract::events::{CallEvent, CallInfo, EventSink, HangupCause};
use voxbridge_control::model::PageReq;
use voxbridge_control::sink::{ControlSink, SinkCtx};
use voxbridge_control::state::CallStatus;
use voxbridge_control::store::Store;
use voxbridge_control::ControlError;

both_stores!(
    a_refused_event_is_parked_and_never_blocks_the_ones_behind_it,
    the_database_refusing_text_is_a_permanent_error,
);

fn created(call: &str, caller: &str) -> CallEvent {
    CallEvent::Created {
        info: CallInfo {
            call_id: call.into(),
            route: "default".into(),
            caller: Some(caller.into()),
            ingress: "rtp",
            ..Default::default()
        },
        at: SystemTime::now(),
    }
}

fn hungup(call: &str) -> CallEvent {
    CallEvent::Hungup {
        call_id: call.into(),
        cause: HangupCause::CallerHangup,
        duration: Duration::from_secs(1),
        at: SystemTime::now(),
        sip: None,
    }
}

async fn a_refused_event_is_parked_and_never_blocks_the_ones_behind_it(store: Store) {
    store
        .ensure_customer("default", "Default")
        .await
        .expect("customer");
    let (_stop_tx, stop) = watch::channel(false);
    let (sink, worker) = ControlSink::spawn(store.clone(), SinkCtx::default(), stop);
    // A NUL in a caller id (as an older media plane let through), then a
    // good call behind it.
    sink.emit(created("bad", "+1555\u{0}0100"));
    sink.emit(created("good", "+15550100"));
    sink.emit(hungup("good"));
    let stats = sink.stats();
    drop(sink);
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker drains its queue and ends")
        .expect("worker");
    let good = store.call_by_id("good").await.expect("the good call was stored");
    assert_eq!(good.status, CallStatus::Hangup);
    assert!(matches!(
        store.call_by_id("bad").await,
        Err(ControlError::NotFound)
    ));
    assert_eq!(stats.parked.load(std::sync::atomic::Ordering::Relaxed), 1);
    let parked = store
        .list_dead_letters(PageReq::new(None, None).expect("page"))
        .await
        .expect("list");
    assert_eq!(parked.items.len(), 1);
    let d = &parked.items[0];
    assert_eq!(
        (d.call_id.as_str(), d.event_type.as_str(), d.attempts),
        ("bad", "created", 1)
    );
    assert!(d.error.contains("U+0000"), "{}", d.error);
    assert_eq!(
        d.payload["caller"], "+1555\u{0}0100",
        "the event is kept as it came"
    );
    let events = store.outbox_pending(1000).await.expect("outbox");
    assert!(
        events
            .iter()
            .any(|r| r.event.event_type == "call_event_parked" && r.event.resource.id == d.id),
        "parking publishes an event"
    );
    assert!(stats.stuck_for().is_none());
    // A retry is refused again: the event stays parked, one more attempt.
    let again = voxbridge_control::sink::retry_parked(&store, &SinkCtx::default(), d).await;
    assert!(matches!(again, Err(ControlError::Rejected(_))), "{again:?}");
    let d = store.get_dead_letter(&d.id).await.expect("still parked");
    assert_eq!(d.attempts, 2);
}

/// PostgreSQL refuses a NUL in text (SQLSTATE 22021): that is a permanent
/// error, not an outage to wait out. SQLite stores it, which is why control
/// checks text itself before it reaches either.
async fn the_database_refusing_text_is_a_permanent_error(store: Store) {
    store
        .ensure_customer("default", "Default")
        .await
        .expect("customer");
    let (c, _) = store
        .create_call(&voxbridge_control::model::NewCall {
            id: "t".into(),
            customer_id: "default".into(),
            status: CallStatus::Ringing,
            direction: voxbridge_control::state::Direction::Incoming,
            source: String::new(),
            destination: String::new(),
            route: "default".into(),
            ingress: "rtp".into(),
            at: voxbridge_control::time::Millis::now(),
        })
        .await
        .expect("call");
    let r = store
        .add_transcript(&c.id, "in", "a\u{0}b", voxbridge_control::time::Millis::now())
        .await;
    match store.dialect() {
        voxbridge_control::store::Dialect::Postgres => {
            assert!(
                matches!(&r, Err(ControlError::Rejected(m)) if m.starts_with("22021")),
                "{r:?}"
            )
        }
        voxbridge_control::store::Dialect::Sqlite => assert!(r.is_ok(), "{r:?}"),
    }
}
