//! `GET /v1/audit[?since=&limit=]`: the audit trail, oldest first.
//!
//! `since` is either a sequence number (events after it: what `next` in a
//! previous page says) or an RFC 3339 time (events at or after it).
//! `limit` defaults to 100 and is capped at 1000. A fleet replica lists
//! the fleet's trail from PostgreSQL, so every replica shows every write,
//! numbered alike.

use serde::Serialize;

use super::reply::{Handled, Reply};
use crate::fleet::replica::Replica;
use crate::keys::{AuditEvent, AuditFrom, Keyring};
use crate::timestamp::Timestamp;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// One event as the API shows it: times as RFC 3339.
#[derive(Serialize)]
struct EventView<'a> {
    seq: u64,
    time: String,
    action: crate::keys::Action,
    key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_key_id: Option<&'a str>,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grace_until: Option<String>,
    client: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<&'a serde_json::Value>,
}

impl<'a> EventView<'a> {
    fn of(seq: u64, event: &'a AuditEvent) -> Self {
        EventView {
            seq,
            time: Timestamp::from_unix(event.time).to_string(),
            action: event.action,
            key_id: event.key_id.as_deref(),
            new_key_id: event.new_key_id.as_deref(),
            user: &event.user,
            name: event.name.as_deref(),
            path: event.path.as_deref(),
            grace_until: event
                .grace_until
                .map(|t| Timestamp::from_unix(t).to_string()),
            client: event.client.as_deref(),
            before: event.before.as_ref(),
            after: event.after.as_ref(),
        }
    }
}

/// `GET /v1/audit` on a single keygate: this store's trail.
pub(crate) fn list(keyring: &Keyring, query: Option<&str>) -> Handled {
    let (from, limit) = parse_query(query)?;
    let events = keyring.audit(from, limit).map_err(|error| {
        tracing::error!(%error, "cannot read the audit trail");
        Reply::error(500, "the audit trail could not be read")
    })?;
    Ok(page(&events))
}

/// `GET /v1/audit` on a fleet replica: the fleet's trail, from PostgreSQL,
/// numbered by the database (every replica shows the same numbers).
pub(crate) async fn list_fleet(replica: &Replica, query: Option<&str>) -> Handled {
    let (from, limit) = parse_query(query)?;
    let events = replica.audit(from, limit).await.map_err(|error| {
        tracing::warn!(%error, "cannot read the fleet's audit trail");
        Reply::error(
            503,
            "the audit trail is in the fleet database, which is unreachable",
        )
    })?;
    Ok(page(&events))
}

fn parse_query(query: Option<&str>) -> Result<(AuditFrom, usize), Reply> {
    let mut from = AuditFrom::After(0);
    let mut limit = DEFAULT_LIMIT;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*name {
            "since" => {
                from = match value.parse::<u64>() {
                    Ok(seq) => AuditFrom::After(seq),
                    Err(_) => match Timestamp::parse_rfc3339(&value) {
                        Ok(at) => AuditFrom::Since(at),
                        Err(_) => {
                            return Err(Reply::error(
                                400,
                                "since must be a sequence number or an RFC 3339 time",
                            ))
                        }
                    },
                }
            }
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => {
                    return Err(Reply::error(
                        400,
                        format!("limit must be between 1 and {MAX_LIMIT}"),
                    ))
                }
            },
            other => {
                return Err(Reply::error(
                    400,
                    format!("unknown query parameter {other:?}; use since and limit"),
                ))
            }
        }
    }
    Ok((from, limit))
}

fn page(events: &[(u64, AuditEvent)]) -> Reply {
    let next = events.last().map(|(seq, _)| *seq);
    #[derive(Serialize)]
    struct Page<'a> {
        events: Vec<EventView<'a>>,
        /// Pass as `since` for the next page.
        next: Option<u64>,
    }
    let page = Page {
        events: events
            .iter()
            .map(|(seq, event)| EventView::of(*seq, event))
            .collect(),
        next,
    };
    Reply::json(200, &page)
}
