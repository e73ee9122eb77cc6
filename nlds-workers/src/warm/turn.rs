//! Files in flight, a batch at a time: the batches a transfer role handles at once (up to
//! `[bus] prefetch`) share its `files_in_flight` slots, and the slots go to the batches in the
//! order they started. A batch takes its turn, gives each of its files a slot as one frees up
//! and passes the turn on when its last file has one; its files then finish while the next
//! batch's start.
//!
//! Why: with every batch taking slots at once, each file's slot went to whichever batch asked
//! next, so the batches in hand advanced together and all finished at the end. A distributed
//! put of 10,000 small files (10 batches, prefetch 8) then finished its first transfer only
//! after 8 s, with every batch, and left all the catalogue's work for the end, one batch after
//! another (BENCHMARKS.md, "Batches in turn"). In turn, the first batch is stored (and
//! catalogued, and restored and reported) while the others still move.

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit};

use super::Store;

impl Store {
    /// `items` (one batch's files), each with its slot (held until the permit is dropped),
    /// taken in this batch's turn. Nothing is taken until the stream is polled; the turn is
    /// passed on when the last item has its slot (or the stream is dropped). A slot is `None`
    /// only if the role is shutting down (the semaphore closed).
    pub(crate) fn in_turn<T: Send + 'static>(
        &self,
        items: Vec<T>,
    ) -> BoxStream<'static, (T, Option<OwnedSemaphorePermit>)> {
        let (slots, turns) = (self.slots.clone(), self.turn.clone());
        let state: (std::vec::IntoIter<T>, Option<OwnedMutexGuard<()>>) = (items.into_iter(), None);
        stream::unfold(state, move |(mut items, mut turn)| {
            let (slots, turns) = (slots.clone(), turns.clone());
            async move {
                if items.len() == 0 {
                    return None;
                }
                if turn.is_none() {
                    turn = Some(turns.lock_owned().await);
                }
                let item = items.next()?;
                let slot = slots.acquire_owned().await.ok();
                if items.len() == 0 {
                    turn = None; // the next batch's turn
                }
                Some(((item, slot), (items, turn)))
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;

    use crate::warm::tests::test_store;

    /// Two batches of 6 files with 2 slots, the second started while the first still has files
    /// waiting: the first batch's files all get their slots before any of the second's, so the
    /// first batch finishes first, however the slots free up.
    #[tokio::test]
    async fn the_batch_that_started_first_gets_the_slots_first() {
        let store = Arc::new(test_store(2).await);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let run = |batch: &'static str| {
            let (store, order) = (store.clone(), order.clone());
            async move {
                let items: Vec<String> = (0..6).map(|i| format!("{batch}{i}")).collect();
                store
                    .in_turn(items)
                    .map(|(name, slot)| {
                        let order = order.clone();
                        async move {
                            assert!(slot.is_some(), "a slot while the store is open");
                            order.lock().unwrap().push(name);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            drop(slot);
                        }
                    })
                    .buffer_unordered(6)
                    .collect::<Vec<()>>()
                    .await;
            }
        };
        let first = tokio::spawn(run("a"));
        tokio::time::sleep(Duration::from_millis(2)).await;
        let second = tokio::spawn(run("b"));
        first.await.unwrap();
        second.await.unwrap();
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 12, "every file ran once: {order:?}");
        let first_b = order.iter().position(|s| s.starts_with('b')).unwrap();
        let last_a = order.iter().rposition(|s| s.starts_with('a')).unwrap();
        assert!(
            last_a < first_b,
            "batch b took a slot before batch a had all of its: {order:?}"
        );
    }

    /// A batch with no files neither waits for nor holds the turn.
    #[tokio::test]
    async fn an_empty_batch_takes_no_turn() {
        let store = test_store(1).await;
        let _held = store.turn.lock().await;
        let none: Vec<((), Option<_>)> = tokio::time::timeout(
            Duration::from_secs(5),
            store.in_turn(Vec::<()>::new()).collect(),
        )
        .await
        .expect("an empty batch waited for the turn");
        assert!(none.is_empty());
    }

    /// The turn passes on when the last file has its slot, not when the batch's files finish:
    /// the next batch's first file starts while this batch's last ones still run.
    #[tokio::test]
    async fn the_turn_passes_on_once_the_last_file_has_its_slot() {
        let store = test_store(4).await;
        let mut a = Box::pin(store.in_turn(vec![1, 2]));
        let (_, s1) = a.next().await.unwrap();
        let (_, s2) = a.next().await.unwrap();
        let mut b = Box::pin(store.in_turn(vec![3]));
        let got = tokio::time::timeout(Duration::from_secs(5), b.next())
            .await
            .expect("the next batch waited although the first had all its slots");
        assert!(got.is_some_and(|(n, s)| n == 3 && s.is_some()));
        drop((s1, s2));
    }
}
