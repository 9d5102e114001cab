//! Alert incidents and the notification outbox. Opening an incident is idempotent (one open
//! incident per kind and subject, enforced by a unique index); its notifications are written
//! in the same transaction and delivered afterwards, so a crash between the two only delays
//! them.

use sqlx::{Row, any::AnyRow};

use super::{Catalog, Result, parse_enum};
use crate::alerts::model::{Event, Incident, IncidentKind, NewIncident, Notification, Severity};

macro_rules! incident_columns {
    () => {
        "i.id, i.kind, i.subject, i.environment, i.severity, i.summary, i.detail, \
         i.opened_at_ms, i.resolved_at_ms, i.resolve_summary"
    };
}

impl Catalog {
    /// Every open incident, oldest first.
    pub async fn open_incidents(&self) -> Result<Vec<Incident>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM alert_incidents i WHERE i.resolved_at_ms IS NULL ORDER BY i.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(incident_from_row).collect()
    }

    /// Incidents newest first (open and resolved).
    pub async fn recent_incidents(&self, limit: u32) -> Result<Vec<Incident>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM alert_incidents i ORDER BY i.id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(incident_from_row).collect()
    }

    /// Opens an incident and queues a "firing" notification for each of `webhooks`. None if
    /// an incident of the same kind and subject is already open (nothing written).
    pub async fn open_incident(
        &self,
        new: &NewIncident,
        webhooks: &[String],
        now_ms: i64,
    ) -> Result<Option<Incident>> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query_scalar(
            "INSERT INTO alert_incidents (kind, subject, environment, severity, summary, detail, \
             opened_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(new.kind.as_str())
        .bind(&new.subject)
        .bind(&new.environment)
        .bind(new.severity.as_str())
        .bind(&new.summary)
        .bind(&new.detail)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match inserted {
            Ok(id) => id,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                tx.rollback().await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        for webhook in webhooks {
            sqlx::query(
                "INSERT INTO alert_notifications (incident_id, webhook, event, created_at_ms, \
                 next_attempt_ms) VALUES ($1, $2, 'firing', $3, $4)",
            )
            .bind(id)
            .bind(webhook)
            .bind(now_ms)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.incident(id).await
    }

    /// Resolves an open incident and queues a "resolved" notification for every webhook that
    /// was told it fired. False if it was not open.
    pub async fn resolve_incident(&self, id: i64, summary: &str, now_ms: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE alert_incidents SET resolved_at_ms = $1, resolve_summary = $2 \
             WHERE id = $3 AND resolved_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(summary)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO alert_notifications (incident_id, webhook, event, created_at_ms, \
             next_attempt_ms) SELECT incident_id, webhook, 'resolved', $1, $1 \
             FROM alert_notifications WHERE incident_id = $2 AND event = 'firing' \
             ON CONFLICT DO NOTHING",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn incident(&self, id: i64) -> Result<Option<Incident>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM alert_incidents i WHERE i.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Undelivered notifications due at `now_ms`, oldest incident first. A "resolved"
    /// notification waits until the same webhook got the "firing" one.
    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Notification, Incident)>> {
        let rows = sqlx::query(concat!(
            "SELECT n.webhook, n.event, n.attempts, ",
            incident_columns!(),
            " FROM alert_notifications n JOIN alert_incidents i ON i.id = n.incident_id \
             WHERE n.delivered_at_ms IS NULL AND n.next_attempt_ms <= $1 \
             AND NOT (n.event = 'resolved' AND EXISTS (SELECT 1 FROM alert_notifications f \
               WHERE f.incident_id = n.incident_id AND f.webhook = n.webhook \
               AND f.event = 'firing' AND f.delivered_at_ms IS NULL)) \
             ORDER BY n.incident_id, n.event LIMIT $2"
        ))
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let event: String = row.try_get("event")?;
                let incident = incident_from_row(row)?;
                Ok((
                    Notification {
                        incident_id: incident.id,
                        webhook: row.try_get("webhook")?,
                        event: parse_enum("alert_notifications.event", &event, Event::parse)?,
                        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?)
                            .unwrap_or(u32::MAX),
                    },
                    incident,
                ))
            })
            .collect()
    }

    /// Undelivered notifications for the given webhooks.
    pub async fn pending_notifications(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT webhook, COUNT(*) AS n FROM alert_notifications \
             WHERE delivered_at_ms IS NULL GROUP BY webhook",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("webhook")?, r.try_get("n")?)))
            .collect()
    }

    pub async fn notification_delivered(&self, n: &Notification, now_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE alert_notifications SET delivered_at_ms = $1, attempts = attempts + 1, \
             last_error = '' WHERE incident_id = $2 AND webhook = $3 AND event = $4",
        )
        .bind(now_ms)
        .bind(n.incident_id)
        .bind(&n.webhook)
        .bind(n.event.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn notification_failed(
        &self,
        n: &Notification,
        error: &str,
        next_attempt_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE alert_notifications SET attempts = attempts + 1, last_error = $1, \
             next_attempt_ms = $2 WHERE incident_id = $3 AND webhook = $4 AND event = $5",
        )
        .bind(error)
        .bind(next_attempt_ms)
        .bind(n.incident_id)
        .bind(&n.webhook)
        .bind(n.event.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn incident_from_row(row: &AnyRow) -> Result<Incident> {
    let kind: String = row.try_get("kind")?;
    let severity: String = row.try_get("severity")?;
    Ok(Incident {
        id: row.try_get("id")?,
        kind: parse_enum("alert_incidents.kind", &kind, IncidentKind::parse)?,
        subject: row.try_get("subject")?,
        environment: row.try_get("environment")?,
        severity: parse_enum("alert_incidents.severity", &severity, Severity::parse)?,
        summary: row.try_get("summary")?,
        detail: row.try_get("detail")?,
        opened_at_ms: row.try_get("opened_at_ms")?,
        resolved_at_ms: row.try_get("resolved_at_ms")?,
        resolve_summary: row.try_get("resolve_summary")?,
    })
}
