//! Webhook alerts: one notification per incident and per resolve, size anomalies, backoff.

use super::*;

#[tokio::test]
async fn webhooks_fire_once_per_incident_and_on_resolve() {
    let (rx, addr) = Receiver::start(&[("generic", 1)]).await;
    let mut c = Coordinator::start().await;
    let url_file = c.dir.path().join("chat.url");
    lifeboat_common::secret::write_private_file(
        &url_file,
        format!("http://{addr}/slack/T000/B000/secret-token\n").as_bytes(),
    )
    .expect("write url file");
    reconfigure(
        &mut c,
        &format!(
            "[alerts]\nevaluate_interval = \"200ms\"\nagent_offline_after = \"1s\"\n\
             [[alerts.webhook]]\nname = \"ops\"\nurl = \"http://{addr}/generic\"\n\
             [[alerts.webhook]]\nname = \"chat\"\nformat = \"slack\"\nurl_file = \"chat.url\"\n\
             kinds = [\"backup_failed\", \"agent_offline\"]\nsend_resolved = true\n"
        ),
    )
    .await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;

    // A failed backup: one incident, delivered to both webhooks (the generic one after a 500
    // and a retry).
    fail_a_backup(&mut control, &mut agent).await;
    let rx = &rx;
    eventually("backup_failed on both webhooks", || async move {
        let g = has(
            &generic_events(rx),
            "backup_failed",
            "prod/orders",
            "firing",
        );
        let s = rx.accepted("/slack/T000/B000/secret-token").len();
        (g == 1 && s == 1).then_some(())
    })
    .await;
    assert_eq!(rx.attempts("/generic"), 2, "the 500 was retried once");
    let g = &rx.accepted("/generic")[0];
    assert_eq!(g["version"], 1);
    assert_eq!(g["incident"]["severity"], "warning");
    assert!(
        g["incident"]["summary"]
            .as_str()
            .expect("summary")
            .contains("it broke"),
        "{g}"
    );
    let slack = &rx.accepted("/slack/T000/B000/secret-token")[0];
    assert!(
        slack["text"]
            .as_str()
            .expect("text")
            .contains("[FIRING] warning backup_failed"),
        "{slack}"
    );

    // More evaluations do not open it again. Two more passes: at least one began after the
    // notifications above, and a pass is counted after its catalog writes, so a second
    // incident (the evaluator's only way to a second "firing": the outbox holds one per
    // incident, webhook and event) would be in the catalog by now. `/health/detailed` reads
    // the catalog afresh (the harness sets health_cache_ms = 0). A re-send by the outbox
    // would wait for the notifier's next idle pass, 5 s away: the e2e test covers that.
    let (_, detailed) = get_json(&c, "/health/detailed").await;
    let incidents = detailed["incidents"].clone();
    assert_eq!(incidents.as_array().map(Vec::len), Some(1), "{incidents}");
    await_passes(&c, EVALUATIONS, 2).await;
    let (_, detailed) = get_json(&c, "/health/detailed").await;
    assert_eq!(
        detailed["incidents"], incidents,
        "the same incident, still open"
    );
    assert_eq!(
        has(
            &generic_events(rx),
            "backup_failed",
            "prod/orders",
            "firing"
        ),
        1
    );
    assert_eq!(rx.accepted("/slack/T000/B000/secret-token").len(), 1);

    // A successful backup resolves it.
    let job = start_backup(&mut control, "prod/orders").await;
    agent.run_backup("prod", "prod-1").await;
    wait_state(&mut control, &job.job_id, pb::JobState::Succeeded).await;
    eventually("backup_failed resolved on both webhooks", || async move {
        let g = has(
            &generic_events(rx),
            "backup_failed",
            "prod/orders",
            "resolved",
        );
        let s = rx.accepted("/slack/T000/B000/secret-token").len();
        (g == 1 && s == 2).then_some(())
    })
    .await;
    let resolved = rx
        .accepted("/generic")
        .into_iter()
        .find(|v| v["status"] == "resolved")
        .expect("resolved");
    assert!(
        resolved["incident"]["resolved_at"].is_string(),
        "{resolved}"
    );
    assert!(
        resolved["incident"]["resolution"]
            .as_str()
            .expect("resolution")
            .contains("succeeded again")
    );

    // The agent goes away: after the threshold, agent_offline fires.
    agent.disconnect();
    eventually("agent_offline firing on both webhooks", || async move {
        let g = has(&generic_events(rx), "agent_offline", "prod-1", "firing");
        let s = rx.accepted("/slack/T000/B000/secret-token").len();
        (g == 1 && s == 3).then_some(())
    })
    .await;
    // A restart while it is open neither resolves it nor notifies it again. The restarted
    // coordinator's gauge of open incidents starts at 0 and is set by its evaluator's passes:
    // once it shows the incident, a pass has seen it open (a pass that resolved it would
    // leave the gauge at 0, and its notification would come).
    let before = generic_events(rx).len();
    c.restart().await;
    let cr = &c;
    eventually(
        "the restarted coordinator's first alert evaluation",
        || async move {
            let (_, m) = cr.http_get("/metrics").await;
            let evaluated = m.contains("lifeboat_incidents_open{kind=\"agent_offline\"} 1\n");
            let notified = generic_events(rx).len() > before;
            (evaluated || notified).then_some(())
        },
    )
    .await;
    let events = generic_events(rx);
    assert_eq!(
        has(&events, "agent_offline", "prod-1", "firing"),
        1,
        "{events:?}"
    );
    assert_eq!(
        has(&events, "agent_offline", "prod-1", "resolved"),
        0,
        "{events:?}"
    );
    let (_, detailed) = get_json(&c, "/health/detailed").await;
    assert!(
        detailed["incidents"]
            .as_array()
            .expect("incidents")
            .iter()
            .any(|i| i["kind"] == "agent_offline"),
        "{detailed}"
    );

    // It comes back: resolved, once.
    let _agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    eventually("agent_offline resolved", || async move {
        let g = has(&generic_events(rx), "agent_offline", "prod-1", "resolved");
        let s = rx.accepted("/slack/T000/B000/secret-token").len();
        (g == 1 && s == 4).then_some(())
    })
    .await;
    let slack_texts: Vec<String> = rx
        .accepted("/slack/T000/B000/secret-token")
        .iter()
        .map(|v| v["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(slack_texts.len(), 4, "{slack_texts:?}");
    assert!(
        slack_texts[3].contains("[RESOLVED] agent_offline"),
        "{slack_texts:?}"
    );
    // The notifier's pass at the restart came before the one that sent the resolve.
    let events = generic_events(rx);
    assert_eq!(
        has(&events, "agent_offline", "prod-1", "firing"),
        1,
        "{events:?}"
    );

    let (_, metrics) = c.http_get("/metrics").await;
    assert!(
        metrics.contains(
            "lifeboat_alert_notifications_total{outcome=\"delivered\",webhook=\"chat\"} 1"
        ),
        "counted since the restart:\n{metrics}"
    );
    assert!(metrics.contains("lifeboat_alert_notifications_pending{webhook=\"ops\"} 0"));
    assert!(!metrics.contains("secret-token"));
}

#[tokio::test]
async fn backup_size_far_from_the_median_opens_an_incident() {
    let mut c = Coordinator::start().await;
    reconfigure(
        &mut c,
        "[alerts]\nevaluate_interval = \"200ms\"\nsize_change_percent = 50\n",
    )
    .await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    let cr = &c;
    for size in [1000, 1100, 900, 1000] {
        start_backup(&mut control, "prod/orders").await;
        backup_with_size(&mut agent, size).await;
    }
    // The last backup was recorded before its acknowledgement: of two more evaluations, at
    // least one began after it, and it opened nothing.
    await_passes(cr, EVALUATIONS, 2).await;
    assert!(
        open_incident_kinds(cr).await.is_empty(),
        "normal sizes open nothing"
    );
    start_backup(&mut control, "prod/orders").await;
    backup_with_size(&mut agent, 100).await;
    eventually("size_anomaly", || async move {
        open_incident_kinds(cr)
            .await
            .contains(&"size_anomaly".to_owned())
            .then_some(())
    })
    .await;
    start_backup(&mut control, "prod/orders").await;
    backup_with_size(&mut agent, 1000).await;
    eventually("size_anomaly resolved", || async move {
        open_incident_kinds(cr).await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_failing_webhook_backs_off_and_does_not_hold_up_the_others() {
    let (rx, addr) = Receiver::start(&[("down", usize::MAX)]).await;
    let mut c = Coordinator::start().await;
    reconfigure(
        &mut c,
        &format!(
            "[alerts]\nevaluate_interval = \"200ms\"\n\
             [[alerts.webhook]]\nname = \"down\"\nurl = \"http://{addr}/down\"\ntimeout = \"2s\"\n\
             [[alerts.webhook]]\nname = \"up\"\nurl = \"http://{addr}/up\"\n"
        ),
    )
    .await;
    let mut control = c.control("olga");
    let mut agent = c.agent(hello("prod-1", "prod", &["orders"])).await;
    fail_a_backup(&mut control, &mut agent).await;

    let rx = &rx;
    eventually("delivery to the working webhook", || async move {
        (rx.accepted("/up").len() == 1).then_some(())
    })
    .await;
    // The failing one: the first attempt and two retries, then it waits (30 s) in the outbox.
    eventually("three attempts at the failing webhook", || async move {
        (rx.attempts("/down") == 3).then_some(())
    })
    .await;
    let cr = &c;
    eventually(
        "the failure counted and the notification pending",
        || async move {
            let (_, m) = cr.http_get("/metrics").await;
            (m.contains(
                "lifeboat_alert_notifications_total{outcome=\"failed\",webhook=\"down\"} 1",
            ) && m.contains("lifeboat_alert_notifications_pending{webhook=\"down\"} 1")
                && m.contains("lifeboat_alert_notifications_pending{webhook=\"up\"} 0"))
            .then_some(())
        },
    )
    .await;
    // The next delivery pass must leave it to its backoff. The next regular pass is 5 s away;
    // a restart runs one at once (the backoff is in the catalog), and the restarted
    // coordinator's pending gauge, 0 until a pass sets it, shows when that pass has ended.
    c.restart().await;
    let cr = &c;
    eventually(
        "the restarted coordinator's first delivery pass",
        || async move {
            let (_, m) = cr.http_get("/metrics").await;
            m.contains("lifeboat_alert_notifications_pending{webhook=\"down\"} 1\n")
                .then_some(())
        },
    )
    .await;
    assert_eq!(rx.attempts("/down"), 3, "retried before its backoff");
    assert_eq!(rx.accepted("/up").len(), 1);
}

#[tokio::test]
async fn alert_passes_are_counted_with_their_outcome() {
    // Without a webhook only the evaluator runs: its first pass comes at once.
    let mut c = Coordinator::start().await;
    await_sample(&c, EVALUATIONS, 1).await;
    assert_eq!(
        sample(&c, DELIVERY_PASSES).await,
        0,
        "no webhook, no notifier"
    );

    let (_rx, addr) = Receiver::start(&[]).await;
    reconfigure(
        &mut c,
        &format!(
            "[alerts]\nevaluate_interval = \"200ms\"\n\
             [[alerts.webhook]]\nname = \"ops\"\nurl = \"http://{addr}/ops\"\n"
        ),
    )
    .await;
    // The notifier's first pass comes at once too (then one every 5 s), and evaluations
    // follow the interval: five more take at least four intervals.
    await_sample(&c, DELIVERY_PASSES, 1).await;
    let started = tokio::time::Instant::now();
    await_passes(&c, EVALUATIONS, 5).await;
    assert!(
        started.elapsed() >= Duration::from_millis(4 * 200 - 50),
        "five evaluations in {:?}",
        started.elapsed()
    );

    // A catalog that cannot answer: failed passes count as errors, not as ok. (Restarted,
    // so that the notifier's first pass comes at once; the counters begin again at 0.)
    tamper(
        &c,
        "ALTER TABLE alert_incidents RENAME TO alert_incidents_gone",
    )
    .await;
    c.restart().await;
    await_sample(&c, "lifeboat_alert_evaluations_total{outcome=\"error\"}", 2).await;
    await_sample(
        &c,
        "lifeboat_alert_delivery_passes_total{outcome=\"error\"}",
        1,
    )
    .await;
    assert_eq!(
        sample(&c, EVALUATIONS).await,
        0,
        "failed evaluations counted as ok"
    );
    assert_eq!(
        sample(&c, DELIVERY_PASSES).await,
        0,
        "a failed delivery counted as ok"
    );
}

/// Olga starts a backup of prod/orders; the agent fails it; returns once the job is failed.
async fn fail_a_backup(
    control: &mut pb::control_client::ControlClient<tonic::transport::Channel>,
    agent: &mut FakeAgent,
) {
    let job = start_backup(control, "prod/orders").await;
    let spec = agent.expect_start().await;
    agent.send(accepted(&spec.job_id)).await;
    agent
        .send(result(&spec.job_id, pb::JobState::Failed, None))
        .await;
    agent.expect_ack(&spec.job_id).await;
    wait_state(control, &job.job_id, pb::JobState::Failed).await;
}
