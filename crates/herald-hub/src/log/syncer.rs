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
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
};

use tokio::sync::{oneshot, watch};

use super::{Durable, LogError};

/// Where a sync's answer goes.
type Waiter = oneshot::Sender<Result<(), LogError>>;

/// The handle to the syncer's thread, which ends once this is dropped.
#[derive(Debug)]
pub(super) struct Syncer {
    requests: mpsc::Sender<Waiter>,
    /// Why a sync failed, once one has.
    failed: Arc<OnceLock<String>>,
    /// Commits the writer has begun ([`Self::begin`]): a reader may already see them.
    begun: AtomicU64,
    /// Commits the writer has ended ([`Self::ended`]): a sync that starts covers them.
    ended: Arc<AtomicU64>,
    /// How many commits are durable; closed once a sync has failed.
    synced: watch::Receiver<u64>,
}

impl Syncer {
    /// Starts a syncer of the WAL file of the SQLite database at `database`, which must
    /// exist: it is opened now, before any commit this syncer answers for.
    pub(super) fn start(database: &Path) -> Result<Self, LogError> {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let file = File::open(&wal)
            .map_err(|e| LogError::other(format!("cannot open {}: {e}", wal.display())))?;
        let mut dir_synced = false;
        Self::start_with(move || sync_wal(&wal, &file, &mut dir_synced))
    }

    /// Starts a syncer that makes commits durable with `sync`.
    pub(super) fn start_with(
        mut sync: impl FnMut() -> io::Result<()> + Send + 'static,
    ) -> Result<Self, LogError> {
        let (requests, queue) = mpsc::channel::<Waiter>();
        let failed = Arc::new(OnceLock::<String>::new());
        let ended = Arc::new(AtomicU64::new(0));
        let (synced_tx, synced) = watch::channel(0);
        let (failure, covered) = (failed.clone(), ended.clone());
        std::thread::Builder::new()
            .name("herald-log-syncer".into())
            .spawn(move || {
                let mut synced = Some(synced_tx);
                while let Ok(first) = queue.recv() {
                    // Every commit asked for so far was written before this sync starts.
                    let mut waiting = vec![first];
                    waiting.extend(queue.try_iter());
                    let through = covered.load(Ordering::SeqCst);
                    if failure.get().is_none() {
                        match sync() {
                            Ok(()) => {
                                if let Some(synced) = &synced {
                                    synced.send_if_modified(|durable| {
                                        let moved = through > *durable;
                                        *durable = (*durable).max(through);
                                        moved
                                    });
                                }
                            }
                            Err(error) => {
                                tracing::error!(
                                    %error,
                                    "event log: cannot make commits durable; every later \
                                     commit is refused until Herald restarts"
                                );
                                let _ =
                                    failure.set(format!("cannot sync the WAL to disk: {error}"));
                                // Wakes the readers waiting in `visible`, to fail.
                                synced = None;
                            }
                        }
                    }
                    for waiter in waiting {
                        let answer = match failure.get() {
                            None => Ok(()),
                            Some(why) => Err(LogError::other(why.clone())),
                        };
                        let _ = waiter.send(answer);
                    }
                }
            })
            .map_err(|e| LogError::other(format!("cannot start the log's syncer: {e}")))?;
        Ok(Self {
            requests,
            failed,
            begun: AtomicU64::new(0),
            ended,
            synced,
        })
    }

    /// Counts a commit the writer is about to make, before readers can see it.
    pub(super) fn begin(&self) {
        self.begun.fetch_add(1, Ordering::SeqCst);
    }

    /// Marks the commits begun so far as ended (made or failed), and asks for them to be
    /// made durable: the future resolves once they are. Called on the writer's thread, the
    /// only one that begins commits.
    pub(super) fn ended(&self) -> Durable {
        self.ended
            .store(self.begun.load(Ordering::SeqCst), Ordering::SeqCst);
        self.request()
    }

    /// Asks for a sync; the future resolves once one that started after this call is done.
    fn request(&self) -> Durable {
        let (waiter, answer) = oneshot::channel();
        let sent = self.requests.send(waiter);
        Box::pin(async move {
            let stopped = || LogError::other("the log's syncer has stopped");
            sent.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        })
    }

    /// Resolves once every commit a reader may see now is durable. Each ended commit has
    /// asked for its sync, so this only waits for those to be done.
    pub(super) fn visible(&self) -> Durable {
        let target = self.begun.load(Ordering::SeqCst);
        let mut synced = self.synced.clone();
        let failed = self.failed.clone();
        Box::pin(async move {
            if synced.wait_for(|durable| *durable >= target).await.is_ok() {
                return Ok(());
            }
            Err(LogError::other(failed.get().map_or_else(
                || "the log's syncer has stopped".to_owned(),
                Clone::clone,
            )))
        })
    }

    /// Why commits are refused: a sync has failed, and nothing written since can be trusted
    /// to stay.
    pub(super) fn failure(&self) -> Option<LogError> {
        self.failed
            .get()
            .map(|why| LogError::other(format!("{why}; commits are refused until Herald restarts")))
    }
}

/// Writes the WAL file's data to disk, and the first time its directory too: the entry of a
/// WAL file SQLite created must survive for its frames to. The file at `wal` must still be
/// the one `file` opened: SQLite removes it only when its last connection closes, which the
/// writer's never does while the log is open.
fn sync_wal(wal: &Path, file: &File, dir_synced: &mut bool) -> io::Result<()> {
    if std::fs::metadata(wal)?.ino() != file.metadata()?.ino() {
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
        let durable = syncer.ended();
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
        let durable = syncer.ended();
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
        assert!(Syncer::start(&database).is_err(), "started without a WAL");
        let wal = dir.path().join("log.db-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let syncer = Syncer::start(&database).unwrap();
        syncer.request().await.unwrap();
        syncer.request().await.unwrap();
        std::fs::remove_file(&wal).unwrap();
        std::fs::write(&wal, b"other frames").unwrap();
        let error = syncer.request().await.unwrap_err();
        assert!(error.to_string().contains("was replaced"), "{error}");
        assert!(syncer.failure().is_some());
    }
}
