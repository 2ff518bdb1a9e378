//! Making the embedded log's commits durable beside its writer.
//!
//! Under [`Durability::Full`](super::Durability::Full) the writer commits with SQLite's
//! `synchronous = NORMAL`: a commit writes its WAL frames and returns without waiting for the
//! disk. SQLite keeps the file consistent across a power loss that way (it syncs the WAL
//! before each checkpoint and the database file after it); what a power loss may take back
//! is the newest commits. The syncer's `fdatasync` of the WAL file is what makes those stay.
//! The writer asks for a sync after each commit and goes on with the next batch while the
//! disk works, so one batch's work overlaps the previous batch's sync; a sync answers every
//! request queued before it began.
//!
//! A failed sync is final: the kernel may have dropped the pages it could not write, and a
//! later sync that succeeds would say nothing about them. Every request after it fails too,
//! and the log refuses every commit ([`Syncer::failure`]) until Herald restarts. The WAL
//! file is opened once, before the first commit the syncer answers for, and kept open: a
//! write-back error is reported to every descriptor open when it happened, so another
//! connection's checkpoint seeing it first does not hide it from the syncer.
//!
//! A reader of the file sees a commit as soon as it is made: [`Syncer::visible`] waits
//! until every commit a reader may see is durable, for reads that must not show what a
//! power loss could take back.

use std::{
    fs::File,
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
};

use tokio::sync::{oneshot, watch};

use super::{Durable, LogError};

/// Where a sync's answer goes.
type Waiter = oneshot::Sender<Result<(), LogError>>;

/// How commits are made durable.
type Sync = Box<dyn FnMut() -> io::Result<()> + Send>;

/// The handle to the syncer's thread, which ends once this is dropped.
pub(super) struct Syncer {
    requests: mpsc::Sender<Waiter>,
    state: Arc<State>,
    /// Commits the writer has begun ([`Self::begin`]): a reader may already see them.
    begun: AtomicU64,
    /// How many commits are durable; closed once a sync has failed.
    synced: watch::Receiver<u64>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").finish_non_exhaustive()
    }
}

/// What the syncer's thread and the writer's both sync through.
struct State {
    /// Held while syncing: one sync at a time.
    sync: Mutex<Sync>,
    /// Why a sync failed, once one has.
    failed: OnceLock<String>,
    /// Commits the writer has ended ([`Syncer::end`]): a sync that starts covers them.
    ended: AtomicU64,
    /// Where [`Syncer::synced`] is told how many commits are durable; gone once a sync
    /// failed, which wakes the readers waiting in [`Syncer::visible`], to fail.
    durable: Mutex<Option<watch::Sender<u64>>>,
}

impl State {
    /// Makes every commit ended so far durable, unless a sync has failed.
    fn sync(&self) -> Result<(), LogError> {
        let mut sync = self.sync.lock().expect("sync poisoned");
        if let Some(why) = self.failed.get() {
            return Err(LogError::other(why.clone()));
        }
        // Every commit counted here was written before this sync starts.
        let through = self.ended.load(Ordering::SeqCst);
        let synced = sync();
        let mut durable = self.durable.lock().expect("durable poisoned");
        match synced {
            Ok(()) => {
                if let Some(durable) = &*durable {
                    durable.send_if_modified(|synced| {
                        let moved = through > *synced;
                        *synced = (*synced).max(through);
                        moved
                    });
                }
                Ok(())
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    "event log: cannot make commits durable; every later commit is refused \
                     until Herald restarts"
                );
                let why = format!("cannot sync the WAL to disk: {error}");
                let _ = self.failed.set(why.clone());
                *durable = None;
                Err(LogError::other(why))
            }
        }
    }
}

impl Syncer {
    /// Starts a syncer of the WAL file of the SQLite database at `database`. The WAL file
    /// must exist: it is opened now, before any commit this syncer answers for, by the
    /// path SQLite gives it (the database's, symbolic links resolved).
    pub(super) fn start(database: &Path) -> Result<Self, LogError> {
        let database = std::fs::canonicalize(database)
            .map_err(|e| LogError::other(format!("cannot resolve {}: {e}", database.display())))?;
        let mut wal = database.into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let file = File::open(&wal)
            .map_err(|e| LogError::other(format!("cannot open {}: {e}", wal.display())))?;
        let mut dir_synced = false;
        Self::start_with(move || sync_wal(&wal, &file, &mut dir_synced))
    }

    /// Starts a syncer that makes commits durable with `sync`.
    pub(super) fn start_with(
        sync: impl FnMut() -> io::Result<()> + Send + 'static,
    ) -> Result<Self, LogError> {
        let (requests, queue) = mpsc::channel::<Waiter>();
        let (durable, synced) = watch::channel(0);
        let state = Arc::new(State {
            sync: Mutex::new(Box::new(sync)),
            failed: OnceLock::new(),
            ended: AtomicU64::new(0),
            durable: Mutex::new(Some(durable)),
        });
        let shared = state.clone();
        std::thread::Builder::new()
            .name("herald-log-syncer".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(queue.try_iter());
                    let synced = shared.sync();
                    for waiter in waiting {
                        let answer = match &synced {
                            Ok(()) => Ok(()),
                            Err(error) => Err(LogError::other(error.to_string())),
                        };
                        let _ = waiter.send(answer);
                    }
                }
            })
            .map_err(|e| LogError::other(format!("cannot start the log's syncer: {e}")))?;
        Ok(Self {
            requests,
            state,
            begun: AtomicU64::new(0),
            synced,
        })
    }

    /// Counts a commit the writer is about to make, before readers can see it.
    pub(super) fn begin(&self) {
        self.begun.fetch_add(1, Ordering::SeqCst);
    }

    /// Marks the commits begun so far as ended, made or failed: a sync that starts now
    /// covers them. Called on the writer's thread, the only one that makes commits.
    pub(super) fn end(&self) {
        self.state
            .ended
            .store(self.begun.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Asks the syncer's thread for a sync; the future resolves once one that started after
    /// this call is done.
    pub(super) fn request(&self) -> Durable {
        let (waiter, answer) = oneshot::channel();
        let sent = self.requests.send(waiter);
        Box::pin(async move {
            let stopped = || LogError::other("the log's syncer has stopped");
            sent.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        })
    }

    /// Syncs on the calling thread, without a trip to the syncer's: for a commit nothing
    /// else waits behind.
    pub(super) fn sync_here(&self) -> Result<(), LogError> {
        self.state.sync()
    }

    /// Resolves once every commit a reader may see now is durable: those counted from just
    /// before their `COMMIT` ([`Self::begin`]). Each asks for its sync right after, so this
    /// waits for a commit in progress, and for the syncs asked for.
    pub(super) fn visible(&self) -> Durable {
        let target = self.begun.load(Ordering::SeqCst);
        let mut synced = self.synced.clone();
        let state = self.state.clone();
        Box::pin(async move {
            if synced.wait_for(|durable| *durable >= target).await.is_ok() {
                return Ok(());
            }
            Err(LogError::other(state.failed.get().map_or_else(
                || "the log's syncer has stopped".to_owned(),
                |why| format!("{why}; commits are refused until Herald restarts"),
            )))
        })
    }

    /// Why commits are refused: a sync has failed, and nothing written since can be trusted
    /// to stay.
    pub(super) fn failure(&self) -> Option<LogError> {
        self.state
            .failed
            .get()
            .map(|why| LogError::other(format!("{why}; commits are refused until Herald restarts")))
    }
}

/// Writes the WAL file's data to disk, and the first time its directory too: the entry of a
/// WAL file SQLite created must survive for its frames to. The file at `wal` must still be
/// the one `file` opened: SQLite removes it only when its last connection closes, which the
/// writer's never does while the log is open.
fn sync_wal(wal: &Path, file: &File, dir_synced: &mut bool) -> io::Result<()> {
    let (now, opened) = (std::fs::metadata(wal)?, file.metadata()?);
    if (now.dev(), now.ino()) != (opened.dev(), opened.ino()) {
        return Err(io::Error::other(format!(
            "{} was replaced while the log was open",
            wal.display()
        )));
    }
    // `fdatasync` writes the file's pages, whichever descriptor wrote them.
    file.sync_data()?;
    if !*dir_synced {
        let dir = wal
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()?;
        *dir_synced = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Mutex,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use super::*;

    /// One sync answers every request queued before it: requests made while a sync is held
    /// wait for the next one, which answers them all at once.
    #[tokio::test]
    async fn one_sync_answers_every_request_made_before_it() {
        let (release, held) = mpsc::channel::<()>();
        let held = Mutex::new(held);
        let syncs = Arc::new(AtomicUsize::new(0));
        let counted = syncs.clone();
        let syncer = Syncer::start_with(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            held.lock().unwrap().recv().unwrap();
            Ok(())
        })
        .unwrap();
        let first = syncer.request();
        // The first sync has started once it is counted; these queue behind it.
        while syncs.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let later: Vec<Durable> = (0..5).map(|_| syncer.request()).collect();
        release.send(()).unwrap();
        first.await.unwrap();
        release.send(()).unwrap();
        for durable in later {
            durable.await.unwrap();
        }
        assert_eq!(syncs.load(Ordering::SeqCst), 2);
        assert!(syncer.failure().is_none());
    }

    /// After a failed sync nothing is durable again: the requests it answers and every later
    /// one fail, without another sync, and the failure is reported for commits to refuse.
    #[tokio::test]
    async fn a_failed_sync_fails_every_later_request() {
        let syncs = Arc::new(AtomicUsize::new(0));
        let counted = syncs.clone();
        let syncer = Syncer::start_with(move || {
            if counted.fetch_add(1, Ordering::SeqCst) == 1 {
                Err(io::Error::other("the disk is gone"))
            } else {
                Ok(())
            }
        })
        .unwrap();
        syncer.request().await.unwrap();
        assert!(syncer.failure().is_none());
        let error = syncer.request().await.unwrap_err();
        assert!(error.to_string().contains("the disk is gone"), "{error}");
        for _ in 0..3 {
            assert!(syncer.request().await.is_err());
        }
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            2,
            "synced again after a failure"
        );
        let refused = syncer.failure().expect("the failure is kept").to_string();
        assert!(
            refused.contains("refused until Herald restarts"),
            "{refused}"
        );
    }

    /// A reader waits for the commits it may see, begun before it looked, and no others:
    /// until their sync is done, and with an error once a sync has failed.
    #[tokio::test]
    async fn a_reader_waits_for_the_commits_it_may_see() {
        let (release, held) = mpsc::channel::<bool>();
        let held = Mutex::new(held);
        let syncer = Syncer::start_with(move || {
            if held.lock().unwrap().recv().unwrap() {
                Ok(())
            } else {
                Err(io::Error::other("the disk is gone"))
            }
        })
        .unwrap();
        syncer.visible().await.unwrap();
        syncer.begin();
        let mut reader = syncer.visible();
        syncer.end();
        let durable = syncer.request();
        // A commit begun after the reader looked is not waited for.
        syncer.begin();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut reader)
                .await
                .is_err(),
            "the reader did not wait for the sync"
        );
        release.send(true).unwrap();
        durable.await.unwrap();
        reader.await.unwrap();
        syncer.end();
        let durable = syncer.request();
        let reader = syncer.visible();
        release.send(false).unwrap();
        assert!(durable.await.is_err());
        let error = reader.await.unwrap_err();
        assert!(error.to_string().contains("the disk is gone"), "{error}");
        assert!(syncer.visible().await.is_err());
    }

    /// The real sync opens the WAL file when it starts, and refuses to go on once the file
    /// at its path is another one: syncing the file it opened would no longer say anything
    /// about the log's frames.
    #[tokio::test]
    async fn the_wal_sync_keeps_the_file_it_opened() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("log.db");
        std::fs::write(&database, b"pages").unwrap();
        assert!(Syncer::start(&database).is_err(), "started without a WAL");
        let wal = dir.path().join("log.db-wal");
        std::fs::write(&wal, b"frames").unwrap();
        // As SQLite names it: from the database's path, symbolic links resolved.
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&database, &link).unwrap();
        let syncer = Syncer::start(&link).unwrap();
        syncer.request().await.unwrap();
        syncer.request().await.unwrap();
        std::fs::remove_file(&wal).unwrap();
        std::fs::write(&wal, b"other frames").unwrap();
        let error = syncer.request().await.unwrap_err();
        assert!(error.to_string().contains("was replaced"), "{error}");
        assert!(syncer.failure().is_some());
    }
}
