//! The API's read cache (issue 27): two nodes on one PostgreSQL sharing a
//! real Redis never read what the other just changed; one node with the
//! in-process cache neither; cached reads send nothing to PostgreSQL; a
//! Redis that is down only sends reads back to the database.
//!
//! Redis is real: `VOXBRIDGE_TEST_REDIS` (set by `scripts/test.sh`, which
//! starts a private one when none answers) or `redis://127.0.0.1:6379`.
//! Each test has its own key prefix, so runs and tests never share keys.

mod common;

use common::fresh_pg_url;
use voxbridge_control::cache::{Cache, CacheConfig, CacheKind};
use voxbridge_control::model::{Actor, CallChange, NewCall};
use voxbridge_control::secret::SecretUrl;
use voxbridge_control::state::{CallStatus, Direction};
use voxbridge_control::store::{NewCustomer, Store};
use voxbridge_control::time::Millis;
use voxbridge_control::ControlError;

fn redis_url() -> String {
    std::env::var("VOXBRIDGE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn config(kind: CacheKind, prefix: &str) -> CacheConfig {
    CacheConfig {
        kind,
        redis_url: SecretUrl::new(redis_url()),
        key_prefix: prefix.into(),
        ..CacheConfig::default()
    }
}

/// A store on `url` reading through a cache made from `config`.
async fn node(url: &str, config: &CacheConfig) -> Store {
    Store::connect(url)
        .await
        .expect("PostgreSQL")
        .with_cache(Cache::new(config).expect("valid cache settings"))
}

/// Customer `c` with a key (its secret returned) and a ringing call `call-1`.
async fn seed(store: &Store) -> String {
    let actor = Actor { id: "test".into() };
    store
        .create_customer(
            &actor,
            NewCustomer {
                id: Some("c".into()),
                name: "c".into(),
                email: None,
            },
        )
        .await
        .expect("customer");
    let (_, secret) = store
        .create_access_key(&actor, "c", "k", None)
        .await
        .expect("key");
    store
        .create_call(&NewCall {
            id: "call-1".into(),
            customer_id: "c".into(),
            status: CallStatus::Ringing,
            direction: Direction::Incoming,
            source: "1000".into(),
            destination: "2000".into(),
            route: "default".into(),
            ingress: "audiosocket".into(),
            at: Millis::now(),
        })
        .await
        .expect("call");
    secret
}

fn change(to: CallStatus) -> CallChange {
    CallChange {
        to,
        at: Millis::now(),
        hangup: None,
        sip: None,
    }
}

/// Both nodes read (and so cache) the key, the customer and the call; each
/// write on `b` is then seen at once by `a`.
async fn writes_on_one_node_are_read_at_once_on_the_other(a: Store, b: Store) {
    let secret = seed(&a).await;
    for n in [&a, &b] {
        assert!(n.authenticate_key(&secret).await.expect("read").is_some());
        assert!(n.customer_active("c").await.expect("read"));
        let call = n.get_call("c", "call-1").await.expect("read");
        assert_eq!(call.status, CallStatus::Ringing);
    }
    b.transition_call(Some("c"), "call-1", &change(CallStatus::Progressing), None)
        .await
        .expect("answer");
    let call = a.get_call("c", "call-1").await.expect("read");
    assert_eq!(call.status, CallStatus::Progressing, "a sees b's answer");
    assert!(
        matches!(a.get_call("other", "call-1").await, Err(ControlError::NotFound)),
        "a cached call is still another tenant's 404"
    );
    let keys = b.list_access_keys("c").await.expect("keys");
    b.delete_access_key(&Actor { id: "t".into() }, "c", &keys[0].id)
        .await
        .expect("revoke");
    assert!(
        a.authenticate_key(&secret).await.expect("read").is_none(),
        "a revoked key is refused on the other node at once"
    );
    b.delete_customer(&Actor { id: "t".into() }, "c")
        .await
        .expect("delete");
    assert!(
        !a.customer_active("c").await.expect("read"),
        "a deleted customer is gone on a"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_redis_never_read_the_others_old_rows() {
    let url = fresh_pg_url().await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let c = config(CacheKind::Redis, &prefix);
    writes_on_one_node_are_read_at_once_on_the_other(node(&url, &c).await, node(&url, &c).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_with_the_memory_cache_never_reads_its_own_old_rows() {
    let url = fresh_pg_url().await;
    let one = node(&url, &config(CacheKind::Memory, "m")).await;
    writes_on_one_node_are_read_at_once_on_the_other(one.clone(), one).await;
}

/// Without the invalidation the test above fails: two nodes with their
/// own in-process caches do read each other's old rows (which is why
/// several control nodes need Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_their_own_memory_caches_do_read_old_rows() {
    let url = fresh_pg_url().await;
    let a = node(&url, &config(CacheKind::Memory, "m")).await;
    let b = node(&url, &config(CacheKind::Memory, "m")).await;
    seed(&a).await;
    a.get_call("c", "call-1").await.expect("read");
    b.transition_call(Some("c"), "call-1", &change(CallStatus::Progressing), None)
        .await
        .expect("answer");
    let call = a.get_call("c", "call-1").await.expect("read");
    assert_eq!(
        call.status,
        CallStatus::Ringing,
        "a's own cache still has the old row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_send_nothing_to_postgresql() {
    let url = fresh_pg_url().await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    for kind in [CacheKind::Redis, CacheKind::Memory] {
        let store = node(&url, &config(kind, &prefix)).await;
        let secret = match kind {
            CacheKind::Redis => seed(&store).await,
            _ => {
                // The customer and call exist already; a second key for this node.
                let (_, s) = store
                    .create_access_key(&Actor { id: "t".into() }, "c", "k2", None)
                    .await
                    .expect("key");
                s
            }
        };
        store.authenticate_key(&secret).await.expect("read");
        store.customer_active("c").await.expect("read");
        store.get_call("c", "call-1").await.expect("read");
        let before = store.statements();
        let hits_before = store
            .cache()
            .stats()
            .hits
            .load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..10 {
            assert!(store.authenticate_key(&secret).await.expect("read").is_some());
            assert!(store.customer_active("c").await.expect("read"));
            store.get_call("c", "call-1").await.expect("read");
        }
        assert_eq!(
            store.statements(),
            before,
            "{kind:?}: 30 cached reads, no statement"
        );
        let hits = store
            .cache()
            .stats()
            .hits
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(hits - hits_before, 30, "{kind:?}");
    }
    let off = Store::connect(&url).await.expect("PostgreSQL");
    let before = off.statements();
    off.get_call("c", "call-1").await.expect("read");
    assert_eq!(
        off.statements(),
        before + 1,
        "without a cache each read is a statement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_down_sends_reads_to_postgresql_and_is_counted() {
    let url = fresh_pg_url().await;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let down = CacheConfig {
        redis_url: SecretUrl::new(format!("redis://127.0.0.1:{port}")),
        ..config(CacheKind::Redis, "down")
    };
    let store = node(&url, &down).await;
    let secret = seed(&store).await;
    assert!(store.authenticate_key(&secret).await.expect("read").is_some());
    assert_eq!(
        store.get_call("c", "call-1").await.expect("read").status,
        CallStatus::Ringing
    );
    let errors = store
        .cache()
        .stats()
        .errors
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(errors >= 1, "the failures are counted: {errors}");
}

/// A cached row this version cannot read (another version's columns in a
/// shared Redis during a rolling upgrade) is not an error: the database
/// answers, and the bad value goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_row_of_another_shape_is_read_from_postgresql_instead() {
    use voxbridge_control::store::{Row, Val};
    let url = fresh_pg_url().await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let store = node(&url, &config(CacheKind::Redis, &prefix)).await;
    let secret = seed(&store).await;
    let odd = serde_json::to_vec(&Row(vec![Val::Int(Some(1))])).expect("json");
    let cache = store.cache();
    cache.fill(&cache.call_key("call-1"), odd.clone()).await;
    let key_hash = voxbridge_control::store::hash_key(&secret);
    cache.fill(&cache.access_key_key(&key_hash), odd).await;
    let call = store.get_call("c", "call-1").await.expect("read");
    assert_eq!(call.status, CallStatus::Ringing);
    assert!(store.authenticate_key(&secret).await.expect("read").is_some());
    assert_eq!(
        cache.get(&cache.call_key("call-1")).await,
        None,
        "the odd row is gone"
    );
}
