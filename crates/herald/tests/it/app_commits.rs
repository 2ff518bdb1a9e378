//! How the app's changes commit with their events on the embedded default (the app's
//! tables in the event log's file): a change and its event exist together or not at all,
//! across `kill -9`; the log orders events as the database ordered their changes; an older
//! version's `app.db` is imported at the first start (see herald-app's `migration` tests).

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, AppClient, TestServer, id_of};

/// Every todo of `ws`, oldest first, through every page.
async fn all_todos(client: &AppClient, ws: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut query = String::new();
    loop {
        let page = client
            .get(&format!("/api/workspaces/{ws}/todos?limit=200{query}"))
            .await
            .expect(200);
        for item in page["items"].as_array().expect("items") {
            ids.push(id_of(item));
        }
        match page["nextCursor"].as_str() {
            Some(next) => query = format!("&after={next}"),
            None => return ids,
        }
    }
}

/// Writers keep creating todos while the server is killed mid-way. After the restart:
/// every acknowledged todo is there, every todo in the database has exactly one
/// `todos:created` event in the log and every such event its todo (nothing half-applied
/// either way), and the events are in the order of the todos' ids, which are made inside
/// each change in commit order.
#[tokio::test]
async fn changes_and_their_events_survive_kill_9_together_and_in_commit_order() {
    let mut server = TestServer::with_env(
        &[
            ("HERALD_ADMIN_EMAIL", ADMIN_EMAIL),
            ("HERALD_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
        &["--app-change-rate", "0", "--workspace-change-rate", "0"],
    )
    .await;
    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let ws = id_of(&admin.create_workspace("crash").await);

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{}/api/workspaces/{ws}/todos", server.url());
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (http, cookie, url) = (reqwest::Client::new(), admin.cookie(), url.clone());
        let (acknowledged, count, stop) = (acknowledged.clone(), count.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let sent = http
                    .post(&url)
                    .header("cookie", &cookie)
                    .header("content-type", "application/json")
                    .body(json!({"title": format!("w{writer}-{n}")}).to_string())
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() != 201 {
                    return;
                }
                let Ok(body) = response.bytes().await else {
                    return;
                };
                let todo: Value = serde_json::from_slice(&body).unwrap();
                acknowledged.lock().unwrap().push(id_of(&todo));
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::Relaxed) < 200 {
        assert!(
            Instant::now() < deadline,
            "the writers made too few changes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Killed while changes are in flight.
    server.kill9().await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    server.restart().await;

    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let stored = all_todos(&admin, &ws).await;
    let stored_set: HashSet<&String> = stored.iter().collect();
    assert_eq!(stored_set.len(), stored.len(), "no todo twice");
    let acknowledged = acknowledged.lock().unwrap().clone();
    for id in &acknowledged {
        assert!(stored_set.contains(id), "acknowledged todo {id} was lost");
    }

    // The whole log, from its start, up to a marker made after the restart.
    let mut stream = admin
        .events(&format!("/api/events?workspace={ws}&after=0"))
        .open()
        .await;
    let marker = id_of(&admin.create(&ws, "todos", json!({"title": "marker"})).await);
    let mut logged = Vec::new();
    loop {
        let event = stream.next_event().await;
        if event.event != "todos:created" {
            continue;
        }
        let id = id_of(&event.data["data"]);
        if id == marker {
            break;
        }
        logged.push(id);
    }
    assert_eq!(
        logged,
        stored,
        "the log holds one event per stored todo, in commit order ({} acknowledged)",
        acknowledged.len()
    );
}
