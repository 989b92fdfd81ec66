//! Billing against both stores: a call is charged once however often its
//! `call_hungup` arrives, concurrent hangups of one customer keep the
//! balance exact, the low-balance event fires once per crossing, the sweep
//! bills calls whose event never reached the worker, and unanswered calls,
//! customers without an account and calls not yet ended are handled.
//! (The increments and rounding table is in `control/src/billing.rs`.)

mod common;

use std::sync::Arc;
use voxbridge_control::billing::RatePlan;
use voxbridge_control::billing_worker::{sweep_now, BillingStats};
use voxbridge_control::model::{Actor, CallChange, NewCall, PageReq};
use voxbridge_control::state::{CallStatus, Direction, HangupBy, HangupReason};
use voxbridge_control::store::billing::Billed;
use voxbridge_control::store::{NewCustomer, Store};
use voxbridge_control::time::Millis;
use voxbridge_control::ControlError;

both_stores!(
    charges_once_per_call,
    odd_calls_and_customers,
    concurrent_hangups_keep_the_balance_exact,
    balance_low_fires_once_per_crossing,
    the_sweep_bills_what_the_worker_missed,
    the_precall_check_refuses_calls_without_balance,
);

fn admin() -> Actor {
    Actor { id: "admin".into() }
}

async fn customer(s: &Store, id: &str, plan: Option<RatePlan>, credit: i64) {
    s.create_customer(
        &admin(),
        NewCustomer {
            id: Some(id.into()),
            name: id.into(),
            email: None,
        },
    )
    .await
    .expect("customer");
    if let Some(plan) = plan {
        s.set_rate_plan(&admin(), id, &plan).await.expect("plan");
        s.credit(&admin(), id, credit).await.expect("credit");
    }
}

fn plan(first: i64, next: i64, price: i64, threshold: i64) -> RatePlan {
    RatePlan {
        price_per_minute_micros: price,
        increment_first_s: first,
        increment_next_s: next,
        min_charge_micros: 0,
        low_balance_threshold_micros: threshold,
    }
}

/// A call of an hour ago, answered after 1 s and hung up `answered_ms`
/// later (never answered when `None`); returns its `call_hungup` event id.
async fn ended_call(s: &Store, id: &str, customer: &str, answered_ms: Option<i64>) -> String {
    let t0 = Millis::now().0 - 3_600_000;
    s.create_call(&NewCall {
        id: id.into(),
        customer_id: customer.into(),
        status: CallStatus::Ringing,
        direction: Direction::Incoming,
        source: "100".into(),
        destination: "200".into(),
        route: "default".into(),
        ingress: "rtp".into(),
        at: Millis(t0),
    })
    .await
    .expect("create");
    let mut end = t0 + 500;
    if let Some(ms) = answered_ms {
        let answer = CallChange {
            to: CallStatus::Progressing,
            at: Millis(t0 + 1_000),
            hangup: None,
            sip: None,
        };
        s.transition_call(None, id, &answer, None).await.expect("answer");
        end = t0 + 1_000 + ms;
    }
    let hangup = CallChange {
        to: CallStatus::Hangup,
        at: Millis(end),
        hangup: Some((HangupBy::Remote, HangupReason::Normal, "caller_hangup".into())),
        sip: None,
    };
    s.transition_call(None, id, &hangup, None).await.expect("hangup");
    hungup_event(s, id).await
}

async fn hungup_event(s: &Store, call_id: &str) -> String {
    s.outbox_rows(0, 100_000)
        .await
        .expect("outbox")
        .into_iter()
        .find(|r| r.event.event_type == "call_hungup" && r.event.resource.id == call_id)
        .map(|r| r.event.event_id)
        .expect("call_hungup event")
}

async fn count_events(s: &Store, event_type: &str) -> usize {
    s.outbox_rows(0, 100_000)
        .await
        .expect("outbox")
        .iter()
        .filter(|r| r.event.event_type == event_type)
        .count()
}

async fn charges_once_per_call(s: Store) {
    customer(&s, "c", Some(plan(6, 6, 12_000, 0)), 1_000_000).await;
    let ev = ended_call(&s, "call-1", "c", Some(61_000)).await;
    let Billed::New(rec) = s.bill_call(&ev, "call-1").await.expect("bill") else {
        panic!("first delivery charges");
    };
    assert_eq!(
        (rec.answered_ms, rec.billable_s, rec.cost_micros),
        (61_000, 66, 13_200)
    );
    assert_eq!(rec.balance_after_micros, 986_800);
    assert_eq!(s.bill_call(&ev, "call-1").await.expect("again"), Billed::Already);
    assert_eq!(
        s.bill_call("another-event", "call-1").await.expect("other id"),
        Billed::Already,
        "one charge per call, whatever the event id"
    );
    assert_eq!(
        s.billing_account("c").await.expect("account").balance_micros,
        986_800
    );
    let page = PageReq::new(Some(10), None).expect("page");
    let records = s.list_billing_records("c", None, page).await.expect("records");
    assert_eq!(records.items, vec![rec.clone()]);
    assert_eq!(s.get_billing_record("c", &rec.id).await.expect("get"), rec);
    assert!(matches!(
        s.get_billing_record("other", &rec.id).await,
        Err(ControlError::NotFound)
    ));
    assert_eq!(count_events(&s, "billing_record_created").await, 1);
    let audit = s.list_audit("c", page).await.expect("audit");
    let actions: Vec<_> = audit.items.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["billing.credit", "billing.plan", "customer.create"]);
}

async fn odd_calls_and_customers(s: Store) {
    let mut p = plan(1, 1, 12_000, 0);
    p.min_charge_micros = 5_000;
    customer(&s, "c", Some(p), 100_000).await;
    customer(&s, "free", None, 0).await;
    let ev = ended_call(&s, "unanswered", "c", None).await;
    let Billed::New(rec) = s.bill_call(&ev, "unanswered").await.expect("bill") else {
        panic!("recorded");
    };
    assert_eq!(
        (rec.billable_s, rec.cost_micros),
        (0, 0),
        "no minimum for an unanswered call"
    );
    let ev = ended_call(&s, "short", "c", Some(300)).await;
    let Billed::New(rec) = s.bill_call(&ev, "short").await.expect("bill") else {
        panic!("recorded");
    };
    assert_eq!((rec.billable_s, rec.cost_micros), (1, 5_000), "minimum charge");
    let ev = ended_call(&s, "theirs", "free", Some(10_000)).await;
    assert_eq!(s.bill_call(&ev, "theirs").await.expect("bill"), Billed::NoAccount);
    assert!(matches!(
        s.bill_call("e", "nope").await,
        Err(ControlError::NotFound)
    ));
    s.create_call(&NewCall {
        id: "live".into(),
        customer_id: "c".into(),
        status: CallStatus::Ringing,
        direction: Direction::Incoming,
        source: String::new(),
        destination: String::new(),
        route: "default".into(),
        ingress: "rtp".into(),
        at: Millis(0),
    })
    .await
    .expect("create");
    assert!(matches!(
        s.bill_call("e2", "live").await,
        Err(ControlError::Conflict(_))
    ));
    assert!(matches!(
        s.set_rate_plan(&admin(), "c", &plan(0, 1, 1, 0)).await,
        Err(ControlError::Invalid(_))
    ));
    assert!(matches!(
        s.set_rate_plan(&admin(), "ghost", &plan(1, 1, 1, 0)).await,
        Err(ControlError::NotFound)
    ));
    assert!(matches!(
        s.credit(&admin(), "free", 1).await,
        Err(ControlError::NotFound)
    ));
}

async fn concurrent_hangups_keep_the_balance_exact(s: Store) {
    let p = plan(6, 6, 9_000, 0);
    customer(&s, "c", Some(p), 10_000_000).await;
    let mut calls = Vec::new();
    let mut expected = 0;
    for i in 0..24i64 {
        let ms = 1_000 + i * 7_777;
        let id = format!("call-{i}");
        let ev = ended_call(&s, &id, "c", Some(ms)).await;
        expected += p.cost(p.billable_seconds(ms));
        calls.push((id, ev));
    }
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    // Every event twice, all at once.
    for (id, ev) in calls.iter().chain(calls.iter()) {
        let (s, id, ev) = (s.clone(), id.clone(), ev.clone());
        tasks.push(tokio::spawn(async move { s.bill_call(&ev, &id).await }));
    }
    let mut new = 0;
    for t in tasks {
        match t.await.expect("task").expect("bill") {
            Billed::New(_) => new += 1,
            Billed::Already => {}
            Billed::NoAccount => panic!("has an account"),
        }
    }
    assert_eq!(new, 24);
    assert_eq!(
        s.billing_account("c").await.expect("account").balance_micros,
        10_000_000 - expected
    );
}

async fn balance_low_fires_once_per_crossing(s: Store) {
    customer(&s, "c", Some(plan(60, 60, 12_000, 50_000)), 60_000).await;
    for i in 0..3 {
        let id = format!("call-{i}");
        let ev = ended_call(&s, &id, "c", Some(59_000)).await;
        s.bill_call(&ev, &id).await.expect("bill");
    }
    // 60,000 -> 48,000 (crosses 50,000) -> 36,000 -> 24,000.
    assert_eq!(
        s.billing_account("c").await.expect("account").balance_micros,
        24_000
    );
    assert_eq!(count_events(&s, "customer_balance_low").await, 1);
    s.credit(&admin(), "c", 100_000).await.expect("top up");
    let ev = ended_call(&s, "call-9", "c", Some(1)).await;
    s.bill_call(&ev, "call-9").await.expect("bill");
    assert_eq!(
        count_events(&s, "customer_balance_low").await,
        1,
        "above the threshold again"
    );
}

#[derive(Default)]
struct FakeMedia(std::sync::Mutex<Vec<String>>);

impl voxbridge_contract::commands::CallCommands for FakeMedia {
    fn hangup(&self, call_id: &str) -> bool {
        self.0.lock().expect("lock").push(call_id.to_owned());
        true
    }
}

fn created(call: &str, customer: &str) -> voxbridge_contract::events::CallEvent {
    let mut info = voxbridge_contract::events::CallInfo {
        call_id: call.into(),
        route: "default".into(),
        ingress: "audiosocket",
        ..Default::default()
    };
    info.params.insert("customer_id".into(), customer.into());
    voxbridge_contract::events::CallEvent::Created {
        info,
        at: std::time::SystemTime::now(),
    }
}

async fn the_precall_check_refuses_calls_without_balance(s: Store) {
    use voxbridge_control::sink::{apply, CallGate, SinkCtx};
    customer(&s, "broke", Some(plan(1, 1, 6_000, 0)), 0).await;
    customer(&s, "rich", Some(plan(1, 1, 6_000, 0)), 1_000).await;
    customer(&s, "unbilled", None, 0).await;
    let media = Arc::new(FakeMedia::default());
    let gate = Arc::new(CallGate::new(true));
    gate.set_commands(media.clone());
    let ctx = SinkCtx {
        default_customer: "unbilled".into(),
        gate: gate.clone(),
    };
    for (call, customer) in [
        ("c-broke", "broke"),
        ("c-rich", "rich"),
        ("c-unbilled", "unbilled"),
    ] {
        let e = created(call, customer);
        assert!(apply(&s, &ctx, &e, None).await.expect("apply"));
        // A replay is not a new call: no second refusal.
        assert!(!apply(&s, &ctx, &e, None).await.expect("replay"));
    }
    assert_eq!(*media.0.lock().expect("lock"), ["c-broke"]);
    assert_eq!(gate.refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    let off = SinkCtx {
        default_customer: "unbilled".into(),
        gate: Arc::new(CallGate::new(false)),
    };
    apply(&s, &off, &created("c-broke-2", "broke"), None)
        .await
        .expect("apply");
    assert_eq!(media.0.lock().expect("lock").len(), 1, "off by default");
    // A customer that never existed, or was deleted, takes no calls,
    // whether or not the balance check is on.
    let off_gate = off.gate.clone();
    off_gate.set_commands(media.clone());
    s.delete_customer(&voxbridge_control::model::Actor { id: "t".into() }, "rich")
        .await
        .expect("delete");
    for (call, customer) in [("c-ghost", "ghost"), ("c-deleted", "rich")] {
        apply(&s, &off, &created(call, customer), None)
            .await
            .expect("apply");
    }
    assert_eq!(
        *media.0.lock().expect("lock"),
        ["c-broke", "c-ghost", "c-deleted"]
    );
    assert_eq!(
        off_gate
            .refused_inactive
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

async fn the_sweep_bills_what_the_worker_missed(s: Store) {
    customer(&s, "c", Some(plan(1, 1, 6_000, 0)), 1_000_000).await;
    customer(&s, "free", None, 0).await;
    for i in 0..5 {
        ended_call(&s, &format!("call-{i}"), "c", Some(10_000)).await;
    }
    ended_call(&s, "theirs", "free", Some(10_000)).await;
    let ev = hungup_event(&s, "call-0").await;
    s.bill_call(&ev, "call-0").await.expect("one billed from the bus");
    let stats = BillingStats::default();
    sweep_now(&s, &stats).await;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.swept.load(Relaxed), 4);
    assert_eq!(
        stats.no_account.load(Relaxed),
        0,
        "customers without an account are not swept"
    );
    assert_eq!(
        s.billing_account("c").await.expect("account").balance_micros,
        1_000_000 - 5 * 1_000
    );
    sweep_now(&s, &stats).await;
    assert_eq!(stats.swept.load(Relaxed), 4, "nothing left to sweep");
}
