//! Slots: N generation threads sharing one model, each with its own KV cache (`Session`),
//! and the bounded queue in front of them.
//!
//! A request takes a permit of a semaphore with one permit per slot (waiting for one if
//! all are busy, unless `queue_size` requests already wait: then 503), picks the idle slot
//! whose cached tokens share the longest prefix with its prompt (a follow-up turn of a
//! conversation lands where the conversation is cached), and sends the job to that slot's
//! thread. The thread marks the slot idle *before* releasing the permit, so whoever gets
//! the permit always finds an idle slot. Generation never runs on the async runtime:
//! events come back over an unbounded channel whose `send` never blocks.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::embedding::mean_pool_normalized;
use crate::{ContextShift, GenerateParams, Model, Session, StopReason, TokenLogprob};
use tokio::sync::{mpsc as tmpsc, OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// What a slot is asked to do.
pub enum Work {
    /// Generate after `prompt` (whose cached prefix is reused).
    Generate {
        prompt: Vec<u32>,
        params: GenerateParams,
        /// `Some(n)`: report each token's log-probability and the n most likely.
        logprobs: Option<usize>,
        /// The conversation, when the context may shift (`--context-shift`).
        shift: Option<ContextShift>,
    },
    /// The mean-pooled, L2-normalised final hidden state of each input.
    Embed { inputs: Vec<Vec<u32>> },
}

/// What a slot reports back, in order: pieces, then `Done` (or `Error`).
pub enum Event {
    Piece {
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    Done {
        finish_reason: &'static str,
        usage: Usage,
    },
    Embeddings {
        vectors: Vec<Vec<f32>>,
        prompt_tokens: usize,
    },
    Error(ApiError),
}

/// Token counts of one request, as OpenAI's `usage` reports them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Of the prompt, the tokens found in the slot's KV cache.
    pub cached_tokens: usize,
}

/// Sets the cancel flag when dropped: the request's future (or its SSE stream) holds it,
/// so a client that disconnects cancels its generation.
pub struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct Job {
    work: Work,
    cancel: Arc<AtomicBool>,
    events: tmpsc::UnboundedSender<Event>,
    /// Released by the slot thread once the slot is idle again.
    permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct SlotState {
    busy: bool,
    /// The ids in the slot's KV cache.
    cached: Vec<u32>,
    /// When it was last picked (a counter), to prefer the least recently used.
    last_used: u64,
}

struct Shared {
    slots: Mutex<Vec<SlotState>>,
    /// Set on shutdown: every generation stops at its next token.
    shutdown: AtomicBool,
    picks: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<SlotState>> {
        // A panic is caught inside the slot thread before it could poison the lock;
        // if it ever is poisoned, the state (flags and ids) is still consistent.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The slots and their queue.
pub struct Slots {
    shared: Arc<Shared>,
    senders: Mutex<Vec<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue_size: usize,
    n_ctx: usize,
}

impl Slots {
    /// Starts `parallel` slot threads, each with a KV cache of `n_ctx` tokens.
    pub fn start(
        model: Arc<Model>,
        parallel: usize,
        n_ctx: usize,
        queue_size: usize,
    ) -> crate::Result<Slots> {
        let parallel = parallel.max(1);
        let shared = Arc::new(Shared {
            slots: Mutex::new((0..parallel).map(|_| SlotState::default()).collect()),
            shutdown: AtomicBool::new(false),
            picks: AtomicUsize::new(0),
        });
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for index in 0..parallel {
            let (tx, rx) = mpsc::channel::<Job>();
            // Sessions are made here, up front, so a context too large fails at start-up;
            // each thread then rebuilds its own (a Session borrows the model, and the
            // thread owns its Arc). The check costs nothing: the cache is allocated lazily
            // by the OS until written.
            model.session(n_ctx)?;
            let model = Arc::clone(&model);
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("phiq-slot-{index}"))
                .spawn(move || slot_main(&model, n_ctx, index, &rx, &shared))
                .map_err(|e| crate::Error::Resource(format!("cannot start slot thread: {e}")))?;
            senders.push(tx);
            threads.push(handle);
        }
        Ok(Slots {
            shared,
            senders: Mutex::new(senders),
            threads: Mutex::new(threads),
            permits: Arc::new(Semaphore::new(parallel)),
            waiting: AtomicUsize::new(0),
            queue_size,
            n_ctx,
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Queues `work` on the best idle slot (see the module doc); `key` is the prompt
    /// whose prefix decides which. Returns the event stream and the guard whose drop
    /// cancels the work.
    pub async fn submit(
        &self,
        work: Work,
        key: &[u32],
    ) -> Result<(tmpsc::UnboundedReceiver<Event>, CancelOnDrop), ApiError> {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Count ourselves among the waiting, or refuse if the queue is full.
                let queued = self
                    .waiting
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                        (w < self.queue_size).then_some(w + 1)
                    });
                if queued.is_err() {
                    return Err(ApiError::busy(self.queue_size));
                }
                // Leaves the queue even if this future is dropped (client gone) meanwhile.
                struct Leave<'a>(&'a AtomicUsize);
                impl Drop for Leave<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                let _leave = Leave(&self.waiting);
                Arc::clone(&self.permits)
                    .acquire_owned()
                    .await
                    .map_err(|_| ApiError::internal("the server is shutting down"))?
            }
        };
        let index = {
            let mut slots = self.shared.lock();
            // The idle slot that would keep the most of its cache; a slot counts only if
            // the prompt continues at least half of what it holds (as llama-server's
            // similarity threshold), so an unrelated request sharing just the chat
            // template's first tokens does not evict a conversation: it takes the least
            // recently used slot instead.
            let pick = slots
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.busy)
                .max_by_key(|(_, s)| {
                    let common = s.cached.iter().zip(key).take_while(|(a, b)| a == b).count();
                    let reuse = if common > 0 && 2 * common >= s.cached.len() {
                        common
                    } else {
                        0
                    };
                    (reuse, std::cmp::Reverse(s.last_used))
                })
                .map(|(i, _)| i)
                .ok_or_else(|| ApiError::internal("no idle slot although a permit was free"))?;
            slots[pick].busy = true;
            // +1: a slot never used keeps 0, the least recent of all.
            slots[pick].last_used = self.shared.picks.fetch_add(1, Ordering::Relaxed) as u64 + 1;
            pick
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let (events, rx) = tmpsc::unbounded_channel();
        let job = Job {
            work,
            cancel: Arc::clone(&cancel),
            events,
            permit,
        };
        let sent = self
            .senders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(index)
            .map(|tx| tx.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(ApiError::internal("the server is shutting down"));
        }
        Ok((rx, CancelOnDrop(cancel)))
    }

    /// Stops every generation at its next token (the server is shutting down).
    pub fn stop_all(&self) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
    }

    /// Stops every generation, lets the threads finish and joins them.
    pub fn shutdown(&self) {
        self.stop_all();
        self.permits.close();
        self.senders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn slot_main(
    model: &Model,
    n_ctx: usize,
    index: usize,
    jobs: &mpsc::Receiver<Job>,
    shared: &Shared,
) {
    let mut session = match model.session(n_ctx) {
        Ok(s) => s,
        Err(_) => return, // checked in `Slots::start`; unreachable in practice
    };
    while let Ok(job) = jobs.recv() {
        let Job {
            work,
            cancel,
            events,
            permit,
        } = job;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run(&mut session, work, &cancel, &shared.shutdown, &events)
        }));
        let last = outcome.unwrap_or_else(|_| {
            // A bug, not bad input: answer 500, start the cache afresh, keep serving.
            session.reset();
            Some(Event::Error(ApiError::internal(
                "internal error while generating (a bug in phiq); the request was dropped",
            )))
        });
        {
            let mut slots = shared.lock();
            slots[index].cached.clear();
            slots[index].cached.extend_from_slice(session.tokens());
            slots[index].busy = false;
        }
        drop(permit);
        // The final event goes out only now, so a client that has its answer finds the
        // slot free (with one slot and no queue, its next request is not refused).
        if let Some(event) = last {
            let _ = events.send(event);
        }
    }
}

fn run(
    session: &mut Session<'_>,
    work: Work,
    cancel: &AtomicBool,
    shutdown: &AtomicBool,
    events: &tmpsc::UnboundedSender<Event>,
) -> Option<Event> {
    let stop = || cancel.load(Ordering::Relaxed) || shutdown.load(Ordering::Relaxed);
    match work {
        Work::Generate {
            prompt,
            params,
            logprobs,
            shift,
        } => {
            let (model, n_ctx) = (session.model(), session.n_ctx());
            let mut gen = match session.generate(&prompt, params) {
                Ok(g) => g,
                Err(e) => return Some(Event::Error(e.into())),
            };
            if let (Some(mut shift), Ok(tok)) = (shift, model.tokenizer()) {
                gen.shift_with(move |answer| shift.shift(tok, n_ctx, answer));
            }
            if let Some(n) = logprobs {
                gen.record_logprobs(n);
            }
            loop {
                if stop() {
                    gen.cancel();
                }
                match gen.next() {
                    None => break,
                    Some(Ok(piece)) => {
                        let logprobs = gen.take_logprobs();
                        let event = Event::Piece {
                            text: piece.text,
                            logprobs,
                        };
                        if events.send(event).is_err() {
                            gen.cancel(); // the client is gone
                        }
                    }
                    Some(Err(e)) => return Some(Event::Error(e.into())),
                }
            }
            let finish_reason = match gen.stop_reason() {
                Some(StopReason::MaxTokens | StopReason::ContextFull) => "length",
                Some(StopReason::Cancelled) => "cancelled",
                _ => "stop",
            };
            let t = gen.timings();
            let usage = Usage {
                prompt_tokens: t.prompt_tokens,
                completion_tokens: t.generated_tokens,
                cached_tokens: t.prompt_cached,
            };
            Some(Event::Done {
                finish_reason,
                usage,
            })
        }
        Work::Embed { inputs } => {
            let mut vectors = Vec::with_capacity(inputs.len());
            let mut prompt_tokens = 0;
            for ids in &inputs {
                if stop() {
                    return None;
                }
                session.reset();
                match session.eval_hidden(ids) {
                    Ok(hidden) => vectors.push(mean_pool_normalized(&hidden, ids.len())),
                    Err(e) => return Some(Event::Error(e.into())),
                }
                prompt_tokens += ids.len();
            }
            Some(Event::Embeddings {
                vectors,
                prompt_tokens,
            })
        }
    }
}
