//! Shared setup of the control sidecar's load tools (`control_load`,
//! `consumers_load`): a fresh PostgreSQL schema per run, the calls they
//! write, and histogram read-outs.

use hdrhistogram::Histogram;
use voxbridge_control::model::NewCall;
use voxbridge_control::state::{CallStatus, Direction};
use voxbridge_control::time::Millis;

/// The error type of the load tools.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Creates a fresh schema in the database at `pg` and returns a URL whose
/// connections use it, so a run never sees another run's rows.
pub async fn fresh_schema(pg: &str) -> Res<String> {
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) = tokio_postgres::connect(pg, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await?;
    let sep = if pg.contains('?') { '&' } else { '?' };
    Ok(format!("{pg}{sep}options=-c%20search_path%3D{schema}"))
}

/// A ringing incoming call of `customer`.
pub fn call(id: String, customer: &str) -> NewCall {
    NewCall {
        id,
        customer_id: customer.into(),
        status: CallStatus::Ringing,
        direction: Direction::Incoming,
        source: "+15550100".into(),
        destination: "+15550199".into(),
        route: "default".into(),
        ingress: "rtp".into(),
        at: Millis::now(),
    }
}

/// Quantile `q` of a histogram of microseconds, in milliseconds.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}
