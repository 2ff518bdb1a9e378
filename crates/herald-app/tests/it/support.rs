//! A started [`App`] on a temporary data directory, users to act as, and a way to read the
//! events a topic receives.

use std::{sync::Arc, time::Duration};

use futures::StreamExt as _;
use herald_app::{
    Actor, App, AppError, Commits, ErrorKind, NewUser, UserRole, accounts::Credentials, open_db,
};
use herald_hub::{Durability, Hub, HubConfig, Matcher, SqliteLog, SubscribeRequest, Subscription};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The password every test user gets.
pub(crate) const PASSWORD: &str = "correct horse battery";

/// An app with its hub, on a data directory that lives as long as it does.
pub(crate) struct TestApp {
    pub(crate) app: App,
    /// The app's database, for what another process or node would write behind its back.
    pub(crate) pool: sqlx::AnyPool,
    pub(crate) hub: Hub,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts a hub on a fresh SQLite log and the app on a fresh SQLite database.
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open(&dir.path().join("herald.db"), Durability::Normal)
            .await
            .unwrap();
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let hub = Hub::start(
            HubConfig::default(),
            Arc::new(log),
            &tracker,
            shutdown.clone(),
        )
        .await
        .unwrap();
        let pool = open_db(None, dir.path()).await.unwrap();
        let app = App::start(
            pool.clone(),
            hub.clone(),
            Commits::WithLog,
            &tracker,
            shutdown.clone(),
        )
        .await
        .unwrap();
        Self {
            app,
            pool,
            hub,
            tracker,
            shutdown,
            _dir: dir,
        }
    }

    /// A new user with `role`, signed in: the actor of a session.
    pub(crate) async fn user(&self, name: &str, role: UserRole) -> Actor {
        let email = format!("{name}@example.com");
        self.app
            .accounts()
            .add_user(NewUser {
                email: email.clone(),
                name: name.to_owned(),
                password: PASSWORD.to_owned(),
                role,
            })
            .await
            .unwrap();
        self.session(&email, PASSWORD).await.unwrap()
    }

    /// Signs in as `email` and authenticates the new session.
    pub(crate) async fn session(&self, email: &str, password: &str) -> Result<Actor, AppError> {
        let accounts = self.app.accounts();
        let (_, secret) = accounts.login(email, password.to_owned()).await?;
        accounts.authenticate(Credentials::Session(&secret)).await
    }

    /// A subscription to `topics`, reserved ones included, from now on.
    pub(crate) async fn follow(&self, topics: &[String]) -> Subscription {
        self.hub
            .subscribe(SubscribeRequest {
                topics: topics.iter().map(Matcher::exact).collect(),
                claims: Some(topics.iter().map(Matcher::exact).collect()),
                last_event_id: None,
                after: None,
                replay_filter: None,
                max_selectors: None,
                reserved: true,
            })
            .await
            .unwrap()
    }

    /// Stops the hub and the app; their tasks, the app's tracked ones included, end.
    pub(crate) async fn stop(self) {
        drop(self.app);
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .expect("every task ends at shutdown");
    }
}

/// One event as a subscriber reads it.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) event_type: String,
    pub(crate) data: serde_json::Value,
}

/// The next event other than the stream's own comments, within five seconds.
pub(crate) async fn next_event(subscription: &mut Subscription, pending: &mut String) -> Event {
    loop {
        if let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            let mut event_type = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    event_type = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                }
            }
            if let Some(event_type) = event_type {
                return Event {
                    event_type,
                    data: serde_json::from_str(&data).unwrap(),
                };
            }
            continue;
        }
        let frames = tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("an event within 5 s")
            .expect("the subscription is open");
        pending.push_str(std::str::from_utf8(&frames).unwrap());
    }
}

/// Asserts that `result` failed with `kind`.
#[track_caller]
pub(crate) fn assert_kind<T: std::fmt::Debug>(
    result: Result<T, AppError>,
    kind: ErrorKind,
) -> AppError {
    match result {
        Err(error) if error.kind == kind => error,
        other => panic!("expected a {kind:?} error, got {other:?}"),
    }
}
